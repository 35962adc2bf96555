#!/bin/sh
# run.sh [BUILD] — checks the systemd units in deploy/systemd/ with systemd's
# own tools, offline (no systemd needs to run here):
#  * `systemd-analyze security --offline=true`: each unit's exposure at most
#    2.0 ("OK"); the full table is printed;
#  * `systemd-analyze verify`: no warning at all (an unknown or misspelt
#    directive is only a warning to systemd, so any output fails here), with
#    ExecStart pointed at the binaries of BUILD;
#  * each unit is Type=notify with a WatchdogSec and a reload by SIGHUP after
#    a --check-config of the file (what the binaries implement:
#    common/service.h, tests/integration/test_daemon.py).
# Installs Debian's systemd (for systemd-analyze) when missing.
set -eu
cd "$(dirname "$0")/../.."
build=$(cd "${1:-build}" && pwd)
scripts/install-deps.sh systemd >/dev/null
failed=0
fail() {
    echo "FAIL: $*"
    failed=1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for unit in deploy/systemd/*.service; do
    name=$(basename "$unit")
    echo "---- $name"
    # A template is analysed as one instance of it.
    instance=$(echo "$name" | sed 's/@\.service$/@1.service/')
    cp "$unit" "$work/$instance"
    report=$(systemd-analyze security --offline=true --no-pager "$work/$instance" 2>&1) || true
    echo "$report"
    exposure=$(echo "$report" | sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
    if [ -z "$exposure" ]; then
        fail "$name: no exposure level in systemd-analyze's answer"
    elif ! awk -v e="$exposure" 'BEGIN { exit !(e <= 2.0) }'; then
        fail "$name: exposure $exposure, above 2.0"
    fi

    for directive in '^Type=notify$' '^NotifyAccess=main$' '^WatchdogSec=[1-9]' \
        '^ExecReload=.* --check-config$' '^ExecReload=/bin/kill -HUP \$MAINPID$' \
        '^ExecStartPre=.* --check-config$'; do
        grep -q "$directive" "$unit" || fail "$name: no line matching $directive"
    done

    # verify reads the binaries named: point them at this build.
    sed "s#/usr/local/bin/jobgate-\([a-z]*\)#$build/\1/jobgate-\1#g" "$unit" \
        >"$work/verify-$instance"
    mv "$work/verify-$instance" "$work/$instance"
    verdict=$(cd "$work" && systemd-analyze verify --man=no "$instance" 2>&1) \
        || fail "$name: systemd-analyze verify failed"
    if [ -n "$verdict" ]; then
        echo "$verdict"
        fail "$name: systemd-analyze verify warned"
    fi
    rm -f "$work/$instance"
done

if [ "$failed" -ne 0 ]; then
    echo "systemd units: FAILED"
    exit 1
fi
echo "systemd units: every unit OK (exposure <= 2.0, verified)"
