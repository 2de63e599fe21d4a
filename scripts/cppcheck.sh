#!/bin/sh
# Static analysis of every C source with cppcheck; exits non-zero on any
# finding.  GLib's declaration macros are defined away so cppcheck can
# parse the headers without the GLib include tree.
set -u
cd "$(dirname "$0")/.." || exit 2
if ! command -v cppcheck >/dev/null 2>&1; then
    echo "cppcheck: not installed" >&2
    exit 1
fi
dirs=""
for d in util block qapi monitor nbd migration qemu-img qemu-io qemu-nbd \
         storage-daemon; do
    [ -d "$d" ] && dirs="$dirs $d"
done
# shellcheck disable=SC2086
exec cppcheck --quiet --library=gtk --error-exitcode=1 --inline-suppr \
    --enable=warning,portability,performance \
    --suppress=missingIncludeSystem --suppress=missingInclude \
    -I include \
    '-DG_DEFINE_AUTOPTR_CLEANUP_FUNC(a,b)=' '-DG_DEFINE_QUARK(a,b)=' \
    '-DG_GNUC_PRINTF(a,b)=' -j 2 $dirs
