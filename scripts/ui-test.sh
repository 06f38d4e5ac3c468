#!/usr/bin/env bash
# Tests the clinician's screens without the shell: logic.js under Node, then every screen in headless
# Chromium (Debian's, driven by playwright-core) with the Tauri commands mocked.
# Screenshots of the mocked screens land in artifacts/screenshots/mocked/.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  bash scripts/setup-system.sh
fi
if ! command -v node >/dev/null 2>&1; then
  echo "ui-test: node and npm are needed (apt-get install nodejs npm)" >&2
  exit 1
fi

npm --prefix ui ci --no-audit --no-fund --loglevel=error
npm --prefix ui run build --silent
cd ui
node --test tests/logic.test.mjs tests/screens.test.mjs
