#!/bin/bash
# tests/deploy/run.sh — the deployment as users run it (issue 6), for real:
#
#   1. deploy/k8s/ passes `kubectl create --dry-run=client` (offline, against
#      tests/deploy/fake-apiserver.py, which serves only API discovery);
#   2. `make docker-image` (base image made with debootstrap when missing);
#   3. the mock upstream in a container, then
#      `docker-compose -f deploy/docker-compose.yml up -d --scale worker=3`
#      with a config on free 127.0.0.1 ports; time to /readyz;
#   4. jobs submitted with curl against the mock (with latency) while the
#      workers are scaled to 5 and back to 2 (scale-down drains);
#   5. every job must succeed, on its first attempt (no call was cut short);
#   6. every container's HEALTHCHECK is healthy; teardown (down -v).
#
# Installs docker.io, docker-compose, debootstrap and kubernetes-client when
# missing; starts `dockerd --bridge=none --iptables=false` when no engine
# answers, and stops it at the end. Run as root (CI is). Knobs:
#   JOBGATE_DEPLOY_JOBS (300)  JOBGATE_DEPLOY_LATENCY_MS (3000)
#   JOBGATE_DEPLOY_SLOW_MS (12000, every 5th job)
#   JOBGATE_COMPOSE ("docker-compose"; "docker compose" for the plugin)
set -u
cd "$(dirname "$0")/../.."
repo=$(pwd)

jobs_total=${JOBGATE_DEPLOY_JOBS:-300}
latency_ms=${JOBGATE_DEPLOY_LATENCY_MS:-3000}
image=${IMAGE:-jobgate:latest}
read -r -a compose_cmd <<<"${JOBGATE_COMPOSE:-docker-compose}"

passed=0
failed=0
t_start=$(date +%s)
work=$(mktemp -d /tmp/jobgate-deploy.XXXXXX)
chmod 755 "$work"
project="jobgatedeploy$$"
dockerd_pid=""
mock_id=""
fake_pid=""
stack_up=0

say() { echo "deploy: $*"; }
ok() { passed=$((passed + 1)); say "ok   $*"; }
bad() { failed=$((failed + 1)); say "FAIL $*"; }
now_ms() { date +%s%3N; }

compose() {
    JOBGATE_CONFIG="$work/config.json" JOBGATE_IMAGE="$image" COMPOSE_PROJECT_NAME="$project" \
        "${compose_cmd[@]}" -f "$repo/deploy/docker-compose.yml" "$@"
}

cleanup() {
    trap - EXIT INT TERM
    if [ "$stack_up" = 1 ]; then
        compose down -v --remove-orphans >"$work/down.log" 2>&1 \
            || { say "compose down failed:"; cat "$work/down.log"; }
    fi
    [ -n "$mock_id" ] && docker rm -f "$mock_id" >/dev/null 2>&1
    [ -n "$fake_pid" ] && kill "$fake_pid" 2>/dev/null && wait "$fake_pid" 2>/dev/null
    if [ -n "$dockerd_pid" ]; then
        kill -TERM "$dockerd_pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
        say "stopped the dockerd this test started (pid $dockerd_pid)"
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

finish() {
    if [ "$failed" -gt 0 ] && [ "$stack_up" = 1 ]; then
        say "the stack's last log lines:"
        compose logs --no-color --tail=15 2>&1 | tail -80
    fi
    cleanup
    say "total time $(( $(date +%s) - t_start )) s"
    echo "deploy: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

if [ "$(id -u)" != 0 ]; then
    say "must run as root (it installs packages and may start dockerd)"
    exit 1
fi

# --- packages ---------------------------------------------------------
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "$@" >"$work/apt.log" 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 \
             && apt-get install -y -q --no-install-recommends "$@" >"$work/apt.log" 2>&1; }
}
missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
if [ -n "$missing" ]; then
    say "installing:$missing"
    # shellcheck disable=SC2086
    apt_install $missing || { cat "$work/apt.log"; bad "apt-get install$missing"; finish; }
fi

# --- 1. Kubernetes manifests -----------------------------------------------
kubectl_bin=$(command -v kubectl || true)
if [ -z "$kubectl_bin" ]; then
    if apt-cache show kubernetes-client >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 \
            && apt-cache show kubernetes-client >/dev/null 2>&1; }; then
        say "installing: kubernetes-client"
        apt_install kubernetes-client && kubectl_bin=$(command -v kubectl || true)
    fi
fi
if [ -z "$kubectl_bin" ]; then
    say "skip kubectl dry-run: no kubectl, and Debian's kubernetes-client could not be installed"
else
    python3 tests/deploy/fake-apiserver.py "$work/apiserver.port" &
    fake_pid=$!
    for _ in $(seq 1 50); do [ -s "$work/apiserver.port" ] && break; sleep 0.1; done
    # A kubeconfig of its own: never the user's cluster, never a default port.
    cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "http://127.0.0.1:$(cat "$work/apiserver.port")"}}]
contexts: [{name: offline, context: {cluster: offline, namespace: jobgate}}]
current-context: offline
users: []
EOF
    expected=$(cat deploy/k8s/*.yaml | grep -c '^kind:')
    if KUBECONFIG="$work/kubeconfig" "$kubectl_bin" create --dry-run=client --validate=false \
            -f deploy/k8s/ -o name >"$work/k8s.out" 2>&1 \
        && [ "$(grep -c / "$work/k8s.out")" -eq "$expected" ] \
        && grep -q '^statefulset.apps/' "$work/k8s.out" \
        && grep -q '^horizontalpodautoscaler.autoscaling/' "$work/k8s.out"; then
        ok "kubectl create --dry-run=client -f deploy/k8s/: $(paste -sd' ' "$work/k8s.out")"
    else
        cat "$work/k8s.out"; bad "kubectl create --dry-run=client -f deploy/k8s/"
    fi
    kill "$fake_pid" 2>/dev/null; wait "$fake_pid" 2>/dev/null; fake_pid=""
fi

# --- the engine -------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    say "no Docker engine answers: starting dockerd --bridge=none --iptables=false"
    dockerd --bridge=none --iptables=false >"$work/dockerd.log" 2>&1 &
    dockerd_pid=$!
    for _ in $(seq 1 150); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
    if ! docker info >/dev/null 2>&1; then
        tail -20 "$work/dockerd.log"; bad "dockerd did not start"; finish
    fi
fi

# --- 2. the image -----------------------------------------------------------
t0=$(date +%s)
if make -s docker-image IMAGE="$image" >"$work/build.log" 2>&1; then
    build_s=$(( $(date +%s) - t0 ))
    image_bytes=$(docker image inspect -f '{{.Size}}' "$image")
    image_mb=$(awk -v b="$image_bytes" 'BEGIN { printf "%.1f", b / 1e6 }')
    user=$(docker image inspect -f '{{.Config.User}}' "$image")
    ok "make docker-image in ${build_s} s: $image is $image_mb MB, runs as '$user'"
    case $user in ""|root|0|0:*|root:*) bad "the image runs as root" ;; esac
else
    tail -40 "$work/build.log"; bad "make docker-image"; finish
fi

# --- 3. the stack -------------------------------------------------------------
read -r gw_port fe_port be_port pub_port mock_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
cat >"$work/config.json" <<EOF
{
  "gateway":  { "listen": "127.0.0.1:$gw_port" },
  "broker":   { "frontend": "tcp://127.0.0.1:$fe_port",
                "backend":  "tcp://127.0.0.1:$be_port",
                "publisher":"tcp://127.0.0.1:$pub_port",
                "data_dir": "./data", "durability": "fsync" },
  "worker":   { "concurrency": 128 },
  "security": { "allow_private_networks": true },
  "providers": {
    "mock": { "base_url": "http://127.0.0.1:$mock_port",
              "rate_limit": 2000, "max_concurrency": 2000 }
  }
}
EOF
chmod 644 "$work/config.json"
gw="http://127.0.0.1:$gw_port"

mock_id=$(docker run -d --network host --name "${project}_mock" "$image" \
          jobgate-mock-upstream --listen "127.0.0.1:$mock_port")
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$mock_port/json" >/dev/null && break; sleep 0.1; done

workers_running() {
    docker ps -q --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=worker" --filter status=running | wc -l
}

stack_up=1
t0=$(now_ms)
if ! compose up -d --scale worker=3 >"$work/up.log" 2>&1; then
    cat "$work/up.log"; bad "compose up -d --scale worker=3"; finish
fi
t_up=$(now_ms)
ready=0
for _ in $(seq 1 300); do
    if curl -sf "$gw/readyz" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.1
done
t_ready=$(now_ms)
startup_ms=$((t_ready - t0))
if [ "$ready" = 1 ]; then
    ok "compose up --scale worker=3: /readyz 200 after $((t_ready - t0)) ms" \
       "($((t_up - t0)) ms in compose up, $((t_ready - t_up)) ms more to ready)"
else
    bad "the gateway never became ready"; finish
fi
[ "$(workers_running)" -eq 3 ] && ok "3 worker containers" || bad "$(workers_running) workers, not 3"

# --- 4. jobs while scaling ----------------------------------------------------
# Submitted by 10 curls at a time in rounds, spread over ~20 s, so calls are
# in flight on the workers that the scale-down removes.
# Every 5th call is slow (JOBGATE_DEPLOY_SLOW_MS, 12 s): longer than Docker's
# default 10 s stop timeout, so the scale-down only drains them if the
# compose file's stop_grace_period is honoured.
rounds=$(( (jobs_total + 9) / 10 ))
slow_ms=${JOBGATE_DEPLOY_SLOW_MS:-12000}
latency() { if [ $(( $1 % 5 )) -eq 0 ]; then echo "$slow_ms"; else echo "$latency_ms"; fi; }
submit() {
    local round i n=0
    for round in $(seq 1 "$rounds"); do
        for i in $(seq 1 10); do
            n=$((n + 1)); [ "$n" -gt "$jobs_total" ] && break
            curl -s -o "$work/sub.$n" -w '%{http_code}\n' --max-time 30 -X POST "$gw/v1/jobs" \
                -H 'Content-Type: application/json' \
                -d "{\"kind\":\"http\",\"provider\":\"mock\",\"request\":{\"path\":\"/json?latency_ms=$(latency "$n")\"},\"metadata\":{\"n\":$n}}" \
                >"$work/code.$n" &
        done
        wait
        sleep 0.6
    done
}
submit &
submitter=$!

sleep 5
t0=$(now_ms)
if compose up -d --scale worker=5 >"$work/scale5.log" 2>&1 && [ "$(workers_running)" -eq 5 ]; then
    ok "--scale worker=5 while submitting: 5 workers ($(( $(now_ms) - t0 )) ms)"
else
    cat "$work/scale5.log"; bad "--scale worker=5: $(workers_running) workers"
fi
sleep 8
t0=$(now_ms)
if compose up -d --scale worker=2 >"$work/scale2.log" 2>&1 && [ "$(workers_running)" -eq 2 ]; then
    ok "--scale worker=2 while calls run: 2 workers, the 3 others drained in $(( $(now_ms) - t0 )) ms"
else
    cat "$work/scale2.log"; bad "--scale worker=2: $(workers_running) workers"
fi
wait "$submitter"

# --- 5. every job succeeded, once -------------------------------------------
ids="$work/ids"
: >"$ids"
rejected=0
for n in $(seq 1 "$jobs_total"); do
    code=$(cat "$work/code.$n" 2>/dev/null)
    id=$(grep -o '"id":"[^"]*"' "$work/sub.$n" 2>/dev/null | head -1 | cut -d'"' -f4)
    if [ "$code" = 202 ] && [ -n "$id" ]; then echo "$id" >>"$ids"
    else rejected=$((rejected + 1)); fi
done
submitted=$(wc -l <"$ids")
[ "$rejected" -eq 0 ] && ok "$submitted jobs accepted (202)" || bad "$rejected submissions not accepted"

# Each id: long-poll until it is finished (or 90 s have passed).
poll() {
    local id=$1 body status deadline=$(( $(date +%s) + 90 ))
    while :; do
        body=$(curl -s --max-time 35 "$gw/v1/jobs/$id?wait=30")
        status=$(echo "$body" | grep -o '"status":"[a-z_]*"' | head -1 | cut -d'"' -f4)
        case $status in
            succeeded|failed|cancelled|dead|expired) break ;;
        esac
        [ "$(date +%s)" -ge "$deadline" ] && break
        sleep 0.5
    done
    echo "$id ${status:-none} $(echo "$body" | grep -o '"attempts":[0-9]*' | head -1 | cut -d: -f2)"
}
export -f poll
export gw
xargs -P 20 -I{} bash -c 'poll {}' <"$ids" >"$work/final"
succeeded=$(awk '$2 == "succeeded"' "$work/final" | wc -l)
retried=$(awk '$2 == "succeeded" && $3 != 1' "$work/final" | wc -l)
lost=$((jobs_total - succeeded))
awk '$2 != "succeeded" { print "deploy:   not succeeded: " $0 }' "$work/final" | head -10
[ "$lost" -eq 0 ] && ok "all $succeeded jobs succeeded" || bad "$lost of $jobs_total jobs did not succeed"
[ "$retried" -eq 0 ] && ok "no job needed a second attempt (the scale-down drained)" \
    || bad "$retried jobs took a second attempt (a worker stopped without draining?)"

# --- 6. health checks -------------------------------------------------------
sleep_until=$(( $(date +%s) + 30 ))
unhealthy=""
for _ in $(seq 1 30); do
    unhealthy=""
    for c in $(compose ps -q) "$mock_id"; do
        h=$(docker inspect -f '{{.Name}}={{if .State.Health}}{{.State.Health.Status}}{{end}}' "$c")
        [ "${h#*=}" = healthy ] || unhealthy="$unhealthy ${h#/}"
    done
    [ -z "$unhealthy" ] && break
    [ "$(date +%s)" -ge "$sleep_until" ] && break
    sleep 1
done
[ -z "$unhealthy" ] && ok "HEALTHCHECK healthy in every container (broker, gateway, workers, mock)" \
    || bad "not healthy:$unhealthy"

# --- report -----------------------------------------------------------------
say "image $image: $image_mb MB; start-up to /readyz: $startup_ms ms from 'compose up'" \
    "($((t_ready - t_up)) ms after it returned)"
say "submitted $submitted, succeeded $succeeded, lost $lost"
finish
