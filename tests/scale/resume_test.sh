#!/bin/bash
# Runs that stop and go on (ctest resume.*), a small CPU study with a run folder:
#   kill:     SIGKILL at 5 random moments, --resume after each, then to the end: the results (per-seed runs,
#             summaries, cross-seed statistics) and the records equal an uninterrupted run's, bit for bit;
#   sigterm:  SIGTERM: exit 143 after a checkpoint; the resume command it prints finishes the run, equal results;
#   damaged:  the newest checkpoint and a journal line damaged: reported, the previous good one used, equal results;
#             a resume with another configuration is refused, naming the setting.
# Usage: bash resume_test.sh kill|sigterm|damaged BENCH_SPURIOUS PYTHON [BACKEND FLAGS...]
set -u
what=$1 bench=$2 python=$3
shift 3
backend="$*"  # e.g. --backend cuda, for the emulated device backends
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
study="--seeds 5 --steps 300 --eval-every 30 --batch 50 --afr-epochs 20 --afr-gammas 0,4 --afr-lambdas 0,0.1 --dfr-subsamples 2 --p 0.5,0.9 --checkpoint-every 20 -q $backend"
fail() { echo "resume test ($what): FAIL: $*"; exit 1; }
same_as_reference() {
    cmp -s ref.csv "$2" || fail "$3: the records differ from the uninterrupted run's"
    "$python" - "$1" "$3" <<'PY' || exit 1
import json, sys
ref, got = json.load(open("ref.json")), json.load(open(sys.argv[1]))
bad = [] if ref["config"] == got["config"] else ["config"]
for i, (a, b) in enumerate(zip(ref["sweep"], got["sweep"])):
    bad += [f"sweep[{i}].{k}" for k in ("runs", "summary", "cross_seed") if a[k] != b[k]]
if bad: sys.exit(f"resume test: FAIL: {sys.argv[2]}: differs from the uninterrupted run in " + ", ".join(bad))
PY
}
"$bench" $study --out ref.json --records ref.csv > /dev/null 2> ref.err || fail "reference run: $(cat ref.err)"
start=$(date +%s%N)
"$bench" $study --run-dir probe --out probe.json > /dev/null 2>&1 || fail "run with a run folder"
ms=$(( ($(date +%s%N) - start) / 1000000 ))  # how long a whole run takes, to kill within it

case $what in
kill)
    "$bench" $study --run-dir run --out out.json --records out.csv > /dev/null 2> err.0 &
    pid=$!
    running=yes
    for i in 1 2 3 4 5; do
        sleep "$(awk -v ms="$ms" -v r="$RANDOM" 'BEGIN { printf "%.3f", (0.05 + 0.6 * r / 32768) * ms / 1000 }')"
        kill -KILL $pid 2> /dev/null
        wait $pid 2> /dev/null  # reaped here: not to be waited for again
        [ -e out.json ] && { running=no; break; }  # it finished before this kill
        "$bench" $study --resume run --out out.json --records out.csv > /dev/null 2> err.$i &
        pid=$!
    done
    if [ $running = yes ]; then wait $pid || fail "the last resume failed: $(cat err.5 2>/dev/null)"; fi
    [ -e out.json ] || { "$bench" $study --resume run --out out.json --records out.csv > /dev/null 2> err.end || fail "final resume: $(cat err.end)"; }
    same_as_reference out.json out.csv "killed 5 times"
    echo "resume test (kill): 5 SIGKILLs, results equal the uninterrupted run ($(ls run | grep -c safetensors) files in the run folder)"
    ;;
sigterm)
    "$bench" $study --run-dir run --out out.json --records out.csv > /dev/null 2> err &
    pid=$!
    sleep "$(awk -v ms="$ms" 'BEGIN { printf "%.3f", 0.3 * ms / 1000 }')"
    kill -TERM $pid
    wait $pid
    rc=$?
    [ $rc -eq 143 ] || fail "exit $rc after SIGTERM, expected 143: $(cat err)"
    [ ! -e out.json ] || fail "a results file was written by the stopped run"
    grep -q 'SIGTERM received, stopped at .* and saved in run; resume with:' err || fail "no stop message: $(cat err)"
    cmd=$(grep -A1 'resume with:' err | tail -1)
    case $cmd in *"--resume run"*) ;; *) fail "the printed command does not resume: $cmd" ;; esac
    eval "$cmd" > /dev/null 2> err2 || fail "the printed command failed: $(cat err2)"
    same_as_reference out.json out.csv "stopped by SIGTERM"
    echo "resume test (sigterm): exit 143, the printed command resumed to equal results"
    ;;
damaged)
    # Killed in the middle of a training: the newest file is a checkpoint (a finished training's method file is newer).
    for f in 0.25 0.35 0.45 0.55 0.65 0.3 0.4 0.5; do
        rm -rf run
        "$bench" $study --run-dir run --out out.json > /dev/null 2>&1 &
        pid=$!
        sleep "$(awk -v ms="$ms" -v f=$f 'BEGIN { printf "%.3f", f * ms / 1000 }')"
        kill -KILL $pid; wait $pid 2> /dev/null
        newest=$(cd run && ls -t *.safetensors 2> /dev/null | head -1)
        case $newest in *.training.*.safetensors) break ;; esac
        newest=
    done
    [ -n "$newest" ] || fail "no kill landed in a training"
    newest=run/$newest
    printf 'XXXX' | dd of="$newest" bs=1 seek=200 conv=notrunc 2> /dev/null   # flip bytes inside it
    printf '{"key":"p0.5/erm","kind":"training","file":"x","sha256":"0","step":7}\tbadchecksum\n' >> run/journal.jsonl
    "$bench" $study --resume run --out out.json --records out.csv > /dev/null 2> err || fail "resume: $(cat err)"
    grep -q "warning: run/$(basename "$newest") is damaged (checksum): not loaded, using the checkpoint before it" err ||
        fail "the damaged checkpoint was not reported: $(cat err)"
    grep -q 'warning: run/journal.jsonl line [0-9]* is damaged (checksum): ignored' err || fail "the damaged line was not reported: $(cat err)"
    same_as_reference out.json out.csv "resumed past a damaged checkpoint"
    # Another configuration is refused, naming the setting, and writes nothing.
    "$bench" ${study/--steps 300/--steps 310} --resume run --out other.json > /dev/null 2> err3
    rc=$?
    [ $rc -eq 2 ] || fail "resume with other --steps: exit $rc, expected 2"
    grep -q "configuration differs from the run's: afr.stage1_steps \[310\] vs \[300\], steps 310 vs 300" err3 || fail "no named difference: $(cat err3)"
    [ ! -e other.json ] || fail "wrote other.json"
    echo "resume test (damaged): damaged checkpoint and journal line reported and skipped, equal results"
    ;;
*) fail "unknown test" ;;
esac
