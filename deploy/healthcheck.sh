#!/bin/sh
# jobgate-healthcheck — the image's HEALTHCHECK. One image serves every
# role, so it looks at which jobgate binary runs in the container:
#   gateway  GET /readyz on gateway.listen (JOBGATE_HEALTH_URL overrides);
#            ready means the broker answers and has at least one worker
#   broker   a socket listens on broker.frontend's port
#   worker, mock upstream   the process is alive
# Exit 0 healthy, 1 unhealthy (Docker's convention).
config=/etc/jobgate/config.json
role=""
for comm in /proc/[0-9]*/comm; do
    read -r name <"$comm" 2>/dev/null || continue
    case $name in
        jobgate-gateway) role=gateway; break ;;
        jobgate-broker) role=broker; break ;;
        jobgate-worker|jobgate-mock-up*) role=alive ;;
    esac
done

# config_string KEY prints the first string value of "KEY" in the config
# (enough for gateway.listen and broker.frontend, which are unique keys).
config_string() {
    tr -d '\n' <"$config" 2>/dev/null \
        | grep -o "\"$1\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" | head -1 | sed 's/.*"\([^"]*\)"$/\1/'
}

case $role in
    gateway)
        url=${JOBGATE_HEALTH_URL:-}
        if [ -z "$url" ]; then
            listen=${JOBGATE_GATEWAY_LISTEN:-$(config_string listen)}
            listen=${listen:-127.0.0.1:8080}
            host=${listen%:*}; port=${listen##*:}
            case $host in ""|"*"|0.0.0.0) host=127.0.0.1 ;; "[::]") host="[::1]" ;; esac
            url="http://$host:$port/readyz"
        fi
        exec curl -fsS -o /dev/null --max-time 2 "$url"
        ;;
    broker)
        frontend=${JOBGATE_BROKER_FRONTEND:-$(config_string frontend)}
        port=${frontend##*:}
        case $port in ''|*[!0-9]*) exit 0 ;; esac   # ipc:// or unparsable: alive is enough
        hex=$(printf '%04X' "$port")
        # state 0A = LISTEN, in /proc/net/tcp or tcp6 of this network namespace
        cat /proc/net/tcp /proc/net/tcp6 2>/dev/null \
            | awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { found = 1 } END { exit !found }'
        ;;
    alive) exit 0 ;;
    *) exit 1 ;;
esac
