#!/bin/sh
# npm-setup.sh DIR PACKAGE — a test's Node packages: Node.js and npm
# (Debian's, installed when missing; Debian 12 has Node 18) and the packages
# pinned in DIR/package-lock.json, installed with `npm ci` when
# DIR/node_modules/PACKAGE is missing or older than the lock. Idempotent and
# quiet when nothing is missing.
set -eu
cd "$1"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: node and npm are missing; run: sudo apt-get install -y nodejs npm" >&2
        exit 1
    fi
    echo "setup: installing nodejs npm"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends nodejs npm; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends nodejs npm
    fi
fi
if [ ! -f "node_modules/$2/package.json" ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
