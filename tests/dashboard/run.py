"""run — the dashboard (GET /) in headless Chromium against a real stack.

Starts a broker, a gateway with an operator key and a tenant key, two
workers and the mock upstream (tests/integration/harness.py, loopback
only, stopped by pid), then runs dashboard_test.mjs (puppeteer-core driving
Debian's chromium), which prints one line per test and 'N passed, N failed'.

With --screenshot FILE it instead puts the stack under a bounded load
(load_for_screenshot: at most LOAD_SECONDS, at most LOAD_RATE jobs a
second, a mix that succeeds, fails and retries) and writes a screenshot of
the page, the docs/ picture of issue 13.
"""
import argparse
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

from harness import Stack, request  # noqa: E402

KEYS = [{"key": "dash-operator", "tenant": "ops", "operator": True},
        {"key": "dash-tenant", "tenant": "t"}]
LOAD_SECONDS = int(os.environ.get("DASHBOARD_LOAD_SECONDS", "150"))
LOAD_RATE = 40


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit("dashboard: chromium not found (tests/dashboard/setup.sh installs it)")


def load_for_screenshot(stack, stop):
    """Submits a mix of jobs as the operator's tenant, LOAD_RATE a second,
    until stop is set or LOAD_SECONDS passed: most succeed after 50-800 ms,
    some fail at once (404), some fail twice (500, as slow as the others)
    and then succeed, a few time out;
    at the 40th second an incident: for 20 s the upstream answers every call
    503 with Retry-After: 2 (the mock's /storm)."""
    auth = {"Authorization": "Bearer " + KEYS[0]["key"]}
    begun = time.monotonic()
    deadline = begun + LOAD_SECONDS
    n = 0
    stormed = False
    while not stop.is_set() and time.monotonic() < deadline:
        started = time.monotonic()
        if not stormed and started - begun >= 40:
            request(stack.mock_port, "GET", "/storm?status=503&retry_after=2&for_ms=20000")
            stormed = True
        for _ in range(LOAD_RATE):
            n += 1
            if n % 17 == 0:
                path = "/json?status=404"
            elif n % 11 == 0:
                path = "/flaky?fail=2&key=k%d&latency_ms=%d" % (n, 50 + (n * 37) % 750)
            elif n % 53 == 0:
                path = "/json?latency_ms=3000"
            else:
                path = "/json?latency_ms=%d" % (50 + (n * 37) % 750)
            spec = {"kind": "http", "provider": "mock", "request": {"path": path},
                    "timeout_ms": 2000, "max_attempts": 3}
            request(stack.gateway_port, "POST", "/v1/jobs", body=spec, headers=auth, timeout=10)
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--screenshot", help="write a screenshot under load to this file")
    args = parser.parse_args()
    config = {"gateway": {"api_keys": KEYS},
              "providers": {"mock": {"rate_limit": 200, "max_concurrency": 64,
                                     "retry_base_ms": 200, "retry_max_ms": 1000}}}
    with Stack(workers=0, config_extra={"gateway": config["gateway"]}, start=False) as stack:
        stack.config["providers"]["mock"].update(config["providers"]["mock"])
        stack.start_all(2)
        env = dict(os.environ, CHROMIUM=chromium(),
                   GATEWAY="http://127.0.0.1:%d" % stack.gateway_port,
                   OPERATOR_KEY=KEYS[0]["key"], TENANT_KEY=KEYS[1]["key"])
        node = ["node", os.path.join(HERE, "dashboard_test.mjs")]
        if not args.screenshot:
            return subprocess.run(node, env=env, cwd=HERE, timeout=300).returncode
        stop = threading.Event()
        loader = threading.Thread(target=load_for_screenshot, args=(stack, stop), daemon=True)
        loader.start()
        try:
            env["SCREENSHOT"] = os.path.abspath(args.screenshot)
            env["SCREENSHOT_AFTER_S"] = str(LOAD_SECONDS - 20)
            return subprocess.run(node, env=env, cwd=HERE, timeout=LOAD_SECONDS + 120).returncode
        finally:
            stop.set()
            loader.join(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
