#!/usr/bin/env bash
# Runs CP-IS Field's benchmarks (B1-B7, see BENCHMARKS.md): builds in release, then measures every
# figure beside its floor in the same run and prints the table. Extra arguments go to
# `cpis-bench run` (e.g. `--only b1,b2`, `--flags 50000`; `target/release/cpis-bench run --help`).
#
# Needs the Rust toolchain. Optional, each reported LOUDLY as not measured when missing: PostgreSQL at
# CPIS_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432/test) for B5 on PostgreSQL; Node.js
# (to bundle the screens), Xvfb, tauri-driver and WebKitWebDriver for B6, the app window.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export CPIS_BENCH_POSTGRES=${CPIS_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}
export PATH="$HOME/.cargo/bin:$PATH"

echo "==> release build: cpis-bench and cpis"
cargo build --release -p cpis-bench -p cpis-cli

# The app's release build is long: only when B6 (the app window) is among those asked for.
only=""
prev=""
for a in "$@"; do
  [ "$prev" = "--only" ] && only="$a"
  case "$a" in --only=*) only="${a#--only=}" ;; esac
  prev="$a"
done
wants_b6=1
if [ -n "$only" ] && [[ "$only" != *b6* ]]; then wants_b6=0; fi

if [ "$wants_b6" = 1 ]; then
echo "==> release build: the app (for B6)"
if command -v npm >/dev/null 2>&1; then
  { [ -d ui/node_modules ] || npm --prefix ui ci --no-audit --no-fund --loglevel=error; } \
    && npm --prefix ui run build --silent \
    || echo "!!! the screens did not bundle: B6 will use whatever ui/dist holds, or not run"
fi
cargo build --release -p cpis-field-app \
  || echo "!!! the app did not build: B6 will be reported as not measured"
fi

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  # The test scripts know how to start the local server; the benchmark only needs it running.
  # shellcheck source=/dev/null
  source scripts/postgres.sh && ensure_postgres || true
fi

echo "==> machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo) memory, $(date -u +%Y-%m-%d)"
if [ -z "${DISPLAY:-}" ] && command -v xvfb-run >/dev/null 2>&1; then
  # B6 drives the app's window: give it a virtual screen. The other benchmarks do not notice.
  exec xvfb-run -a --server-args="-screen 0 1280x1024x24" target/release/cpis-bench run "$@"
fi
exec target/release/cpis-bench run "$@"
