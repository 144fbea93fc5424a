#!/usr/bin/env bash
# Per-kernel resource usage and theoretical occupancy of kernels/*.cu, as a Markdown page (docs/kernels.md).
#
#   bash scripts/kernel-resources.sh [--arch sm_90] [--out docs/kernels.md] [--root DIR]
#
# Needs nvcc (no GPU): each kernels/*.cu is compiled alone to a cubin with `-Xptxas -v`, which reports, for every
# __global__ function ptxas emits (every template instantiation included), its registers, spill stores / loads,
# stack frame and static shared memory. Constant bank 0 (kernel parameters + driver area) comes from ptxas when it
# prints it (CUDA <= 12), else from the cubin's .nv.constant0.<kernel> section (readelf). Names are demangled with
# cu++filt (c++filt when the toolkit has none). The theoretical occupancy is computed here, as the CUDA occupancy
# calculator (cuda_occupancy.h) does, at the block size and dynamic shared memory the launcher uses: the table
# BLOCK_TABLE below, read from the launch sites. A kernel that matches no entry gets "?" and a warning; so does an
# entry that matches no kernel (stale after a rename).
#
# ROOT: --root, else $SB_ROOT, else the directory above this script. --out defaults to ROOT/docs/kernels.md; a
# relative --out is relative to the current directory. Environment: NVCC (the compiler; default: nvcc on PATH,
# else /usr/local/cuda/bin/nvcc), NVCC_EXTRA_FLAGS (appended to the project's flags).
set -euo pipefail

usage() {
  sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

ARCH=sm_90
OUT=""
ROOT="${SB_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
COMMAND_LINE="bash $(printf '%q' "$0")"; (($#)) && COMMAND_LINE+="$(printf ' %q' "$@")"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) ARCH="${2:?--arch needs a value, e.g. sm_90}"; shift 2 ;;
    --arch=*) ARCH="${1#*=}"; shift ;;
    --out) OUT="${2:?--out needs a path}"; shift 2 ;;
    --out=*) OUT="${1#*=}"; shift ;;
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --root=*) ROOT="${1#*=}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "kernel-resources: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
[[ "$ARCH" =~ ^sm_[0-9]+[a-z]?$ ]] || { echo "kernel-resources: --arch must look like sm_90, got '$ARCH'" >&2; exit 2; }
ROOT="$(cd "$ROOT" && pwd)"
[[ -d "$ROOT/kernels" ]] || { echo "kernel-resources: no kernels/ under $ROOT (use --root)" >&2; exit 2; }
OUT="${OUT:-$ROOT/docs/kernels.md}"

NVCC="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
[[ -x "$NVCC" ]] || { echo "kernel-resources: nvcc not found (set NVCC or put it on PATH)" >&2; exit 2; }
CUDA_BIN="$(dirname "$NVCC")"
if command -v cu++filt >/dev/null; then DEMANGLER="$(command -v cu++filt)"
elif [[ -x "$CUDA_BIN/cu++filt" ]]; then DEMANGLER="$CUDA_BIN/cu++filt"
elif command -v c++filt >/dev/null; then DEMANGLER="$(command -v c++filt)"  # nvcc mangles as the Itanium ABI
else echo "kernel-resources: neither cu++filt nor c++filt found" >&2; exit 2
fi
READELF="$(command -v readelf || true)"

# The project's CUDA flags: target_compile_options(sb_kernels ...) in CMakeLists.txt, plus
# CMAKE_CUDA_FLAGS_RELEASE (-O3 -DNDEBUG), the C++ standard and sb_core's public definition SB_HAVE_CUDA=1.
# Include dirs: the root ("kernels/x.h") and host/ ("core/x.h"), as the build has them.
PROJECT_FLAGS=(--expt-relaxed-constexpr -lineinfo -std=c++17 -O3 -DNDEBUG -DSB_HAVE_CUDA=1)
INCLUDES=(-I "$ROOT" -I "$ROOT/host")
# Drift guard: warn when CMakeLists.txt's kernel options are no longer the ones above.
if [[ -f "$ROOT/CMakeLists.txt" ]]; then
  cmake_cuda_opts="$(sed -n 's/.*target_compile_options(sb_kernels PRIVATE \([^)]*\)).*/\1/p' "$ROOT/CMakeLists.txt" |
                     head -n 1 || true)"
  if [[ "$cmake_cuda_opts" != "--expt-relaxed-constexpr -lineinfo" ]]; then
    echo "kernel-resources: warning: CMakeLists.txt's sb_kernels options are now '$cmake_cuda_opts';" \
         "update PROJECT_FLAGS in $0" >&2
  fi
fi
read -r -a EXTRA_FLAGS <<<"${NVCC_EXTRA_FLAGS:-}"

# ---- Block sizes, from the launch sites. One line per kernel (or family of template instantiations):
#   regex on the short demangled name (Python re.search) | threads per block | dynamic smem bytes | where from
# Dynamic shared memory that depends on run-time sizes is given at the MNIST-1D sizes (L = 40 features, K = 10
# classes); the "where" says how it scales.
BLOCK_TABLE=$(cat <<'EOF'
^adam_update_kernel$             | 256 | 0     | adam.cu adam_update(): constexpr unsigned kThreads = 256; no dynamic smem
^gather_batch_kernel$            | 256 | 0     | gather.cu gather_batch(): constexpr unsigned kThreads = 256; no dynamic smem
^softmax_cross_entropy_kernel$   | 128 | 40    | softmax_ce.cu: file-scope kThreads = 128 (also its __launch_bounds__); dynamic smem K * sizeof(int32_t) = 40 at K = 10 (at most 16384, K <= 4096)
^true_logit_gradient_kernel$     | 256 | 0     | softmax_ce.cu true_logit_gradient(): literal <<<blocks, 256, 0, stream>>>
^batched_gemm_kernel<            | 64  | 0     | batched_gemm.cuh launch_batched_gemm(): gemm::kThreads = kThreadsM * kThreadsN = 8 * 8 (also its __launch_bounds__); tiles are static smem
^batched_gemm_sum_splits_kernel< | 256 | 0     | batched_gemm.cuh launch_batched_gemm(): constexpr int kSumThreads = 256; launched only with a workspace and split_plan() > 1 split, i.e. from conv1d_backward_weights: the other instantiations are compiled but never launched
^sort_by_class_kernel$           | 128 | 0     | spurious.cu plant_spurious_feature_cuda(): file-scope kThreads = 128
^choose_planted_kernel$          | 128 | 0     | spurious.cu plant_spurious_feature_cuda(): file-scope kThreads = 128
^spurious_rows_kernel$           | 128 | 20480 | spurious.cu launch_rows(): kThreads = 128; dynamic smem min(kThreads, kTileFloats / L) * L * sizeof(float) = 128 * 40 * 4 at L = 40 (at most 32768 = kTileFloats * 4)
EOF
)

TMP="$(mktemp -d "${TMPDIR:-/tmp}/kernel-resources.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT
START=$SECONDS

shopt -s nullglob
SOURCES=("$ROOT"/kernels/*.cu)
shopt -u nullglob
[[ ${#SOURCES[@]} -gt 0 ]] || { echo "kernel-resources: no kernels/*.cu under $ROOT" >&2; exit 2; }

# One file at a time (the build machines are small; a cubin takes seconds).
for src in "${SOURCES[@]}"; do
  base="$(basename "$src" .cu)"
  echo "kernel-resources: $base.cu" >&2
  if ! "$NVCC" -cubin -arch="$ARCH" -Xptxas -v "${PROJECT_FLAGS[@]}" "${INCLUDES[@]}" ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"} \
       -o "$TMP/$base.cubin" "$src" 2>"$TMP/$base.ptxas"; then
    cat "$TMP/$base.ptxas" >&2
    echo "kernel-resources: nvcc failed on $src" >&2
    exit 1
  fi
  if [[ -n "$READELF" ]]; then
    "$READELF" -SW "$TMP/$base.cubin" >"$TMP/$base.sections" 2>/dev/null || : >"$TMP/$base.sections"
  else
    : >"$TMP/$base.sections"
  fi
done

NVCC_VERSION="$("$NVCC" --version | grep -i 'release' | tail -n 1)"
FLAGS_LINE="nvcc -cubin -arch=$ARCH -Xptxas -v ${PROJECT_FLAGS[*]}${EXTRA_FLAGS[*]:+ ${EXTRA_FLAGS[*]}}"
GIT_LINE=""
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  GIT_LINE="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || true)"
  if [[ -n "$GIT_LINE" ]] && ! git -C "$ROOT" diff --quiet HEAD -- kernels 2>/dev/null; then
    GIT_LINE="$GIT_LINE + uncommitted changes in kernels/"
  fi
fi

mkdir -p "$(dirname "$OUT")"
cat >"$TMP/report.py" <<'PY'
"""Parses the ptxas -v logs, computes occupancy, writes the Markdown page. Standard library only."""
import datetime
import os
import re
import subprocess
import sys

tmp, arch, out, demangler = sys.argv[1:5]
sources = sys.argv[5:]
env = os.environ

# Per-SM limits as in the CUDA occupancy calculator (cuda_occupancy.h / the CUDA C++ Programming Guide's table).
# smem_sm: shared memory per SM at the largest carveout; smem_block: the most one block may opt in to;
# reserved: shared memory the runtime reserves per block. Registers are allocated per warp in units of reg_gran,
# within 4 sub-partitions of regs_sm / 4 each.
COMMON = dict(regs_sm=65536, regs_block=65536, max_regs_thread=255, reg_gran=256, subparts=4,
              reserved=1024, smem_gran=128, max_threads_block=1024)
LIMITS = {
    "sm_80": dict(COMMON, max_warps=64, max_blocks=32, smem_sm=167936, smem_block=166912),
    "sm_86": dict(COMMON, max_warps=48, max_blocks=16, smem_sm=102400, smem_block=101376),
    "sm_89": dict(COMMON, max_warps=48, max_blocks=24, smem_sm=102400, smem_block=101376),
    "sm_90": dict(COMMON, max_warps=64, max_blocks=32, smem_sm=233472, smem_block=232448),
}
lim = LIMITS.get(re.sub(r"[a-z]$", "", arch))
if lim is None:
    print(f"kernel-resources: warning: no occupancy limits for {arch} (known: {', '.join(LIMITS)}); "
          "occupancy columns are '?'", file=sys.stderr)


def warn(msg):
    print(f"kernel-resources: warning: {msg}", file=sys.stderr)


# ---- The block table (BLOCK_TABLE in the script).
table = []
for line in env["BLOCK_TABLE"].splitlines():
    if not line.strip():
        continue
    pat, threads, dyn, where = [f.strip() for f in line.split("|", 3)]
    table.append(dict(re=re.compile(pat), pat=pat, threads=int(threads), dyn=int(dyn), where=where, used=False))


def round_up(x, g):
    return (x + g - 1) // g * g


def occupancy(regs, smem_static, threads, dyn):
    """(blocks/SM, active warps, limiters) or None when the launch cannot run."""
    warp = 32
    wpb = (threads + warp - 1) // warp
    if threads > lim["max_threads_block"] or regs > lim["max_regs_thread"]:
        return None
    # Warps and the block-count cap.
    limits = {"warps": lim["max_warps"] // wpb, "blocks/SM cap": lim["max_blocks"]}
    # Registers (cudaOccMaxBlocksPerSMRegsLimit): per-warp allocation, per sub-partition.
    regs_warp = round_up(max(regs, 1) * warp, lim["reg_gran"])
    if regs_warp * round_up(wpb, lim["subparts"]) > lim["regs_block"]:
        return None
    warps_sub = (lim["regs_sm"] // lim["subparts"]) // regs_warp
    limits["registers"] = warps_sub * lim["subparts"] // wpb
    # Shared memory: static + dynamic + the per-block reservation, in allocation units.
    smem = smem_static + dyn
    if smem > lim["smem_block"]:
        return None
    limits["shared memory"] = lim["smem_sm"] // round_up(smem + lim["reserved"], lim["smem_gran"])
    blocks = min(limits.values())
    by = [k for k, v in limits.items() if v == blocks]
    return blocks, blocks * wpb, by


# ---- ptxas -v logs.
ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(\w+)'")
PROPS = re.compile(r"Function properties for (\S+)")
FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
USED = re.compile(r"Used (\d+) registers")
SMEM = re.compile(r"(\d+) bytes smem")
CMEM = re.compile(r"(\d+) bytes cmem\[(\d+)\]")
GMEM = re.compile(r"ptxas info\s*: (\d+) bytes gmem")


def parse_ptxas(path):
    kernels, frames, gmem = {}, {}, 0
    entry = props = None
    with open(path) as f:
        for line in f:
            if m := GMEM.search(line):
                gmem += int(m.group(1))
            elif m := ENTRY.search(line):
                entry = m.group(1)
                kernels[entry] = dict(mangled=entry, regs=None, smem=0, cmem={})
            elif m := PROPS.search(line):
                props = m.group(1)
            elif (m := FRAME.search(line)) and props:
                frames[props] = tuple(int(g) for g in m.groups())
                props = None
            elif (m := USED.search(line)) and entry:
                k = kernels[entry]
                k["regs"] = int(m.group(1))
                if s := SMEM.search(line):
                    k["smem"] = int(s.group(1))
                for c in CMEM.finditer(line):
                    k["cmem"][int(c.group(2))] = int(c.group(1))
    for name, k in kernels.items():
        k["stack"], k["spill_st"], k["spill_ld"] = frames.get(name, (None, None, None))
    return kernels, gmem


SECTION = re.compile(r"\]\s+(\.nv\.constant\d+)(?:\.(\S+))?\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s")


def parse_sections(path):
    """readelf -SW: {kernel: size of .nv.constant0.<kernel>}, {bank section: size} for module-wide banks."""
    per_kernel, module = {}, {}
    with open(path) as f:
        for line in f:
            if m := SECTION.search(line):
                sec, kern, size = m.group(1), m.group(2), int(m.group(3), 16)
                if kern:
                    if sec == ".nv.constant0":
                        per_kernel[kern] = size
                else:
                    module[sec] = size
    return per_kernel, module


def demangle(names):
    if not names:
        return {}
    res = subprocess.run([demangler], input="\n".join(names) + "\n", capture_output=True, text=True, check=True)
    return dict(zip(names, res.stdout.splitlines()))


def strip_params(name):
    """Drops the trailing parameter list "(...)" (and a leading "void ") of a demangled function name."""
    name = re.sub(r"^void ", "", name)
    if name.endswith(")"):
        depth = 0
        for i in range(len(name) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(name[i], 0)
            if depth == 0:
                return name[:i]
    return name


def shorten(name):
    name = strip_params(name)
    name = name.replace("(anonymous namespace)::", "")
    name = re.sub(r"\bsb::(gpu::)?(gemm::)?", "", name)
    return name


def fmt_bytes(v):
    return "?" if v is None else str(v)


files = []
all_kernels = 0
for src in sources:
    base = os.path.basename(src)[:-3]
    kernels, gmem = parse_ptxas(os.path.join(tmp, base + ".ptxas"))
    cmem0, module_banks = parse_sections(os.path.join(tmp, base + ".sections"))
    names = demangle(list(kernels))
    rows = []
    for mangled, k in kernels.items():
        full = names.get(mangled, mangled)
        short = shorten(full)
        cm = k["cmem"].get(0, cmem0.get(mangled))
        hit = next((t for t in table if t["re"].search(short)), None)
        row = dict(k, full=full, short=short, cmem0=cm, entry=hit)
        if hit:
            hit["used"] = True
            occ = occupancy(k["regs"], k["smem"], hit["threads"], hit["dyn"]) if lim and k["regs"] is not None else None
            if lim and occ is None and k["regs"] is not None:
                row.update(blocks="0", occ="does not launch", by="resources per block")
            elif occ:
                b, w, by = occ
                row.update(blocks=str(b), occ=f"{100.0 * w / lim['max_warps']:.1f} % ({w}/{lim['max_warps']} warps)",
                           by=", ".join(by))
            else:
                row.update(blocks="?", occ="?", by="?")
        else:
            warn(f"no block size for kernel {short} ({base}.cu); add it to BLOCK_TABLE in scripts/kernel-resources.sh")
            row.update(blocks="?", occ="?", by="?")
        rows.append(row)
    # Collisions (overloads): keep the full signature for those.
    counts = {}
    for r in rows:
        counts[r["short"]] = counts.get(r["short"], 0) + 1
    for r in rows:
        if counts[r["short"]] > 1:
            r["short"] = re.sub(r"^void |\bsb::(gpu::)?(gemm::)?|\(anonymous namespace\)::", "", r["full"])
    rows.sort(key=lambda r: r["short"])
    all_kernels += len(rows)
    files.append(dict(name=base + ".cu", rows=rows, gmem=gmem, banks=module_banks))

for t in table:
    if not t["used"]:
        warn(f"BLOCK_TABLE entry '{t['pat']}' matches no kernel (renamed or removed?)")

# ---- Markdown.
L = []
L.append(f"# Kernel resources and theoretical occupancy ({arch})")
L.append("")
src_line = f" Sources: commit {env['GIT_LINE']}." if env.get("GIT_LINE") else ""
L.append(f"Produced by `{env['COMMAND_LINE']}` with {env['NVCC_VERSION'].strip()} "
         f"(`{env['FLAGS_LINE']}`, one cubin per file), {datetime.date.today().isoformat()}.{src_line}")
L.append("")
if lim:
    L.append(f"Occupancy limits used ({arch}): {lim['regs_sm'] // 1024}K registers per SM in {lim['subparts']} "
             f"sub-partitions, allocated per warp in units of {lim['reg_gran']}; at most {lim['max_warps']} warps and "
             f"{lim['max_blocks']} blocks per SM; {lim['smem_sm'] // 1024} KB shared memory per SM "
             f"({lim['smem_block'] // 1024} KB per block) with {lim['reserved']} bytes reserved per block, allocated "
             f"in units of {lim['smem_gran']} bytes.")
    L.append("")
header = ("| kernel | registers | spill stores / loads (bytes) | stack frame (bytes) | static smem (bytes) "
          "| cmem[0] (bytes) | threads/block | dynamic smem (bytes) | blocks/SM | theoretical occupancy | limited by |")
sep = "|" + "---|" * 11
for f in files:
    L.append(f"## {f['name']}")
    L.append("")
    extras = []
    if f["gmem"]:
        extras.append(f"{f['gmem']} bytes of module globals (gmem)")
    for sec, size in sorted(f["banks"].items()):
        extras.append(f"{size} bytes in {sec} (module-wide)")
    if not f["rows"]:
        L.append("No kernels.")
        L.append("")
        continue
    L.append(header)
    L.append(sep)
    for r in f["rows"]:
        e = r["entry"]
        spill = f"{fmt_bytes(r['spill_st'])} / {fmt_bytes(r['spill_ld'])}"
        L.append(f"| `{r['short']}` | {fmt_bytes(r['regs'])} | {spill} | {fmt_bytes(r['stack'])} | {r['smem']} "
                 f"| {fmt_bytes(r['cmem0'])} | {e['threads'] if e else '?'} | {e['dyn'] if e else '?'} "
                 f"| {r['blocks']} | {r['occ']} | {r['by']} |")
    L.append("")
    wheres = []
    for t in table:
        if any(r["entry"] is t for r in f["rows"]):
            shown = re.sub(r"<$", "<…>", t["pat"].strip("^$"))
            wheres.append(f"`{shown}`: {t['where']}")
    if wheres:
        L.append("Launch configuration: " + "; ".join(wheres) + ".")
    if extras:
        L.append("Also: " + "; ".join(extras) + ".")
    L.append("")

L.append("## How to read this")
L.append("")
L.append(
    f"Registers, spills, stack frame and static shared memory are ptxas's figures for the {arch} code the build "
    "ships (`-Xptxas -v`); cmem[0] is the constant bank holding the kernel parameters (plus the driver's area). "
    "*Theoretical occupancy* is resident warps per SM over the maximum, from the block size and dynamic shared "
    "memory of the launch site (given at MNIST-1D sizes where they depend on run-time shapes) and the limits above: "
    "an upper bound that ignores the grid size (many launches here have too few blocks to fill the GPU's SMs, 132 on an H100 SXM), "
    "latency and memory traffic, so a kernel at 50 % is not necessarily slower than one at 100 %. For these small, "
    "latency- and memory-bound kernels, spills and the stack frame (both local memory, reached through L1/L2 on "
    "every access) matter more than the last warps of occupancy: a nonzero spill column after a change is the "
    "first thing to look at. *Limited by* names the resource that caps blocks per SM, several when they tie: "
    "\"warps\" or \"blocks/SM cap\" means the kernel is at the hardware maximum for its block size, and "
    "\"warps, registers\" that one more register per thread would lower it (at 32 registers and 256 threads, 33 "
    "gives 75 %).")
L.append("")

tmp_out = out + ".tmp"
with open(tmp_out, "w") as fh:
    fh.write("\n".join(L))
os.replace(tmp_out, out)
print(f"kernel-resources: {all_kernels} kernels in {len(files)} files", file=sys.stderr)
PY

BLOCK_TABLE="$BLOCK_TABLE" COMMAND_LINE="$COMMAND_LINE" NVCC_VERSION="$NVCC_VERSION" FLAGS_LINE="$FLAGS_LINE" \
  GIT_LINE="$GIT_LINE" python3 "$TMP/report.py" "$TMP" "$ARCH" "$OUT" "$DEMANGLER" "${SOURCES[@]}"
echo "kernel-resources: wrote $OUT in $((SECONDS - START)) s" >&2
