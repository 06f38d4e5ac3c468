#!/usr/bin/env bash
# The FHIR facade checked by independent FHIR software: builds `cpis`, installs the pinned FHIR
# models (fhir.resources) and client (fhirpy) into a virtual environment, then runs tests/fhir with
# pytest against a real `cpis central serve` process and an offline device's FHIR door.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p cpis-cli --locked --quiet
venv=target/fhir-venv
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/fhir/requirements.txt
CPIS_BIN="$PWD/target/debug/cpis" "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/fhir "$@"
