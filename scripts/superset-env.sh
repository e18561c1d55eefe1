#!/usr/bin/env bash
# superset-env.sh creates (or reuses) the Python virtual environment in which
# authzd's Superset integration is tested: apache-superset from PyPI, pinned
# with integrations/superset/constraints.txt so that the install repeats,
# Authlib (Superset's OAuth client), pytest, and the authzd_superset package
# in editable mode. It is idempotent and returns in a second when the
# environment is already complete.
#
#   scripts/superset-env.sh            # venv at .venv-superset
#   AUTHZD_SUPERSET_VENV=/opt/v scripts/superset-env.sh
#
# Two pins work around packaging faults of apache-superset 6.1.0 itself:
# Flask-Caching 2.5 passes an argument its metastore cache does not take
# (the app fails to start), so constraints.txt pins 2.3.1; and it imports
# cachetools (database engine specs) and rich (the superset CLI) without
# declaring them, so both are installed explicitly.
#
# PYTHON selects the interpreter (default python3; Superset 6.1 needs 3.10-3.12).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${AUTHZD_SUPERSET_VENV:-$root/.venv-superset}"
python="${PYTHON:-python3}"
pkg="$root/integrations/superset"
constraints="$pkg/constraints.txt"
stamp="$venv/.authzd-superset-stamp"

# The stamp records what was installed; a changed constraints file or
# pyproject.toml reinstalls.
want="$(cat "$constraints" "$pkg/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "superset-env: $venv is up to date"
  exit 0
fi

start=$(date +%s)
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c "$constraints" apache-superset Authlib cachetools rich pytest
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  -c "$constraints" --no-deps -e "$pkg"
"$venv/bin/python" -m pip check >/dev/null || {
  echo "superset-env: pip check found conflicts:" >&2
  "$venv/bin/python" -m pip check >&2 || true
  exit 1
}
echo "$want" >"$stamp"
echo "superset-env: installed into $venv in $(( $(date +%s) - start ))s"
