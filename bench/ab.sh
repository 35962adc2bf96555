#!/bin/bash
# ab.sh BUILD LABEL — a quick A/B probe of the accept path: a fresh stack from
# BUILD (broker fsync, gateway, 2 workers, the mock at 5 s), wrk at 64
# connections for 10 s (the ceiling's job), then CPU time per accepted job of
# each process (/proc/PID/stat). Interleave two builds (A B A B A B) on the
# same machine: a loaded machine moves both alike, so the per-process
# difference is what the change costs. Traffic to 127.0.0.1 only; everything
# started is stopped by pid.
set -u
build=$(cd "$1" && pwd); label=$2
here=$(cd "$(dirname "$0")" && pwd)
t=$(mktemp -d /tmp/jobgate-ab.XXXXXX)
pids=""
cleanup() { [ -n "$pids" ] && kill $pids 2>/dev/null; wait 2>/dev/null; rm -rf "$t"; }
trap cleanup EXIT
free_port() { python3 "$here/bench.py" free-port; }
"$build/tests/mock/jobgate-mock-upstream" --listen 127.0.0.1:0 --port-file "$t/mock.port" >"$t/mock.log" 2>&1 &
pids="$pids $!"
mock_port=$(python3 "$here/bench.py" wait-port "$t/mock.port" 10)
port=$(free_port)
cat >"$t/config.json" <<J
{"gateway":{"listen":"127.0.0.1:$port","max_connections":16000},
 "broker":{"frontend":"tcp://127.0.0.1:$(free_port)","backend":"tcp://127.0.0.1:$(free_port)",
           "publisher":"tcp://127.0.0.1:$(free_port)","data_dir":"$t/data","durability":"fsync"},
 "worker":{"concurrency":2500},"security":{"allow_private_networks":true},
 "providers":{"mock":{"base_url":"http://127.0.0.1:$mock_port","rate_limit":0,"max_concurrency":0}},
 "log_level":"warn"}
J
declare -A pid
for p in broker gateway worker0 worker1; do
    case $p in worker*) bin=worker/jobgate-worker ;; *) bin=$p/jobgate-$p ;; esac
    "$build/$bin" --config "$t/config.json" >"$t/$p.log" 2>&1 &
    pid[$p]=$!
    pids="$pids $!"
done
python3 "$here/bench.py" wait-http "$port" /readyz 20 || { echo "ab: stack not ready" >&2; exit 1; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A before
for p in broker gateway worker0 worker1; do before[$p]=$(cpu "${pid[$p]}"); done
BENCH_BODY='{"kind":"http","provider":"mock","request":{"path":"/json?latency_ms=5000"}}' \
    wrk -t2 -c64 -d10s --timeout 10s -s "$here/post.lua" "http://127.0.0.1:$port/v1/jobs" >"$t/wrk.txt" 2>&1
total=$(grep -oP '^\s*\K[0-9]+(?= requests in)' "$t/wrk.txt")
bad=$(grep -oP 'Non-2xx or 3xx responses: \K[0-9]+' "$t/wrk.txt" || true)
ok=$((total - ${bad:-0}))
ticks=$(getconf CLK_TCK)
line="$label: accepted $ok in 10 s"
sum=0
for p in broker gateway worker0 worker1; do
    d=$(( $(cpu "${pid[$p]}") - ${before[$p]} ))
    sum=$((sum + d))
    line="$line, $p $(awk -v d="$d" -v n="$ok" -v t="$ticks" 'BEGIN { printf "%.1f", d / t * 1e6 / n }')"
done
echo "$line, total $(awk -v d="$sum" -v n="$ok" -v t="$ticks" 'BEGIN { printf "%.1f", d / t * 1e6 / n }') µs/job"
