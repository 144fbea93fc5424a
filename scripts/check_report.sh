#!/usr/bin/env bash
# Checks scripts/report.py end to end on tiny fresh results: one run of all six methods with a dataset
# folder, and a two-point p sweep. Fails if an expected file or table is missing or empty, or if a bad results
# file (wrong schema; a per-class curve with a value missing) does not fail cleanly. Takes about 20 s on 2 cores.
# Usage: scripts/check_report.sh [BUILD_DIR]. ctest runs it as report.check_report (tests/report); the same
# report in a browser: tests/report/browser_test.sh.
# Needs numpy and matplotlib (Debian: apt-get install -y --no-install-recommends python3-matplotlib);
# PYTHON=... picks the interpreter, else the first of python3, /usr/bin/python3 that has both.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
source scripts/report_python.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

small=(--seeds 2 --steps 60 --eval-every 30 --batch 50 --afr-epochs 20 --afr-gammas 0,4 --afr-lambdas 0,0.1
       --dfr-subsamples 2 --quiet)
"$build/bench_spurious" "${small[@]}" --out "$tmp/r.json" >/dev/null
"$build/bench_spurious" "${small[@]}" --p 0,1 --methods erm,dfr,afr --out "$tmp/sweep.json" >/dev/null
"$build/bench_spurious" dataset --p 0.9 --out "$tmp/dataset" >/dev/null

"$python" scripts/report.py "$tmp/r.json" --dataset "$tmp/dataset" --out "$tmp/report"
"$python" scripts/report.py "$tmp/sweep.json" --out "$tmp/sweep_report"

failed=0
expect() {  # folder, files...
  local dir=$1; shift
  for f in "$@"; do
    if [ ! -s "$dir/$f" ]; then echo "check_report.sh: missing or empty: $dir/$f" >&2; failed=1; fi
  done
}
common=(accuracy_by_method.svg curves.svg per_group_curves.svg saliency_test_clean.svg saliency_test_aligned.svg saliency_train.svg
        afr_p_histogram.svg cost_per_method.svg report.html)
expect "$tmp/report" "${common[@]}" embedding_pca.svg
expect "$tmp/sweep_report" "${common[@]}" p_sweep.svg
for page in "$tmp/report/report.html" "$tmp/sweep_report/report.html"; do
  for want in "<svg" "<h2>Timing" "Cost per epoch" "id='per_group_curves'" "id='cost_per_method'"; do
    grep -qF "$want" "$page" || { echo "check_report.sh: $page lacks $want" >&2; failed=1; }
  done
done

# A bad file: exit 1, one line on stderr that says what is wrong, no output folder.
refused() {  # name, text the error must contain
  set +e
  "$python" scripts/report.py "$tmp/$1.json" --out "$tmp/$1_report" 2>"$tmp/$1.err"
  local rc=$?
  set -e
  if [ "$rc" -ne 1 ] || [ "$(wc -l <"$tmp/$1.err")" -ne 1 ] || ! grep -qF "$2" "$tmp/$1.err" || [ -e "$tmp/$1_report" ]; then
    echo "check_report.sh: $1 gave exit $rc, stderr: $(cat "$tmp/$1.err")" >&2; failed=1
  fi
}
echo '{"schema": "something/else"}' >"$tmp/wrong_schema.json"
refused wrong_schema "schema is 'something/else'"
"$python" - "$tmp/r.json" "$tmp/short_curve.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
run = next(run for run in r["runs"] if run["curves"].get("step"))
run["curves"]["test_clean"]["per_group_accuracy"][0].pop()
json.dump(r, open(sys.argv[2], "w"))
EOF
refused short_curve "curves.test_clean.per_group_accuracy[0]: not a list of 10 values"

[ "$failed" -eq 0 ] && echo "check_report.sh: ok"
exit "$failed"
