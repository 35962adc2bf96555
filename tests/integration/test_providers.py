"""Polite upstream calls: global rate limits, concurrency caps, 429 pauses,
Retry-After, circuit breakers, /v1/providers."""
import datetime
import os
import subprocess

from harness import BUILD, Stack, free_port, request, wait_until


def _parse(stamp):
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def _with_provider(stack, name, **settings):
    """Rewrites the config with a provider and restarts the broker."""
    provider = {"base_url": "http://127.0.0.1:%d" % stack.mock_port}
    provider.update(settings)
    stack.config["providers"][name] = provider


def _started(config_extra=None, workers=3, **provider):
    stack_obj = Stack(workers=0, config_extra=config_extra, start=False)
    _with_provider(stack_obj, "api", **provider)
    stack_obj.start_all(workers)
    return stack_obj


def _submit_all(stack, count, path, **extra):
    spec = {"kind": "http", "provider": "api", "request": {"path": path}}
    spec.update(extra)
    return [stack.submit(spec).json()["id"] for _ in range(count)]


def test_global_rate_limit_across_workers():
    with _started(workers=3, rate_limit=20) as stack:
        stack.mock_reset()
        ids = _submit_all(stack, 160, "/json")
        jobs = [stack.wait_terminal(i, timeout=60) for i in ids]
        assert all(j["status"] == "succeeded" for j in jobs)
        arrivals = stack.mock_stats()["arrivals_by_second"]
        print("arrivals per second at the upstream:", arrivals)
        assert max(arrivals.values()) <= 22, arrivals
        # Any sliding one-second window of dispatches, not just aligned ones.
        starts = sorted(_parse(j["started_at"]) for j in jobs)
        for i, t in enumerate(starts):
            window = sum(1 for u in starts[i:i + 40] if u < t + 1.0)
            assert window <= 22, (i, window)
        assert starts[-1] - starts[0] >= (160 - 22) / 20.0 - 0.5


def test_max_concurrency_across_workers():
    with _started(workers=3, max_concurrency=5) as stack:
        stack.mock_reset()
        ids = _submit_all(stack, 40, "/json?latency_ms=300")
        for job_id in ids:
            assert stack.wait_terminal(job_id)["status"] == "succeeded"
        assert stack.mock_stats()["max_in_flight"] == 5


def test_429_storm_pauses_everyone_without_retry_bursts():
    with _started(workers=3) as stack:
        stack.mock_reset()
        request(stack.mock_port, "GET", "/storm?status=429&retry_after=2&for_ms=5000")
        ids = _submit_all(stack, 200, "/json?latency_ms=300", max_attempts=10)
        jobs = [stack.wait_terminal(i, timeout=90) for i in ids]
        arrivals = stack.mock_stats()["arrivals_by_second"]
        print("arrivals per second at the upstream:", arrivals)
        assert all(j["status"] == "succeeded" for j in jobs), [j for j in jobs if j["status"] != "succeeded"][:2]
        # The first second carries the first attempts; while the storm lasts
        # the upstream sees single probes, not the 200 retries.
        storm_seconds = [int(s) for s in arrivals if 1 <= int(s) <= 4]
        assert all(arrivals[str(s)] <= 3 for s in storm_seconds), arrivals
        # After the storm, a slow start: one probe alone, then two at once;
        # 200 waiting jobs released at once would be 3 in flight by the third.
        after = stack.mock_stats()["in_flight_after_storm"]
        print("calls in flight at the first arrivals after the storm:", after)
        assert len(after) >= 3 and after[0] == 1 and max(after[:3]) <= 2, after
        state = stack.get_path("/v1/providers").json()["providers"]
        api = [p for p in state if p["name"] == "api"][0]
        assert any(e.get("upstream_status") == 429 for e in api["recent_errors"]), api


def test_retry_after_is_honoured_between_attempts_and_400_is_final():
    with _started(workers=1) as stack:
        spec = {"kind": "http", "provider": "api", "max_attempts": 3,
                "request": {"path": "/flaky?key=ra&fail=1&status=503&retry_after=1"}}
        job = stack.wait_terminal(stack.submit(spec).json()["id"])
        assert job["status"] == "succeeded" and job["attempts"] == 2, job
        assert _parse(job["started_at"]) - _parse(job["created_at"]) >= 0.95, job
        spec["request"]["path"] = "/flaky?key=bad&fail=5&status=400"
        job = stack.wait_terminal(stack.submit(spec).json()["id"])
        assert job["status"] == "failed" and job["attempts"] == 1, job


def test_circuit_breaker_opens_and_closes():
    dead_port = free_port()
    stack = Stack(workers=0, start=False)
    with stack:
        stack.config["providers"]["dead"] = {"base_url": "http://127.0.0.1:%d" % dead_port,
                                             "circuit_failures": 3, "circuit_open_ms": 1000}
        stack.start_all(1)
        spec = {"kind": "http", "provider": "dead", "max_attempts": 10, "timeout_ms": 2000,
                "request": {"path": "/json"}}
        ids = [stack.submit(spec).json()["id"] for _ in range(5)]

        def circuit():
            providers = stack.get_path("/v1/providers").json()["providers"]
            return [p for p in providers if p["name"] == "dead"][0]
        wait_until(lambda: circuit()["circuit"] in ("open", "half_open"), 20, "the breaker to open")
        assert circuit()["recent_errors"][0]["type"] == "connect_failed"
        # The upstream comes back on that port: a probe succeeds, it closes.
        port_file = os.path.join(stack.dir, "revived.port")
        revived = subprocess.Popen([os.path.join(BUILD, "tests/mock/jobgate-mock-upstream"),
                                    "--listen", "127.0.0.1:%d" % dead_port, "--port-file", port_file],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for job_id in ids:
                assert stack.wait_terminal(job_id, timeout=60)["status"] == "succeeded"
            wait_until(lambda: circuit()["circuit"] == "closed", 10, "the breaker to close")
            state = circuit()
            assert state["latency_ms"]["p50"] is not None
            assert state["totals"]["answered"] >= 5
        finally:
            revived.terminate()
            revived.wait()


def test_open_breaker_fails_fast_when_configured():
    dead_port = free_port()
    stack = Stack(workers=0, start=False)
    with stack:
        stack.config["providers"]["dead"] = {"base_url": "http://127.0.0.1:%d" % dead_port,
                                             "circuit_failures": 2, "circuit_open_ms": 60000,
                                             "circuit_fail_fast": True,
                                             "retry_base_ms": 50, "retry_max_ms": 100}
        stack.start_all(1)
        spec = {"kind": "http", "provider": "dead", "max_attempts": 10, "request": {"path": "/json"}}
        ids = [stack.submit(spec).json()["id"] for _ in range(6)]
        jobs = [stack.wait_terminal(i, timeout=30) for i in ids]
        assert all(j["status"] == "failed" for j in jobs), jobs
        types = {j["error"]["type"] for j in jobs}
        assert "circuit_open" in types, types
        # Far fewer calls than 6 jobs × 10 attempts were tried.
        assert sum(j["attempts"] for j in jobs) < 20, [j["attempts"] for j in jobs]
