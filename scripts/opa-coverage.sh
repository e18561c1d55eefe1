#!/usr/bin/env bash
# opa-coverage.sh OPA DIR THRESHOLD: runs `opa test --coverage` over DIR,
# prints the coverage of each file and in total, and fails when the total is
# below THRESHOLD percent (or when a test fails).
set -euo pipefail
opa=$1 dir=$2 threshold=$3
report=$(mktemp)
trap 'rm -f "$report"' EXIT
rc=0
"$opa" test --coverage --threshold "$threshold" "$dir" >"$report" || rc=$?
python3 - "$report" "$threshold" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
for name, f in sorted(report.get("files", {}).items()):
    print(f"  {f.get('coverage', 0):6.2f}%  {name}")
print(f"opa coverage: {report.get('coverage', 0):.2f}% (threshold {sys.argv[2]}%)")
PY
if [ "$rc" -ne 0 ]; then
	echo "opa-coverage: opa test failed or coverage is below ${threshold}%" >&2
fi
exit "$rc"
