# Sourced by scripts/check_report.sh and tests/report/browser_test.sh: sets `python` to an interpreter with numpy and
# matplotlib for scripts/report.py — $PYTHON if set, else the first of python3, /usr/bin/python3 that has both —
# or exits 1 naming the caller and the fix.
python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3 /usr/bin/python3; do
    if "$candidate" -c 'import numpy, matplotlib' 2>/dev/null; then python=$candidate; break; fi
  done
fi
[ -n "$python" ] || { echo "$(basename "$0"): no python3 with numpy and matplotlib: run scripts/install-deps.sh" >&2; exit 1; }
