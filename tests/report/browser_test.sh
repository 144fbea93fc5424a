#!/usr/bin/env bash
# ctest report.browser: fresh tiny results (all six methods, and a two-point p sweep), scripts/report.py on both,
# and both report.html pages opened in headless Chromium by check_report_html.py: no request beyond the page, no
# console error, every figure (as many as report.py wrote SVG files) rendered with a non-zero size. The
# screenshots stay in WORKDIR: WORKDIR/report/report.png and WORKDIR/sweep_report/report.png.
# Usage: tests/report/browser_test.sh BENCH_SPURIOUS WORKDIR (WORKDIR is emptied first). About 15 s on 2 cores.
# Needs numpy and matplotlib for report.py (PYTHON=... picks the interpreter, else the first of python3,
# /usr/bin/python3 that has both) and Chromium (scripts/install-deps.sh installs both).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BENCH_SPURIOUS WORKDIR" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
bench=$1
work=$2
source "$repo/scripts/report_python.sh"
rm -rf "$work"
mkdir -p "$work"

small=(--seeds 2 --steps 60 --eval-every 30 --batch 50 --afr-epochs 20 --afr-gammas 0,4 --afr-lambdas 0,0.1
       --dfr-subsamples 2 --quiet)
"$bench" "${small[@]}" --out "$work/r.json" >/dev/null
"$bench" "${small[@]}" --p 0,1 --methods erm,dfr,afr --out "$work/sweep.json" >/dev/null
"$python" "$repo/scripts/report.py" "$work/r.json" --out "$work/report" >/dev/null
"$python" "$repo/scripts/report.py" "$work/sweep.json" --out "$work/sweep_report" >/dev/null

failed=0
for report in report sweep_report; do
  svgs=$(find "$work/$report" -maxdepth 1 -name '*.svg' | wc -l)
  "$python" "$repo/tests/report/check_report_html.py" --min-figures "$svgs" "$work/$report/report.html" || failed=1
done
exit "$failed"
