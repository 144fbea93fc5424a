#!/bin/sh
# Self-test of scripts/check_layering.py on the fixture trees next to this file.
# Usage: sh tests/layering/self_test.sh [PYTHON]   (PYTHON defaults to python3)
# fixture_ok must pass; fixture_bad must fail with exactly the violations below.
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${1:-python3}
check="$repo/scripts/check_layering.py"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
status=0
bad() { echo "layering self-test: FAIL: $*"; status=1; }

# The fixtures must carry the project's rules (comments aside), or they test other rules.
rules() { grep -v '^[[:space:]]*#' "$1" | grep -v '^[[:space:]]*$' | tr -s ' \t' ' '; }
for fx in fixture_ok fixture_bad; do
    rules "$repo/cmake/layers.txt" > "$tmp/want"
    rules "$here/$fx/cmake/layers.txt" > "$tmp/got"
    cmp -s "$tmp/want" "$tmp/got" || bad "$fx/cmake/layers.txt differs from cmake/layers.txt"
done

"$python" "$check" --root "$here/fixture_ok" > "$tmp/ok.out" 2>&1
rc=$?
[ $rc -eq 0 ] || { cat "$tmp/ok.out"; bad "fixture_ok: exit $rc, expected 0"; }

"$python" "$check" --root "$here/fixture_bad" > "$tmp/bad.out" 2>&1
rc=$?
[ $rc -eq 1 ] || bad "fixture_bad: exit $rc, expected 1"
for expected in \
    'host/core/bad_core.cpp:3: includes "cpu/conv_cpu.h": floor host/core may not include host/cpu' \
    'host/cpu/bad_cpu.cpp:2: includes "cpu/missing.h": does not resolve' \
    'host/cpu/bad_cpu.cpp:4: includes "conv_cpu.h": does not resolve' \
    'host/study/x.cpp:2: includes <CLI/CLI.hpp>: the library' \
    'host/misc/orphan.cpp:1: no floor' \
    ', 5 violations'
do
    grep -qF "$expected" "$tmp/bad.out" || bad "fixture_bad: missing \`$expected'"
done
[ $status -eq 0 ] || cat "$tmp/bad.out"

# Folders named build* are skipped (made here: .gitignore keeps build*/ out of git).
cp -R "$here/fixture_ok" "$tmp/tree"
mkdir -p "$tmp/tree/host/cpu/build-x"
echo '#include "nowhere.h"' > "$tmp/tree/host/cpu/build-x/junk.cpp"
"$python" "$check" --root "$tmp/tree" > "$tmp/build.out" 2>&1 \
    || { cat "$tmp/build.out"; bad "a build* folder was scanned"; }

# A missing rules file is exit 2, not a pass.
"$python" "$check" --root "$here/fixture_ok" --rules "$tmp/none.txt" > /dev/null 2>&1
rc=$?
[ $rc -eq 2 ] || bad "missing rules file: exit $rc, expected 2"

[ $status -eq 0 ] && echo "layering self-test: ok"
exit $status
