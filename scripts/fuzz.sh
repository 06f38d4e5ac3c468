#!/usr/bin/env bash
# Fuzzes the untrusted-input decoders for a bounded time each and fails on any crash.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 60 s each, all targets)
# Targets: nhs_number, la_upload, region_page, event_batch (fuzz/fuzz_targets/). Each run starts from
# the committed seeds (fuzz/seeds/<target>/) plus what earlier runs found (fuzz/corpus/, untracked).
# A crash leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz <target> fuzz/artifacts/<target>/<file>
# and pin it as a regression test (crates/*/tests/fuzz_regressions.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(nhs_number la_upload region_page event_batch)

# cargo-fuzz passes -Z flags (sanitizer, coverage); only the stable toolchain is installed, so let
# it accept them. The fuzz build gets its own target directory.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="$PWD/fuzz/target"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# Release with debug assertions and overflow checks on, so arithmetic bugs crash too.
FLAGS=(--fuzz-dir fuzz -O --debug-assertions)
echo "==> building fuzz targets"
cargo fuzz build "${FLAGS[@]}"

failed=()
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t.log"
  echo "==> fuzzing $t for ${SECS}s"
  # -timeout: an input taking over 10 s is a denial-of-service bug, not a slow machine.
  if cargo fuzz run "${FLAGS[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
    # The panic location and message; the input itself stays in the artifact file.
    grep -E "panicked at|ERROR: libFuzzer|SUMMARY|artifact_prefix|Test unit written" "$log" | head -8 || true
  fi
  execs=$(grep -Eo "stat::number_of_executed_units: *[0-9]+" "$log" | grep -Eo "[0-9]+$" | tail -1 || true)
  cov=$(grep -Eo "cov: [0-9]+" "$log" | tail -1 || true)
  summary+=("$(printf '%-12s %-6s executions=%-10s %s' "$t" "$status" "${execs:-?}" "$cov")")
done

echo "==> results (${SECS}s per target; logs in fuzz/artifacts/<target>.log)"
printf '  %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing failed (a crash, a timeout or a build error) in: ${failed[*]}"
  exit 1
fi
echo "no crashes"
