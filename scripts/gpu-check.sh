#!/usr/bin/env bash
# GPU check: runs on the machine with the NVIDIA GPU (THERE), from the repository root, over a carried build.
#   bash scripts/gpu-check.sh [CARRY_DIR=carry] [OUT_DIR=$OUT, else out/gpu-check]
#   bash scripts/gpu-check.sh --print-ld-path [CARRY_DIR]   (prints the LD_LIBRARY_PATH our binaries need there)
# Steps (each under `timeout`; a failure is recorded and the script goes on), most wanted first, so a tight
# BUDGET_S skips the least wanted:
#   nvidia-smi and versions -> GPU tests (sb_tests, suites named *Cuda*/*Gpu*/...) -> bench_spurious --backend cuda
#   and --backend cudnn (SEEDS x STEPS, METHODS) -> PyTorch peer loop (10 x 1000) and vmap (100 x 1000) on
#   --device cuda -> bench_kernels (JSON) -> what batching buys: cudnn per-seed convolutions and cuda with a stream
#   per seed (SEEDS x UNBATCHED_STEPS, erm-base) -> compute-sanitizer memcheck and racecheck over the kernel tests
#   (if installed) -> the split rule of the conv weight gradients swept through the environment (bench_kernels'
#   training steps with SB_SPLIT_CHUNK_R x SB_SPLIT_MIN_TILES, no rebuild)
# Writes OUT_DIR/gpu-report-DATE.md, OUT_DIR/DATE.json and OUT_DIR/gpu-logs-DATE.tar.gz (every log and raw JSON;
# three files, the device tool returns at most eight). Exit 0 only when every step passed.
# Build the carry folder HERE with scripts/gpu-pack.sh; docs/gpu/README.md has the procedure.
#
# Env (defaults): SEEDS=100 STEPS=6000 METHODS=erm-base,erm  PEER_STEPS=1000 PEER_LOOP_SEEDS=10
#   PEER_VMAP_SEEDS=100  BUDGET_S=540 (whole script; later steps get what is left)  T_TESTS=90 T_KERNELS=150
#   T_BENCH=100 (cuda and cudnn each)  UNBATCHED_STEPS=500 T_BENCH_UNBATCHED=45 (cudnn --cudnn-conv per-seed and
#   cuda --stream-per-seed: what batching the seeds buys)  T_PEER_LOOP=90 T_PEER_VMAP=60  T_SANITIZER=60 (each
#   tool)  SANITIZER_FILTER  GTEST_FILTER (GPU suites)  SPLIT_CHUNKS="64 128 256" SPLIT_MIN_TILES="8 16 32"
#   SPLIT_FILTER (bench_kernels benchmarks of the sweep) T_SPLIT=90 (the whole sweep)  KERNELS_ARGS (extra
#   bench_kernels flags)  PYTHON=python3  REPORT_DATE (default: today, UTC)  SB_BUILD_THERE=1 (no carried build:
#   try cmake + ninja here; needs CLI11, nlohmann-json, GTest, Google Benchmark on this machine)
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
repo=$(pwd -P)
PYTHON=${PYTHON:-python3}

# LD_LIBRARY_PATH for OUR binaries only (the peer's python keeps its own): carried libs, the toolkit's cuBLAS,
# PyTorch's nvidia-* wheels (cuDNN, cuBLAS, NVRTC), then whatever was set; lib-fallback (our libstdc++,
# libgcc_s) only if the target's own are missing or too old. make_ld BIN_DIR sets $ld and $fallback_used.
nvidia_lib_dirs() {
  timeout 60 "$PYTHON" -c 'import glob, os, nvidia
print("\n".join(sorted({d for p in list(nvidia.__path__) for d in glob.glob(os.path.join(p, "*", "lib"))
                                                       + glob.glob(os.path.join(p, "*", "*", "lib"))})))' 2>/dev/null
}
make_ld() {
  local d
  ld=""; fallback_used=0
  add_ld() { [[ -d $1 ]] && ld=${ld:+$ld:}$1; return 0; }
  add_ld "$carry/lib"
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda/lib; do add_ld "$d"; done
  while read -r d; do [[ -n $d ]] && add_ld "$d"; done < <(nvidia_lib_dirs)
  [[ -n ${LD_LIBRARY_PATH:-} ]] && ld=${ld:+$ld:}$LD_LIBRARY_PATH
  if [[ -n ${1:-} ]] && LD_LIBRARY_PATH=$ld ldd "$1"/* 2>&1 |
       grep -qE "(libstdc\+\+|libgcc_s).*not found|(GLIBCXX|CXXABI|GCC)_[0-9.]+' not found"; then
    add_ld "$carry/lib-fallback"; fallback_used=1
  fi
}
# `export LD_LIBRARY_PATH=$(bash scripts/gpu-check.sh --print-ld-path carry)`: the path alone (docs/profiling.md).
if [[ ${1:-} == --print-ld-path ]]; then
  carry=$(cd "${2:-carry}" 2>/dev/null && pwd -P) || { echo "gpu-check: no folder ${2:-carry}" >&2; exit 2; }
  make_ld "$carry/bin"; echo "$ld"; exit 0
fi
carry=${1:-carry}
out=${2:-${OUT:-out/gpu-check}}
mkdir -p "$out"
out=$(cd "$out" && pwd -P)
[[ -d $carry ]] && carry=$(cd "$carry" && pwd -P)

SEEDS=${SEEDS:-100}; STEPS=${STEPS:-6000}; METHODS=${METHODS:-erm-base,erm}
PEER_STEPS=${PEER_STEPS:-1000}; PEER_LOOP_SEEDS=${PEER_LOOP_SEEDS:-10}; PEER_VMAP_SEEDS=${PEER_VMAP_SEEDS:-100}
BUDGET_S=${BUDGET_S:-540}
T_TESTS=${T_TESTS:-90}; T_KERNELS=${T_KERNELS:-150}; T_BENCH=${T_BENCH:-100}
T_BENCH_UNBATCHED=${T_BENCH_UNBATCHED:-45}; UNBATCHED_STEPS=${UNBATCHED_STEPS:-500}
T_PEER_LOOP=${T_PEER_LOOP:-90}; T_PEER_VMAP=${T_PEER_VMAP:-60}
T_SANITIZER=${T_SANITIZER:-60}
SANITIZER_FILTER=${SANITIZER_FILTER:-'CudaKernels.*:CudaConv1dSplit.*:SpuriousCuda.*Matches*:SpuriousCuda.EveryOutputIsWritten'}
GTEST_FILTER=${GTEST_FILTER:-'*Cuda*:*CUDA*:*cuda*:*Gpu*:*GPU*:*gpu*:*CuDnn*:*cudnn*:*CUDNN*'}
KERNELS_ARGS=${KERNELS_ARGS:-}
SPLIT_CHUNKS=${SPLIT_CHUNKS:-64 128 256}; SPLIT_MIN_TILES=${SPLIT_MIN_TILES:-8 16 32}; T_SPLIT=${T_SPLIT:-90}
SPLIT_FILTER=${SPLIT_FILTER:-'BM_train_step/(100|1000)/25/|BM_train_step/10/256/'}
date=${REPORT_DATE:-$(date -u +%F)}
work=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
steps_tsv=$work/steps.tsv
: >"$steps_tsv"
reserve=20          # seconds kept for the report
start=$SECONDS

say() { printf 'gpu-check: %s\n' "$*"; }
# note NAME STATUS RC SECONDS TIMEOUT ERROR: one row of the step table.
note() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$(printf '%s' "$6" | tr '\t\n' '  ' | cut -c1-400)" >>"$steps_tsv"; }
# The line of a log that best says what went wrong.
error_line() {
  local l
  l=$(grep -aiE 'error|not available|not implemented|no cuda|exception|failed|not found|cannot|unable' "$1" 2>/dev/null | grep -av '^\[ *OK' | tail -1)
  [[ -z $l ]] && l=$(grep -av '^[[:space:]]*$' "$1" 2>/dev/null | tail -1)
  printf '%s' "$l"
}
# step NAME TIMEOUT CMD...: runs CMD under timeout (shortened to what the budget leaves), stdout and stderr to
# $work/NAME.out / NAME.err, and notes the outcome.
step() {
  local name=$1 t=$2; shift 2
  local left=$(( BUDGET_S - (SECONDS - start) - reserve ))
  if (( left < 10 )); then
    say "$name: skipped, the time budget (BUDGET_S=$BUDGET_S) is spent"
    note "$name" skipped "" 0 "$t" "skipped: time budget BUDGET_S=$BUDGET_S spent"; return 0
  fi
  (( t > left )) && t=$left
  say "$name: $* (timeout ${t}s)"
  local t0=$EPOCHREALTIME
  timeout -k 10 "$t" "$@" >"$work/$name.out" 2>"$work/$name.err"
  local rc=$?
  local dt; dt=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b - a}')
  local status=ok err=""
  if (( rc == 124 || rc == 137 )); then status=timeout; err="timed out after ${t}s; last: $(error_line "$work/$name.err")"
  elif (( rc != 0 )); then
    status=failed; err=$(error_line "$work/$name.err"); [[ -z $err ]] && err=$(error_line "$work/$name.out")
    grep -qiE 'not available|not implemented|needs a CUDA device|no cuda|unknown backend' "$work/$name.err" 2>/dev/null && status=unavailable
  fi
  say "$name: $status (rc $rc, ${dt}s)${err:+: $err}"
  note "$name" "$status" "$rc" "$dt" "$t" "$err"
  return 0
}

# ---- 1. The GPU, first -------------------------------------------------------------------------------
if command -v nvidia-smi >/dev/null; then
  nvidia-smi 2>&1 | tee "$work/nvidia-smi.txt"
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv >"$work/gpu.csv" 2>&1 ||
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$work/gpu.csv" 2>&1
  nvidia-smi --query-gpu=pstate,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu,utilization.gpu \
    --format=csv >"$work/gpu-state.csv" 2>&1 || true
  cat "$work/gpu.csv"
  note nvidia-smi ok 0 0 0 ""
else
  say "no nvidia-smi on this machine: no NVIDIA driver, so no GPU (dry run: the GPU steps will fail and be recorded)"
  echo "nvidia-smi: not found" >"$work/nvidia-smi.txt"
  note nvidia-smi failed 127 0 0 "nvidia-smi not found: no NVIDIA driver on this machine"
fi

# ---- 2. Versions and the machine ------------------------------------------------------------------------
{
  echo "date_utc: $(date -u +%FT%TZ)"
  echo "host: $(uname -n) $(uname -srm)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') x $(nproc)"
  echo "glibc: $(ldd --version 2>&1 | head -1)"
  nvcc_bin=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc 2>/dev/null || true)
  echo "nvcc: $( [[ -n $nvcc_bin ]] && "$nvcc_bin" --version | grep -o 'release [0-9.]*, V[0-9.]*' || echo none)"
  echo "cmake: $(cmake --version 2>/dev/null | head -1 || echo none)"
  for tool in ncu nsys compute-sanitizer; do echo "$tool: $(command -v $tool || echo none)"; done
  echo "git: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
} >"$work/versions.txt" 2>&1
timeout 90 "$PYTHON" - >"$work/torch.json" 2>"$work/torch.err" <<'PY' || say "python3/torch query failed: $(tail -1 "$work/torch.err")"
import json, sys
r = {"python": sys.version.split()[0]}
try:
    import torch
    r.update(torch=torch.__version__, torch_cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
             cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        r.update(device=p.name, multiprocessors=p.multi_processor_count, memory_bytes=p.total_memory,
                 capability=f"{p.major}.{p.minor}", l2_bytes=getattr(p, "L2_cache_size", None))
except Exception as e:  # no torch: record it, go on
    r["torch_error"] = repr(e)
try:
    import nvidia, os, glob
    r["nvidia_lib_dirs"] = sorted({d for p in list(nvidia.__path__)
                                   for d in glob.glob(os.path.join(p, "*", "lib")) + glob.glob(os.path.join(p, "*", "*", "lib"))})
except Exception as e:
    r["nvidia_lib_dirs"] = []; r["nvidia_error"] = repr(e)
print(json.dumps(r))
PY
cat "$work/versions.txt"; cat "$work/torch.json" 2>/dev/null

# ---- 3. The carried build (or a build here) and its libraries -----------------------------------------
bin=""
if [[ -x $carry/bin/bench_spurious ]]; then
  bin=$carry/bin
elif [[ ${SB_BUILD_THERE:-0} == 1 ]]; then
  step build 300 bash -c "cmake -S . -B build-gpu-there -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release && cmake --build build-gpu-there -j$(nproc)"
  [[ -x build-gpu-there/bench_spurious ]] && bin=$repo/build-gpu-there
else
  say "no carried build in '$carry' (run scripts/gpu-pack.sh on the development machine, or set SB_BUILD_THERE=1)"
  note build failed 2 0 0 "no carried build in '$carry' (scripts/gpu-pack.sh) and SB_BUILD_THERE unset"
fi

make_ld "$bin"
if [[ -n $bin ]]; then
  (( fallback_used )) && say "the target's libstdc++/libgcc_s do not do: using lib-fallback"
  for b in "$bin"/*; do echo "== $(basename "$b")"; LD_LIBRARY_PATH=$ld ldd "$b" 2>&1; done >"$work/ldd.txt"
  if grep -q 'not found' "$work/ldd.txt"; then
    missing=$(grep 'not found' "$work/ldd.txt" | sort -u | tr -s ' \t' ' ' | paste -sd';')
    say "libraries not found: $missing"; note libraries failed 1 0 0 "not found: $missing"
  else
    note libraries ok 0 0 0 ""
  fi
fi
echo "$ld" >"$work/ld_library_path.txt"
say "LD_LIBRARY_PATH for our binaries: $ld"
run_ours() { env LD_LIBRARY_PATH="$ld" "$@"; }

# sb_tests has SB_SOURCE_DIR (data) and SB_BENCH_SPURIOUS compiled in as absolute paths of the development
# machine (carry/manifest.json names them). Recreate them here as links when they are missing.
if [[ -n $bin && -f $carry/manifest.json ]]; then
  src=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["sb_source_dir"])' "$carry/manifest.json" 2>/dev/null)
  benchp=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["sb_bench_spurious"])' "$carry/manifest.json" 2>/dev/null)
  if [[ -n $src && ! -e $src/data/mnist1d/x_train.f32 && ! -e $src ]]; then
    mkdir -p "$(dirname "$src")" && ln -s "$repo" "$src" && say "linked $src -> $repo (tests' SB_SOURCE_DIR)"
  fi
  if [[ -n $benchp && ! -e $benchp ]]; then
    mkdir -p "$(dirname "$benchp")" && ln -s "$bin/bench_spurious" "$benchp" && say "linked $benchp -> carried bench_spurious"
  elif [[ -n $benchp ]] && ! cmp -s "$benchp" "$bin/bench_spurious"; then
    say "warning: $benchp (the tests' SB_BENCH_SPURIOUS) is not the carried bench_spurious"
  fi
  export SB_SOURCE_DIR=${src:-$repo} SB_BENCH_SPURIOUS=${benchp:-$bin/bench_spurious}
fi

# ---- 4. GPU tests -----------------------------------------------------------------------------------------
if [[ -n $bin && -x $bin/sb_tests ]]; then
  run_ours timeout 60 "$bin/sb_tests" --gtest_list_tests --gtest_filter="$GTEST_FILTER" >"$work/tests-list.txt" 2>&1
  lrc=$?
  ntests=$(grep -c '^  ' "$work/tests-list.txt" || true)
  say "GPU tests matching '$GTEST_FILTER': $ntests"
  if (( lrc != 0 )); then
    note tests failed "$lrc" 0 0 "sb_tests --gtest_list_tests: $(error_line "$work/tests-list.txt")"
  elif (( ntests == 0 )); then
    note tests no_tests 0 0 0 "no test matches --gtest_filter=$GTEST_FILTER"
  else
    step tests "$T_TESTS" env LD_LIBRARY_PATH="$ld" "$bin/sb_tests" --gtest_filter="$GTEST_FILTER" \
      --gtest_output="json:$work/tests.json" --gtest_color=no
  fi
else
  note tests failed 127 0 0 "no sb_tests"
fi

# ---- 5. bench_spurious: both CUDA backends (what batching buys comes later) -----------------------------------
# NAME|TIMEOUT|STEPS|METHODS|FLAGS. The unbatched runs (a convolution or a stream per seed) are much slower:
# fewer steps, one method.
bench_spurious_runs() {
  local run name t steps methods flags
  for run in "$@"; do
    IFS='|' read -r name t steps methods flags <<<"$run"
    if [[ -n $bin ]]; then
      # shellcheck disable=SC2086
      step "bench_$name" "$t" env LD_LIBRARY_PATH="$ld" "$bin/bench_spurious" $flags --seeds "$SEEDS" --steps "$steps" \
        --methods "$methods" --out "$work/bench_$name.json"
    else
      note "bench_$name" failed 127 0 0 "no bench_spurious"
    fi
    printf '%s\t%s\t%s\t%s\n' "$name" "$steps" "$methods" "$flags" >>"$work/bench_runs.tsv"
  done
}
bench_spurious_runs "cuda|$T_BENCH|$STEPS|$METHODS|--backend cuda" "cudnn|$T_BENCH|$STEPS|$METHODS|--backend cudnn"

# ---- 6. The PyTorch peer on the same GPU ----------------------------------------------------------------------
peer=$carry/peers/torch_mnist1d.py
[[ -f $peer ]] || peer=../shared/peers/torch_mnist1d.py
pdata=$carry/data/mnist1d
[[ -d $pdata ]] || pdata=data/mnist1d
if [[ -f $peer ]]; then
  export PYTHONUNBUFFERED=1
  step peer_loop "$T_PEER_LOOP" "$PYTHON" "$peer" --data "$pdata" --seeds "$PEER_LOOP_SEEDS" --steps "$PEER_STEPS" \
    --mode loop --device cuda
  step peer_vmap "$T_PEER_VMAP" "$PYTHON" "$peer" --data "$pdata" --seeds "$PEER_VMAP_SEEDS" --steps "$PEER_STEPS" \
    --mode vmap --device cuda
else
  note peer_loop failed 127 0 0 "no peer script (carry/peers/torch_mnist1d.py)"
  note peer_vmap failed 127 0 0 "no peer script (carry/peers/torch_mnist1d.py)"
fi

# ---- 7. bench_kernels ---------------------------------------------------------------------------------------
if [[ -n $bin && -x $bin/bench_kernels ]]; then
  # shellcheck disable=SC2086
  step kernels "$T_KERNELS" env LD_LIBRARY_PATH="$ld" "$bin/bench_kernels" --benchmark_format=json \
    --benchmark_out="$work/kernels.json" --benchmark_out_format=json $KERNELS_ARGS
else
  say "no bench_kernels in the carried build: skipped"
  note kernels absent 0 0 0 "no bench_kernels in the carried build"
fi

# ---- 8. What batching buys: bench_spurious with a convolution, or a stream, per seed -----------------------------
bench_spurious_runs "cudnn-per-seed|$T_BENCH_UNBATCHED|$UNBATCHED_STEPS|erm-base|--backend cudnn --cudnn-conv per-seed" \
  "cuda-stream-per-seed|$T_BENCH_UNBATCHED|$UNBATCHED_STEPS|erm-base|--backend cuda --stream-per-seed"

# ---- 9. compute-sanitizer over the kernel tests (memcheck: out-of-bounds and misaligned accesses, racecheck:
# shared-memory hazards), where the machine has it. Kernel tests only: the sanitizers slow kernels ~100x.
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)
if [[ -n $bin && -x $bin/sb_tests && -n $san ]]; then
  for tool in memcheck racecheck; do
    step "sanitizer_$tool" "$T_SANITIZER" env LD_LIBRARY_PATH="$ld" "$san" --tool "$tool" --error-exitcode 3 \
      "$bin/sb_tests" --gtest_filter="$SANITIZER_FILTER" --gtest_color=no
  done
else
  note sanitizer absent 0 0 0 "no compute-sanitizer on this machine (or no sb_tests)"
fi

# ---- 10. The split rule (kernels/batched_gemm.cuh: chunk of the weight-gradient sums, and the tile count from
# which a GEMM is not split) swept without a rebuild: bench_kernels' training steps under each pair of values.
if [[ -n $bin && -x $bin/bench_kernels ]]; then
  {
    echo 'set -e'
    for c in $SPLIT_CHUNKS; do for t in $SPLIT_MIN_TILES; do
      printf 'SB_SPLIT_CHUNK_R=%q SB_SPLIT_MIN_TILES=%q %q --benchmark_filter=%q --benchmark_min_time=0.1 ' \
        "$c" "$t" "$bin/bench_kernels" "$SPLIT_FILTER"
      printf -- '--benchmark_out=%q --benchmark_out_format=json >/dev/null\n' "$work/split_${c}_${t}.json"
    done; done
  } >"$work/split_sweep.sh"
  step split_sweep "$T_SPLIT" env LD_LIBRARY_PATH="$ld" bash "$work/split_sweep.sh"
else
  note split_sweep absent 0 0 0 "no bench_kernels in the carried build"
fi

# ---- 11. Report ------------------------------------------------------------------------------------------------
[[ -f $carry/manifest.json ]] && cp "$carry/manifest.json" "$work/carry-manifest.json"
export SEEDS STEPS METHODS UNBATCHED_STEPS PEER_STEPS PEER_LOOP_SEEDS PEER_VMAP_SEEDS GTEST_FILTER BUDGET_S fallback_used
"$PYTHON" - "$work" "$out" "$date" "$((SECONDS - start))" <<'PY'
import json, os, re, sys, datetime
work, out, date, elapsed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
E = os.environ

def rd(name, default=""):
    try:
        return open(os.path.join(work, name), errors="replace").read()
    except OSError:
        return default

def rjson(name):
    try:
        return json.load(open(os.path.join(work, name)))
    except (OSError, ValueError):
        return None

steps = []
for line in rd("steps.tsv").splitlines():
    f = line.split("\t")
    if len(f) >= 6:
        steps.append({"step": f[0], "status": f[1], "rc": int(f[2]) if f[2].lstrip("-").isdigit() else None,
                      "seconds": float(f[3] or 0), "timeout_s": int(f[4] or 0), "error": f[5]})
st = {s["step"]: s for s in steps}

# Device
device = {"name": None}
csv = [l for l in rd("gpu.csv").splitlines() if l.strip()]
if len(csv) >= 2 and "," in csv[0]:
    keys = [k.strip().split(" ")[0] for k in csv[0].split(",")]
    vals = [v.strip() for v in csv[1].split(",")]
    device.update(dict(zip(keys, vals)))
    device["name"] = device.get("name")
    device["driver"] = device.pop("driver_version", None)
    device["gpus"] = len(csv) - 1
m = re.search(r"CUDA Version:\s*([0-9.]+)", rd("nvidia-smi.txt"))
device["cuda_driver_api"] = m.group(1) if m else None
state = [l for l in rd("gpu-state.csv").splitlines() if l.strip()]
if len(state) >= 2:
    device["state"] = dict(zip([k.strip() for k in state[0].split(",")], [v.strip() for v in state[1].split(",")]))
torch = rjson("torch.json") or {}
if not device["name"] and torch.get("device"):
    device["name"] = torch["device"]
for k in ("multiprocessors", "l2_bytes", "capability"):
    if torch.get(k) is not None:
        device[k] = torch[k]
versions = dict(l.split(": ", 1) for l in rd("versions.txt").splitlines() if ": " in l)
versions.update({k: torch.get(k) for k in ("python", "torch", "torch_cuda", "cudnn") if k in torch})
if "torch_error" in torch:
    versions["torch_error"] = torch["torch_error"]
manifest = rjson("carry-manifest.json") or {}

# Libraries our binaries resolved
resolved = {}
for l in rd("ldd.txt").splitlines():
    m = re.match(r"\s*(lib(?:cublas|cublasLt|cudnn|cudart|stdc\+\+|gomp|crypto|benchmark)[^ ]*) => (\S+)", l)
    if m:
        resolved[m.group(1)] = m.group(2)

def sset(s):  # summary of one set: accuracy and worst-group accuracy statistics
    return {k: {x: s[k][x] for x in ("mean", "std", "min", "max") if x in s[k]} for k in ("accuracy", "worst_group_accuracy") if k in s}

def progress(errlog):  # last progress line per method: "[erm] step 500/6000 ... 8314 seed-steps/s"
    p = {}
    for m in re.finditer(r"^\[([\w@.-]+)\] step (\d+)/(\d+).*?([0-9.]+) seed-steps/s", errlog, re.M):
        p[m.group(1)] = {"step": int(m.group(2)), "steps": int(m.group(3)), "seed_steps_per_s": float(m.group(4))}
    return p

# The GPU's fp32 peak: SMs x 128 FP32 lanes (sm_80 and later) x 2 FLOPs (FMA) x the maximum SM clock.
peak = None
try:
    # the header is "clocks.max.sm [MHz]" or, on some drivers, "clocks.max.streaming_multiprocessor [MHz]"
    mhz = float(next(v for k, v in device.get("state", {}).items() if k.startswith("clocks.max.s")).split()[0])
    if device.get("multiprocessors"):
        peak = device["multiprocessors"] * 128 * 2 * mhz * 1e6
        device["fp32_peak_tflops"] = round(peak * 1e-12, 2)
except (ValueError, IndexError, StopIteration):
    pass

bench = {}
for line in rd("bench_runs.tsv").splitlines():
    b, steps_b, methods_b, flags_b = (line.split("\t") + ["", "", ""])[:4]
    s = st.get(f"bench_{b}", {})
    r = rjson(f"bench_{b}.json")
    e = {"status": s.get("status", "not_run"), "error": s.get("error") or None, "seconds": s.get("seconds"),
         "flags": flags_b, "seeds": int(E["SEEDS"]), "steps": int(steps_b or 0), "methods": methods_b.split(","),
         "seed_steps_per_s": None}
    if r:
        t = r.get("timing", {})
        e["device"] = r.get("environment", {}).get("device")
        e["batch"] = r.get("config", {}).get("batch")
        e["by_method"] = {m: {k: v[k] for k in ("seed_steps_per_s", "train_s", "wall_s", "eval_s", "epoch_s",
                                                "flops_per_seed_step", "bytes_per_seed_step", "gflop_per_s") if k in v}
                          for m, v in t.items()}
        first = "erm-base" if "erm-base" in t else next(iter(t), None)
        if first and t[first].get("seed_steps_per_s"):
            e["seed_steps_per_s"] = t[first]["seed_steps_per_s"]
            e["seed_steps_per_s_method"] = first
            if t[first].get("gflop_per_s") is not None:
                e["gflop_per_s"] = t[first]["gflop_per_s"]
                e["flops_per_seed_step"] = t[first].get("flops_per_seed_step")
                e["bytes_per_seed_step"] = t[first].get("bytes_per_seed_step")
                e["gbyte_per_s"] = e["bytes_per_seed_step"] * e["seed_steps_per_s"] * 1e-9
                if peak:
                    e["fp32_peak_fraction"] = e["gflop_per_s"] * 1e9 / peak
        e["accuracy"] = {m: {k: sset(v) for k, v in sets.items()} for m, sets in r.get("summary", {}).items()}
    else:
        pr = progress(rd(f"bench_{b}.err"))
        if pr:  # timed out or failed late: the last progress rate, marked partial
            e["progress"] = pr
            first = "erm-base" if "erm-base" in pr else next(iter(pr))
            e["seed_steps_per_s"] = pr[first]["seed_steps_per_s"]
            e["seed_steps_per_s_method"] = first
            e["partial"] = True
    bench[b] = e

peer = {}
for mode in ("loop", "vmap"):
    s = st.get(f"peer_{mode}", {})
    e = {"status": s.get("status", "not_run"), "error": s.get("error") or None, "seconds": s.get("seconds"),
         "seed_steps_per_s": None}
    lines = [l for l in rd(f"peer_{mode}.out").splitlines() if l.startswith("{")]
    if lines:
        try:
            j = json.loads(lines[-1])
            e.update(j)
            e["accuracy"] = {k: j[k] for k in ("test_acc_mean", "test_acc_std", "wga_mean", "wga_std") if k in j}
        except ValueError:
            pass
    peer[mode] = e

kernels = rjson("kernels.json")
tests = {"status": st.get("tests", {}).get("status", "not_run"), "filter": E["GTEST_FILTER"],
         "error": st.get("tests", {}).get("error") or None}
tj = rjson("tests.json")
if tj:
    tests.update(total=tj.get("tests"), failures=tj.get("failures"), disabled=tj.get("disabled"),
                 failed=[f"{s['name']}.{t['name']}" for s in tj.get("testsuites", []) for t in s.get("testsuite", [])
                         if t.get("failures")],
                 skipped=[f"{s['name']}.{t['name']}" for s in tj.get("testsuites", []) for t in s.get("testsuite", [])
                          if t.get("result") == "SKIPPED"])

ratios = {}
for b in bench:
    for mode in peer:
        a, c = bench[b]["seed_steps_per_s"], peer[mode]["seed_steps_per_s"]
        if a and c and not bench[b].get("partial"):  # a timed-out run's progress rate is no result
            ratios[f"{b}_vs_peer_{mode}"] = round(a / c, 2)

# Throughput against seeds and channels: bench_kernels' whole training steps (BM_train_step*/S/C).
scaling = []
for bm in (kernels or {}).get("benchmarks", []):
    m = re.match(r"(BM_\w*train_step\w*(?:/[A-Za-z_]+)?)/(\d+)/(\d+)", bm.get("name", ""))
    if m and bm.get("seed_steps_per_s"):
        scaling.append({"benchmark": m.group(1), "seeds": int(m.group(2)), "channels": int(m.group(3)),
                        "seed_steps_per_s": bm["seed_steps_per_s"], "label": bm.get("label")})

# Custom conv kernels against cuDNN on the same shapes (goal: >= 2x): cuDNN's time over ours.
conv_speedup = []
bt = {}
for bm in (kernels or {}).get("benchmarks", []):
    m = re.match(r"BM_(cudnn_)?conv_(forward|backward)(?:/(grouped|per_seed))?/(\d+)/(\d+)", bm.get("name", ""))
    if m and bm.get("real_time"):
        bt[(m.group(1) or "custom", m.group(2), m.group(3), int(m.group(4)), int(m.group(5)))] = bm["real_time"]
for (who, pass_, mode, S_, C_), t in sorted(bt.items()):
    if who != "custom":
        continue
    for mode_ in ("grouped", "per_seed"):
        c = bt.get(("cudnn_", pass_, mode_, S_, C_))
        if c:
            conv_speedup.append({"pass": pass_, "seeds": S_, "channels": C_, "cudnn": mode_, "custom_time": t,
                                 "cudnn_time": c, "speedup": round(c / t, 2)})

# The split sweep: seed-steps/s of each training-step benchmark under each (chunk, min_tiles).
split_sweep = []
for name in sorted(os.listdir(work)):
    m = re.match(r"split_(\d+)_(\d+)\.json$", name)
    if not m:
        continue
    for bm in (rjson(name) or {}).get("benchmarks", []):
        b = re.match(r"(BM_\w*train_step\w*)/(\d+)/(\d+)", bm.get("name", ""))
        if b and bm.get("seed_steps_per_s"):
            split_sweep.append({"chunk_r": int(m.group(1)), "min_tiles": int(m.group(2)), "benchmark": b.group(1),
                                "seeds": int(b.group(2)), "channels": int(b.group(3)),
                                "seed_steps_per_s": bm["seed_steps_per_s"]})

# Issue 3's goals, each met / missed / unknown (no number to judge by).
def goal(name, value, target, unit):
    return {"goal": name, "target": target, "value": value, "unit": unit,
            "met": None if value is None else bool(value >= target)}
cuda_rate = None if bench.get("cuda", {}).get("partial") else bench.get("cuda", {}).get("seed_steps_per_s")
speedups = [x["speedup"] for x in conv_speedup if x["cudnn"] == "grouped" and x["seeds"] == 100 and x["channels"] == 25]
goals = [goal("cuda seed-steps/s, C = 25, 100 seeds, batch 100", cuda_rate, 1e6, "seed-steps/s"),
         goal("cuda vs PyTorch vmap peer", ratios.get("cuda_vs_peer_vmap"), 10, "x"),
         goal("cuda vs PyTorch loop peer", ratios.get("cuda_vs_peer_loop"), 100, "x"),
         goal("custom conv1d vs cuDNN grouped, S = 100, C = 25 (forward and backward, the slower)",
              min(speedups) if speedups else None, 2, "x")]

fatal = {"failed", "timeout", "unavailable", "skipped"}
ok = not any(s["status"] in fatal for s in steps)
res = {
    "schema": "spurious-bench/gpu-check/v1",
    "date": date, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "ok": ok, "elapsed_s": elapsed,
    "device": device, "versions": versions,
    "build": {k: manifest.get(k) for k in ("git_commit", "git_modified_tracked_files", "nvcc", "cuda_architectures",
                                            "cudnn_built_against", "created")},
    "libraries": {"ld_library_path": rd("ld_library_path.txt").strip(), "resolved": resolved,
                  "lib_fallback_used": E.get("fallback_used") == "1"},
    "config": {"seeds": int(E["SEEDS"]), "steps": int(E["STEPS"]), "methods": E["METHODS"],
               "peer_steps": int(E["PEER_STEPS"]), "peer_loop_seeds": int(E["PEER_LOOP_SEEDS"]),
               "peer_vmap_seeds": int(E["PEER_VMAP_SEEDS"]), "budget_s": int(E["BUDGET_S"])},
    "tests": tests,
    "bench_spurious": bench,
    "peer": peer,
    "ratios": ratios,
    "goals": goals,
    "scaling": scaling,
    "conv_speedup": conv_speedup,
    "split_sweep": split_sweep,
    "kernels": kernels,
    "steps": steps,
}
json.dump(res, open(os.path.join(out, f"{date}.json"), "w"), indent=1)

# Markdown
f = lambda v, n=0: "—" if v is None else (f"{v:,.{n}f}" if isinstance(v, (int, float)) else str(v))
def acc(e, key="test_clean"):
    a = e.get("accuracy", {})
    if "test_acc_mean" in a:
        return f"{a['test_acc_mean']:.4f} ± {a.get('test_acc_std', 0):.4f}", f"{a.get('wga_mean', 0):.4f}"
    m = e.get("seed_steps_per_s_method")
    s = a.get(m, {}).get(key) if m else None
    if s and "accuracy" in s:
        return (f"{s['accuracy']['mean']:.4f} ± {s['accuracy'].get('std', 0):.4f}",
                f"{s['worst_group_accuracy']['mean']:.4f}" if "worst_group_accuracy" in s else "—")
    return "—", "—"

L = [f"# GPU check {date}: {device.get('name') or 'no GPU'}", "",
     f"`scripts/gpu-check.sh`, {res['created']}, {elapsed} s in all. Overall: **{'ok' if ok else 'FAILED'}**.", "",
     "## Machine", "", "| | |", "|---|---|",
     f"| GPU | {f(device.get('name'))} ({f(device.get('memory.total'))}, compute capability {f(device.get('compute_cap') or device.get('capability'))}, {f(device.get('multiprocessors'))} SMs) |",
     f"| driver | {f(device.get('driver'))} (CUDA {f(device.get('cuda_driver_api'))}) |"]
for k in ("host", "cpu", "glibc", "nvcc", "cmake", "python", "torch", "torch_cuda", "cudnn", "ncu", "nsys", "compute-sanitizer", "torch_error"):
    if k in versions:
        L.append(f"| {k} | {versions[k]} |")
b = res["build"]
L += [f"| carried build | commit {f(b.get('git_commit'))}{' (+%s modified files)' % b['git_modified_tracked_files'] if b.get('git_modified_tracked_files') else ''}, nvcc {f(b.get('nvcc'))}, sm {f(b.get('cuda_architectures'))}, cuDNN headers {f(b.get('cudnn_built_against'))}, packed {f(b.get('created'))} |",
      f"| GPU state | {', '.join(f'{k} {v}' for k, v in device.get('state', {}).items()) or '—'} |", ""]
L += ["## Steps", "", "| step | status | seconds | timeout | error |", "|---|---|---|---|---|"]
for s in steps:
    L.append(f"| {s['step']} | {s['status']} | {s['seconds']:.1f} | {s['timeout_s'] or ''} | {(s['error'] or '').replace('|', '/')} |")
L += ["", "## Throughput (seed-steps/s)", "",
      "| run | seeds × steps | seed-steps/s | GFLOP/s | of fp32 peak | GB/s (unfused floor) | clean test accuracy | worst-group |",
      "|---|---|---|---|---|---|---|---|"]
for bk, e in bench.items():
    a, w = acc(e)
    tag = f" ({e.get('seed_steps_per_s_method')}{', partial: last progress line' if e.get('partial') else ''})" if e.get("seed_steps_per_s") else ""
    frac = f"{100 * e['fp32_peak_fraction']:.1f} %" if e.get("fp32_peak_fraction") else "—"
    L.append(f"| bench_spurious {e['flags']}{tag} | {e['seeds']} × {e['steps']} | {f(e['seed_steps_per_s'])} | "
             f"{f(e.get('gflop_per_s'))} | {frac} | {f(e.get('gbyte_per_s'))} | {a} | {w} |")
for mode, e in peer.items():
    a, w = acc(e)
    L.append(f"| PyTorch peer --mode {mode} | {f(e.get('seeds'))} × {f(e.get('steps'))} | {f(e['seed_steps_per_s'])} | | | | {a} | {w} |")
fl = next((e["flops_per_seed_step"] for e in bench.values() if e.get("flops_per_seed_step")), None)
by = next((e["bytes_per_seed_step"] for e in bench.values() if e.get("bytes_per_seed_step")), None)
fl_batch = next((e["batch"] for e in bench.values() if e.get("flops_per_seed_step") and e.get("batch")), "?")
if fl:
    L += ["", f"Per seed-step (batch {fl_batch}): {fl / 1e6:.2f} MFLOP and {by / 1e6:.2f} MB of unfused memory traffic "
          "(`ConvBaseShape::train_step_flops/bytes`); fp32 peak "
          + (f"{device['fp32_peak_tflops']} TFLOP/s (SMs × 128 × 2 × max SM clock)." if peak else "unknown (no SM count or clock).")]
if scaling:
    L += ["", "### Scaling with seeds and channels (bench_kernels, training steps only)", "",
          "| benchmark | seeds | channels | seed-steps/s |", "|---|---|---|---|"]
    L += [f"| {x['benchmark']} | {x['seeds']} | {x['channels']} | {f(x['seed_steps_per_s'])} |" for x in scaling]
if ratios:
    L += ["", "Ratios: " + ", ".join(f"{k} **{v}×**" for k, v in ratios.items()) + "."]
L += ["", "Goals of issue 3: " + "; ".join(
    f"{g['goal']} ≥ {g['target']:,.0f} {g['unit']}: "
    + ("unknown" if g["met"] is None else f"{g['value']:,.4g} {'**met**' if g['met'] else '**missed**'}")
    for g in goals) + "."]
L += ["", "bench_spurious rates are training steps only (`timing.<method>.seed_steps_per_s`); the peer's include its "
      "final evaluation. The peer trains on clean data (p = 0), like `erm-base`."]
for bk, e in bench.items():
    if e.get("by_method"):
        L += ["", f"### bench_spurious {e['flags']} ({e.get('device') or ''})", "",
              "| method | seed-steps/s | train s | wall s | s/epoch |", "|---|---|---|---|---|"]
        for m, t in e["by_method"].items():
            L.append(f"| {m} | {f(t.get('seed_steps_per_s'))} | {f(t.get('train_s'), 2)} | {f(t.get('wall_s'), 2)} | {f(t.get('epoch_s'), 4)} |")
        L += ["", "| method | set | accuracy mean ± std | min | max | worst-group mean ± std |", "|---|---|---|---|---|---|"]
        for m, sets in e.get("accuracy", {}).items():
            for sn, s in sets.items():
                a, w = s.get("accuracy", {}), s.get("worst_group_accuracy", {})
                L.append(f"| {m} | {sn} | {a.get('mean', 0):.4f} ± {a.get('std', 0):.4f} | {a.get('min', 0):.4f} | "
                         f"{a.get('max', 0):.4f} | {w.get('mean', 0):.4f} ± {w.get('std', 0):.4f} |")
L += ["", "## Kernels (bench_kernels)", ""]
if conv_speedup:
    L += ["Custom conv1d kernels against cuDNN on conv2's shape (cuDNN time / ours; goal ≥ 2):", "",
          "| pass | seeds | channels | cuDNN mode | ours | cuDNN | speedup |", "|---|---|---|---|---|---|---|"]
    L += [f"| {x['pass']} | {x['seeds']} | {x['channels']} | {x['cudnn']} | {x['custom_time']:.4g} | "
          f"{x['cudnn_time']:.4g} | **{x['speedup']}×** |" for x in conv_speedup]
    L += [""]
if kernels and kernels.get("benchmarks"):
    extra = sorted({k for bm in kernels["benchmarks"] for k, v in bm.items()
                    if isinstance(v, (int, float)) and k not in ("real_time", "cpu_time", "iterations", "repetitions",
                    "repetition_index", "threads", "family_index", "per_family_instance_index")})
    L += ["| benchmark | real time | unit | iterations | " + " | ".join(extra) + " |", "|---" * (4 + len(extra)) + "|"]
    for bm in kernels["benchmarks"]:
        L.append(f"| {bm.get('name')} | {bm.get('real_time', 0):.4g} | {bm.get('time_unit', '')} | {bm.get('iterations', '')} | "
                 + " | ".join(f"{bm[k]:.4g}" if k in bm else "" for k in extra) + " |")
else:
    L.append(f"No kernel numbers ({st.get('kernels', {}).get('error') or 'not run'}).")
if split_sweep:
    pairs = sorted({(x["chunk_r"], x["min_tiles"]) for x in split_sweep})
    rows = sorted({(x["benchmark"], x["seeds"], x["channels"]) for x in split_sweep})
    rate = {(x["benchmark"], x["seeds"], x["channels"], x["chunk_r"], x["min_tiles"]): x["seed_steps_per_s"]
            for x in split_sweep}
    L += ["", "### Split rule sweep (seed-steps/s; SB_SPLIT_CHUNK_R / SB_SPLIT_MIN_TILES; built-in 128 / 16)", "",
          "| benchmark | seeds | channels | " + " | ".join(f"{c} / {t}" for c, t in pairs) + " |",
          "|---|---|---|" + "---|" * len(pairs)]
    for b, s_, c_ in rows:
        best = max(rate.get((b, s_, c_, c, t), 0) for c, t in pairs)
        cells = []
        for c, t in pairs:
            v = rate.get((b, s_, c_, c, t))
            cells.append("—" if v is None else (f"**{f(v)}**" if v == best else f(v)))
        L.append(f"| {b} | {s_} | {c_} | " + " | ".join(cells) + " |")
L += ["", "## Tests", "", f"Filter `{tests['filter']}`: status {tests['status']}"
      + (f", {tests.get('total')} tests, {tests.get('failures')} failures, {len(tests.get('skipped', []))} skipped" if tj else "")
      + (f" (skipped: {', '.join(tests['skipped'])})" if tests.get("skipped") else "")
      + (f" ({', '.join(tests['failed'])})" if tests.get("failed") else "") + (f"; {tests['error']}" if tests.get("error") else "") + ".",
      "", "## Libraries", "", f"LD_LIBRARY_PATH for our binaries: `{res['libraries']['ld_library_path']}`"
      + (" (with lib-fallback: the target's libstdc++ was too old)" if res["libraries"]["lib_fallback_used"] else ""), ""]
L += [f"- {k} → `{v}`" for k, v in resolved.items()]
L += ["", "## Raw", "", "```", rd("nvidia-smi.txt").rstrip(), "```", "", "Peer output lines:", "", "```"]
L += [json.dumps({k: v for k, v in e.items() if k not in ("accuracy", "status", "error", "seconds")}) for e in peer.values()]
L += ["```", "", f"Configuration: SEEDS={E['SEEDS']} STEPS={E['STEPS']} METHODS={E['METHODS']} PEER_STEPS={E['PEER_STEPS']} "
      f"PEER_LOOP_SEEDS={E['PEER_LOOP_SEEDS']} PEER_VMAP_SEEDS={E['PEER_VMAP_SEEDS']} BUDGET_S={E['BUDGET_S']}. "
      f"Every log and raw JSON: `gpu-logs-{date}.tar.gz`.", ""]
open(os.path.join(out, f"gpu-report-{date}.md"), "w").write("\n".join(L))
print("\n".join(L[L.index("## Steps"):L.index("## Kernels (bench_kernels)")]))
sys.exit(0 if ok else 1)
PY
rc=$?
tar -C "$work" -czf "$out/gpu-logs-$date.tar.gz" . 2>/dev/null
say "wrote $out/gpu-report-$date.md, $out/$date.json, $out/gpu-logs-$date.tar.gz ($((SECONDS - start)) s)"
exit $rc
