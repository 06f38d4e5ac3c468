# Sourced by the test scripts: makes sure the PostgreSQL the central's store tests use is running.
# On a machine without PostgreSQL the suite is skipped LOUDLY; with CPIS_REQUIRE_POSTGRES=1 (CI) that fails.
ensure_postgres() {
  export CPIS_TEST_POSTGRES_URL=${CPIS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
  if command -v pg_isready >/dev/null 2>&1 && pg_isready -h 127.0.0.1 -p 5432 -q; then
    echo "PostgreSQL is up at 127.0.0.1:5432"; return 0
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
    sleep 2
    if pg_isready -h 127.0.0.1 -p 5432 -q; then echo "PostgreSQL is up"; return 0; fi
  fi
  if [ "${CPIS_REQUIRE_POSTGRES:-0}" = "1" ]; then
    echo "PostgreSQL is required (CPIS_REQUIRE_POSTGRES=1) but not reachable at 127.0.0.1:5432"; return 1
  fi
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
  echo "!!! SKIPPING the PostgreSQL store suite: no PostgreSQL at 127.0.0.1:5432      !!!"
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
}
