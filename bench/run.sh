#!/bin/sh
# bench/run.sh BUILD_DIR — the open-loop benchmark (bench/README.md).
#
# Starts, on free 127.0.0.1 ports in a temporary directory, the mock upstream,
# jobgate (broker + gateway + 2 workers), the seed FastAPI app (as written and
# with SHARED_CLIENT=1) and nginx with a fixed 202; drives each with
# jobgate-loadgen (open loop) and wrk (max-rate probe); prints a Markdown table
# and writes it, with the raw JSON, to bench/results/<UTC date-time>.{md,json}.
# Everything it starts is stopped by process id on exit. Every load is bounded
# in count (rate × duration) and in time (loadgen timeout, drain deadlines).
#
# Knobs (environment): BENCH_RATE (500), BENCH_DURATION (20 s),
# BENCH_SCENARIOS ("accept wait seed seed-shared nginx wrk"),
# BENCH_RESULTS (bench/results), BENCH_PEERS (../shared/peers),
# BENCH_CONCURRENCY (2000 per worker), BENCH_WORKERS (2), BENCH_KEEP=1 keeps
# the temporary directory (logs) after the run.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${1:-build}
case $build in /*) ;; *) build=$(pwd)/$build ;; esac
if [ ! -x "$build/bench/jobgate-loadgen" ] || [ ! -x "$build/gateway/jobgate-gateway" ]; then
    echo "bench: $build holds no jobgate build (run: make build)" >&2
    exit 2
fi
build=$(cd "$build" && pwd)

rate=${BENCH_RATE:-500}
duration=${BENCH_DURATION:-20}
scenarios=${BENCH_SCENARIOS:-"accept wait seed seed-shared nginx wrk"}
results=${BENCH_RESULTS:-$here/results}
peers=${BENCH_PEERS:-$root/../shared/peers}
concurrency=${BENCH_CONCURRENCY:-2000}
workers=${BENCH_WORKERS:-2}
py=python3                 # stdlib helpers: the python3 on PATH
peer_py=/usr/bin/python3   # Debian's, which has fastapi/uvicorn/httpx
bench_py="$here/bench.py"
loadgen="$build/bench/jobgate-loadgen"

say() { echo "bench: $*" >&2; }

# ---------------------------------------------------------------- packages

install_deps() {
    missing=""
    installed() {
        dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
    }
    if ! installed nginx-light && ! installed nginx && ! installed nginx-core; then
        missing="$missing nginx-light"
    fi
    for package in python3-fastapi python3-uvicorn python3-httpx wrk curl; do
        installed "$package" || missing="$missing $package"
    done
    if [ -z "$missing" ]; then
        say "all Debian packages present (nginx, python3-fastapi, python3-uvicorn, python3-httpx, wrk, curl)"
        return 0
    fi
    say "installing:$missing"
    if [ "$(id -u)" != 0 ]; then
        say "not root; run: sudo apt-get install -y$missing"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    if ! apt-get install -y -q --no-install-recommends $missing; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends $missing
    fi
}
install_deps
for tool in nginx wrk curl; do
    command -v "$tool" >/dev/null 2>&1 || { say "$tool not found after install"; exit 1; }
done
[ -f "$peers/seed_fastapi.py" ] || { say "no $peers/seed_fastapi.py (set BENCH_PEERS)"; exit 2; }
[ -f "$peers/nginx_ceiling.conf" ] || { say "no $peers/nginx_ceiling.conf (set BENCH_PEERS)"; exit 2; }
peers=$(cd "$peers" && pwd)

# ---------------------------------------------------------------- processes

# Raise the open-file limit for everything started below (2,500+ upstream
# calls, 1,000+ parked client connections).
# shellcheck disable=SC3045
hard=$(ulimit -Hn 2>/dev/null || echo 65536)
# shellcheck disable=SC3045
if [ "$hard" = unlimited ]; then ulimit -n 65536 2>/dev/null || true; else ulimit -n "$hard" 2>/dev/null || true; fi

loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at start: $loadavg_start (run on an otherwise idle machine)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/jobgate-bench.XXXXXX")
pids=""        # every process this script started and has not reaped

# stop_pids "PID..." — SIGTERM, wait up to 20 s, then SIGKILL; by pid only.
stop_pids() {
    for pid in $1; do kill -TERM "$pid" 2>/dev/null || true; done
    tries=0
    for pid in $1; do
        while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt 200 ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid did not stop on SIGTERM within 20 s; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    left=""
    for pid in $pids; do
        case " $1 " in *" $pid "*) ;; *) left="$left $pid" ;; esac
    done
    pids=$left
}

cleanup() {
    rc=$?
    trap - INT TERM EXIT
    if [ -n "$pids" ]; then
        say "stopping:$pids"
        stop_pids "$pids"
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
        say "logs kept in $tmp"
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# spawn LOG CMD... — starts CMD in the background, output to $tmp/LOG.log;
# sets $last_pid.
spawn() {
    log="$tmp/$1.log"
    shift
    "$@" >>"$log" 2>&1 </dev/null &
    last_pid=$!
    pids="$pids $last_pid"
}

free_port() { "$py" "$bench_py" free-port; }
now() { "$py" -c 'import time; print("%.3f" % time.time())'; }

# ---------------------------------------------------------------- the mock

spawn mock "$build/tests/mock/jobgate-mock-upstream" --listen 127.0.0.1:0 --port-file "$tmp/mock.port"
mock_pid=$last_pid
mock_port=$("$py" "$bench_py" wait-port "$tmp/mock.port" 10)
say "mock upstream on 127.0.0.1:$mock_port (pid $mock_pid)"

mock_reset() { curl -sf "http://127.0.0.1:$mock_port/reset" >/dev/null || true; }
mock_stats() { "$py" "$bench_py" get-json "$mock_port" /stats "$tmp/$1.mock.json" || true; }

accept_body='{"kind":"http","provider":"mock","request":{"path":"/json?latency_ms=5000"}}'
wait_body='{"kind":"http","provider":"mock","request":{"path":"/json?latency_ms=2000"}}'

# ---------------------------------------------------------------- jobgate

jg_pids=""
jg_port=""
jg_start() {   # jg_start NAME
    name=$1
    jg_port=$(free_port)
    mkdir -p "$tmp/$name"
    cat >"$tmp/$name/config.json" <<EOF
{
  "gateway":  { "listen": "127.0.0.1:$jg_port" },
  "broker":   { "frontend": "tcp://127.0.0.1:$(free_port)",
                "backend":  "tcp://127.0.0.1:$(free_port)",
                "publisher":"tcp://127.0.0.1:$(free_port)",
                "data_dir": "$tmp/$name/data", "durability": "fsync" },
  "worker":   { "concurrency": $concurrency },
  "security": { "allow_private_networks": true },
  "providers": {
    "mock": { "base_url": "http://127.0.0.1:$mock_port", "rate_limit": 0, "max_concurrency": 0 }
  },
  "log_level": "info"
}
EOF
    jg_pids=""
    spawn "$name-broker" "$build/broker/jobgate-broker" --config "$tmp/$name/config.json"
    jg_pids="$jg_pids $last_pid"
    spawn "$name-gateway" "$build/gateway/jobgate-gateway" --config "$tmp/$name/config.json"
    jg_pids="$jg_pids $last_pid"
    i=0
    while [ "$i" -lt "$workers" ]; do
        spawn "$name-worker$i" "$build/worker/jobgate-worker" --config "$tmp/$name/config.json"
        jg_pids="$jg_pids $last_pid"
        i=$((i + 1))
    done
    "$py" "$bench_py" wait-http "$jg_port" /readyz 20
    say "jobgate ($name) ready on 127.0.0.1:$jg_port (pids$jg_pids)"
}
jg_stop() {
    stop_pids "$jg_pids"
    jg_pids=""
}

# run_load NAME URL LOADGEN-ARGS... — one open-loop run, summary in NAME.load.json
run_load() {
    name=$1
    url=$2
    shift 2
    say "load $name: $rate/s for $duration s → $url"
    now >"$tmp/$name.start"
    "$loadgen" --url "$url" --rate "$rate" --duration "$duration" --timeout-ms 30000 \
        --max-connections 5000 --json "$tmp/$name.load.json" "$@" >"$tmp/$name.loadgen.txt" 2>&1 \
        || { say "loadgen failed for $name:"; cat "$tmp/$name.loadgen.txt" >&2; return 1; }
    sed 's/^/    /' "$tmp/$name.loadgen.txt" >&2
}

want() { case " $scenarios " in *" $1 "*) return 0 ;; esac; return 1; }

# ---------------------------------------------------------------- scenarios

# (a) accept mode: 202 with a job id, then every job must finish.
if want accept; then
    mock_reset
    jg_start accept
    run_load jobgate-accept "http://127.0.0.1:$jg_port/v1/jobs" --method POST \
        --header 'Content-Type: application/json' --body "$accept_body" \
        --connections 512 --ids-file "$tmp/jobgate-accept.ids"
    # 5 s upstream + backlog: 120 s is generous and still bounded
    "$py" "$bench_py" poll-jobs "$jg_port" "$tmp/jobgate-accept.ids" "$tmp/jobgate-accept.poll.json" 120
    mock_stats jobgate-accept
    jg_stop
fi

# (b) wait mode: Prefer: wait=20 on the submission, 2 s upstream → 200.
if want wait; then
    mock_reset
    jg_start wait
    run_load jobgate-wait "http://127.0.0.1:$jg_port/v1/jobs" --method POST \
        --header 'Content-Type: application/json' --header 'Prefer: wait=20' \
        --body "$wait_body" --connections 1500 --ids-file "$tmp/jobgate-wait.ids"
    "$py" "$bench_py" poll-jobs "$jg_port" "$tmp/jobgate-wait.ids" "$tmp/jobgate-wait.poll.json" 60
    mock_stats jobgate-wait
    jg_stop
fi

# (c) the seed FastAPI app, as written and with one shared client.
seed_run() {   # seed_run NAME SHARED(0|1)
    name=$1
    port=$(free_port)
    mock_reset
    spawn "$name" env UPSTREAM_URL="http://127.0.0.1:$mock_port/json?latency_ms=5000" \
        SHARED_CLIENT="$2" "$peer_py" -m uvicorn --app-dir "$peers" seed_fastapi:app \
        --host 127.0.0.1 --port "$port" --workers 1 --log-level warning --no-access-log
    seed_pid=$last_pid
    "$py" "$bench_py" wait-http "$port" /stats 30
    say "seed ($name, SHARED_CLIENT=$2) ready on 127.0.0.1:$port (pid $seed_pid)"
    run_load "$name" "http://127.0.0.1:$port/search/?query=x" --method POST --connections 1000
    # every started upstream call must end: 5 s upstream, bounded at 120 s
    "$py" "$bench_py" seed-drain "$port" "$tmp/$name.stats.json" 120
    mock_stats "$name"
    stop_pids "$seed_pid"
}
if want seed; then seed_run seed 0; fi
if want seed-shared; then seed_run seed-shared 1; fi

# nginx: the ceiling for answering 202 on loopback
nginx_pid=""
nginx_port=""
nginx_start() {
    nginx_port=$(free_port)
    mkdir -p "$tmp/nginx"
    sed "s/listen 127\.0\.0\.1:[0-9]*/listen 127.0.0.1:$nginx_port/" "$peers/nginx_ceiling.conf" \
        >"$tmp/nginx/nginx.conf"
    grep -q "listen 127.0.0.1:$nginx_port" "$tmp/nginx/nginx.conf" \
        || { say "could not set the nginx listen port"; return 1; }
    spawn nginx nginx -e stderr -c "$tmp/nginx/nginx.conf" -p "$tmp/nginx/"
    nginx_pid=$last_pid
    "$py" "$bench_py" wait-http "$nginx_port" / 10
    say "nginx ready on 127.0.0.1:$nginx_port (pid $nginx_pid)"
}
if want nginx || want wrk; then nginx_start; fi
if want nginx; then
    run_load nginx "http://127.0.0.1:$nginx_port/v1/jobs" --method POST \
        --header 'Content-Type: application/json' --body "$accept_body" --connections 512
fi

# max-rate probe: wrk, closed loop, 10 s, 64 connections, 2 threads
if want wrk; then
    say "wrk max-rate probe: nginx"
    BENCH_BODY=$accept_body wrk -t2 -c64 -d10s --latency -s "$here/post.lua" \
        "http://127.0.0.1:$nginx_port/v1/jobs" >"$tmp/wrk-nginx.txt" 2>&1
    sed 's/^/    /' "$tmp/wrk-nginx.txt" >&2
    "$py" "$bench_py" wrk-parse "$tmp/wrk-nginx.txt" "$tmp/wrk-nginx.json"
fi
if [ -n "$nginx_pid" ]; then stop_pids "$nginx_pid"; nginx_pid=""; fi
if want wrk; then
    mock_reset
    jg_start wrk
    say "wrk max-rate probe: jobgate"
    BENCH_BODY=$accept_body wrk -t2 -c64 -d10s --latency -s "$here/post.lua" \
        "http://127.0.0.1:$jg_port/v1/jobs" >"$tmp/wrk-jobgate.txt" 2>&1
    sed 's/^/    /' "$tmp/wrk-jobgate.txt" >&2
    "$py" "$bench_py" wrk-parse "$tmp/wrk-jobgate.txt" "$tmp/wrk-jobgate.json"
    jg_stop
fi

# ---------------------------------------------------------------- report

stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=false
if [ -n "$(git -C "$root" status --porcelain 2>/dev/null)" ]; then dirty=true; fi
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/^[^:]*: *//')
starts=""
for f in "$tmp"/*.start; do
    [ -f "$f" ] || continue
    n=$(basename "$f" .start)
    starts="$starts\"$n\": $(cat "$f"), "
done
"$py" - "$tmp/meta.json" <<EOF
import json, sys
meta = {
    "date": "$(date -u '+%Y-%m-%d %H:%M:%S UTC')",
    "stamp": "$stamp",
    "commit": "$commit",
    "dirty": $( [ "$dirty" = true ] && echo True || echo False ),
    "nproc": $(nproc),
    "cpu": """$cpu""",
    "kernel": "$(uname -sr)",
    "loadavg_at_start": "$loadavg_start",
    "loadavg_at_report": "$(cut -d' ' -f1-3 /proc/loadavg)",
    "rate": $rate,
    "duration_s": $duration,
    "workers": $workers,
    "concurrency": $concurrency,
    "durability": "fsync",
    "scenarios": "$scenarios",
    "load_starts": {${starts%, }},
    "peers": "seed_fastapi.py under uvicorn (1 worker, /usr/bin/python3), nginx_ceiling.conf (1 worker process)",
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF
mkdir -p "$results"
echo
"$py" "$bench_py" report "$tmp" "$results/$stamp"
say "results: $results/$stamp.md and $results/$stamp.json"
