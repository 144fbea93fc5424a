#!/usr/bin/env bash
# Runs bench_spurious (CPU backend) and the PyTorch peer on this machine, one after the other in the
# same run, and prints both rates and their ratio as JSON. Usage:
#   scripts/compare-cpu-peer.sh [BUILD_DIR] [OUT.json]
# Needs Debian's python3-torch for the peer (apt-get install -y python3-torch).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=${2:-/dev/stdout}
peer=${PEER:-../shared/peers/torch_mnist1d.py}
threads=${THREADS:-$(nproc)}
seeds=${SEEDS:-8}
steps=${STEPS:-1000}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$build/bench_spurious" --seeds "$seeds" --steps "$steps" --eval-every "$steps" --methods erm-base \
  --threads "$threads" --quiet --out "$tmp/ours.json" >/dev/null
/usr/bin/python3 "$peer" --data data/mnist1d --seeds 4 --steps "$steps" --mode loop --threads "$threads" \
  --device cpu >"$tmp/peer_loop.json"
/usr/bin/python3 "$peer" --data data/mnist1d --seeds "$seeds" --steps "$steps" --mode vmap --threads "$threads" \
  --device cpu >"$tmp/peer_vmap.json"

python3 - "$tmp" "$out" <<'PY'
import json, sys, platform, subprocess
tmp, out = sys.argv[1], sys.argv[2]
ours = json.load(open(f"{tmp}/ours.json"))
loop = json.loads(open(f"{tmp}/peer_loop.json").read().strip().splitlines()[-1])
vmap = json.loads(open(f"{tmp}/peer_vmap.json").read().strip().splitlines()[-1])
t = ours["timing"]["erm-base"]
cfg = ours["config"]
rate = t["seed_steps_per_s"]
wall_rate = cfg["seeds"] * cfg["steps"] / t["wall_s"]
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
res = {
  "machine": {"cpu": cpu, "threads": ours["environment"]["threads"]},
  "bench_spurious": {"seeds": cfg["seeds"], "steps": cfg["steps"], "seed_steps_per_s": round(rate, 1),
                     "seed_steps_per_s_incl_data_and_eval": round(wall_rate, 1),
                     "test_clean_accuracy_mean": ours["summary"]["erm-base"]["test_clean"]["accuracy"]["mean"]},
  "peer_loop": loop, "peer_vmap": vmap,
  "ratio_vs_peer_loop": round(rate / loop["seed_steps_per_s"], 2),
  "ratio_vs_peer_vmap": round(rate / vmap["seed_steps_per_s"], 2),
}
s = json.dumps(res, indent=1)
open(out, "w").write(s + "\n") if out != "/dev/stdout" else print(s)
PY
