#!/usr/bin/env bash
# Packs a GPU build into carry/ (git-ignored) for a machine that has an NVIDIA GPU but none of our build
# dependencies. Runs HERE, on the development machine. Usage:
#   scripts/gpu-pack.sh [BUILD_DIR]
# Without BUILD_DIR it configures and builds build-gpu (-DCMAKE_CUDA_ARCHITECTURES=90, Release; with `nice`).
# Then, on the GPU machine (through the device tool's `run`, carry ["carry"]):
#   bash scripts/gpu-check.sh carry "$OUT"
# docs/gpu/README.md has the whole procedure.
#
# carry/ holds:
#   bin/           bench_spurious, sb_tests, bench_kernels (if built), bench_cpu (if built)
#   lib/           shared libraries the target may lack (ldd closure minus glibc, the driver, CUDA libraries
#                  and libstdc++/libgcc_s); always put first on LD_LIBRARY_PATH there
#   lib-fallback/  libstdc++.so.6, libgcc_s.so.1: used there only if the target's own are missing or too old
#   data/mnist1d/  the canonical data (the peer reads it; the tests find it through SB_SOURCE_DIR)
#   tests/data/    the generator traces the tests read
#   peers/         torch_mnist1d.py (the PyTorch peer, from ../shared/peers)
#   manifest.json  what was packed, from which commit, sizes, what the target must provide
# cuBLAS and cuDNN are NOT carried (libcublasLt alone is ~540 MB, cuDNN's engines ~600 MB): gpu-check.sh takes
# the target's copies (/usr/local/cuda/lib64 and PyTorch's nvidia-* wheels).
# Env: JOBS (build jobs, default nproc), STRIP (auto|0|1: strip binaries; auto = only if over the limit),
#      PEER (path of the peer script), LIMIT_MIB (default 64: the device tool's limit for the whole tree).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd -P)
limit_mib=${LIMIT_MIB:-64}
peer=${PEER:-../shared/peers/torch_mnist1d.py}
strip_mode=${STRIP:-auto}
carry=carry

build=${1:-}
if [[ -z "$build" ]]; then
  build="build-gpu"
  gen=()
  if [[ ! -f $build/CMakeCache.txt ]] && command -v ninja >/dev/null; then gen=(-G Ninja); fi
  echo "gpu-pack: configuring $build" >&2
  nice -n 10 cmake -S . -B "$build" "${gen[@]}" -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release \
    -DSB_ENABLE_CUDA=ON -DSB_CUDA_EMULATION=OFF >&2  # the real GPU runs the real tests
  echo "gpu-pack: building $build (nice, -j${JOBS:-$(nproc)})" >&2
  nice -n 10 cmake --build "$build" -j"${JOBS:-$(nproc)}" >&2
fi
[[ -f $build/CMakeCache.txt ]] || { echo "gpu-pack: $build is not a CMake build folder" >&2; exit 2; }
cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt" | head -1; }
cuda_compiler=$(cache CMAKE_CUDA_COMPILER)
cuda_arch=$(cache CMAKE_CUDA_ARCHITECTURES)
cudnn_lib=$(cache CUDNN_LIBRARY)
if [[ -z $cuda_compiler || $cuda_compiler == *NOTFOUND* ]]; then
  echo "gpu-pack: $build was configured without a CUDA compiler: its binaries have no CUDA backend" >&2
  exit 2
fi
[[ $cudnn_lib == *NOTFOUND* || -z $cudnn_lib ]] && echo "gpu-pack: warning: $build has no cuDNN (--backend cudnn will be missing)" >&2
[[ $cuda_arch == *90* ]] || echo "gpu-pack: warning: CMAKE_CUDA_ARCHITECTURES=$cuda_arch has no 90 (H100/H200)" >&2

find_bin() { find "$build" -maxdepth 3 -type f -name "$1" -perm -u+x -not -path '*/CMakeFiles/*' | head -1; }
bins=()
for b in bench_spurious sb_tests bench_kernels bench_cpu; do
  p=$(find_bin "$b")
  if [[ -n $p ]]; then bins+=("$p")
  elif [[ $b == bench_spurious || $b == sb_tests ]]; then echo "gpu-pack: $build has no $b" >&2; exit 2
  else echo "gpu-pack: note: no $b in $build (skipped)" >&2; fi
done

rm -rf "$carry"
mkdir -p "$carry"/{bin,lib,lib-fallback,data,tests,peers}
for p in "${bins[@]}"; do cp -p "$p" "$carry/bin/"; done

# Libraries: the ldd closure of every binary, sorted into carried / fallback / left to the target.
declare -A carried=() fallback=() target=()
while read -r name path; do
  case "$name" in
    linux-vdso.so*|ld-linux*|libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|libutil.so.*|libresolv.so.*|libmvec.so.*)
      ;;                                                      # glibc: the target's own
    libcuda.so*|libnvidia-*|libcudadebugger.so*)
      target[$name]="driver";;                                # the driver: never carried
    libcublas*|libcudnn*|libcudart.so*|libnvrtc*|libnvJitLink*|libcufft*|libcurand*|libcusparse*|libcusolver*|libcupti*|libnvToolsExt*|libnccl*)
      target[$name]=$path;;                                   # CUDA libraries: the target's copies
    libstdc++.so.*|libgcc_s.so.*)
      fallback[$name]=$path;;
    *)
      carried[$name]=$path;;
  esac
done < <(for p in "${bins[@]}"; do ldd "$p"; done | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3} $2 == "=>" && $3 == "not" {print $1, "NOTFOUND"}' | sort -u)
for n in "${!carried[@]}"; do
  [[ ${carried[$n]} == NOTFOUND ]] && { echo "gpu-pack: $n is not found here (ldd)" >&2; exit 2; }
  cp -L "${carried[$n]}" "$carry/lib/$n"
done
for n in "${!fallback[@]}"; do cp -L "${fallback[$n]}" "$carry/lib-fallback/$n"; done

cp -r data/mnist1d "$carry/data/"
[[ -d tests/data ]] && cp -r tests/data "$carry/tests/"
if [[ -f $peer ]]; then cp "$peer" "$carry/peers/torch_mnist1d.py"
else echo "gpu-pack: warning: no peer script at $peer" >&2; fi

maybe_strip() { for f in "$carry"/bin/*; do strip --strip-unneeded "$f"; done; echo "gpu-pack: stripped the binaries" >&2; }
[[ $strip_mode == 1 ]] && maybe_strip

# Everything the device tool sends: tracked + untracked-not-ignored files (carry/ is ignored) + carry/.
tree_bytes=$(git ls-files -co --exclude-standard -z | du --files0-from=- -cb 2>/dev/null | tail -1 | cut -f1)
carry_bytes() { du -sb "$carry" | cut -f1; }
if [[ $strip_mode == auto ]] && (( tree_bytes + $(carry_bytes) > limit_mib * 1048576 )); then maybe_strip; fi

# Sizes of the CUDA libraries we leave to the target (why they are not carried).
cuda_sizes=""
for n in "${!target[@]}"; do
  p=${target[$n]}
  [[ -f $p ]] && cuda_sizes+="$n $(stat -Lc %s "$p")"$'\n'
done
for extra in libcublas.so.13 libcublasLt.so.13 libcudnn.so.9 libcudnn_engines_precompiled.so.9 libcudnn_engines_runtime_compiled.so.9 \
             libcudnn_ops.so.9 libcudnn_cnn.so.9 libcudnn_graph.so.9 libcudnn_heuristic.so.9; do
  d=$(dirname "$cudnn_lib" 2>/dev/null || true)
  for dir in "$d" /usr/local/cuda/lib64 /usr/local/cuda/lib; do
    if [[ -f $dir/$extra ]]; then cuda_sizes+="$extra $(stat -Lc %s "$dir/$extra")"$'\n'; break; fi
  done
done

glibc_req=$(for f in "$carry"/bin/* "$carry"/lib/*; do objdump -T "$f" 2>/dev/null; done | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
glibcxx_req=$(for f in "$carry"/bin/* "$carry"/lib/*; do objdump -T "$f" 2>/dev/null; done | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1)
cudnn_ver=$(awk '/define CUDNN_(MAJOR|MINOR|PATCHLEVEL) /{printf "%s%s", sep, $3; sep="."}' \
            "$(cache CUDNN_INCLUDE_DIR)/cudnn_version.h" 2>/dev/null || true)
nvcc_ver=$("$cuda_compiler" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/\1/p')

export SB_CUDA_SIZES="$cuda_sizes"
SB_TARGET_LIBS=$(for n in "${!target[@]}"; do echo "$n ${target[$n]}"; done)
export SB_TARGET_LIBS
python3 - "$carry" "$root" "$(cd "$build" && pwd -P)" "$tree_bytes" "$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  "$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)" "$cuda_arch" "$nvcc_ver" "$cudnn_ver" \
  "$glibc_req" "$glibcxx_req" "$cudnn_lib" <<'PY'
import hashlib, json, os, sys, datetime
carry, root, build, tree_bytes, commit, dirty, arch, nvcc, cudnn, glibc, glibcxx, cudnn_lib = sys.argv[1:13]
def files(d):
    out = {}
    for dp, _, fs in os.walk(os.path.join(carry, d)):
        for f in sorted(fs):
            p = os.path.join(dp, f)
            out[os.path.relpath(p, carry)] = {"bytes": os.path.getsize(p),
                                             "sha256": hashlib.sha256(open(p, "rb").read()).hexdigest()}
    return out
target = {}
for line in os.environ["SB_CUDA_SIZES"].strip().splitlines():
    n, s = line.rsplit(" ", 1)
    target[n] = {"bytes_here": int(s)}
for line in os.environ["SB_TARGET_LIBS"].strip().splitlines():
    n, p = line.split(" ", 1)
    target.setdefault(n, {})["linked_here"] = p
m = {
  "schema": "spurious-bench/gpu-carry/v1",
  "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
  "git_commit": commit, "git_modified_tracked_files": int(dirty),
  "build_dir": build, "cuda_architectures": arch, "nvcc": nvcc,
  "cudnn_built_against": cudnn or None, "cudnn_library_here": cudnn_lib,
  # Absolute paths compiled into sb_tests (CMake): gpu-check.sh recreates them there if they are missing.
  "sb_source_dir": root, "sb_bench_spurious": os.path.join(build, "bench_spurious"),
  "requires": {"glibc": glibc, "glibcxx": glibcxx},
  "binaries": files("bin"), "libraries": files("lib"), "libraries_fallback": files("lib-fallback"),
  "peer": files("peers"),
  "from_target": target,
  "carry_bytes": sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(carry) for f in fs),
  "tree_bytes_without_carry": int(tree_bytes),
}
json.dump(m, open(os.path.join(carry, "manifest.json"), "w"), indent=1)
PY

total=$(( tree_bytes + $(carry_bytes) ))
{
  echo "gpu-pack: carry/ from $build ($(git rev-parse --short HEAD 2>/dev/null))"
  echo "  binaries:      $(find "$carry/bin" -type f -printf '%f ')"
  echo "  carried libs:  $(find "$carry/lib" -type f -printf '%f ')"
  echo "  fallback libs: $(find "$carry/lib-fallback" -type f -printf '%f ')"
  echo "  from target:   ${!target[*]}"
  echo "  needs glibc >= ${glibc_req#GLIBC_}, libstdc++ with ${glibcxx_req} (else lib-fallback)"
  printf '  not carried (size here): '; printf '%s' "$cuda_sizes" | awk '{printf "%s %.1f MiB; ", $1, $2/1048576}'; echo
  awk -v c="$(carry_bytes)" -v t="$tree_bytes" -v l="$limit_mib" \
    'BEGIN {printf "  size: carry/ %.1f MiB + rest of the working tree %.1f MiB = %.1f MiB of %d MiB\n", c/1048576, t/1048576, (c+t)/1048576, l}'
} >&2
if (( total > limit_mib * 1048576 )); then
  echo "gpu-pack: ERROR: over the ${limit_mib} MiB the device tool sends" >&2
  exit 3
fi
