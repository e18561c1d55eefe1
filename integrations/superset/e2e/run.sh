#!/usr/bin/env bash
# run.sh runs only the end-to-end test in a real Superset (pytest marker e2e).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../run-tests.sh" -m e2e "$@"
