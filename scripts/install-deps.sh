#!/bin/sh
# install-deps.sh [PACKAGE…] — installs the Debian packages jobgate needs (and
# those named, e.g. a test suite's), only those missing, and says which.
# Idempotent: a second run installs nothing.
set -eu

PACKAGES="build-essential pkg-config meson ninja-build clang libclang-rt-dev
libzmq3-dev libczmq-dev libmicrohttpd-dev libcurl4-openssl-dev libmsgpack-dev
libjansson-dev liblmdb-dev libsodium-dev uuid-dev libsystemd-dev python3 curl $*"

missing=""
for package in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $package"
    fi
done

if [ -z "$missing" ]; then
    echo "install-deps: all Debian packages present"
    exit 0
fi

echo "install-deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
    echo "install-deps: not root; run: sudo apt-get install -y$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# A fresh machine may have no package lists yet; refresh them when the
# install cannot find a package.
# shellcheck disable=SC2086
if ! apt-get install -y -q --no-install-recommends $missing; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
fi
