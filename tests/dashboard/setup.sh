#!/bin/sh
# setup.sh — what the dashboard's browser test needs (tests/dashboard/run.sh
# runs it): Debian's chromium, Node.js and npm (installed when missing, with
# scripts/install-deps.sh; chromium runs no service) and
# puppeteer-core pinned in package-lock.json (it drives the installed
# chromium and downloads no browser), installed here when missing or older
# than the lock. Idempotent and quiet.
set -eu
cd "$(dirname "$0")"
# Node from elsewhere (a newer one) is fine: only a missing one is installed.
packages=chromium
command -v node >/dev/null 2>&1 || packages="$packages nodejs"
command -v npm >/dev/null 2>&1 || packages="$packages npm"
# shellcheck disable=SC2086
../../scripts/install-deps.sh $packages >/dev/null
if [ ! -f node_modules/puppeteer-core/package.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error >/dev/null
fi
