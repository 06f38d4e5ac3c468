#!/usr/bin/env bash
# Sets up and runs every test of CP-IS Field: formatting and lints, the Rust suites (domain core,
# device store, central on SQLite and PostgreSQL, sync faults, kill tests, end to end), the FHIR
# facade against independent FHIR software, the UI in headless Chromium, the real app window
# under Xvfb, and the Debian packages installed into a scratch root and run from there.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
bash scripts/setup-system.sh

step "PostgreSQL"
source scripts/postgres.sh
ensure_postgres

step "formatting"
cargo fmt --all -- --check

step "lints (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust test suites"
cargo test --workspace --locked -- --nocapture 2>&1 | tee target/rust-tests.log | grep -E '^(test |running |test result|SKIPPED|     Running|   Doc-tests)' || true
if grep -qE '^test result: FAILED|error: test failed|error\[|could not compile' target/rust-tests.log; then
  echo "Rust tests FAILED: see target/rust-tests.log"; grep -E 'FAILED|panicked|error' target/rust-tests.log | head -50; exit 1
fi
grep -q '^test result: ok' target/rust-tests.log || { echo "Rust tests did not run"; tail -50 target/rust-tests.log; exit 1; }

step "FHIR facade against independent FHIR software (fhir.resources models, fhirpy client)"
bash scripts/fhir-test.sh

step "UI in headless Chromium (mocked commands)"
bash scripts/ui-test.sh

step "the real app window (tauri-driver, WebKitWebDriver, Xvfb)"
bash scripts/e2e-app.sh

step "the Debian packages installed into a scratch root: the central from its unit, the app under Xvfb"
bash scripts/package-test.sh

step "privacy scan of tracked files (999 test range only)"
bash scripts/nhs-number-check.sh

echo
echo "ALL TESTS PASSED"
