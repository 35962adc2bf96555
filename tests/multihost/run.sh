#!/bin/sh
# run.sh BUILD — the multi-host suite as `make test` runs it (tests/run-all.sh):
# installs what it needs when missing (Debian's iproute2 and iptables, which
# brings ebtables-nft), then runs multihost.py against BUILD's binaries and
# writes the table to BUILD/multihost-table.md. Needs root (it makes network
# namespaces); about 2 minutes.
set -eu
cd "$(dirname "$0")/../.."
build=${1:-build}
if [ "$(id -u)" != 0 ]; then
    echo "multihost: needs root (network namespaces, a bridge, iptables in them)" >&2
    exit 77
fi
scripts/install-deps.sh iproute2 iptables >/dev/null
# The switch filters bridged packets with iptables (br_netfilter), enabled
# in its own namespace only; a kernel that has it as a module loads it here.
[ -d /proc/sys/net/bridge ] || modprobe br_netfilter
JOBGATE_BUILD="$build" exec python3 tests/multihost/multihost.py --out "$build/multihost-table.md"
