"""The result cache and shared calls (SPEC §3.2): identical requests of one
tenant in flight share one upstream call, a recent success answers from the
store, never across tenants, never a failure; counted at the mock."""
import concurrent.futures
import time

from harness import Stack, request, wait_until

KEYS = {"api_keys": [{"key": "secret-a", "tenant": "a"}, {"key": "secret-b", "tenant": "b"}]}
A = {"Authorization": "Bearer secret-a"}
B = {"Authorization": "Bearer secret-b"}


def _stack(cache_ttl_ms=60000, workers=1):
    extra = {"gateway": KEYS}
    stack = Stack(workers=0, config_extra=extra, start=False)
    stack.config["providers"]["mock"]["cache_ttl_ms"] = cache_ttl_ms
    stack.config["providers"]["mock"]["circuit_failures"] = 0
    stack.start_all(workers)
    return stack


def _spec(path, **extra):
    spec = {"kind": "http", "provider": "mock", "request": {"path": path}}
    spec.update(extra)
    return spec


def _calls(stack, path):
    return stack.mock_stats()["by_path"].get(path, 0)


def _job(stack, job_id, headers, wait=None):
    resp = stack.get_path("/v1/jobs/%s%s" % (job_id, "?wait=%d" % wait if wait else ""),
                          headers=headers)
    assert resp.status == 200, (resp.status, resp.body)
    return resp.json()


def _finished(stack, job_id, headers, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        job = _job(stack, job_id, headers, wait=10)
        if job["status"] in ("succeeded", "failed", "canceled"):
            return job
        assert time.monotonic() < deadline, job


def _metric(stack, name, provider="mock"):
    text = stack.broker_metrics()
    for line in text.splitlines():
        if line.startswith('%s{provider="%s"} ' % (name, provider)):
            return int(line.split()[-1])
    return None


def test_identical_concurrent_requests_share_one_upstream_call():
    with _stack() as stack:
        # The upstream takes 3 s: all 200 arrive while the first call runs.
        spec = _spec("/json?latency_ms=3000&case=share")
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: stack.submit(spec, headers=A), range(200)))
        ids = [resp.json()["id"] for resp in answers]
        jobs = [_finished(stack, job_id, A) for job_id in ids]
        assert all(job["status"] == "succeeded" for job in jobs), [j for j in jobs if j["status"] != "succeeded"][:2]
        assert _calls(stack, "/json") == 1, stack.mock_stats()["by_path"]
        outcomes = sorted(job["cache"] for job in jobs)
        assert outcomes == ["miss"] + ["shared"] * 199, outcomes[:3]
        bodies = {str(job["result"]["body"]) for job in jobs}
        assert len(bodies) == 1
        # The same request later: answered from the store, at once.
        resp = stack.submit(spec, headers=A)
        assert resp.json()["status"] == "succeeded"
        hit = _job(stack, resp.json()["id"], A)
        assert hit["status"] == "succeeded" and hit["cache"] == "hit", hit
        assert hit["result"] == jobs[0]["result"]
        assert _calls(stack, "/json") == 1
        # Waiting for it (Prefer: wait) answers the finished job.
        resp = request(stack.gateway_port, "POST", "/v1/jobs", body=spec,
                       headers=dict(A, Prefer="wait=10"))
        assert resp.status == 200 and resp.json()["cache"] == "hit", (resp.status, resp.body)
        # Another tenant's identical request makes its own call.
        other = _finished(stack, stack.submit(spec, headers=B).json()["id"], B)
        assert other["status"] == "succeeded" and other["cache"] == "miss", other
        assert _calls(stack, "/json") == 2
        # A job without a cache says nothing of it; one that turns it off
        # makes its own call.
        off = _finished(stack, stack.submit(_spec("/json?latency_ms=3000&case=share",
                                                  cache={"ttl_ms": 0}), headers=A).json()["id"], A)
        assert "cache" not in off and off["status"] == "succeeded"
        assert _calls(stack, "/json") == 3
        # Hits and shared calls in the broker's metrics.
        wait_until(lambda: _metric(stack, "jobgate_result_cache_hits_total") == 2, 10, "hits metric")
        assert _metric(stack, "jobgate_result_cache_shared_total") == 199
        assert _metric(stack, "jobgate_result_cache_misses_total") == 2


def test_a_failure_is_never_cached_and_its_followers_run_on_their_own():
    with _stack() as stack:
        # A final failure (404) answers nothing later.
        spec = _spec("/json?status=404&case=fail", max_attempts=1)
        failed = _finished(stack, stack.submit(spec, headers=A).json()["id"], A)
        assert failed["status"] == "failed" and failed["cache"] == "miss", failed
        again = _finished(stack, stack.submit(spec, headers=A).json()["id"], A)
        assert again["status"] == "failed" and again["cache"] == "miss", again
        assert _calls(stack, "/json") == 2
        # The first call fails (500, one attempt); the three that followed it
        # are not lost: each makes its own call, which succeeds.
        spec = _spec("/flaky?key=f1&fail=1&status=500&latency_ms=1500", max_attempts=1)
        leader = stack.submit(spec, headers=A).json()["id"]
        followers = [stack.submit(spec, headers=A).json()["id"] for _ in range(3)]
        assert all(_job(stack, f, A)["cache"] == "shared" for f in followers)
        assert _finished(stack, leader, A)["status"] == "failed"
        for follower in followers:
            job = _finished(stack, follower, A)
            assert job["status"] == "succeeded" and job["cache"] == "miss", job
        assert _calls(stack, "/flaky") == 4
        # Their success answers the next one.
        hit = _job(stack, stack.submit(spec, headers=A).json()["id"], A)
        assert hit["status"] == "succeeded" and hit["cache"] == "hit", hit
        assert _calls(stack, "/flaky") == 4


def test_cancel_of_the_leader_does_not_lose_its_followers():
    with _stack() as stack:
        spec = _spec("/json?latency_ms=2000&case=cancel")
        leader = stack.submit(spec, headers=A).json()["id"]
        wait_until(lambda: _job(stack, leader, A)["status"] == "running", 10, "the leader running")
        followers = [stack.submit(spec, headers=A).json()["id"] for _ in range(2)]
        assert [_job(stack, f, A)["cache"] for f in followers] == ["shared", "shared"]
        resp = request(stack.gateway_port, "DELETE", "/v1/jobs/" + leader, headers=A)
        assert resp.status == 200 and resp.json()["status"] == "canceled", (resp.status, resp.body)
        for follower in followers:
            job = _finished(stack, follower, A)
            assert job["status"] == "succeeded" and job["cache"] == "miss", job
        # A canceled follower leaves the others' call alone.
        leader = stack.submit(_spec("/json?latency_ms=1500&case=cancel2"), headers=A).json()["id"]
        first, second = [stack.submit(_spec("/json?latency_ms=1500&case=cancel2"), headers=A)
                         .json()["id"] for _ in range(2)]
        resp = request(stack.gateway_port, "DELETE", "/v1/jobs/" + first, headers=A)
        assert resp.status == 200 and resp.json()["status"] == "canceled"
        assert _finished(stack, leader, A)["status"] == "succeeded"
        job = _finished(stack, second, A)
        assert job["status"] == "succeeded" and job["cache"] == "shared", job


def test_hits_survive_a_broker_restart_and_entries_expire():
    with _stack() as stack:
        spec = _spec("/json?case=restart")
        first = _finished(stack, stack.submit(spec, headers=A).json()["id"], A)
        assert first["cache"] == "miss"
        # Followers waiting when the broker dies are recovered with their call.
        slow = _spec("/json?latency_ms=2000&case=recover")
        leader = stack.submit(slow, headers=A).json()["id"]
        follower = stack.submit(slow, headers=A).json()["id"]
        stack.stop("broker", sig=9)
        stack.start_broker()
        stack.wait_ready()
        hit = _job(stack, stack.submit(spec, headers=A).json()["id"], A)
        assert hit["status"] == "succeeded" and hit["cache"] == "hit", hit
        assert _finished(stack, leader, A)["status"] == "succeeded"
        job = _finished(stack, follower, A)
        assert job["status"] == "succeeded" and job["cache"] in ("shared", "miss"), job
        # A success older than the request's ttl_ms answers nothing.
        short = _spec("/json?case=expire", cache={"ttl_ms": 300})
        assert _finished(stack, stack.submit(short, headers=A).json()["id"], A)["cache"] == "miss"
        time.sleep(0.5)
        late = _finished(stack, stack.submit(short, headers=A).json()["id"], A)
        assert late["cache"] == "miss", late


def test_cache_field_is_checked():
    with _stack(workers=0) as stack:
        resp = stack.submit(_spec("/json", cache={"ttl_ms": 604800001, "scope": "all"}),
                            headers=A, expect=400)
        fields = [e["field"] for e in resp.json()["errors"]]
        assert fields == ["cache.ttl_ms", "cache.scope"], fields
