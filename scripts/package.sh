#!/usr/bin/env bash
# Builds the two Debian packages into target/packages/:
#   cpis-field_<version>_<arch>.deb  the app, bundled by Tauri's own bundler (the pinned npm CLI)
#   cpis_<version>_<arch>.deb        the cpis command and the cpis-central systemd unit (cargo-deb)
#
#   scripts/package.sh           release builds: what a trust installs
#   scripts/package.sh --debug   packages the debug build already in target/debug, without compiling
#                                the workspace again (scripts/package-test.sh uses this)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export PATH="$HOME/.cargo/bin:$PATH"

# Pinned so a second run finds it in ~/.cargo/bin and the packages do not change under us.
CARGO_DEB_VERSION=3.8.0

PROFILE=release
case "${1:-}" in
  "") ;;
  --debug) PROFILE=debug ;;
  *) echo "usage: scripts/package.sh [--debug]" >&2; exit 2 ;;
esac
OUT="$ROOT/target/packages"

bash scripts/setup-system.sh
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION"
  cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION"
fi
npm --prefix packaging ci --no-audit --no-fund --loglevel=error
if [ "$PROFILE" = release ]; then
  npm --prefix ui ci --no-audit --no-fund --loglevel=error
  npm --prefix ui run build --silent
else
  # The same build as `cargo test --workspace` and scripts/e2e-app.sh, so nothing is recompiled.
  # The screens are not rebuilt here: a new ui/dist would make cargo rebuild the app.
  cargo build --locked --workspace --all-targets
fi

# Tauri's CLI wants its configuration beside the app's Cargo.toml; ours lives at the repository
# root (tauri-build reads it there). A copy with its paths rebased onto src-tauri/ is made for the
# bundler's run only, plus the packaging additions (packaging/cpis-field/tauri.bundle.json).
APP_CONF="$ROOT/src-tauri/tauri.conf.json"
trap 'rm -f "$APP_CONF"' EXIT
node -e '
  const fs = require("fs");
  const c = JSON.parse(fs.readFileSync("tauri.conf.json", "utf8"));
  c.build.frontendDist = `../${c.build.frontendDist}`;
  c.bundle.icon = c.bundle.icon.map((p) => `../${p}`);
  fs.writeFileSync(process.argv[1], JSON.stringify(c, null, 2));
' "$APP_CONF"
export TAURI_APP_PATH="$ROOT/src-tauri" TAURI_FRONTEND_PATH="$ROOT"
TAURI=(node "$ROOT/packaging/node_modules/@tauri-apps/cli/tauri.js")
BUNDLE_CONF="$ROOT/packaging/cpis-field/tauri.bundle.json"

rm -rf "$OUT" "target/$PROFILE/bundle/deb"
mkdir -p "$OUT"
if [ "$PROFILE" = release ]; then
  # Tauri's build compiles the app with its embedded-assets feature, then bundles it.
  "${TAURI[@]}" build --ci --bundles deb --config "$BUNDLE_CONF"
  cargo deb --locked -p cpis-cli --output "$OUT"
else
  "${TAURI[@]}" bundle --ci --debug --bundles deb --config "$BUNDLE_CONF"
  # cargo-deb is meant for release profiles; --no-build packs the debug binary as it is.
  cargo deb --locked -p cpis-cli --profile dev --no-build --fast --output "$OUT"
fi
for deb in "target/$PROFILE/bundle/deb/"*.deb; do
  name="$(dpkg-deb -f "$deb" Package)_$(dpkg-deb -f "$deb" Version)_$(dpkg-deb -f "$deb" Architecture).deb"
  cp "$deb" "$OUT/$name"
done
echo "package: built"
ls -1 "$OUT"/*.deb
