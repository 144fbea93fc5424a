#!/bin/sh
# An MPI job against one process (ctest mpi.*), CPU backend:
#   equal:   mpirun -np 2 writes the same results (config, per-seed runs, summaries, cross-seed statistics) and the
#            same long-format records as one process, bit for bit;
#   resume:  mpirun -np 2 with a run folder, stopped by SIGTERM (mpirun passes it to the ranks), then the resume
#            command rank 0 printed: equal results;
#   failure: a failure on one rank (injected with SB_TEST_FAIL_RANK), or of one rank's setup (its run folder taken),
#            stops every rank within the time limit, with that rank's message and a non-zero exit, and no results file.
# Usage: sh mpi_test.sh equal|resume|failure MPIEXEC BENCH_SPURIOUS PYTHON
# As root (CI containers) Open MPI refuses to start unless OMPI_ALLOW_RUN_AS_ROOT=1 and
# OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 are set; ctest sets them for these tests.
set -u
what=$1 mpiexec=$2 bench=$3 python=$4
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
study="--seeds 5 --steps 60 --eval-every 30 --batch 50 --afr-epochs 20 --afr-gammas 0,4 --afr-lambdas 0,0.1 --dfr-subsamples 2 --p 0.5,0.9"
mpirun="timeout 300 $mpiexec --oversubscribe -np 2"
fail() { echo "mpi test ($what): FAIL: $*"; exit 1; }

case $what in
equal)
    "$bench" $study -q --out one.json --records one.csv > /dev/null 2> one.err || fail "one process: $(cat one.err)"
    $mpirun "$bench" $study --out mpi.json --records mpi.csv > mpi.out 2> mpi.err || fail "mpirun: $(cat mpi.err)"
    cmp -s one.csv mpi.csv || fail "the records differ"
    "$python" - <<'PY' || exit 1
import json, sys
one, mpi = json.load(open("one.json")), json.load(open("mpi.json"))
bad = [] if one["config"] == mpi["config"] else ["config"]
for i, (a, b) in enumerate(zip(one["sweep"], mpi["sweep"])):
    bad += [f"sweep[{i}].{k}" for k in ("p", "runs", "summary", "cross_seed") if a[k] != b[k]]
ranges = [s["seed_range"] for s in mpi["shards"]]
if ranges != [[0, 3], [3, 5]]: bad.append(f"shards {ranges}")
if bad: sys.exit("mpi test (equal): FAIL: differs from one process in " + ", ".join(bad))
PY
    # Progress is the whole job's: one line per evaluation from rank 0, not one per rank.
    n=$(grep -c '^\[erm-base\] step 30/60' mpi.err)
    [ "$n" -eq 2 ] || fail "expected 2 progress lines for erm-base step 30 (one per p), got $n"
    grep -q '5 seeds over 2 MPI ranks' mpi.err || fail "no job header in: $(head -3 mpi.err)"
    echo "mpi test (equal): mpirun -np 2 matches one process"
    ;;
resume)
    "$bench" $study -q --out one.json > /dev/null 2> one.err || fail "one process: $(cat one.err)"
    start=$(date +%s)
    $mpirun "$bench" $study -q --run-dir probe --out probe.json > /dev/null 2>&1 || fail "mpirun with a run folder"
    s=$(( $(date +%s) - start ))
    $mpirun "$bench" $study -q --run-dir run --checkpoint-every 10 --out mpi.json > /dev/null 2> err &
    pid=$!
    sleep "$(awk -v s="$s" 'BEGIN { printf "%.2f", 0.4 * s + 0.2 }')"
    kill -TERM $pid
    wait $pid
    [ -e mpi.json ] && fail "the job finished before SIGTERM; nothing was resumed"
    grep -q 'SIGTERM received' err || fail "no stop message: $(cat err)"
    [ -d run/rank-0 ] && [ -d run/rank-1 ] || fail "no per-rank run folders: $(ls run)"
    cmd=$(grep -A1 'resume with:' err | tail -1)
    case $cmd in "  mpirun -np 2 "*"--resume run"*) ;; *) fail "the printed command is not an mpirun resume: $cmd" ;; esac
    $mpirun "$bench" $study -q --resume run --checkpoint-every 10 --out mpi.json > /dev/null 2> err2 || fail "resume: $(cat err2)"
    "$python" - <<'PY' || exit 1
import json, sys
one, mpi = json.load(open("one.json")), json.load(open("mpi.json"))
bad = [f"sweep[{i}].{k}" for i, (a, b) in enumerate(zip(one["sweep"], mpi["sweep"]))
       for k in ("runs", "summary", "cross_seed") if a[k] != b[k]]
if bad: sys.exit("mpi test (resume): FAIL: differs from one process in " + ", ".join(bad))
PY
    echo "mpi test (resume): stopped by SIGTERM, resumed per rank, equal to one process"
    ;;
failure)
    SB_TEST_FAIL_RANK=1 $mpirun -x SB_TEST_FAIL_RANK "$bench" $study -q --out never.json > out 2> err
    rc=$?
    [ $rc -ne 0 ] || fail "exit 0 after a rank failed"
    [ $rc -ne 124 ] || fail "the job hung after a rank failed (killed by timeout)"
    grep -q 'bench_spurious: error: MPI rank 1 of 2: failure injected by SB_TEST_FAIL_RANK' err || fail "no rank message in: $(cat err)"
    [ ! -e never.json ] || fail "a results file was written"
    ls | grep -q '\.tmp' && fail "a temporary file was left: $(ls)"
    # A setup failure on one rank only (its run folder is taken): reported by that rank, no rank waits.
    mkdir -p taken/rank-1 && touch taken/rank-1/file
    $mpirun "$bench" $study -q --run-dir taken --out never.json > out 2> err
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "a rank's setup failure: exit $rc (124: hung)"
    grep -q 'bench_spurious: error: MPI rank 1 of 2: --run-dir taken/rank-1 holds files' err || fail "no rank-1 message in: $(cat err)"
    [ ! -e never.json ] || fail "a results file was written"
    echo "mpi test (failure): rank 1's failure stopped the job (exit $rc), and its setup failure too"
    ;;
*) fail "unknown test" ;;
esac
