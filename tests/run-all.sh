#!/bin/sh
# run-all.sh BUILD [ASAN_BUILD [FUZZ_BUILD]] — runs every suite and closes
# with one 'N passed, N failed' line counting the suites.
set -u
cd "$(dirname "$0")/.."
build=$1
asan=${2:-}
fuzz=${3:-}
passed=0
failed=0
failures=""

suite() {
    name=$1
    shift
    echo "==== $name"
    if "$@"; then
        passed=$((passed + 1))
        echo "==== $name: passed"
    else
        failed=$((failed + 1))
        failures="$failures $name"
        echo "==== $name: FAILED"
    fi
}

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=23"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=24"
# No leak is suppressed: every report is a finding.

suite "self-tests" "$build/tests/jobgate-selftest" -q
suite "integration" env JOBGATE_BUILD="$build" python3 tests/integration/run.py
suite "faults (3 rounds)" env JOBGATE_BUILD="$build" python3 tests/faults/faults.py --rounds 3
suite "overload (15 s)" env JOBGATE_BUILD="$build" python3 tests/faults/overload.py --fast
suite "kubernetes manifests (offline schemas)" tests/k8s/run.sh "$build"
suite "scale-out: provider limit split across shards (simulation)" python3 tests/scaleout/limit_split.py --check
suite "python client" clients/python/tests/run.sh "$build"
suite "systemd units (3 s)" tests/systemd/run.sh "$build"
suite "contract (redocly lint, answers against openapi.json)" tests/contract/run.sh "$build"
# Debian's Prometheus scraping a stack under load (installs it when missing).
suite "prometheus (real server)" env JOBGATE_BUILD="$build" \
    sh -c 'tests/prometheus/setup.sh && python3 tests/prometheus/run.py'
suite "multihost (2 min)" tests/multihost/run.sh "$build"
suite "dashboard (headless Chromium)" tests/dashboard/run.sh "$build"
if [ -n "$asan" ]; then
    suite "self-tests (ASan+UBSan)" "$asan/tests/jobgate-selftest" -q
    suite "integration (ASan+UBSan)" env JOBGATE_BUILD="$asan" JOBGATE_SANITIZED=1 \
        python3 tests/integration/run.py
fi
if [ -n "$fuzz" ]; then
    for target in jobspec proto headers http1 stream response result broker openai; do
        corpus=$(mktemp -d)
        cp tests/fuzz/corpus/$target/* "$corpus"/ 2>/dev/null
        suite "fuzz $target (20 s)" "$fuzz/tests/fuzz/fuzz_$target" -max_total_time=20 \
            -print_final_stats=1 "$corpus"
        rm -rf "$corpus"
    done
fi

echo
[ -n "$failures" ] && echo "failed suites:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
