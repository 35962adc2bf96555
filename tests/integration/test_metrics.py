"""The broker's Prometheus metrics (broker.metrics_listen, SPEC §6, §7;
issue 13 "Metrics"): every label set from the start, each job counted once
by the process that owns it, workers told apart by a label without a port
of their own, queues, refusals, breakers, and the listener's own manners."""
import os
import socket
import subprocess
import time

from harness import Stack, request, wait_until

KEYS = {"api_keys": [{"key": "secret-a", "tenant": "a"}, {"key": "secret-b", "tenant": "b"}]}
A = {"Authorization": "Bearer secret-a"}


def samples(text):
    """{'name{labels}': value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def labelled(values, family, **labels):
    """The samples of family whose labels include labels: {series: value}."""
    want = ['%s="%s"' % item for item in labels.items()]
    return {name: value for name, value in values.items()
            if name.split("{")[0] == family and all(w in name for w in want)}


def _spec(path, **extra):
    spec = {"kind": "http", "provider": "mock", "request": {"path": path}}
    spec.update(extra)
    return spec


def test_every_label_set_exists_from_the_start():
    with Stack(workers=0, config_extra={"gateway": KEYS}) as stack:
        values = samples(stack.broker_metrics())
        # increase() sees the first failure only when the series was 0 before.
        for status in ("succeeded", "failed", "canceled"):
            for provider in ("mock", "(direct)"):
                assert values['jobgate_jobs_finished_total{provider="%s",status="%s"}'
                              % (provider, status)] == 0
        assert values['jobgate_jobs_failed_total{provider="mock",error_type="upstream_timeout"}'] == 0
        assert values['jobgate_upstream_duration_seconds_count{provider="mock"}'] == 0
        assert values['jobgate_queue_wait_seconds_bucket{provider="mock",le="+Inf"}'] == 0
        assert values['jobgate_job_duration_seconds_count{kind="llm"}'] == 0
        assert values['jobgate_admission_refused_total{tenant="b",reason="submit_rate"}'] == 0
        assert values['jobgate_breaker_transitions_total{provider="mock",to="open"}'] == 0
        assert values['jobgate_breaker_state{provider="mock",state="closed"}'] == 1
        assert values['jobgate_queued_jobs{provider="mock",priority="9"}'] == 0
        assert values['jobgate_result_cache_hits_total{provider="mock"}'] == 0
        assert values["jobgate_workers"] == 0
        assert values["jobgate_store_size_bytes"] > 0
        assert values["process_resident_memory_bytes"] > 0
        assert labelled(values, "jobgate_build_info", process="broker")


def test_each_job_counted_once_by_the_broker():
    with Stack(workers=1) as stack:
        ids = [stack.submit(_spec("/json")).json()["id"] for _ in range(5)]
        # A 500 then a success (a retry), a 429 with Retry-After then a
        # success (a retry and a pause), a final 404 (failed at once).
        ids.append(stack.submit(_spec("/flaky?key=m500&fail=1&status=500")).json()["id"])
        ids.append(stack.submit(_spec("/flaky?key=m429&fail=1&status=429&retry_after=1")).json()["id"])
        ids.append(stack.submit(_spec("/flaky?key=m404&fail=9&status=404")).json()["id"])
        statuses = sorted(stack.wait_terminal(job_id)["status"] for job_id in ids)
        assert statuses == ["failed"] + ["succeeded"] * 7, statuses
        values = samples(stack.broker_metrics())
        assert values['jobgate_jobs_finished_total{provider="mock",status="succeeded"}'] == 7
        assert values['jobgate_jobs_finished_total{provider="mock",status="failed"}'] == 1
        assert values['jobgate_jobs_failed_total{provider="mock",error_type="upstream_status"}'] == 1
        assert values['jobgate_attempts_total{provider="mock"}'] == 10
        assert values['jobgate_retries_total{provider="mock"}'] == 2
        assert values['jobgate_upstream_duration_seconds_count{provider="mock"}'] == 10
        assert values['jobgate_queue_wait_seconds_count{provider="mock"}'] == 10
        assert values['jobgate_job_duration_seconds_count{kind="http"}'] == 8
        assert values['jobgate_upstream_overloaded_total{provider="mock"}'] == 1
        assert values['jobgate_provider_pauses_total{provider="mock",scope="provider"}'] == 1
        assert values["jobgate_store_commit_duration_seconds_count"] > 0
        # The gateway serves none of it: a sum over gateways counts once.
        gateway = samples(stack.get_path("/metrics").body.decode())
        assert not labelled(gateway, "jobgate_jobs_finished_total")
        assert gateway["jobgate_jobs_accepted_total"] == 8


def test_workers_are_told_apart_by_a_label():
    with Stack(workers=2) as stack:
        def two_workers():
            values = samples(stack.broker_metrics())
            rss = labelled(values, "jobgate_worker_resident_memory_bytes")
            return values if len(rss) == 2 and values["jobgate_workers"] == 2 else None
        values = wait_until(two_workers, 15, "both workers' figures")
        for family in ("jobgate_worker_cpu_seconds_total", "jobgate_worker_open_fds",
                       "jobgate_worker_start_time_seconds", "jobgate_worker_in_flight"):
            assert len(labelled(values, family)) == 2, family
        for name, value in labelled(values, "jobgate_worker_start_time_seconds").items():
            assert abs(value - time.time()) < 600, (name, value)
        # A call in flight shows on the worker that runs it, and only there.
        job_id = stack.submit(_spec("/json?latency_ms=4000")).json()["id"]
        def one_in_flight():
            values = samples(stack.broker_metrics())
            flying = labelled(values, "jobgate_worker_in_flight")
            return flying if sorted(flying.values()) == [0, 1] else None
        wait_until(one_in_flight, 10, "one call in flight on one worker")
        stack.wait_terminal(job_id)
        # A worker gone takes its series with it.
        stack.stop(stack.worker_names[0])
        def one_left():
            values = samples(stack.broker_metrics())
            rss = labelled(values, "jobgate_worker_resident_memory_bytes")
            return len(rss) == 1 and values["jobgate_workers"] == 1
        wait_until(one_left, 15, "one worker's series left")


def test_queues_and_refusals():
    quotas = {"quotas": {"a": {"submit_rate": 1}}}
    with Stack(workers=0, config_extra=dict(quotas, gateway=KEYS)) as stack:
        accepted, refused = 0, 0
        for _ in range(6):
            resp = request(stack.gateway_port, "POST", "/v1/jobs", body=_spec("/json", priority=7),
                           headers=A)
            assert resp.status in (202, 429), (resp.status, resp.body)
            accepted += resp.status == 202
            refused += resp.status == 429
        assert accepted >= 1 and refused >= 1, (accepted, refused)
        time.sleep(1.2)
        values = samples(stack.broker_metrics())
        assert values['jobgate_queued_jobs{provider="mock",priority="7"}'] == accepted
        assert values['jobgate_queued_jobs{provider="mock",priority="5"}'] == 0
        assert values['jobgate_oldest_queued_job_age_seconds{provider="mock"}'] >= 1
        assert values['jobgate_admission_refused_total{tenant="a",reason="submit_rate"}'] == refused
        stack.start_worker()
        def drained():
            values = samples(stack.broker_metrics())
            return (values['jobgate_queued_jobs{provider="mock",priority="7"}'] == 0
                    and values['jobgate_oldest_queued_job_age_seconds{provider="mock"}'] == 0
                    and values['jobgate_jobs_finished_total{provider="mock",status="succeeded"}']
                    == accepted)
        wait_until(drained, 20, "the queue drained")


def test_breaker_transitions_and_state():
    stack = Stack(workers=0, start=False)
    with stack:
        stack.config["providers"]["mock"].update(circuit_failures=2, circuit_open_ms=60000)
        stack.start_all(1)
        for key in ("b1", "b2"):
            stack.wait_terminal(stack.submit(
                _spec("/flaky?key=%s&fail=9&status=500" % key, max_attempts=1)).json()["id"])
        values = samples(stack.broker_metrics())
        assert values['jobgate_breaker_transitions_total{provider="mock",to="open"}'] == 1
        assert values['jobgate_breaker_state{provider="mock",state="open"}'] == 1
        assert values['jobgate_breaker_state{provider="mock",state="closed"}'] == 0
        assert values['jobgate_jobs_failed_total{provider="mock",error_type="upstream_status"}'] == 2


def test_the_listener_answers_only_metrics():
    with Stack(workers=0) as stack:
        assert request(stack.metrics_port, "GET", "/").status == 404
        assert request(stack.metrics_port, "GET", "/metrics/x").status == 404
        resp = request(stack.metrics_port, "POST", "/metrics", body=b"x")
        assert resp.status == 405 and resp.header("Allow") == "GET, HEAD"
        resp = request(stack.metrics_port, "GET", "/metrics")
        assert resp.header("Content-Type") == "text/plain; version=0.0.4"
        # Garbage on the socket gets no metrics, and the listener goes on.
        with socket.create_connection(("127.0.0.1", stack.metrics_port), timeout=5) as sock:
            sock.sendall(b"\x00\x01garbage\r\n\r\n")
            sock.settimeout(2)
            try:
                answer = sock.recv(4096)
            except OSError:
                answer = b""
            assert b"jobgate_" not in answer
        assert request(stack.metrics_port, "GET", "/metrics").status == 200


def test_a_bad_metrics_address_is_refused_at_start():
    stack = Stack(workers=0, start=False)
    with stack:
        stack.config["broker"]["metrics_listen"] = "metrics-host:9100"
        stack.write_config()
        build = os.environ.get("JOBGATE_BUILD", "build")
        proc = subprocess.run([os.path.join(build, "broker", "jobgate-broker"), "--config",
                               stack.config_path], capture_output=True, timeout=30)
        assert proc.returncode != 0
        lines = proc.stderr.decode().strip().splitlines()
        assert any("broker.metrics_listen" in line for line in lines), lines
        # A port taken by another listener: the broker says so and exits.
        stack.config["broker"]["metrics_listen"] = "127.0.0.1:%d" % stack.mock_port
        stack.write_config()
        proc = subprocess.run([os.path.join(build, "broker", "jobgate-broker"), "--config",
                               stack.config_path], capture_output=True, timeout=30)
        assert proc.returncode != 0
        assert b"cannot serve metrics" in proc.stderr, proc.stderr
