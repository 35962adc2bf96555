#!/bin/sh
# run.sh [BUILD] — the HTTP contract (issue 13, "The contract, strict"):
#  1. redocly lint (npm @redocly/cli, rules in redocly.yaml) on
#     gateway/assets/openapi.json, with no error;
#  2. a real stack driven through every operation (collect.py), and what it
#     answered checked against the document's schemas, the webhook deliveries
#     with the official Standard Webhooks library (validate.mjs).
# Node and the pinned packages (package-lock.json) are installed when
# missing, quietly.
set -eu
cd "$(dirname "$0")"
build=$(cd ../.. && cd "${1:-build}" && pwd)
# Debian's nodejs and npm when either command is missing (a machine may have
# another build of Node, which is kept).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    ../../scripts/install-deps.sh nodejs npm
fi
if [ ! -f node_modules/@redocly/cli/package.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi
# No telemetry, no update check: nothing leaves the machine.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
node_modules/.bin/redocly lint --config redocly.yaml --format=stylish ../../gateway/assets/openapi.json
samples=$(mktemp)
trap 'rm -f "$samples"' EXIT
JOBGATE_BUILD="$build" python3 collect.py "$samples"
node validate.mjs "$samples"
