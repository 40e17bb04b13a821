#!/usr/bin/env bash
# Set up and run the whole test suite on the CPU: kernels run under Triton's interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export TRITON_INTERPRET=1 SLAGEN_CACHE_DIR="${SLAGEN_CACHE_DIR:-$(mktemp -d)}"
if [ -f scripts/postgres_for_tests.sh ] && [ -z "${SLAGEN_TEST_POSTGRES_URL:-}" ]; then
  # A throwaway PostgreSQL on loopback for the shared-database tests (skipped when it cannot start).
  eval "$(bash scripts/postgres_for_tests.sh start)" || echo "PostgreSQL unavailable: postgres tests will skip"
fi
status=0
python -m pytest -q -ra "$@" || status=$?
if [ -f scripts/postgres_for_tests.sh ] && [ -n "${SLAGEN_PG_DIR:-}" ]; then
  bash scripts/postgres_for_tests.sh stop || true
fi
exit $status
