#!/bin/sh
# bench/run.sh BUILD_DIR — the benchmark of issue 5 (bench/README.md).
#
# Starts, on free 127.0.0.1 ports in a temporary directory, the mock upstream,
# jobgate (broker + gateway + workers), the seed FastAPI app (as written and
# with SHARED_CLIENT=1), nginx with a fixed 202 and the peers users would pick
# instead (issue 16, bench/peers/README.md): BullMQ on Redis with AOF
# appendfsync always and everysec, and Gearman; runs the scenarios below
# with jobgate-loadgen (open loop) and wrk (closed loop, max rate); prints a
# Markdown report and writes it, with the raw JSON and a plot of ack latency
# against offered rate, to build/bench-results/<UTC date-time>.{md,json,png}
# (BENCH_RECORD=1: to bench/results/record.{md,json,png}, the run of record).
# Everything it starts is stopped by process id on exit. Every load is bounded
# in count (rate × duration) and in time (loadgen timeouts, drain deadlines).
#
# Scenarios (BENCH_SCENARIOS, any subset, in this order):
#   ceiling      wrk at 64 and 256 connections: jobgate, nginx, seed, seed-shared
#                and the peers ("wrk" is accepted as an alias)
#   accept wait  jobgate at BENCH_RATE for BENCH_DURATION, 5 s upstream:
#                202 then the job runs / Prefer: wait=20 on the submission
#   seed seed-shared nginx
#                the peers at the same open-loop load
#   seed-on-jobgate  the seed's endpoint on jobgate (examples/fastapi, the
#                Python client) at the same load: 202 with a job id, every job read back
#   e2e          5,000 jobs/s for 60 s, 1 s upstream, every job read back; then each peer
#   wait-scale   2,000/s with Prefer: wait, 5 s upstream, 30 s; then each peer
#   queued       100,000 jobs and no worker: broker RSS per queued job (each
#                peer: its store's, Redis or gearmand)
#   sweep        open-loop ack latency at rising rates, every system; CPU per
#                job of jobgate and each peer at each rate (drained, bounded)
#   curve        CURVE's cost (security.curve, issue 15): the accept ceiling (wrk)
#                and CPU per job end to end, each without and with CURVE
#
# Knobs (environment), defaults in brackets:
#   BENCH_SCENARIOS ["ceiling accept wait seed seed-shared seed-on-jobgate nginx e2e wait-scale queued sweep door curve"]
#   BENCH_RATE [500] BENCH_DURATION [60] BENCH_UPSTREAM_MS [5000] BENCH_WAIT [20]
#   BENCH_SEED_DRAIN [60]  seconds to wait for the seed's background calls
#   BENCH_CEILING_SECONDS [10] BENCH_CEILING_CONNECTIONS ["64 256"]
#   BENCH_CEILING_WORKERS [BENCH_WORKERS]
#   BENCH_E2E_RATE [5000] BENCH_E2E_DURATION [60] BENCH_E2E_UPSTREAM_MS [1000]
#   BENCH_WAITSCALE_RATE [2000] BENCH_WAITSCALE_DURATION [30] BENCH_WAITSCALE_UPSTREAM_MS [5000]
#   BENCH_WAITSCALE_GATEWAYS [2]  gateway processes sharing the port (gateway.reuse_port): a
#                parked connection holds 3 descriptors in a gateway (its front door relays it
#                to libmicrohttpd), and 10,000 parked need more than one process's 20,000
#                when the hard limit cannot be raised (no CAP_SYS_RESOURCE, as here)
#   BENCH_QUEUED_JOBS [100000] BENCH_QUEUED_RATE [5000]
#   BENCH_SWEEP_RATES ["250 500 1000 2000 5000 10000 20000"] BENCH_SWEEP_DURATION [5]
#   BENCH_SWEEP_SYSTEMS ["jobgate bullmq-always bullmq-everysec gearman nginx seed seed-shared"]
#   BENCH_SWEEP_TIMEOUT_MS [10000]
#   BENCH_SWEEP_P99_MS [1000]  a step whose p99 exceeds this (or < 99 % good) ends that system's sweep
#   BENCH_CURVE_RATE [2000] BENCH_CURVE_DURATION [20] BENCH_CURVE_UPSTREAM_MS [200]
#   BENCH_SWEEP_DRAIN [60]  seconds a sweep step of jobgate or a peer may take to drain (CPU per job)
#   BENCH_PEER_SYSTEMS ["bullmq-always bullmq-everysec gearman"]  the peers run in
#                ceiling, e2e, wait-scale and queued ("" for none)
#   BENCH_GEARMAN_FRONT_THREADS [4]  gearman-front's thread pool on the accept path
#   BENCH_BULLMQ_FRONTS [1]  Fastify processes of the BullMQ peer (> 1: Node's cluster module)
#   BENCH_WORKERS [2] BENCH_CONCURRENCY [2500 per worker]
#   BENCH_RESULTS [build/bench-results] BENCH_PEERS [bench/peers] BENCH_KEEP=1 keeps the logs
#   BENCH_RECORD=1 (make bench-record): the run of record, written to
#   bench/results/record.{md,json,png} in place of the last one (history in git)
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
duration=${BENCH_DURATION:-60}
upstream_ms=${BENCH_UPSTREAM_MS:-5000}
prefer_wait=${BENCH_WAIT:-20}
seed_drain=${BENCH_SEED_DRAIN:-60}
ceiling_s=${BENCH_CEILING_SECONDS:-10}
ceiling_conns=${BENCH_CEILING_CONNECTIONS:-"64 256"}
e2e_rate=${BENCH_E2E_RATE:-5000}
e2e_duration=${BENCH_E2E_DURATION:-60}
e2e_upstream_ms=${BENCH_E2E_UPSTREAM_MS:-1000}
ws_rate=${BENCH_WAITSCALE_RATE:-2000}
ws_duration=${BENCH_WAITSCALE_DURATION:-30}
ws_upstream_ms=${BENCH_WAITSCALE_UPSTREAM_MS:-5000}
ws_gateways=${BENCH_WAITSCALE_GATEWAYS:-2}
queued_jobs=${BENCH_QUEUED_JOBS:-100000}
queued_rate=${BENCH_QUEUED_RATE:-5000}
sweep_rates=${BENCH_SWEEP_RATES:-"250 500 1000 2000 5000 10000 20000"}
sweep_duration=${BENCH_SWEEP_DURATION:-5}
sweep_systems=${BENCH_SWEEP_SYSTEMS:-"jobgate bullmq-always bullmq-everysec gearman nginx seed seed-shared"}
sweep_drain=${BENCH_SWEEP_DRAIN:-60}
peer_systems=${BENCH_PEER_SYSTEMS-"bullmq-always bullmq-everysec gearman"}
gearman_front_threads=${BENCH_GEARMAN_FRONT_THREADS:-4}
bullmq_fronts=${BENCH_BULLMQ_FRONTS:-1}
sweep_timeout_ms=${BENCH_SWEEP_TIMEOUT_MS:-10000}
sweep_p99_ms=${BENCH_SWEEP_P99_MS:-1000}
door_rate=${BENCH_DOOR_RATE:-500}
door_seq_rate=${BENCH_DOOR_SEQ_RATE:-50}
door_duration=${BENCH_DOOR_DURATION:-10}
door_streams=${BENCH_DOOR_STREAMS:-1000}
curve_rate=${BENCH_CURVE_RATE:-2000}
curve_duration=${BENCH_CURVE_DURATION:-20}
curve_upstream_ms=${BENCH_CURVE_UPSTREAM_MS:-200}
scenarios=${BENCH_SCENARIOS:-"ceiling accept wait seed seed-shared seed-on-jobgate nginx e2e wait-scale queued sweep door curve"}
# A run leaves its report out of the tree; the run of record replaces
# bench/results/record.* (its history is the file's git history).
results=${BENCH_RESULTS:-$root/build/bench-results}
record=${BENCH_RECORD:-0}
peers=${BENCH_PEERS:-$here/peers}
concurrency=${BENCH_CONCURRENCY:-2500}
workers=${BENCH_WORKERS:-2}
ceiling_workers=${BENCH_CEILING_WORKERS:-$workers}
# Scenarios 3 and 4 need rate × upstream ÷ workers calls per worker at once
# (Little's law), sized with a quarter of headroom as an operator would: a
# call takes a little longer than the upstream's latency (connect, the
# broker's hop, the result's way back), and with exactly rate × upstream
# slots the queue grows by that difference for as long as the load lasts.
e2e_conc=$(( e2e_rate * e2e_upstream_ms * 5 / 4 / 1000 / workers ))
[ "$e2e_conc" -lt "$concurrency" ] && e2e_conc=$concurrency
ws_conc=$(( ws_rate * ws_upstream_ms * 5 / 4 / 1000 / workers ))
[ "$ws_conc" -lt "$concurrency" ] && ws_conc=$concurrency
py=python3                 # stdlib helpers: the python3 on PATH
peer_py=/usr/bin/python3   # Debian's, which has fastapi/uvicorn/httpx/matplotlib
bench_py="$here/bench.py"
loadgen="$build/bench/jobgate-loadgen"

say() { echo "bench: $*" >&2; }
want() {
    case " $scenarios " in *" $1 "*) return 0 ;; esac
    if [ "$1" = ceiling ]; then case " $scenarios " in *" wrk "*) return 0 ;; esac; fi
    return 1
}

# ---------------------------------------------------------------- packages

install_deps() {
    missing=""
    installed() {
        dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
    }
    if ! installed nginx-light && ! installed nginx && ! installed nginx-core; then
        missing="$missing nginx-light"
    fi
    for package in python3-fastapi python3-uvicorn python3-httpx python3-matplotlib wrk curl \
                   $peer_packages; do
        installed "$package" || missing="$missing $package"
    done
    if [ -z "$missing" ]; then
        say "all Debian packages present (nginx, python3-fastapi, python3-uvicorn, python3-httpx, python3-matplotlib, wrk, curl${peer_packages:+, }$(echo "$peer_packages" | sed 's/ /, /g'))"
        return 0
    fi
    say "installing:$missing"
    if [ "$(id -u)" != 0 ]; then
        say "not root; run: sudo apt-get install -y$missing"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # redis-server and gearman-job-server come with a service: the bench
    # starts its own on a free port and never wants theirs started (a
    # policy-rc.d that says no, only while installing, only if none exists)
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
    fi
    # shellcheck disable=SC2086
    if ! apt-get install -y -q --no-install-recommends $missing; then
        apt-get update -q
        apt-get install -y -q --no-install-recommends $missing || { [ "$own_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
    fi
    [ "$own_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d
}
# the peers' packages, when a scenario runs one (Debian 12's nodejs is 18:
# the BullMQ peer's lock file pins versions that run on it)
wants_peer=0
for sys in $peer_systems $sweep_systems; do
    case $sys in bullmq-*|gearman) wants_peer=1 ;; esac
done
peer_packages=""
if [ "$wants_peer" = 1 ]; then
    peer_packages="redis-server gearman-job-server libgearman-dev libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev pkg-config"
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || peer_packages="$peer_packages nodejs npm"
fi
install_deps
for tool in nginx wrk curl; do
    command -v "$tool" >/dev/null 2>&1 || { say "$tool not found after install"; exit 1; }
done
[ -f "$peers/seed_fastapi.py" ] || { say "no $peers/seed_fastapi.py (set BENCH_PEERS)"; exit 2; }
[ -f "$peers/nginx_ceiling.conf" ] || { say "no $peers/nginx_ceiling.conf (set BENCH_PEERS)"; exit 2; }
peers=$(cd "$peers" && pwd)
if [ "$wants_peer" = 1 ]; then
    for tool in redis-server gearmand node npm; do
        command -v "$tool" >/dev/null 2>&1 || { say "$tool not found after install"; exit 1; }
    done
    # the BullMQ peer's packages, pinned by its package-lock.json
    if [ ! -f "$peers/bullmq/node_modules/.package-lock.json" ] \
       || [ -n "$(find "$peers/bullmq/package-lock.json" -newer "$peers/bullmq/node_modules/.package-lock.json")" ]; then
        say "npm ci in $peers/bullmq"
        (cd "$peers/bullmq" && npm ci --no-audit --no-fund --loglevel=error) >&2
    fi
fi

# ---------------------------------------------------------------- processes

# Raise the open-file limit for everything started below (5,000 upstream
# calls, 10,000 parked client connections at 2,000/s × 5 s, loadgen pools).
# shellcheck disable=SC3045
hard=$(ulimit -Hn 2>/dev/null || echo 65536)
# shellcheck disable=SC3045
if [ "$hard" = unlimited ]; then ulimit -n 65536 2>/dev/null || true; else ulimit -n "$hard" 2>/dev/null || true; fi
# shellcheck disable=SC3045
fd_limit=$(ulimit -n)

loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)
say "load average at start: $loadavg_start (run on an otherwise idle machine)"
bench_started=$(date +%s)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/jobgate-bench.XXXXXX")
pids=""        # every process this script started and has not reaped

# stop_pids "PID..." [GRACE_S] — SIGTERM, wait up to GRACE_S (20) seconds in
# all, then SIGKILL; by pid only.
stop_pids() {
    grace=$(( ${2:-20} * 10 ))
    for pid in $1; do kill -TERM "$pid" 2>/dev/null || true; done
    tries=0
    for pid in $1; do
        while kill -0 "$pid" 2>/dev/null && [ "$tries" -lt "$grace" ]; do
            sleep 0.1
            tries=$((tries + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "pid $pid did not stop on SIGTERM within $((grace / 10)) s; SIGKILL"
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

free_port() { "$py" "$bench_py" free-port "$tmp/ports.used"; }
now() { "$py" -c 'import time; print("%.3f" % time.time())'; }

# ---------------------------------------------------------------- the mock

spawn mock "$build/tests/mock/jobgate-mock-upstream" --listen 127.0.0.1:0 --port-file "$tmp/mock.port"
mock_pid=$last_pid
mock_port=$("$py" "$bench_py" wait-port "$tmp/mock.port" 10)
say "mock upstream on 127.0.0.1:$mock_port (pid $mock_pid)"

# the Gearman peer's C programs, built here (warnings are errors) so that
# `make build` never needs libgearman
gearman_bin="$tmp/gearman-bin"
if [ "$wants_peer" = 1 ]; then
    "$peers/gearman/build.sh" "$gearman_bin"
    say "gearman peer built in $gearman_bin"
fi

# mock_reset: wait (bounded) until calls left by a stopped client are over,
# then zero the mock's counters (served, max_in_flight, arrivals per second)
mock_reset() {
    "$py" "$bench_py" mock-quiet "$mock_port" 15
    curl -sf "http://127.0.0.1:$mock_port/reset" >/dev/null || true
}
# settle_machine: before a scenario that measures milliseconds, flush what
# the ones before left to write back and wait (bounded) for the CPUs to be
# idle: a door figure measured through the sweep's write-back measured the
# write-back (the mock called directly: sequential p99 3.22 ms right after
# the sweep, 0.62 ms minutes later)
settle_machine() {
    sync
    "$py" "$bench_py" cpu-quiet 90 3 60
}
mock_stats() { "$py" "$bench_py" get-json "$mock_port" /stats "$tmp/$1.mock.json" || true; }

job_body() { echo "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"path\":\"/json?latency_ms=$1\"}}"; }
accept_body=$(job_body "$upstream_ms")

# ---------------------------------------------------------------- jobgate

jg_pids=""
jg_named=""    # broker=PID gateway=PID worker0=PID ... for proc-mark
jg_port=""
# jg_curve_keys DIR — CURVE for a stack (docs/protocol.md §1.1): a key pair
# for the broker and one for its gateway and workers, written to
# DIR/{broker,client}.{public,secret}_key (Z85 has '$', '*' and '?': files
# keep the keys out of the shell's words); prints the security.curve member
# of the shared config (the broker's public key, the client's as the one
# authorized). Each process gets its own pair's files from the environment.
jg_curve_keys() {
    broker_pair=$("$build/broker/jobgate-broker" --gen-keypair)
    client_pair=$("$build/broker/jobgate-broker" --gen-keypair)
    "$py" - "$1" "$broker_pair" "$client_pair" <<'PY'
import json, sys
broker, client = json.loads(sys.argv[2]), json.loads(sys.argv[3])
for who, pair in (("broker", broker), ("client", client)):
    for half in ("public_key", "secret_key"):
        with open("%s/%s.%s" % (sys.argv[1], who, half), "w") as f:
            f.write(pair[half] + "\n")
print('"curve": ' + json.dumps({"broker_public_key": broker["public_key"],
                                "authorized_keys": [client["public_key"]]}) + ",")
PY
}

# jg_spawn ROLE BINARY — one gateway or worker of the stack jg_start makes,
# named ROLE in the marks (CPU and memory per process)
jg_spawn() {
    # shellcheck disable=SC2086  # client_env: NAME=PATH words for env
    spawn "$name-$1" env $client_env "$build/$2" --config "$tmp/$name/config.json"
    jg_pids="$jg_pids $last_pid"
    jg_named="$jg_named $1=$last_pid"
}
jg_start() {   # jg_start NAME [WORKERS] [CONCURRENCY] [DURABILITY] [CURVE 0|1] [GATEWAYS]
    name=$1
    n_workers=${2:-$workers}
    n_conc=${3:-$concurrency}
    n_durability=${4:-fsync}
    n_curve=${5:-0}
    n_gateways=${6:-1}
    # several gateways share the port (gateway.reuse_port)
    if [ "$n_gateways" -gt 1 ]; then reuse_port=true; else reuse_port=false; fi
    jg_port=$(free_port)
    jg_metrics_port=$(free_port)
    mkdir -p "$tmp/$name"
    curve_member=""
    broker_env=""
    client_env=""
    if [ "$n_curve" = 1 ]; then
        curve_member=$(jg_curve_keys "$tmp/$name")
        for who in broker client; do
            pair_env="JOBGATE_SECURITY_CURVE_PUBLIC_KEY_FILE=$tmp/$name/$who.public_key"
            pair_env="$pair_env JOBGATE_SECURITY_CURVE_SECRET_KEY_FILE=$tmp/$name/$who.secret_key"
            if [ "$who" = broker ]; then broker_env=$pair_env; else client_env=$pair_env; fi
        done
    fi
    cat >"$tmp/$name/config.json" <<EOF
{
  "gateway":  { "listen": "127.0.0.1:$jg_port", "max_connections": 16000, "reuse_port": $reuse_port },
  "broker":   { "frontend": "tcp://127.0.0.1:$(free_port)",
                "backend":  "tcp://127.0.0.1:$(free_port)",
                "publisher":"tcp://127.0.0.1:$(free_port)",
                "data_dir": "$tmp/$name/data", "durability": "$n_durability",
                "metrics_listen": "127.0.0.1:$jg_metrics_port" },
  "worker":   { "concurrency": $n_conc },
  "security": { $curve_member "allow_private_networks": true },
  "providers": {
    "mock": { "base_url": "http://127.0.0.1:$mock_port", "rate_limit": 0, "max_concurrency": 0 }
  },
  "log_level": "info"
}
EOF
    jg_pids=""
    # shellcheck disable=SC2086  # broker_env, client_env: NAME=PATH words for env
    spawn "$name-broker" env $broker_env "$build/broker/jobgate-broker" \
        --config "$tmp/$name/config.json"
    jg_pids="$jg_pids $last_pid"
    jg_named="broker=$last_pid"
    jg_spawn gateway gateway/jobgate-gateway
    i=2
    while [ "$i" -le "$n_gateways" ]; do
        jg_spawn "gateway$i" gateway/jobgate-gateway
        i=$((i + 1))
    done
    i=0
    while [ "$i" -lt "$n_workers" ]; do
        jg_spawn "worker$i" worker/jobgate-worker
        i=$((i + 1))
    done
    if [ "$n_workers" -gt 0 ]; then
        "$py" "$bench_py" wait-http "$jg_port" /readyz 20
    else
        # no worker: never "ready"; wait for the broker to answer instead
        "$py" "$bench_py" wait-http "$jg_port" /healthz 20
        "$py" "$bench_py" wait-http "$jg_port" "/v1/jobs?limit=1" 20
    fi
    say "jobgate ($name) ready on 127.0.0.1:$jg_port ($jg_named)"
}
jg_stop() {
    stop_pids "$jg_pids"
    jg_pids=""
    jg_named=""
}
mark() {       # mark NAME LABEL — CPU and memory of every process of the stack running
    # (jobgate's, or a peer's under the same role names: broker = its store)
    # shellcheck disable=SC2086
    "$py" "$bench_py" proc-mark "$tmp/$1.procs.jsonl" "$2" $jg_named $peer_named
}

# run_load NAME URL RATE DURATION LOADGEN-ARGS... — one open-loop run, summary in NAME.load.json
run_load() {
    name=$1
    url=$2
    load_rate=$3
    load_duration=$4
    shift 4
    say "load $name: $load_rate/s for $load_duration s → $url"
    now >"$tmp/$name.start"
    "$loadgen" --url "$url" --rate "$load_rate" --duration "$load_duration" \
        --json "$tmp/$name.load.json" "$@" >"$tmp/$name.loadgen.txt" 2>&1 \
        || { say "loadgen failed for $name:"; cat "$tmp/$name.loadgen.txt" >&2; return 1; }
    sed 's/^/    /' "$tmp/$name.loadgen.txt" >&2
}

# parked_pool RATE LATENCY_MS — initial connections for a wait-mode load: the
# requests parked at once (Little's law), at most what the fd limit allows;
# the loadgen opens more when they are all busy. Not more: idle connections
# would count in the gateway's memory per parked connection.
parked_pool() {
    n=$(( $1 * $2 / 1000 + 64 ))
    cap=$(( fd_limit / 2 - 64 ))
    [ "$n" -gt "$cap" ] && n=$cap
    echo "$n"
}

# scenario_load NAME PORT RATE DURATION LATENCY_MS WAIT_S — the open-loop
# POST /v1/jobs load of scenarios 2–4, the same for jobgate and every peer
scenario_load() {
    name=$1 port=$2 s_rate=$3 s_duration=$4 s_latency=$5 s_wait=$6
    body=$(job_body "$s_latency")
    if [ "$s_wait" -gt 0 ]; then
        pool=$(parked_pool "$s_rate" "$s_latency")
        max_pool=$(( pool * 2 )); [ "$max_pool" -gt $(( fd_limit - 64 )) ] && max_pool=$(( fd_limit - 64 ))
        run_load "$name" "http://127.0.0.1:$port/v1/jobs" "$s_rate" "$s_duration" --method POST \
            --header 'Content-Type: application/json' --header "Prefer: wait=$s_wait" \
            --body "$body" --connections "$pool" --max-connections "$max_pool" --timeout-ms 30000 \
            --ids-file "$tmp/$name.ids" --ids-format times
    else
        run_load "$name" "http://127.0.0.1:$port/v1/jobs" "$s_rate" "$s_duration" --method POST \
            --header 'Content-Type: application/json' --body "$body" \
            --connections 512 --max-connections 5000 --timeout-ms 30000 \
            --ids-file "$tmp/$name.ids" --ids-format times
    fi
}

# jg_scenario NAME RATE DURATION LATENCY_MS WAIT_S CONCURRENCY SETTLE_S [CURVE] [GATEWAYS] —
# a fresh stack (with CURVE 1: security.curve on), CPU/memory marks, one
# open-loop load, the drain, the readback.
jg_scenario() {
    name=$1 s_rate=$2 s_duration=$3 s_latency=$4 s_wait=$5 s_conc=$6 s_settle=$7 s_curve=${8:-0}
    s_gateways=${9:-1}
    mock_reset
    jg_start "$name" "$workers" "$s_conc" fsync "$s_curve" "$s_gateways"
    mark "$name" before
    scenario_load "$name" "$jg_port" "$s_rate" "$s_duration" "$s_latency" "$s_wait"
    mark "$name" after-load
    mock_stats "$name"          # max_in_flight: the upstream calls at once
    "$py" "$bench_py" jg-settle "$jg_port" "$jg_metrics_port" "$tmp/$name.settle.json" "$s_settle"
    mark "$name" "done"
    "$py" "$bench_py" readback "$jg_port" "$tmp/$name.ids" "$tmp/$name.readback.json" 120
    mock_stats "$name.end"
    jg_stop
}

# ---------------------------------------------------------------- peers

seed_pid=""
seed_port=""
seed_start() {   # seed_start NAME SHARED(0|1) LATENCY_MS
    seed_port=$(free_port)
    spawn "$1" env UPSTREAM_URL="http://127.0.0.1:$mock_port/json?latency_ms=$3" \
        SHARED_CLIENT="$2" "$peer_py" -m uvicorn --app-dir "$peers" seed_fastapi:app \
        --host 127.0.0.1 --port "$seed_port" --workers 1 --log-level warning --no-access-log
    seed_pid=$last_pid
    "$py" "$bench_py" wait-http "$seed_port" /stats 30
    say "seed ($1, SHARED_CLIENT=$2) ready on 127.0.0.1:$seed_port (pid $seed_pid)"
}
seed_stop() { stop_pids "$seed_pid" "${1:-20}"; seed_pid=""; }

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
nginx_stop() { if [ -n "$nginx_pid" ]; then stop_pids "$nginx_pid"; nginx_pid=""; fi; }

# ---------------------------------------------------------------- the peers of issue 16

# What users would deploy instead, each in its best honest configuration
# (bench/peers/README.md), with jobgate's roles so one report reads them all:
# broker = the store (redis-server, gearmand), gateway = the HTTP front door,
# workerN = the workers, as many as jobgate's and with its concurrency.
#   bullmq-always    Fastify + BullMQ, Redis AOF appendfsync always (jobgate's fsync)
#   bullmq-everysec  the same, appendfsync everysec (jobgate's os)
#   gearman          gearman-front (C, libmicrohttpd) + gearmand (in memory,
#                    not durable) + gearman-worker (C threads on libcurl)
peer_pids=""
peer_named=""
peer_port=""
peer_store_port=""
peer_start() {   # peer_start NAME SYSTEM [WORKERS] [CONCURRENCY] [accept|wait]
    name=$1 system=$2
    n_workers=${3:-$workers}
    n_conc=${4:-$concurrency}
    p_mode=${5:-accept}
    mkdir -p "$tmp/$name"
    peer_port=$(free_port)
    peer_store_port=$(free_port)
    peer_pids=""
    case $system in
        bullmq-always|bullmq-everysec)
            # AOF on (RDB snapshots off: the AOF is the durability),
            # noeviction as BullMQ requires
            spawn "$name-redis" redis-server --port "$peer_store_port" --bind 127.0.0.1 \
                --dir "$tmp/$name" --appendonly yes --appendfsync "${system#bullmq-}" --save "" \
                --maxmemory-policy noeviction --maxclients 20000 --daemonize no
            peer_pids="$last_pid"
            peer_named="broker=$last_pid"
            "$py" "$bench_py" wait-tcp "$peer_store_port" 20 || return 1
            spawn "$name-front" env PORT="$peer_port" REDIS_PORT="$peer_store_port" FRONTS="$bullmq_fronts" \
                node "$peers/bullmq/front.js"
            peer_pids="$peer_pids $last_pid"
            peer_named="$peer_named gateway=$last_pid"
            front_pid=$last_pid
            i=0
            while [ "$i" -lt "$n_workers" ]; do
                spawn "$name-worker$i" env REDIS_PORT="$peer_store_port" CONCURRENCY="$n_conc" \
                    UPSTREAM="http://127.0.0.1:$mock_port" node "$peers/bullmq/worker.js"
                peer_pids="$peer_pids $last_pid"
                peer_named="$peer_named worker$i=$last_pid"
                i=$((i + 1))
            done ;;
        gearman)
            # 2 I/O threads (the cores), wake one sleeping worker per job
            # (the default wakes them all), a listen backlog like the others'
            spawn "$name-gearmand" gearmand --listen 127.0.0.1 --port "$peer_store_port" --threads 2 \
                --worker-wakeup 1 --backlog 4096 --log-file "$tmp/$name/gearmand.log" \
                --pid-file "$tmp/$name/gearmand.pid" --verbose ERROR
            peer_pids="$last_pid"
            peer_named="broker=$last_pid"
            "$py" "$bench_py" wait-tcp "$peer_store_port" 20 || return 1
            if [ "$p_mode" = wait ]; then front_mode=--thread-per-connection
            else front_mode="--threads $gearman_front_threads"; fi
            # shellcheck disable=SC2086
            spawn "$name-front" "$gearman_bin/gearman-front" --listen "$peer_port" \
                --server "127.0.0.1:$peer_store_port" $front_mode
            peer_pids="$peer_pids $last_pid"
            peer_named="$peer_named gateway=$last_pid"
            i=0
            while [ "$i" -lt "$n_workers" ]; do
                spawn "$name-worker$i" "$gearman_bin/gearman-worker" --server "127.0.0.1:$peer_store_port" \
                    --upstream "http://127.0.0.1:$mock_port" --threads "$n_conc" \
                    --finished "$tmp/$name.finished.$i"
                peer_pids="$peer_pids $last_pid"
                peer_named="$peer_named worker$i=$last_pid"
                i=$((i + 1))
            done ;;
        *) say "unknown peer $system"; return 1 ;;
    esac
    "$py" "$bench_py" wait-http "$peer_port" /healthz 30 || return 1
    case $system in bullmq-*)
        if [ "$bullmq_fronts" -gt 1 ]; then
            # the cluster's serving processes: measured and stopped as the front door
            for child in $(pgrep -P "$front_pid"); do
                peer_pids="$peer_pids $child"
                peer_named="$peer_named gateway-$child=$child"
            done
        fi
        # Node compiles its hot paths while it runs: 500 jobs first (1 ms
        # upstream), drained, so the measurement sees a warm process, as a
        # service that has been up a while is
        if [ "$n_workers" -gt 0 ]; then
            "$loadgen" --url "http://127.0.0.1:$peer_port/v1/jobs" --rate 250 --duration 2 --method POST \
                --header 'Content-Type: application/json' --body "$(job_body 1)" \
                --connections 64 --max-connections 1000 --timeout-ms 10000 >"$tmp/$name.warmup.txt" 2>&1 || true
            node "$peers/bullmq/tool.js" settle "$peer_store_port" "$tmp/$name.warmup.settle.json" 20
        fi ;;
    esac
    say "$system ($name) ready on 127.0.0.1:$peer_port ($peer_named)"
}
peer_stop() {
    stop_pids "$peer_pids"
    peer_pids=""
    peer_named=""
}
# peer_settle NAME SYSTEM SECONDS [QUEUED] — as jg-settle, from the peer's store.
# A peer that fails (its store gone) is that peer's result, not the run's end:
# the report shows what is missing.
peer_settle() {
    case $2 in
        bullmq-*) node "$peers/bullmq/tool.js" settle "$peer_store_port" "$tmp/$1.settle.json" "$3" ${4:+"$4"} ;;
        gearman) "$py" "$bench_py" gearman-settle "$peer_store_port" "$tmp/$1.settle.json" "$3" ${4:+"$4"} ;;
    esac || say "$2: no drain reading for $1"
}
# peer_readback NAME SYSTEM — every acknowledged job's end, from the peer's own record
peer_readback() {
    case $2 in
        bullmq-*)
            node "$peers/bullmq/tool.js" facts "$peer_store_port" "$tmp/$1.ids" "$tmp/$1.facts" \
                || say "$2: its jobs could not be read for $1"
            "$py" "$bench_py" facts-summary "$tmp/$1.ids" bullmq "$tmp/$1.readback.json" "$tmp/$1.facts" ;;
        gearman)
            # shellcheck disable=SC2046
            "$py" "$bench_py" facts-summary "$tmp/$1.ids" gearman "$tmp/$1.readback.json" \
                $(ls "$tmp/$1".finished.* 2>/dev/null) ;;
    esac
}
# peer_scenario NAME SYSTEM RATE DURATION LATENCY_MS WAIT_S CONCURRENCY SETTLE_S —
# jg_scenario's steps for a peer. In wait mode the answers are the results
# (a waiting Gearman job is a foreground job, with no record to read back).
peer_scenario() {
    p_name=$1 p_system=$2 p_rate=$3 p_duration=$4 p_latency=$5 p_wait=$6 p_conc=$7 p_settle=$8
    p_mode="accept"; [ "$p_wait" -gt 0 ] && p_mode="wait"
    mock_reset
    peer_start "$p_name" "$p_system" "$workers" "$p_conc" "$p_mode" || { peer_stop; return 0; }
    mark "$p_name" before
    scenario_load "$p_name" "$peer_port" "$p_rate" "$p_duration" "$p_latency" "$p_wait" || true
    mark "$p_name" after-load
    mock_stats "$p_name"
    peer_settle "$p_name" "$p_system" "$p_settle"
    mark "$p_name" "done"
    if [ "$p_mode" = accept ] || [ "$p_system" != gearman ]; then
        peer_readback "$p_name" "$p_system"
    fi
    mock_stats "$p_name.end"
    peer_stop
}

# run_wrk NAME URL CONNECTIONS — closed-loop max-rate probe, BENCH_CEILING_SECONDS long
run_wrk() {
    say "wrk $1: $3 connections, $ceiling_s s → $2"
    threads=2
    BENCH_BODY=$accept_body wrk -t"$threads" -c"$3" -d"${ceiling_s}s" --timeout 10s --latency \
        -s "$here/post.lua" "$2" >"$tmp/$1.txt" 2>&1 || true
    sed 's/^/    /' "$tmp/$1.txt" >&2
    "$py" "$bench_py" wrk-parse "$tmp/$1.txt" "$tmp/$1.json"
}

# ---------------------------------------------------------------- 1. accept ceiling

if want ceiling; then
    for c in $ceiling_conns; do
        mock_reset
        jg_start "ceiling-jobgate-c$c" "$ceiling_workers"
        mark "ceiling-jobgate-c$c" before
        run_wrk "ceiling-jobgate-c$c" "http://127.0.0.1:$jg_port/v1/jobs" "$c"
        mark "ceiling-jobgate-c$c" after-load
        curl -sf "http://127.0.0.1:$jg_port/metrics" >"$tmp/ceiling-jobgate-c$c.metrics.txt" || true
        jg_stop
    done
    for sys in $peer_systems; do
        for c in $ceiling_conns; do
            mock_reset
            peer_start "ceiling-$sys-c$c" "$sys" "$ceiling_workers" || { peer_stop; continue; }
            mark "ceiling-$sys-c$c" before
            run_wrk "ceiling-$sys-c$c" "http://127.0.0.1:$peer_port/v1/jobs" "$c"
            mark "ceiling-$sys-c$c" after-load
            peer_stop
        done
    done
    nginx_start
    for c in $ceiling_conns; do
        run_wrk "ceiling-nginx-c$c" "http://127.0.0.1:$nginx_port/v1/jobs" "$c"
    done
    nginx_stop
    for variant in seed seed-shared; do
        shared=0; [ "$variant" = seed-shared ] && shared=1
        for c in $ceiling_conns; do
            seed_start "ceiling-$variant-c$c" "$shared" "$upstream_ms"
            mock_reset      # after the start: second 0 of its arrivals is wrk's first
            run_wrk "ceiling-$variant-c$c" "http://127.0.0.1:$seed_port/search/?query=x" "$c"
            mock_stats "ceiling-$variant-c$c"
            seed_stop 5
        done
    done
fi

# ---------------------------------------------------------------- 2. the seed's target

# accept mode: 202 with a job id, then every job must finish
if want accept; then
    settle_machine     # after the ceiling's stores: its target is an ack p99 in ms
    jg_scenario jobgate-accept "$rate" "$duration" "$upstream_ms" 0 "$concurrency" 120
fi
# wait mode: Prefer: wait=20 on the submission → 200 with the finished job
if want wait; then
    jg_scenario jobgate-wait "$rate" "$duration" "$upstream_ms" "$prefer_wait" "$concurrency" 60
fi

# the seed FastAPI app, as written and with one shared client
seed_run() {   # seed_run NAME SHARED(0|1)
    seed_start "$1" "$2" "$upstream_ms"
    mock_reset
    run_load "$1" "http://127.0.0.1:$seed_port/search/?query=x" "$rate" "$duration" --method POST \
        --connections 1000 --max-connections 5000 --timeout-ms 30000
    # every started upstream call must end; bounded
    "$py" "$bench_py" seed-drain "$seed_port" "$tmp/$1.stats.json" "$seed_drain"
    mock_stats "$1"
    seed_stop 10
}
if want seed; then seed_run seed 0; fi
if want seed-shared; then seed_run seed-shared 1; fi

# the same endpoint on jobgate (examples/fastapi with the Python client, same
# uvicorn, same Python): seed code against seed code on jobgate
if want seed-on-jobgate; then
    jg_start seed-on-jobgate
    example_port=$(free_port)
    spawn seed-on-jobgate-app env PYTHONPATH="$root/clients/python" \
        JOBGATE_URL="http://127.0.0.1:$jg_port" UPSTREAM_PATH="/json?latency_ms=$upstream_ms" \
        "$peer_py" -m uvicorn --app-dir "$root/examples/fastapi" app:app \
        --host 127.0.0.1 --port "$example_port" --workers 1 --log-level warning --no-access-log
    example_pid=$last_pid
    "$py" "$bench_py" wait-http "$example_port" /hooks/jobgate 30
    mock_reset
    run_load seed-on-jobgate "http://127.0.0.1:$example_port/search/?query=x" "$rate" "$duration" \
        --method POST --connections 1000 --max-connections 5000 --timeout-ms 30000 \
        --ids-file "$tmp/seed-on-jobgate.ids" --ids-format times
    "$py" "$bench_py" jg-settle "$jg_port" "$jg_metrics_port" "$tmp/seed-on-jobgate.settle.json" 120
    "$py" "$bench_py" readback "$jg_port" "$tmp/seed-on-jobgate.ids" "$tmp/seed-on-jobgate.readback.json" 120
    mock_stats seed-on-jobgate.end
    stop_pids "$example_pid" 10
    jg_stop
fi

# nginx: the floor for answering 202 on loopback at the same load
if want nginx; then
    nginx_start
    run_load nginx "http://127.0.0.1:$nginx_port/v1/jobs" "$rate" "$duration" --method POST \
        --header 'Content-Type: application/json' --body "$accept_body" \
        --connections 512 --max-connections 5000 --timeout-ms 30000
    nginx_stop
fi

# ---------------------------------------------------------------- 3. end to end at scale

if want e2e; then
    jg_scenario e2e "$e2e_rate" "$e2e_duration" "$e2e_upstream_ms" 0 "$e2e_conc" 180
    for sys in $peer_systems; do
        peer_scenario "e2e-$sys" "$sys" "$e2e_rate" "$e2e_duration" "$e2e_upstream_ms" 0 "$e2e_conc" 180
    done
fi

# ---------------------------------------------------------------- 4. wait mode at scale

if want wait-scale; then
    jg_scenario wait-scale "$ws_rate" "$ws_duration" "$ws_upstream_ms" "$prefer_wait" "$ws_conc" 60 0 \
        "$ws_gateways"
    for sys in $peer_systems; do
        peer_scenario "wait-scale-$sys" "$sys" "$ws_rate" "$ws_duration" "$ws_upstream_ms" "$prefer_wait" \
            "$ws_conc" 60
    done
fi

# ---------------------------------------------------------------- 5. cost: a queued job

if want queued; then
    # no worker: every job stays queued; the broker's RSS growth is their cost
    q_duration=$(( (queued_jobs + queued_rate - 1) / queued_rate ))
    q_rate=$(( queued_jobs / q_duration ))
    jg_start queued 0
    mark queued before
    run_load queued "http://127.0.0.1:$jg_port/v1/jobs" "$q_rate" "$q_duration" --method POST \
        --header 'Content-Type: application/json' --body "$accept_body" \
        --connections 512 --max-connections 5000 --timeout-ms 30000
    "$py" "$bench_py" jg-settle "$jg_port" "$jg_metrics_port" "$tmp/queued.settle.json" 30 \
        "$(( q_rate * q_duration * 99 / 100 ))"
    mark queued "done"
    "$py" "$bench_py" du "$tmp/queued/data" "$tmp/queued.store.json"
    printf '%s' "$accept_body" | wc -c >"$tmp/queued.payload"
    jg_stop
    for sys in $peer_systems; do
        peer_start "queued-$sys" "$sys" 0 || { peer_stop; continue; }
        mark "queued-$sys" before
        run_load "queued-$sys" "http://127.0.0.1:$peer_port/v1/jobs" "$q_rate" "$q_duration" --method POST \
            --header 'Content-Type: application/json' --body "$accept_body" \
            --connections 512 --max-connections 5000 --timeout-ms 30000 || true
        peer_settle "queued-$sys" "$sys" 30 "$(( q_rate * q_duration * 99 / 100 ))"
        mark "queued-$sys" "done"
        "$py" "$bench_py" du "$tmp/queued-$sys" "$tmp/queued-$sys.store.json"
        peer_stop
    done
fi

# ---------------------------------------------------------------- 6. the OpenAI door's cost

# The door (POST /v1/chat/completions, SPEC §3.1) against the mock called
# directly, side by side: one call at a time on one connection
# ("sequential", door_seq_rate/s), then door_rate/s, not streamed, with
# durability os and fsync; and the time to the first token of door_streams
# streamed calls sent at once. What the door adds is the difference.
door_body='{"model":"mock/m","messages":[{"role":"user","content":"hello there"}]}'
door_load() {  # door_load NAME PORT RATE CONNECTIONS
    if [ "$4" -gt 1 ]; then door_max=4000; else door_max=1; fi
    run_load "$1" "http://127.0.0.1:$2/v1/chat/completions" "$3" "$door_duration" --method POST \
        --header 'Content-Type: application/json' --body "$door_body" \
        --connections "$4" --max-connections "$door_max" --timeout-ms 30000
}
if want door; then
    settle_machine
    mock_reset
    door_load door-direct-seq "$mock_port" "$door_seq_rate" 1
    door_load door-direct-rate "$mock_port" "$door_rate" 64
    "$py" "$bench_py" door-ttft "$mock_port" "$door_streams" "$tmp/door-direct.ttft.json"
    for door_durability in os fsync; do
        jg_start "door-$door_durability" "$workers" "$concurrency" "$door_durability"
        door_load "door-$door_durability-seq" "$jg_port" "$door_seq_rate" 1
        door_load "door-$door_durability-rate" "$jg_port" "$door_rate" 64
        "$py" "$bench_py" door-ttft "$jg_port" "$door_streams" "$tmp/door-$door_durability.ttft.json"
        jg_stop
    done
fi

# ---------------------------------------------------------------- 7. CURVE's cost

# The same stack without and with security.curve, side by side in one run:
# the accept ceiling (wrk) and CPU per job end to end (open loop,
# curve_rate/s). What CURVE costs is the difference.
if want curve; then
    for variant in plain curve; do
        use=0; [ "$variant" = curve ] && use=1
        for c in $ceiling_conns; do
            mock_reset
            jg_start "curve-ceiling-$variant-c$c" "$ceiling_workers" "$concurrency" fsync "$use"
            mark "curve-ceiling-$variant-c$c" before
            run_wrk "curve-ceiling-$variant-c$c" "http://127.0.0.1:$jg_port/v1/jobs" "$c"
            mark "curve-ceiling-$variant-c$c" after-load
            jg_stop
        done
        jg_scenario "curve-e2e-$variant" "$curve_rate" "$curve_duration" "$curve_upstream_ms" 0 \
            "$concurrency" 60 "$use"
    done
fi

# ---------------------------------------------------------------- rate sweep

# sweep_step SYSTEM RATE — a fresh process (stack) per step, so no step
# inherits the previous one's backlog; returns 1 when the system collapsed.
# jobgate and the peers are marked before and after the load and once their
# jobs are done (drain bounded by BENCH_SWEEP_DRAIN): their CPU per job.
sweep_step() {
    sys=$1 r=$2 name="sweep-$1-$2"
    case $sys in
        jobgate)
            mock_reset
            jg_start "$name"
            mark "$name" before
            url="http://127.0.0.1:$jg_port/v1/jobs" code=202 ;;
        bullmq-*|gearman)
            mock_reset
            peer_start "$name" "$sys" || { peer_stop; return 1; }
            mark "$name" before
            url="http://127.0.0.1:$peer_port/v1/jobs" code=202 ;;
        nginx)
            nginx_start
            url="http://127.0.0.1:$nginx_port/v1/jobs" code=202 ;;
        seed|seed-shared)
            shared=0; [ "$sys" = seed-shared ] && shared=1
            seed_start "$name" "$shared" "$upstream_ms"
            mock_reset
            url="http://127.0.0.1:$seed_port/search/?query=x" code=200 ;;
    esac
    pool=256
    [ $(( r / 20 )) -gt "$pool" ] && pool=$(( r / 20 ))
    if [ "$sys" = seed ] || [ "$sys" = seed-shared ]; then
        run_load "$name" "$url" "$r" "$sweep_duration" --method POST \
            --connections "$pool" --max-connections 5000 --timeout-ms "$sweep_timeout_ms" || true
    else
        run_load "$name" "$url" "$r" "$sweep_duration" --method POST \
            --header 'Content-Type: application/json' --body "$accept_body" \
            --connections "$pool" --max-connections 5000 --timeout-ms "$sweep_timeout_ms" || true
    fi
    case $sys in
        jobgate)
            mark "$name" after-load
            "$py" "$bench_py" jg-settle "$jg_port" "$jg_metrics_port" "$tmp/$name.settle.json" "$sweep_drain"
            mark "$name" "done"
            jg_stop ;;
        bullmq-*|gearman)
            mark "$name" after-load
            peer_settle "$name" "$sys" "$sweep_drain"
            mark "$name" "done"
            peer_stop ;;
        nginx) nginx_stop ;;
        *) seed_stop 5 ;;
    esac
    "$py" "$bench_py" sweep-ok "$tmp/$name.load.json" "$code" "$sweep_p99_ms"
}
if want sweep; then
    for sys in $sweep_systems; do
        for r in $sweep_rates; do
            if ! sweep_step "$sys" "$r"; then
                say "sweep: $sys collapsed at $r/s; no higher rate for it"
                break
            fi
        done
    done
fi

# ---------------------------------------------------------------- report

stamp=$(date -u +%Y-%m-%dT%H%M%SZ)
gearmand_version=$(gearmand --version 2>/dev/null | grep -o 'gearmand [^ ]*' | head -1 | tr -d '"' || true)
redis_version=$(redis-server --version 2>/dev/null | grep -o 'v=[^ ]*' | head -1 | tr -d '"' || true)
redis_version="Redis ${redis_version#v=}"
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
    "fd_limit": "$fd_limit",
    "loadavg_at_start": "$loadavg_start",
    "loadavg_at_report": "$(cut -d' ' -f1-3 /proc/loadavg)",
    "run_seconds": $(( $(date +%s) - bench_started )),
    "rate": $rate,
    "duration_s": $duration,
    "upstream_ms": $upstream_ms,
    "prefer_wait_s": $prefer_wait,
    "seed_drain_s": $seed_drain,
    "workers": $workers,
    "concurrency": $concurrency,
    "ceiling_seconds": $ceiling_s,
    "ceiling_connections": [int(c) for c in "$ceiling_conns".split()],
    "ceiling_workers": $ceiling_workers,
    "e2e": {"rate": $e2e_rate, "duration_s": $e2e_duration, "upstream_ms": $e2e_upstream_ms,
            "concurrency": $e2e_conc},
    "wait_scale": {"rate": $ws_rate, "duration_s": $ws_duration, "upstream_ms": $ws_upstream_ms,
                   "concurrency": $ws_conc, "gateways": $ws_gateways},
    "queued": {"jobs": $queued_jobs, "rate": $queued_rate},
    "door": {"rate": $door_rate, "seq_rate": $door_seq_rate, "duration_s": $door_duration,
             "streams": $door_streams},
    "curve": {"rate": $curve_rate, "duration_s": $curve_duration, "upstream_ms": $curve_upstream_ms},
    "sweep": {"rates": [int(r) for r in "$sweep_rates".split()], "duration_s": $sweep_duration,
              "systems": "$sweep_systems".split(), "timeout_ms": $sweep_timeout_ms,
              "collapse_p99_ms": $sweep_p99_ms},
    "durability": "fsync",
    "scenarios": "$scenarios",
    "load_starts": {${starts%, }},
    "peers": "seed_fastapi.py under uvicorn (1 worker, /usr/bin/python3), nginx_ceiling.conf (1 worker process); issue 16: ${peer_systems:-none} (bench/peers/README.md; configurations in section 7)",
    "peer_systems": "$peer_systems".split(),
    "peer_config": {
        "bullmq": "Fastify $(node -p "require('$peers/bullmq/node_modules/fastify/package.json').version" 2>/dev/null || echo '?') ($bullmq_fronts process(es), logger off, JSON-schema check of the body) + BullMQ $(node -p "require('$peers/bullmq/node_modules/bullmq/package.json').version" 2>/dev/null || echo '?') (attempts 3, results kept), $workers worker processes x the same concurrency as jobgate's, Node $(node --version 2>/dev/null || echo '?') http keep-alive agent; $redis_version with AOF (RDB off), appendfsync always or everysec",
        "gearman": "gearman-front (C, libmicrohttpd: a pool of $gearman_front_threads threads on the accept path, a thread per connection in wait mode) + $gearmand_version (2 I/O threads, --worker-wakeup 1, in-memory queue: not durable) + $workers gearman-worker processes x the same concurrency as jobgate's in threads, each a libcurl easy handle kept alive",
    },
    "sweep_drain_s": $sweep_drain,
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
EOF
name=$stamp
if [ "$record" = 1 ]; then
    results=$here/results
    name=record
fi
mkdir -p "$results"
echo
"$py" "$bench_py" report "$tmp" "$results/$name"
if "$peer_py" "$here/plot.py" "$results/$name.json" "$results/$name.png" >&2; then
    say "results: $results/$name.md, .json and .png"
else
    say "no plot (matplotlib missing under $peer_py?); results: $results/$name.md and .json"
fi
