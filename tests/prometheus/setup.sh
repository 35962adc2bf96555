#!/bin/sh
# setup.sh — what the real-Prometheus test (tests/prometheus/run.py) needs:
# Debian's prometheus (its server and promtool), installed when missing,
# quietly. The package's own service is kept from starting while it installs
# (policy-rc.d answers 101, "action forbidden", unless one is there already)
# and the test never uses it: it starts its own server in a temp dir, on an
# ephemeral port, and stops it by pid.
set -eu
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "setup: prometheus is missing; run: sudo apt-get install -y --no-install-recommends prometheus" >&2
    exit 1
fi
echo "setup: installing prometheus"
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi
status=0
if ! apt-get install -y -q --no-install-recommends prometheus >/dev/null; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends prometheus >/dev/null || status=$?
fi
[ -n "$made_policy" ] && rm -f "$policy"
# On a systemd machine the unit may still be enabled for the next boot: the
# test does not need it, and an operator who wants it enables it.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
exit $status
