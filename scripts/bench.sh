#!/usr/bin/env bash
# Runs CP-IS Field's benchmarks (B1-B6, see BENCHMARKS.md): builds in release, then measures every
# figure beside its floor in the same run and prints the table. Extra arguments go to
# `cpis-bench run` (e.g. `--only b1,b2`, `--flags 50000`); `--app` is the B6 window benchmark's switch.
#
# Needs: the Rust toolchain. Optional: PostgreSQL at CPIS_BENCH_POSTGRES (default
# postgres://postgres@127.0.0.1:5432/test) for B5 on PostgreSQL; Xvfb, tauri-driver and
# WebKitWebDriver for B6. What is missing is reported as not measured, loudly, not silently.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
export CPIS_BENCH_POSTGRES=${CPIS_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}

echo "==> release build (cpis-bench, cpis)"
cargo build --release -p cpis-bench -p cpis-cli

if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  # The test scripts know how to start the local server; the benchmark only needs it running.
  # shellcheck source=/dev/null
  source scripts/postgres.sh && ensure_postgres || true
fi

echo "==> machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GB", $2/1048576}' /proc/meminfo), $(date -u +%Y-%m-%d)"
exec target/release/cpis-bench run "$@"
