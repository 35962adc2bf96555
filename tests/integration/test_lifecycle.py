"""Cancel, list, retry, idempotency, retention, restarts, drain, a full store."""
import time

from harness import Stack, request, wait_until


def _spec(stack, path="/json", **extra):
    spec = {"kind": "http", "request": {"url": stack.mock_url(path)}}
    spec.update(extra)
    return spec


def test_cancel_queued_running_and_finished():
    with Stack(workers=1, concurrency=1) as stack:
        running = stack.submit(_spec(stack, "/json?latency_ms=5000")).json()["id"]
        queued = stack.submit(_spec(stack, "/json")).json()["id"]
        wait_until(lambda: stack.job(running)["status"] == "running", 10, "the first job to run")
        resp = request(stack.gateway_port, "DELETE", "/v1/jobs/" + queued)
        assert resp.status == 200, resp.body
        assert resp.json()["status"] == "canceled"
        assert resp.json()["error"]["type"] == "canceled"
        resp = request(stack.gateway_port, "DELETE", "/v1/jobs/" + running)
        assert resp.status == 200 and resp.json()["status"] == "canceled", resp.body
        # The running transfer was aborted: the mock sees the client leave.
        wait_until(lambda: stack.mock_stats()["in_flight"] == 0, 10, "the transfer to be aborted")
        resp = request(stack.gateway_port, "DELETE", "/v1/jobs/" + running)
        assert resp.status == 409, resp.body
        assert stack.job(running)["status"] == "canceled"
        # The freed slot is used again.
        assert stack.wait_terminal(stack.submit(_spec(stack)).json()["id"])["status"] == "succeeded"
        assert request(stack.gateway_port, "DELETE", "/v1/jobs/00000000-0000-4000-8000-000000000000").status == 404


def test_list_failed_jobs_with_cursor_and_retry():
    with Stack() as stack:
        failed = [stack.submit(_spec(stack, "/flaky?key=l%d&fail=1&status=400" % i, max_attempts=1)).json()["id"]
                  for i in range(5)]
        ok = [stack.submit(_spec(stack)).json()["id"] for _ in range(3)]
        for job_id in failed + ok:
            stack.wait_terminal(job_id)
        seen = []
        cursor = None
        for _ in range(10):
            path = "/v1/jobs?status=failed&limit=2" + ("&cursor=" + cursor if cursor else "")
            page = stack.get_path(path).json()
            assert len(page["jobs"]) <= 2
            seen += [job["id"] for job in page["jobs"]]
            assert all(job["status"] == "failed" for job in page["jobs"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == list(reversed(failed)), (seen, failed)   # newest first
        everything = stack.get_path("/v1/jobs?limit=100").json()
        assert [j["id"] for j in everything["jobs"]] == list(reversed(failed + ok))
        assert everything["next_cursor"] is None
        assert stack.get_path("/v1/jobs?status=bogus").status == 400
        assert stack.get_path("/v1/jobs?limit=0").status == 400
        # Retry: the flaky key now answers 200, so the job succeeds.
        resp = request(stack.gateway_port, "POST", "/v1/jobs/%s/retry" % failed[0])
        assert resp.status == 202, resp.body
        assert resp.header("Location") == "/v1/jobs/" + failed[0]
        job = stack.wait_terminal(failed[0])
        assert job["status"] == "succeeded" and job["attempts"] == 1, job
        assert request(stack.gateway_port, "POST", "/v1/jobs/%s/retry" % ok[0]).status == 409


def test_tenants_see_only_their_own_jobs():
    keys = {"gateway": {"api_keys": [{"key": "secret-a", "tenant": "a"},
                                     {"key": "secret-b", "tenant": "b"}]}}
    with Stack(config_extra=keys) as stack:
        a = {"Authorization": "Bearer secret-a"}
        b = {"Authorization": "Bearer secret-b"}
        assert stack.submit(_spec(stack), expect=401).header("WWW-Authenticate") == "Bearer"
        stack.submit(_spec(stack), headers={"Authorization": "Bearer wrong"}, expect=401)
        job_id = stack.submit(_spec(stack), headers=a).json()["id"]
        assert stack.get_path("/v1/jobs/%s?wait=10" % job_id, headers=a).json()["status"] == "succeeded"
        assert stack.get_path("/v1/jobs/" + job_id, headers=b).status == 404
        assert request(stack.gateway_port, "DELETE", "/v1/jobs/" + job_id, headers=b).status == 404
        assert stack.get_path("/v1/jobs", headers=b).json()["jobs"] == []
        assert len(stack.get_path("/v1/jobs", headers=a).json()["jobs"]) == 1


def test_idempotency_key():
    with Stack() as stack:
        headers = {"Idempotency-Key": "order-42"}
        first = stack.submit(_spec(stack), headers=headers).json()["id"]
        again = stack.submit(_spec(stack), headers=headers).json()["id"]
        assert again == first
        conflict = stack.submit(_spec(stack, "/json?other=1"), headers=headers, expect=409)
        assert conflict.json()["status"] == 409
        other = stack.submit(_spec(stack), headers={"Idempotency-Key": "order-43"}).json()["id"]
        assert other != first
        stack.wait_terminal(first)
        # After the job finished the key still names it.
        assert stack.submit(_spec(stack), headers=headers).json()["id"] == first
        assert stack.mock_stats()["by_path"]["/json"] == 2


def test_submission_waits_for_a_restarting_broker():
    with Stack(config_extra={"gateway": {"submit_timeout_ms": 8000}}) as stack:
        done = stack.submit(_spec(stack)).json()["id"]
        stack.wait_terminal(done)
        stack.stop("broker", sig=9)
        # Finished jobs are still readable from the gateway.
        assert stack.job(done)["status"] == "succeeded"
        started = time.monotonic()
        stack.start_broker()
        # A POST made while the broker is down is resent and accepted.
        import threading
        result = {}
        stack.stop("broker", sig=9)
        thread = threading.Thread(target=lambda: result.update(r=stack.submit(_spec(stack), expect=None)))
        thread.start()
        time.sleep(1.5)
        stack.start_broker()
        thread.join(20)
        resp = result["r"]
        assert resp.status == 202, (resp.status, resp.body)
        assert stack.wait_terminal(resp.json()["id"])["status"] == "succeeded"
        assert time.monotonic() - started < 30
        # Exactly one job was created for that POST.
        jobs = stack.get_path("/v1/jobs?limit=100").json()["jobs"]
        assert len(jobs) == 2, [j["id"] for j in jobs]


def test_worker_drain_hands_back_and_finishes():
    with Stack(workers=1, config_extra={"worker": {"drain_timeout_ms": 1000}}) as stack:
        ids = [stack.submit(_spec(stack, "/json?latency_ms=4000")).json()["id"] for _ in range(5)]
        wait_until(lambda: stack.mock_stats()["in_flight"] == 5, 10, "5 calls in flight")
        assert stack.stop("worker0") == 0        # drain gives up after 1 s, hands back
        stack.start_worker()
        for job_id in ids:
            job = stack.wait_terminal(job_id)
            assert job["status"] == "succeeded", job
            assert job["attempts"] == 1, job      # a handback is not a failed attempt


def test_finished_jobs_expire_after_their_ttl():
    with Stack(config_extra={"broker": {"result_ttl_s": 1}}) as stack:
        job_id = stack.submit(_spec(stack)).json()["id"]
        assert stack.wait_terminal(job_id)["status"] == "succeeded"
        # Restart the gateway so its cache of finished jobs is empty.
        stack.stop("gateway")
        stack.start_gateway()
        wait_until(lambda: stack.get_path("/v1/jobs/" + job_id).status == 404, 30, "the job to expire")
        assert stack.get_path("/v1/jobs").json()["jobs"] == []


def test_full_store_gives_503_and_recovers():
    """A full store refuses new work with 503 and Retry-After, finishes the
    work it accepted, and takes new work again once the TTL sweep has freed
    space (docs/protocol.md §6). The store's map is what fills (16 MiB, with
    a reserve of half of it: two results at the cap), so this runs anywhere:
    no root, no tmpfs, no skip. Commits that fail for want of space are the
    store's and the broker's self-tests (store_inject_map_full)."""
    extra = {"broker": {"store_map_mb": 16, "result_ttl_s": 10},
             "quotas": {"*": {"max_stored_bytes": 10 ** 12}}}
    with Stack(config_extra=extra) as stack:
        # In flight while the store fills: it must still finish, result kept.
        slow = stack.submit(_spec(stack, "/json?latency_ms=2000&size=300000")).json()["id"]
        accepted, refused = [], None
        for i in range(40):
            resp = stack.submit(_spec(stack, "/json?size=1000000&i=%d" % i), expect=None)
            if resp.status != 202:
                refused = resp
                break
            accepted.append(resp.json()["id"])
            assert stack.wait_terminal(accepted[-1])["status"] == "succeeded"
        assert refused is not None, "the store never filled (%d jobs of 1 MB)" % len(accepted)
        assert refused.status == 503 and refused.header("Retry-After"), (refused.status,
                                                                          refused.body)
        assert len(accepted) >= 3, len(accepted)
        job = stack.wait_terminal(slow)
        assert job["status"] == "succeeded" and job["result"] and not job.get("error"), job
        # Nobody frees space but the TTL sweep: new work is taken again.
        wait_until(lambda: stack.submit(_spec(stack), expect=None).status == 202, 40,
                   "the store to take new work again")


def test_queue_limits_answer_503():
    extra = {"broker": {"max_queued": 8}}
    with Stack(workers=0, config_extra=extra) as stack:
        stack.config["providers"]["mock"]["max_queued"] = 3
        stack.write_config()
        stack.stop("broker")
        stack.start_broker()
        provider = {"kind": "http", "provider": "mock", "request": {"path": "/json"}}
        codes = [stack.submit(provider, expect=None).status for _ in range(5)]
        assert codes == [202, 202, 202, 503, 503], codes
        codes = [stack.submit(_spec(stack), expect=None) for _ in range(7)]
        statuses = [r.status for r in codes]
        assert statuses == [202] * 5 + [503] * 2, statuses
        assert all(r.header("Retry-After") for r in codes if r.status == 503)
        stack.start_worker()
        stack.wait_ready()
        for job in stack.get_path("/v1/jobs?limit=100").json()["jobs"]:
            assert stack.wait_terminal(job["id"])["status"] == "succeeded"
        assert stack.submit(provider).status == 202


def test_broker_stall_loses_nothing_and_records_no_refused_job():
    import signal
    with Stack(workers=2, config_extra={"gateway": {"submit_timeout_ms": 2000}}) as stack:
        ids = [stack.submit(_spec(stack, "/json?latency_ms=1500", max_attempts=1)).json()["id"]
               for _ in range(20)]
        time.sleep(0.3)
        broker = stack.procs["broker"]
        broker.send_signal(signal.SIGSTOP)
        try:
            # Workers hear nothing for > 3 s and reconnect under new identities.
            refused = stack.submit(_spec(stack, "/json?refused=1"), expect=503)
            assert refused.header("Retry-After")
            time.sleep(2.0)
        finally:
            broker.send_signal(signal.SIGCONT)
        for job_id in ids:
            job = stack.wait_terminal(job_id)
            assert job["status"] == "succeeded", job
        # The refused submission was not recorded after the broker woke up.
        time.sleep(0.5)
        listed = [j["id"] for j in stack.get_path("/v1/jobs?limit=100").json()["jobs"]]
        assert sorted(listed) == sorted(ids), (len(listed), len(ids))


def test_batch_submission():
    with Stack() as stack:
        good = _spec(stack)
        batch = {"jobs": [good, {"kind": "nope"}, _spec(stack, "/json?second=1")]}
        resp = request(stack.gateway_port, "POST", "/v1/batch", body=batch)
        assert resp.status == 202, resp.body
        answers = resp.json()["jobs"]
        assert len(answers) == 3
        assert answers[0]["status"] == "queued" and answers[2]["status"] == "queued"
        assert answers[1]["error"]["status"] == 400
        assert [e["field"] for e in answers[1]["error"]["errors"]] == ["kind", "request"]
        for answer in (answers[0], answers[2]):
            assert stack.wait_terminal(answer["id"])["status"] == "succeeded"
        assert request(stack.gateway_port, "POST", "/v1/batch", body={"jobs": []}).status == 400
        assert request(stack.gateway_port, "POST", "/v1/batch", body={"jobs": [good] * 1001}).status == 400
        assert request(stack.gateway_port, "POST", "/v1/batch", body={"jobs": [good], "x": 1}).status == 400
        assert request(stack.gateway_port, "POST", "/v1/batch", body="[1,",
                       headers={"Content-Type": "application/json"}).status == 400
        assert request(stack.gateway_port, "GET", "/v1/batch").status == 405
        big = request(stack.gateway_port, "POST", "/v1/batch", body={"jobs": [good] * 1000})
        assert big.status == 202 and len(big.json()["jobs"]) == 1000
        assert all("id" in a for a in big.json()["jobs"])


def test_tenant_quotas_answer_429():
    quotas = {"quotas": {"*": {"submit_rate": 5}, "b": {"max_queued": 3}},
              "gateway": {"api_keys": [{"key": "ka", "tenant": "a"}, {"key": "kb", "tenant": "b"}]}}
    with Stack(workers=0, config_extra=quotas) as stack:
        a = {"Authorization": "Bearer ka"}
        b = {"Authorization": "Bearer kb"}
        codes = [stack.submit(_spec(stack), headers=a, expect=None) for _ in range(12)]
        statuses = [r.status for r in codes]
        assert statuses.count(202) >= 5 and statuses.count(429) >= 1, statuses
        assert set(statuses) <= {202, 429}, statuses
        limited = [r for r in codes if r.status == 429][0]
        assert int(limited.header("Retry-After")) >= 1
        assert limited.json()["type"] == "/problems/over-quota"
        # b: at most 3 active jobs, whatever its rate.
        statuses = [stack.submit(_spec(stack), headers=b, expect=None).status for _ in range(5)]
        assert statuses == [202, 202, 202, 429, 429], statuses
        # One of a's is fine again after a moment (the bucket refills).
        time.sleep(0.5)
        assert stack.submit(_spec(stack), headers=a, expect=None).status == 202
