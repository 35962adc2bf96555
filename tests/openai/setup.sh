#!/bin/sh
# setup.sh — what the door's SDK test needs (tests/integration/test_openai.py
# runs it): Node.js and npm (Debian's, installed when missing; Debian 12 has
# Node 18, which the pinned SDK supports) and the OpenAI SDK pinned in
# package-lock.json, installed here when missing or older than the lock.
set -eu
cd "$(dirname "$0")"
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
if [ ! -f node_modules/openai/package.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
