#!/bin/sh
# Installs every build and test dependency of blockpoint from Debian packages.
# Idempotent: packages already present are skipped, and `apt-get update` runs
# only when something is missing.
set -eu

PACKAGES="
build-essential
pkg-config
meson
ninja-build
libglib2.0-dev
libjson-glib-dev
zlib1g-dev
libzstd-dev
python3
cppcheck
qemu-utils
qemu-system-common
libnbd-bin
python3-libnbd
time
"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing packages:$missing" >&2
    echo "install-deps: run as root to install them" >&2
    exit 1
fi

echo "install-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
