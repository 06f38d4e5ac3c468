#!/usr/bin/env bash
# Drives the real CP-IS Field window end to end: tauri-driver and WebKitWebDriver under Xvfb against a
# central on SQLite with a synthetic register. Screenshots of each screen: artifacts/screenshots/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export PATH="$HOME/.cargo/bin:$PATH"

bash scripts/setup-system.sh
if ! command -v xwininfo >/dev/null 2>&1; then
  # Lets the test confirm the native window's title, not only the page's.
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq --no-install-recommends x11-utils >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends x11-utils >/dev/null; } || true
fi
if ! command -v tauri-driver >/dev/null 2>&1; then
  echo "e2e-app: installing tauri-driver"
  cargo install tauri-driver --locked --version '^2'
fi

npm --prefix ui ci --no-audit --no-fund --loglevel=error
npm --prefix ui run build --silent
# The same feature resolution as `cargo test --workspace` (which scripts/test.sh runs first), so the
# test run's artifacts are reused instead of rebuilding the dependency tree with other features.
cargo build --locked --workspace --all-targets

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cpis-e2e-app.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
rm -rf artifacts/screenshots/[0-9]*.png
mkdir -p artifacts/screenshots

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
DRIVER_PORT="$(free_port)"
NATIVE_PORT="$(free_port)"

export E2E_WORK="$WORK"
export CPIS_DEVICE_DIR="$WORK/device"
export CPIS_BIN="$ROOT/target/debug/cpis"
export CPIS_APP_BIN="$ROOT/target/debug/cpis-field"
export TAURI_DRIVER_URL="http://127.0.0.1:$DRIVER_PORT"
export DRIVER_PORT NATIVE_PORT
# WebKitGTK under Xvfb has no GPU: render in software.
export WEBKIT_DISABLE_DMABUF_RENDERER=1 WEBKIT_DISABLE_COMPOSITING_MODE=1 LIBGL_ALWAYS_SOFTWARE=1
export RUST_LOG="${RUST_LOG:-warn}"

xvfb-run -a --server-args="-screen 0 1280x3200x24" bash -c '
  set -u
  tauri-driver --port "$DRIVER_PORT" --native-port "$NATIVE_PORT" > "$E2E_WORK/tauri-driver.log" 2>&1 &
  driver=$!
  for _ in $(seq 1 100); do
    curl -sf "$TAURI_DRIVER_URL/status" >/dev/null 2>&1 && break
    sleep 0.1
  done
  node --test --test-concurrency=1 tests/e2e-app/app.test.mjs
  rc=$?
  kill "$driver" 2>/dev/null
  wait "$driver" 2>/dev/null
  if [ "$rc" -ne 0 ]; then echo "--- tauri-driver log"; tail -n 50 "$E2E_WORK/tauri-driver.log"; fi
  exit "$rc"
'
echo "e2e-app: screenshots in artifacts/screenshots/"
