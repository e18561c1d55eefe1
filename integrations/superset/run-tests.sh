#!/usr/bin/env bash
# run-tests.sh runs every Python test of authzd's Superset integration:
#
#   tests/test_client.py             the decision client and filter selection,
#                                    against real authzd processes
#   tests/test_superset_inprocess.py the security manager inside a Superset app:
#                                    hostile clauses through Superset's Jinja,
#                                    text() and SQL Lab RLS against SQLite
#   tests/test_e2e.py (marker e2e)   a real Superset server, OAuth logins through
#                                    authzd's dev IdP, chart data and SQL Lab
#
# It prepares the virtual environment (scripts/superset-env.sh, fast when done)
# and builds bin/authzd unless AUTHZD_BIN names a binary. Extra arguments go to
# pytest, for example `-m "not e2e"` or `-k sales`. Exits non-zero on failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${AUTHZD_SUPERSET_VENV:-$root/.venv-superset}"
started=$(date +%s)

bash "$root/scripts/superset-env.sh"
if [[ -z "${AUTHZD_BIN:-}" ]]; then
  (cd "$root" && go build -o bin/authzd ./cmd/authzd)
  export AUTHZD_BIN="$root/bin/authzd"
fi

cd "$root/integrations/superset"
status=0
"$venv/bin/python" -m pytest -p no:cacheprovider -W ignore::DeprecationWarning \
  -W ignore::PendingDeprecationWarning -rfE "$@" || status=$?
echo "superset integration tests took $(( $(date +%s) - started ))s (exit $status)"
exit "$status"
