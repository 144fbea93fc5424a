#!/usr/bin/env bash
# Checks scripts/report.py end to end on tiny fresh results: one run of all six methods with a dataset
# folder, and a two-point p sweep. Fails if an expected file is missing or empty, or if a bad results
# file does not fail cleanly. Takes about 15 s. Usage: scripts/check_report.sh [BUILD_DIR]
# Needs numpy and matplotlib (Debian: apt-get install -y --no-install-recommends python3-matplotlib);
# PYTHON=... picks the interpreter, else the first of python3, /usr/bin/python3 that has both.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c 'import numpy, matplotlib' 2>/dev/null; then python=$candidate; break; fi
  done
fi
[ -n "$python" ] || { echo "check_report.sh: no python3 with numpy and matplotlib" >&2; exit 1; }
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
common=(accuracy_by_method.svg curves.svg saliency_test_clean.svg saliency_test_aligned.svg saliency_train.svg
        afr_p_histogram.svg cost_per_method.svg report.html)
expect "$tmp/report" "${common[@]}" embedding_pca.svg
expect "$tmp/sweep_report" "${common[@]}" p_sweep.svg
if ! grep -q "<svg" "$tmp/report/report.html"; then echo "check_report.sh: report.html has no figures" >&2; failed=1; fi

# A file of the wrong schema: exit 1, one line on stderr, no output folder.
echo '{"schema": "something/else"}' >"$tmp/wrong.json"
set +e
"$python" scripts/report.py "$tmp/wrong.json" --out "$tmp/wrong_report" 2>"$tmp/wrong.err"
rc=$?
set -e
if [ "$rc" -ne 1 ] || [ "$(wc -l <"$tmp/wrong.err")" -ne 1 ] || [ -e "$tmp/wrong_report" ]; then
  echo "check_report.sh: wrong schema gave exit $rc, stderr: $(cat "$tmp/wrong.err")" >&2; failed=1
fi

[ "$failed" -eq 0 ] && echo "check_report.sh: ok"
exit "$failed"
