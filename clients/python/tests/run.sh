#!/bin/sh
# run.sh BUILD [TEST…] — the Python client's tests (clients/python/tests) under
# Debian's /usr/bin/python3, whose python3-httpx, python3-fastapi,
# python3-uvicorn, python3-venv and mypy are installed first when missing.
set -eu
cd "$(dirname "$0")/../../.."
build=${1:-build}
[ $# -gt 0 ] && shift
scripts/install-deps.sh python3-httpx python3-fastapi python3-uvicorn python3-venv python3-pip mypy
JOBGATE_BUILD="$build" exec /usr/bin/python3 tests/integration/run.py --dir clients/python/tests "$@"
