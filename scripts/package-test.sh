#!/usr/bin/env bash
# Builds both .deb packages (scripts/package.sh --debug), checks their metadata, unpacks them into a
# scratch root, starts the central from the installed systemd unit's own command line (only its
# paths and port moved into the scratch root), then drives the installed app under Xvfb with a
# managed configuration file pointing at that central (tests/package/installed-app.test.mjs).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export PATH="$HOME/.cargo/bin:$PATH"

fail() { echo "package-test: FAILED: $*" >&2; exit 1; }
ok() { echo "package-test: ok: $*"; }

bash scripts/package.sh --debug
APP_DEB="$(ls target/packages/cp-is-field_*.deb)"
CPIS_DEB="$(ls target/packages/cpis_*.deb)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/cpis-package-test.XXXXXX")"
SCRATCH="$WORK/root"
central=""
cleanup() {
  if [ -n "$central" ]; then kill "$central" 2>/dev/null || true; wait "$central" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- what the packages say about themselves ----------------------------------------------------
# Listed once into files: `grep -q` on a pipe would stop dpkg-deb early, which pipefail reports.
dpkg-deb -c "$APP_DEB" >"$WORK/app-files.txt"
dpkg-deb -c "$CPIS_DEB" >"$WORK/cpis-files.txt"
app_depends="$(dpkg-deb -f "$APP_DEB" Depends)"
[[ "$app_depends" == *libwebkit2gtk-4.1-0* ]] || fail "the app's Depends lack the WebKitGTK runtime: $app_depends"
grep -qE ' (\./)?usr/bin/cpis-field$' "$WORK/app-files.txt" || fail "the app package has no /usr/bin/cpis-field"
grep -qE ' (\./)?usr/share/applications/CP-IS Field\.desktop$' "$WORK/app-files.txt" || fail "the app package has no desktop entry"
ok "app package $(basename "$APP_DEB"): Depends: $app_depends"
grep -qE ' (\./)?usr/bin/cpis$' "$WORK/cpis-files.txt" || fail "the cpis package has no /usr/bin/cpis"
grep -qE ' (\./)?usr/lib/systemd/system/cpis-central\.service$' "$WORK/cpis-files.txt" || fail "the cpis package has no cpis-central.service"
grep -qE ' (\./)?usr/lib/sysusers\.d/cpis\.conf$' "$WORK/cpis-files.txt" || fail "the cpis package does not declare its service user"
dpkg-deb -I "$CPIS_DEB" conffiles >"$WORK/conffiles.txt"
grep -qx '/etc/default/cpis-central' "$WORK/conffiles.txt" || fail "/etc/default/cpis-central is not a conffile"
dpkg-deb -I "$CPIS_DEB" postinst >"$WORK/postinst.txt"
grep -q 'systemd-sysusers' "$WORK/postinst.txt" || fail "postinst does not create the service user"
ok "cpis package $(basename "$CPIS_DEB"): unit, service user, conffile"

# --- installed into a scratch root -------------------------------------------------------------
mkdir -p "$SCRATCH"
dpkg-deb -x "$CPIS_DEB" "$SCRATCH"
dpkg-deb -x "$APP_DEB" "$SCRATCH"
UNIT="$SCRATCH/usr/lib/systemd/system/cpis-central.service"
if command -v systemd-analyze >/dev/null 2>&1; then
  # Exposure is 0 (locked down) to 10 (unprotected); above 2.0 means hardening was lost.
  systemd-analyze security --offline=true --threshold=20 --no-pager --root="$SCRATCH" "$UNIT" >"$WORK/security.txt" 2>&1 \
    || { cat "$WORK/security.txt"; fail "the unit's hardening fell below its exposure threshold"; }
  ok "unit hardening: $(grep -o 'Overall exposure level.*' "$WORK/security.txt")"
fi

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
# The unit's ExecStart expanded as systemd would (Environment=, then EnvironmentFile=, then ${VAR}
# and $VAR word splitting), with only the data directory, the port and the root moved.
python3 - "$UNIT" "$SCRATCH" "$PORT" >"$WORK/exec.txt" <<'EOF'
import re, shlex, sys
unit, scratch, port = sys.argv[1], sys.argv[2], sys.argv[3]
def moved(s):
    s = s.replace("/var/lib/cpis-central", scratch + "/var/lib/cpis-central")
    return s.replace("127.0.0.1:8750", "127.0.0.1:" + port)
env, files, exec_start, section = {}, [], None, None
for raw in open(unit):
    line = raw.strip()
    if not line or line[0] in "#;":
        continue
    if line.startswith("["):
        section = line
        continue
    if section != "[Service]":
        continue
    key, _, value = line.partition("=")
    if key == "Environment":
        for assignment in shlex.split(value):
            k, _, v = assignment.partition("=")
            env[k] = v
    elif key == "EnvironmentFile":
        files.append((value.startswith("-"), value.lstrip("-")))
    elif key == "ExecStart":
        exec_start = value
for optional, path in files:
    try:
        text = open(scratch + path).read()
    except FileNotFoundError:
        if optional:
            continue
        raise
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, _, v = line.partition("=")
            env[k.strip()] = shlex.split(v)[0] if v.strip() else ""
if not exec_start:
    sys.exit("no ExecStart= in " + unit)
env = {k: moved(v) for k, v in env.items()}
argv = []
for word in shlex.split(exec_start):
    whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
    if whole:
        argv.extend(env.get(whole.group(1), "").split())
    else:
        argv.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), word))
if not argv[0].startswith("/usr/bin/"):
    sys.exit("ExecStart does not run an installed command: " + argv[0])
argv[0] = scratch + argv[0]
for k, v in env.items():
    print("ENV\t%s=%s" % (k, v))
for a in argv:
    print("ARG\t" + a)
EOF
argv=()
while IFS=$'\t' read -r kind value; do
  case "$kind" in
    ENV) export "${value?}" ;;
    ARG) argv+=("$value") ;;
  esac
done <"$WORK/exec.txt"
ok "central command line from the unit: ${argv[*]#"$SCRATCH"}"
[ -n "${CPIS_CENTRAL_DB:-}" ] || fail "the unit sets no CPIS_CENTRAL_DB"

DATA="$SCRATCH/var/lib/cpis-central"
mkdir -p "$DATA" && chmod 0700 "$DATA"
INSTALLED_CPIS="$SCRATCH/usr/bin/cpis"
# The administrator's commands share the unit's database setting (CPIS_CENTRAL_DB).
"$INSTALLED_CPIS" central la --ods PKG01 --name "Testvale Borough Council (synthetic)" \
  --emergency-phone "0300 555 0999" --region north-east >/dev/null
(cd "$DATA" && exec "${argv[@]}") >"$WORK/central.log" 2>&1 &
central=$!
CENTRAL_URL="http://127.0.0.1:$PORT"
for _ in $(seq 1 150); do
  curl -sf "$CENTRAL_URL/v1/ready" >/dev/null 2>&1 && break
  kill -0 "$central" 2>/dev/null || { cat "$WORK/central.log"; fail "the central from the unit's command line exited"; }
  sleep 0.2
done
curl -sf "$CENTRAL_URL/v1/ready" >/dev/null || { cat "$WORK/central.log"; fail "the central did not become ready"; }
ok "the installed central is ready at $CENTRAL_URL"

# --- the installed app under Xvfb --------------------------------------------------------------
if ! command -v tauri-driver >/dev/null 2>&1; then
  cargo install tauri-driver --locked --version '^2'
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
DRIVER_PORT="$(free_port)"
NATIVE_PORT="$(free_port)"
export INSTALLED_APP="$SCRATCH/usr/bin/cpis-field" INSTALLED_CPIS CENTRAL_URL PACKAGE_WORK="$WORK"
export TAURI_DRIVER_URL="http://127.0.0.1:$DRIVER_PORT" DRIVER_PORT NATIVE_PORT
# WebKitGTK under Xvfb has no GPU: render in software.
export WEBKIT_DISABLE_DMABUF_RENDERER=1 WEBKIT_DISABLE_COMPOSITING_MODE=1 LIBGL_ALWAYS_SOFTWARE=1
export RUST_LOG="${RUST_LOG:-info}"
xvfb-run -a --server-args="-screen 0 1280x1024x24" bash -c '
  set -u
  tauri-driver --port "$DRIVER_PORT" --native-port "$NATIVE_PORT" >"$PACKAGE_WORK/tauri-driver.log" 2>&1 &
  driver=$!
  for _ in $(seq 1 100); do
    curl -sf "$TAURI_DRIVER_URL/status" >/dev/null 2>&1 && break
    sleep 0.1
  done
  node --test --test-concurrency=1 tests/package/installed-app.test.mjs
  rc=$?
  kill "$driver" 2>/dev/null
  wait "$driver" 2>/dev/null
  if [ "$rc" -ne 0 ]; then
    echo "--- tauri-driver log"; tail -n 30 "$PACKAGE_WORK/tauri-driver.log"
    for log in "$PACKAGE_WORK"/*/app.log; do echo "--- $log"; tail -n 30 "$log"; done
  fi
  exit "$rc"
'
echo "package-test: screenshots in artifacts/screenshots/package-*.png"
