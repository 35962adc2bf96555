#!/bin/sh
# tests/k8s/run.sh [BUILD] — deploy/k8s/ checked offline against the
# Kubernetes schemas and against itself (validate.mjs says what is checked):
#
#   1. setup.sh (Node and the pinned schema packages; the only network use);
#   2. deploy/k8s/make-secrets.py makes the Secrets the pods mount, with
#      CURVE key pairs from BUILD's `jobgate-broker --gen-keypair`;
#   3. the manifests and those Secrets pass validate.mjs, with the workers'
#      external metric checked against the prometheus-adapter values;
#   4. mutations.mjs: each of 29 mistakes made in a copy is refused;
#   5. the ConfigMap's config.json,
#      with the Secrets' files written to a temporary directory in place of
#      /run/secrets/jobgate, is accepted by each of them;
#   6. pods.py runs broker, gateway and worker on
#      loopback as their pods would (config, Secret files, environment), and
#      checks readiness, a job with a Secret's API key, 401 without, and the
#      broker's /metrics serving jobgate_queued_jobs.
set -u
cd "$(dirname "$0")/../.."
build=${1:-build}
work=$(mktemp -d /tmp/jobgate-k8s.XXXXXX)
trap 'rm -rf "$work"' EXIT
failed=0

tests/k8s/setup.sh || { echo "k8s: setup failed"; exit 1; }

keygen="$build/broker/jobgate-broker --gen-keypair"
if ! python3 deploy/k8s/make-secrets.py --keygen "$keygen" --tenant acme --operator ops \
        >"$work/secrets.yaml" 2>"$work/api-keys.txt"; then
    cat "$work/api-keys.txt"; echo "k8s: FAIL make-secrets.py"; exit 1
fi
echo "k8s: ok   make-secrets.py: $(grep -c '^kind: Secret' "$work/secrets.yaml") Secrets, $(grep -c 'API key of' "$work/api-keys.txt") API keys"

adapter=deploy/k8s/autoscaling/prometheus-adapter-values.yaml
if node tests/k8s/validate.mjs --adapter "$adapter" deploy/k8s/ "$work/secrets.yaml" >"$work/validate.out"; then
    echo "k8s: ok   $(tail -1 "$work/validate.out")"
else
    cat "$work/validate.out"; echo "k8s: FAIL validate.mjs deploy/k8s/"; failed=1
fi
node tests/k8s/mutations.mjs deploy/k8s "$work/secrets.yaml" "$adapter" >"$work/mutations.out" || failed=1
sed 's/^/k8s: /' "$work/mutations.out"

# 5. The config as each binary reads it (the ConfigMap turns CURVE on with
# security.curve.*_file).
for role in broker gateway worker; do
    node tests/k8s/pod-files.mjs "$work" deploy/k8s "$work/secrets.yaml" "$role" || failed=1
    if "$build/$role/jobgate-$role" --config "$work/config.json" --check-config >"$work/check.out" 2>&1; then
        echo "k8s: ok   jobgate-$role --check-config on the ConfigMap's config: $(head -1 "$work/check.out")"
    else
        cat "$work/check.out"; echo "k8s: FAIL jobgate-$role --check-config on the ConfigMap's config"; failed=1
    fi
done
# 6. The pods' processes, run on loopback with the pods' files (pods.py).
api_key=$(sed -n 's/.*API key of tenant acme: //p' "$work/api-keys.txt")
python3 tests/k8s/pods.py "$build" "$work/secrets.yaml" "$api_key" || failed=1
[ "$failed" -eq 0 ]
