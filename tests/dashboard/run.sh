#!/bin/sh
# run.sh BUILD [--screenshot FILE] — the dashboard in headless Chromium
# against a real stack (tests/dashboard/run.py); installs what it needs
# first (setup.sh).
set -eu
cd "$(dirname "$0")"
build=$(cd ../.. && cd "${1:-build}" && pwd)
[ $# -gt 0 ] && shift
./setup.sh
JOBGATE_BUILD="$build" exec python3 run.py "$@"
