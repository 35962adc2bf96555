#!/bin/sh
# run-local.sh BUILD — runs the whole stack on this machine: the demo
# upstream (mock) on 127.0.0.1:9000, the broker, the gateway on
# 127.0.0.1:8080 and two workers, with config/local.json (or $JOBGATE_CONFIG).
# Ctrl-C stops everything it started, by process id.
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
config=${JOBGATE_CONFIG:-config/local.json}
workers=${JOBGATE_WORKERS:-2}
pids=""

stop() {
    trap - INT TERM EXIT
    echo
    echo "run-local: stopping"
    for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in $pids; do wait "$pid" 2>/dev/null || true; done
    exit 0
}
trap stop INT TERM EXIT

"$build/tests/mock/jobgate-mock-upstream" --listen 127.0.0.1:9000 &
pids="$pids $!"
"$build/broker/jobgate-broker" --config "$config" &
pids="$pids $!"
"$build/gateway/jobgate-gateway" --config "$config" &
pids="$pids $!"
i=0
while [ "$i" -lt "$workers" ]; do
    "$build/worker/jobgate-worker" --config "$config" &
    pids="$pids $!"
    i=$((i + 1))
done

tries=0
until curl -sf http://127.0.0.1:8080/readyz >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 100 ]; then
        echo "run-local: the stack did not become ready; see the log lines above" >&2
        exit 1
    fi
    sleep 0.1
done

cat <<'HELP'

jobgate is ready on http://127.0.0.1:8080 (demo upstream "mock" on 127.0.0.1:9000).
Try, from another terminal:

  curl -s -X POST http://127.0.0.1:8080/v1/jobs -H 'Content-Type: application/json' \
       -H 'Prefer: wait=10' \
       -d '{"kind":"http","provider":"mock","request":{"path":"/json?latency_ms=500"}}'
  curl -s http://127.0.0.1:9101/metrics   # the broker's Prometheus metrics

Ctrl-C stops the stack.
HELP
wait
