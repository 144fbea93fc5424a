#!/usr/bin/env bash
# scripts/gpu-check.sh end to end on the emulated GPU (ctest emu.GpuCheckScript): a carry folder whose
# bench_spurious and sb_tests are the emulated builds, tiny runs, then the report's JSON must hold a rate and
# accuracies for every bench_spurious run (cuda, cudnn, and the unbatched cudnn per-seed / cuda stream-per-seed)
# and a passed tests step. Steps that need what this machine lacks (nvidia-smi, the PyTorch peer, bench_kernels,
# compute-sanitizer) are recorded as failed or absent; that is the script's business and not checked here.
#   gpu_check_smoke.sh BENCH_SPURIOUS_EMU SB_EMU_TESTS
set -euo pipefail
bench=$1 tests=$2
here=$(cd "$(dirname "$0")" && pwd -P)
work=$(mktemp -d "${TMPDIR:-/tmp}/sb-gpu-check-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/carry/bin" "$work/out"
printf '#!/bin/bash\nexec %q "$@" --no-saliency --eval-every 10 --batch 50\n' "$bench" >"$work/carry/bin/bench_spurious"
printf '#!/bin/bash\nexec %q "$@"\n' "$tests" >"$work/carry/bin/sb_tests"
chmod +x "$work/carry/bin/"*
py=$(command -v python3)
SEEDS=2 STEPS=20 METHODS=erm UNBATCHED_STEPS=10 BUDGET_S=600 REPORT_DATE=smoke PYTHON=$py \
  GTEST_FILTER='CudaBackend.NamesAndErrors:CudnnBackend.NamesAndErrors' \
  bash "$here/../../scripts/gpu-check.sh" "$work/carry" "$work/out" >"$work/log" 2>&1 || true
"$py" - "$work/out/smoke.json" "$work/out/gpu-report-smoke.md" "$work/log" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
report = open(sys.argv[2]).read()
bad = []
steps = {s["step"]: s["status"] for s in j["steps"]}
if steps.get("tests") != "ok":
    bad.append(f"tests step: {steps.get('tests')}")
for run in ("cuda", "cudnn", "cudnn-per-seed", "cuda-stream-per-seed"):
    e = j["bench_spurious"].get(run)
    if not e or e.get("status") != "ok" or not (e.get("seed_steps_per_s") or 0) > 0:
        bad.append(f"bench_spurious.{run}: {e and (e.get('status'), e.get('seed_steps_per_s'), e.get('error'))}")
    elif not e.get("accuracy"):
        bad.append(f"bench_spurious.{run}: no accuracy summary")
    if f"bench_spurious {e.get('flags') if e else run}" not in report:
        bad.append(f"report: no row for bench_spurious {run}")
if bad:
    sys.stderr.write("gpu-check smoke: " + "; ".join(bad) + "\n--- log tail:\n" + open(sys.argv[3]).read()[-3000:])
    sys.exit(1)
print("gpu-check smoke: report and JSON hold every bench_spurious run")
PY
