"""The read API behind the dashboard (issue 13): GET /v1/stats (the last 15
minutes' throughput, the workers, the jobs' counts; operators only) and
GET /v1/jobs/{id}/spec (a job's spec, its tenant only). The page itself is
tested in headless Chromium by tests/dashboard/run.sh."""

from harness import Stack, request, wait_until

KEYS = [{"key": "op-key", "tenant": "ops", "operator": True},
        {"key": "a-key", "tenant": "a"},
        {"key": "b-key", "tenant": "b"}]
OPERATOR = {"Authorization": "Bearer op-key"}
TENANT_A = {"Authorization": "Bearer a-key"}
TENANT_B = {"Authorization": "Bearer b-key"}


def _totals(stats):
    return {name: sum(counts) for name, counts in stats["throughput"]["series"].items()}


def _submit(stack, path, headers, **extra):
    spec = {"kind": "http", "provider": "mock", "request": {"path": path}}
    spec.update(extra)
    return stack.submit(spec, headers=headers).json()["id"]


def _terminal(stack, job_id, headers):
    def done():
        job = stack.get_path("/v1/jobs/" + job_id + "?wait=5", headers=headers).json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None
    return wait_until(done, 60, "job %s to finish" % job_id)


def test_stats_count_what_happened_for_operators_only():
    with Stack(workers=2, config_extra={"gateway": {"api_keys": KEYS}}) as stack:
        # Nobody but an operator sees the broker's figures, which span tenants.
        assert stack.get_path("/v1/stats").status == 401
        refused = stack.get_path("/v1/stats", headers=TENANT_A)
        assert refused.status == 403, refused.body
        assert refused.json()["status"] == 403
        wrong = request(stack.gateway_port, "POST", "/v1/stats", body={}, headers=OPERATOR)
        assert wrong.status == 405, wrong.body

        before = _totals(stack.get_path("/v1/stats", headers=OPERATOR).json())
        assert all(count == 0 for count in before.values()), before
        # 3 succeed, 2 fail at once (a 400 is final), 1 fails after 2
        # attempts (a 500 is retried), 1 is canceled while it waits.
        ids = [_submit(stack, "/json", TENANT_A) for _ in range(3)]
        ids += [_submit(stack, "/json?status=400", TENANT_B) for _ in range(2)]
        ids.append(_submit(stack, "/json?status=500", TENANT_A, max_attempts=2))
        slow = _submit(stack, "/json?latency_ms=20000", TENANT_A, max_attempts=1)
        for job_id in ids:
            _terminal(stack, job_id, TENANT_A if job_id not in ids[3:5] else TENANT_B)
        canceled = request(stack.gateway_port, "DELETE", "/v1/jobs/" + slow, headers=TENANT_A)
        assert canceled.status == 200, canceled.body

        def counted():
            stats = stack.get_path("/v1/stats", headers=OPERATOR).json()
            return stats if _totals(stats)["canceled"] == 1 else None
        stats = wait_until(counted, 10, "the cancel to be counted")
        totals = _totals(stats)
        assert totals["submitted"] == 7, totals
        assert totals["succeeded"] == 3, totals
        assert totals["failed"] == 3, totals
        assert totals["canceled"] == 1, totals
        # Attempts: 3 + 2 + 2 (the 500, retried once) + 1 (the slow one).
        assert totals["started"] == 8, totals
        assert totals["requeued"] == 1, totals
        throughput = stats["throughput"]
        assert throughput["interval_s"] == 10 and throughput["intervals"] == 90
        assert all(len(s) == 90 for s in throughput["series"].values())
        assert throughput["from"] < throughput["now"]
        # Two workers, each with its identity, concurrency and load.
        assert stats["workers_live"] == 2
        assert len(stats["workers"]) == 2
        names = [w["worker"] for w in stats["workers"]]
        assert names == sorted(names) and len(set(names)) == 2
        for worker in stats["workers"]:
            assert worker["concurrency"] == 512 and worker["running"] == 0
            assert worker["draining"] is False and worker["silent_ms"] < 10000
        assert stats["queued"] == 0 and stats["running"] == 0 and stats["active"] == 0


def test_stats_in_open_mode_and_without_a_broker():
    with Stack(workers=1) as stack:
        # Open mode: the one local caller is the operator.
        stats = stack.get_path("/v1/stats")
        assert stats.status == 200, stats.body
        assert stats.json()["workers_live"] == 1
        stack.stop("broker")
        gone = stack.get_path("/v1/stats")
        assert gone.status == 503, gone.body
        assert gone.header("Retry-After")


def test_spec_of_a_job_to_its_tenant_only():
    with Stack(workers=1, config_extra={"gateway": {"api_keys": KEYS}}) as stack:
        job_id = _submit(stack, "/json", TENANT_A, priority=7, metadata={"who": "dashboard"})
        spec = stack.get_path("/v1/jobs/%s/spec" % job_id, headers=TENANT_A)
        assert spec.status == 200, spec.body
        assert spec.header("Content-Type").startswith("application/json")
        body = spec.json()
        assert body["kind"] == "http" and body["provider"] == "mock"
        assert body["request"]["path"] == "/json" and body["priority"] == 7
        # Another tenant's job does not exist; nor does a malformed id.
        assert stack.get_path("/v1/jobs/%s/spec" % job_id, headers=TENANT_B).status == 404
        assert stack.get_path("/v1/jobs/%s/spec" % job_id, headers=OPERATOR).status == 404
        assert stack.get_path("/v1/jobs/not-a-job/spec", headers=TENANT_A).status == 404
        missing = "01900000-0000-7000-8000-000000000000"
        assert stack.get_path("/v1/jobs/%s/spec" % missing, headers=TENANT_A).status == 404
        assert stack.get_path("/v1/jobs/%s/spec" % job_id).status == 401
        wrong = request(stack.gateway_port, "DELETE", "/v1/jobs/%s/spec" % job_id, headers=TENANT_A)
        assert wrong.status == 405
        # The job object itself is unchanged by it.
        job = stack.get_path("/v1/jobs/" + job_id, headers=TENANT_A).json()
        assert "spec" not in job and job["metadata"] == {"who": "dashboard"}
