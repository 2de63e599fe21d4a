#!/bin/sh
# Runs every check behind `make check` and CI, counting individual test
# cases: unit tests (GTest over TAP) in BUILD, the same under ASan+UBSan in
# ASAN_BUILD, the iotests against BUILD (and the server tests once more
# against ASAN_BUILD), checkpatch and cppcheck as one check each.
# Usage: scripts/run-checks.sh BUILD ASAN_BUILD   (both already built)
# The last line is always "N passed, N failed, N skipped"; the exit code is
# non-zero when anything failed.
set -u

if [ $# -ne 2 ]; then
    echo "usage: $0 BUILD ASAN_BUILD" >&2
    exit 2
fi
cd "$(dirname "$0")/.." || exit 2
BUILD=$1
ASAN_BUILD=$2
PY=/usr/bin/python3
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bp-checks.XXXXXX") || exit 2
trap 'rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

TOTAL_P=0
TOTAL_F=0
TOTAL_S=0
: > "$TMP/parts"

# add_part LABEL COUNTS_FILE: add "P F S" from the file to the totals.
add_part() {
    p=0 f=1 s=0
    if [ -s "$2" ]; then
        read -r p f s < "$2"
    else
        echo "  ($1 produced no counts: counted as 1 failure)"
    fi
    TOTAL_P=$((TOTAL_P + p))
    TOTAL_F=$((TOTAL_F + f))
    TOTAL_S=$((TOTAL_S + s))
    printf '%-12s %d passed, %d failed, %d skipped\n' "$1" "$p" "$f" "$s" \
        >> "$TMP/parts"
}

# unit LABEL BUILD_DIR [VAR=value...]: meson's unit suite, counted per case.
unit() {
    label=$1
    dir=$2
    shift 2
    echo "== $label: meson test -C $dir --suite unit"
    logs="$dir/meson-logs"
    mkdir -p "$logs"
    rm -f "$logs/run-checks-unit.json"
    env "$@" meson test -C "$dir" --suite unit --logbase run-checks-unit \
        > "$logs/run-checks-unit.console" 2>&1
    rc=$?
    "$PY" scripts/tap-summary.py --label "$label" --meson-rc "$rc" \
        --console "$logs/run-checks-unit.console" \
        --counts "$TMP/$label.counts" "$logs/run-checks-unit.json"
    add_part "$label" "$TMP/$label.counts"
}

unit unit "$BUILD"
unit unit-asan "$ASAN_BUILD" \
    ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

# iotests LABEL BUILD_DIR [TEST...]: the functional tests against BUILD_DIR.
iotests() {
    label=$1
    dir=$2
    shift 2
    echo "== $label: tests/qemu-iotests/check -q -b $dir $*"
    rm -f "$TMP/$label.json"
    "$PY" tests/qemu-iotests/check -q -b "$dir" --json "$TMP/$label.json" "$@"
    rc=$?
    if [ -s "$TMP/$label.json" ]; then
        "$PY" -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(d["passed"], d["failed"], d["skipped"])' "$TMP/$label.json" \
            > "$TMP/$label.counts"
        if [ "$rc" -ne 0 ] &&
           [ "$(cut -d' ' -f2 "$TMP/$label.counts")" = 0 ]; then
            echo "  (check exited with $rc but reported no failure)"
            read -r p f s < "$TMP/$label.counts"
            echo "$p 1 $s" > "$TMP/$label.counts"
        fi
    else
        echo "  (check exited with $rc and wrote no summary)"
    fi
    add_part "$label" "$TMP/$label.counts"
}

iotests iotests "$BUILD"
# The servers face untrusted input: run their protocol and robustness tests
# once more with the sanitizer build, whose reports fail the test.
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    iotests iotests-asan "$ASAN_BUILD" $(cd tests/qemu-iotests &&
        ls test_qmp_protocol.py test_qmp_robustness.py test_qmp_block.py \
           test_nbd_protocol.py test_nbd_robustness.py \
           test_migration_stream.py 2>/dev/null |
        sed 's/\.py$//')

echo "== checkpatch: scripts/checkpatch.py --all"
"$PY" scripts/checkpatch.py --all > "$TMP/checkpatch.out" 2>&1
rc=$?
grep ': ERROR: ' "$TMP/checkpatch.out" | head -n 40
tail -n 1 "$TMP/checkpatch.out"
if [ "$rc" -eq 0 ]; then
    echo "1 0 0" > "$TMP/checkpatch.counts"
else
    echo "0 1 0" > "$TMP/checkpatch.counts"
fi
add_part checkpatch "$TMP/checkpatch.counts"

echo "== cppcheck: scripts/cppcheck.sh"
if scripts/cppcheck.sh > "$TMP/cppcheck.out" 2>&1; then
    echo "1 0 0" > "$TMP/cppcheck.counts"
    echo "cppcheck: no findings"
else
    head -n 40 "$TMP/cppcheck.out"
    echo "0 1 0" > "$TMP/cppcheck.counts"
fi
add_part cppcheck "$TMP/cppcheck.counts"

echo "== summary"
cat "$TMP/parts"
echo "$TOTAL_P passed, $TOTAL_F failed, $TOTAL_S skipped"
[ "$TOTAL_F" -eq 0 ]
