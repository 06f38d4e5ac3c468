#!/usr/bin/env bash
# Sets up and runs CP-IS Field on this machine: the central on its embedded SQLite with a synthetic
# national register, an enrolled device, a demo user, and the app window.
# CPIS_DEMO_FLAGS (default 250000) sets the register's size; CPIS_PORT (default 8750) the central's port.
set -euo pipefail
cd "$(dirname "$0")/.."
FLAGS=${CPIS_DEMO_FLAGS:-250000}
PORT=${CPIS_PORT:-8750}
DATA=.data/demo
CENTRAL_DB="sqlite:$DATA/central.sqlite"
DEVICE_DIR="$DATA/device"
export CPIS_DEVICE_DIR="$DEVICE_DIR"

bash scripts/setup-system.sh
echo "==> building (first build takes several minutes)"
npm --prefix ui ci --no-audit --no-fund >/dev/null
npm --prefix ui run build >/dev/null
cargo build --locked -p cpis-cli -p cpis-field-app
CPIS=target/debug/cpis

mkdir -p "$DATA"
if [ ! -f "$DATA/central.sqlite" ]; then
  echo "==> creating a synthetic national register of $FLAGS flags"
  $CPIS central --db "$CENTRAL_DB" demo --flags "$FLAGS" --seed 1
  CPIS_PIN=2468 $CPIS central --db "$CENTRAL_DB" user --id demo.paramedic --name "Demo Paramedic" \
    --org RX9 --activity B0107 --role Paramedic
  CPIS_PIN=1357 $CPIS central --db "$CENTRAL_DB" user --id demo.gp --name "Demo In-hours GP" \
    --org RX9 --activity B0170 --role "General practitioner"
fi

echo "==> starting the central on 127.0.0.1:$PORT"
$CPIS central --db "$CENTRAL_DB" serve --listen "127.0.0.1:$PORT" > "$DATA/central.log" 2>&1 &
CENTRAL_PID=$!
trap 'kill $CENTRAL_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$PORT/v1/status" >/dev/null && break; sleep 0.2; done

if [ ! -f "$DEVICE_DIR/device.sqlite" ] || ! $CPIS device status --json | grep -q '"enrolled": true'; then
  echo "==> enrolling this device in region north-west as an ambulance service tablet"
  CODE=$($CPIS central --db "$CENTRAL_DB" enrol --region north-west --org RX9 --setting ambulance \
    --org-name "Synthetic Ambulance Service NHS Trust" | tail -1)
  $CPIS device enrol --central "http://127.0.0.1:$PORT" --code "$CODE"
  echo "==> first download of the region's flags"
  CPIS_PIN=2468 $CPIS device sync --user demo.paramedic
fi

FLAGGED=$($CPIS central --db "$CENTRAL_DB" demo-examples --region north-west | head -3)
cat <<TEXT

============================================================================
 CP-IS Field is running.
 Central:        http://127.0.0.1:$PORT   (LA inbox: http://127.0.0.1:$PORT/la/<ODS>/inbox)
 Sign in as:     demo.paramedic   PIN 2468   (ambulance, notifies the LA)
            or:  demo.gp          PIN 1357   (reads silently)
 NHS numbers to try (synthetic, 999 test range):
$FLAGGED
 A number with no record: 999 944 4458 (never flagged in the demo register)
 Stop the central (Ctrl+C in another terminal: kill $CENTRAL_PID) to see offline checks.
============================================================================

TEXT
WEBKIT_DISABLE_DMABUF_RENDERER=1 target/debug/cpis-field
