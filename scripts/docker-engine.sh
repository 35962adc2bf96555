#!/bin/sh
# docker-engine.sh — makes sure a Docker engine answers, for `make
# docker-image` and the compose commands of the README: installs docker.io
# and docker-compose when missing, and when no engine answers starts
# `dockerd --bridge=none --iptables=false` (host networking only) in the
# background, leaving it running. Says what it does; does nothing when an
# engine already answers.
set -eu

missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
if [ -n "$missing" ]; then
    echo "docker-engine: installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends $missing \
        || { apt-get update -q && apt-get install -y -q --no-install-recommends $missing; }
fi

if docker info >/dev/null 2>&1; then
    exit 0
fi
log=/var/log/jobgate-dockerd.log
echo "docker-engine: no Docker engine answers; starting dockerd --bridge=none --iptables=false (log: $log)"
nohup dockerd --bridge=none --iptables=false >"$log" 2>&1 &
pid=$!
tries=0
until docker info >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 150 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "docker-engine: dockerd did not start; see $log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "docker-engine: dockerd running (pid $pid); stop it with: kill $pid"
