#!/bin/sh
# build.sh OUTDIR — builds gearman-front and gearman-worker into OUTDIR
# (bench/run.sh calls it; kept out of meson so `make build` needs no gearman).
# Needs Debian's libgearman-dev, libmicrohttpd-dev, libjansson-dev,
# libcurl4-openssl-dev, pkg-config and a C compiler. Warnings are errors.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUTDIR}
mkdir -p "$out"
cc=${CC:-cc}
flags="-std=gnu11 -O2 -g -Wall -Wextra -Werror -pthread"
# shellcheck disable=SC2046,SC2086
$cc $flags -o "$out/gearman-front" "$here/front.c" \
    $(pkg-config --cflags --libs gearmand libmicrohttpd jansson)
# shellcheck disable=SC2046,SC2086
$cc $flags -o "$out/gearman-worker" "$here/worker.c" \
    $(pkg-config --cflags --libs gearmand libcurl)
