"""GET /v1/jobs/{id}/events: Server-Sent Events of a job."""
import http.client
import json
import time

from harness import Stack, request, wait_until


def read_events(port, job_id, headers=None, timeout=30):
    """Reads the whole event stream; returns [(id, event, data)] and the
    response."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", "/v1/jobs/%s/events" % job_id, headers=headers or {})
    resp = conn.getresponse()
    events = []
    if resp.status == 200:
        current = {}
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line == "":
                if current:
                    events.append((current.get("id"), current.get("event"), current.get("data")))
                current = {}
            elif line.startswith(":"):
                continue
            else:
                key, _, value = line.partition(": ")
                current[key] = value
    else:
        resp.read()
    conn.close()
    return events, resp


def test_events_stream_status_then_result():
    with Stack() as stack:
        job_id = stack.submit({"kind": "http",
                               "request": {"url": stack.mock_url("/json?latency_ms=800")}}).json()["id"]
        events, resp = read_events(stack.gateway_port, job_id)
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "text/event-stream"
        kinds = [e[1] for e in events]
        assert kinds[-1] == "result", events
        assert "status" in kinds
        import json
        assert json.loads(events[-1][2])["status"] == "succeeded"
        assert events[-1][0] == "r"
        # A finished job's stream is its last status and the result.
        again, _ = read_events(stack.gateway_port, job_id)
        assert [e[1] for e in again] == ["status", "result"], again
        # Resuming after the last status sends only what is new.
        resumed, _ = read_events(stack.gateway_port, job_id, headers={"Last-Event-ID": again[0][0]})
        assert [e[1] for e in resumed] == ["result"], resumed


def test_event_ids_never_repeat_across_a_retry_and_resumption_works():
    # Status ids carry the attempt's identity (the record's attempt_seq),
    # which a retry does not reset: the second run's events are new to a
    # client that resumes with the first run's last id (with the count of
    # attempts in the id, "s1.failed" named both runs' failures).
    with Stack() as stack:
        job_id = stack.submit({"kind": "http", "request": {
            "url": stack.mock_url("/flaky?key=ids&fail=100&status=404")}}).json()["id"]
        assert stack.wait_terminal(job_id)["status"] == "failed"
        first, _ = read_events(stack.gateway_port, job_id)
        assert [e[1] for e in first] == ["status", "result"], first
        assert request(stack.gateway_port, "POST", "/v1/jobs/%s/retry" % job_id).status == 202
        wait_until(lambda: stack.job(job_id)["status"] == "failed"
                   and stack.job(job_id)["attempts"] == 1
                   and stack.mock_stats()["by_path"]["/flaky"] == 2, 20, "the retry to fail")
        second, _ = read_events(stack.gateway_port, job_id)
        assert [e[1] for e in second] == ["status", "result"], second
        assert first[0][0] != second[0][0], (first, second)
        assert json.loads(second[0][2]) == {"status": "failed", "attempts": 1}
        resumed, _ = read_events(stack.gateway_port, job_id, headers={"Last-Event-ID": first[0][0]})
        assert [e[0] for e in resumed] == [second[0][0], "r"], resumed
        resumed, _ = read_events(stack.gateway_port, job_id, headers={"Last-Event-ID": second[0][0]})
        assert [e[0] for e in resumed] == ["r"], resumed


def test_events_of_unknown_or_foreign_job():
    keys = {"gateway": {"api_keys": [{"key": "secret-a", "tenant": "a"},
                                     {"key": "secret-b", "tenant": "b"}]}}
    with Stack(config_extra=keys) as stack:
        a = {"Authorization": "Bearer secret-a"}
        b = {"Authorization": "Bearer secret-b"}
        _, resp = read_events(stack.gateway_port, "00000000-0000-4000-8000-000000000000", headers=a)
        assert resp.status == 404
        _, resp = read_events(stack.gateway_port, "nope", headers=a)
        assert resp.status == 404
        job_id = stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json?latency_ms=500")}},
                              headers=a).json()["id"]
        # Another tenant's job does not exist for b, running or finished;
        # without a key there is no stream at all.
        _, resp = read_events(stack.gateway_port, job_id, headers=b)
        assert resp.status == 404
        _, resp = read_events(stack.gateway_port, job_id)
        assert resp.status == 401
        events, resp = read_events(stack.gateway_port, job_id, headers=a)
        assert resp.status == 200 and events[-1][1] == "result", events
        _, resp = read_events(stack.gateway_port, job_id, headers=b)
        assert resp.status == 404


def _parked(stack):
    """The gateway's jobgate_parked_requests gauge."""
    for line in stack.get_path("/metrics").body.decode().splitlines():
        if line.startswith("jobgate_parked_requests "):
            return float(line.split()[1])
    raise AssertionError("no jobgate_parked_requests in /metrics")


def test_client_leaving_a_stream_is_cleaned_up():
    from harness import wait_until
    with Stack() as stack:
        baseline = _parked(stack)
        job_id = stack.submit({"kind": "http",
                               "request": {"url": stack.mock_url("/json?latency_ms=40000")},
                               "timeout_ms": 60000}).json()["id"]
        streams = []
        for _ in range(20):
            conn = http.client.HTTPConnection("127.0.0.1", stack.gateway_port, timeout=5)
            conn.request("GET", "/v1/jobs/%s/events" % job_id)
            resp = conn.getresponse()
            assert resp.status == 200
            resp.fp.readline()
            streams.append(conn)
        wait_until(lambda: _parked(stack) == baseline + 20, 10, "20 streams parked")
        for conn in streams:
            conn.close()
        # The clients left while the job runs: a parked stream does not see
        # that by itself; the front door does, and every stream they left is
        # gone from the gateway long before the job ends.
        wait_until(lambda: _parked(stack) == baseline, 30, "parked requests back to baseline")
        # The same for a long poll whose client hangs up.
        conn = http.client.HTTPConnection("127.0.0.1", stack.gateway_port, timeout=5)
        conn.request("GET", "/v1/jobs/%s?wait=50" % job_id)
        wait_until(lambda: _parked(stack) == baseline + 1, 10, "the long poll parked")
        conn.close()
        wait_until(lambda: _parked(stack) == baseline, 30, "the long poll gone")
        gone = [l for l in stack.get_path("/metrics").body.decode().splitlines()
                if l.startswith("jobgate_http_clients_gone_total ")]
        assert gone and float(gone[0].split()[1]) >= 21, gone
        assert stack.job(job_id)["status"] == "running"
        assert stack.get_path("/healthz").status == 200
        assert request(stack.gateway_port, "DELETE", "/v1/jobs/" + job_id).status == 200


def test_metrics_in_prometheus_format():
    with Stack() as stack:
        job_id = stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json")}}).json()["id"]
        stack.wait_terminal(job_id)
        stack.get_path("/nope")
        time.sleep(1.2)  # one PONG
        resp = stack.get_path("/metrics")
        assert resp.status == 200
        assert resp.header("Content-Type").startswith("text/plain")
        samples = {}
        for line in resp.body.decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        assert samples['jobgate_http_responses_total{code="202"}'] == 1
        assert samples['jobgate_http_responses_total{code="404"}'] == 1
        assert samples["jobgate_jobs_accepted_total"] == 1
        assert samples["jobgate_broker_up"] == 1
        assert [v for k, v in samples.items()
                if k.startswith("jobgate_build_info{") and k.endswith('process="gateway"}')] == [1]
        assert samples["process_open_fds"] > 0
        # The broker's figures are the broker's own, not re-exported by
        # every gateway (a sum over gateways would count them N times).
        assert not any(name.startswith(("jobgate_broker_workers", "jobgate_broker_queued",
                                        "jobgate_result_cache", "jobgate_jobs_finished"))
                       for name in samples), sorted(samples)


def test_openapi_and_dashboard():
    import json as _json
    with Stack(workers=0) as stack:
        resp = stack.get_path("/openapi.json")
        assert resp.status == 200 and resp.header("Content-Type") == "application/json"
        doc = _json.loads(resp.body)
        assert doc["openapi"].startswith("3.1")
        for path in ("/v1/jobs", "/v1/batch", "/v1/jobs/{id}", "/v1/jobs/{id}/events",
                     "/v1/jobs/{id}/retry", "/v1/providers", "/healthz", "/readyz", "/metrics"):
            assert path in doc["paths"], path
        page = stack.get_path("/")
        assert page.status == 200 and page.header("Content-Type").startswith("text/html")
        text = page.body.decode()
        assert "<script>" in text and "/v1/providers" in text
        assert "http://" not in text and "https://" not in text   # no external assets


def test_webhook_signed_delivered_and_retried():
    import base64
    import hashlib
    import hmac
    import json as _json
    key = b"0123456789abcdef0123456789abcdef"
    secret = "whsec_" + base64.b64encode(key).decode()
    with Stack(config_extra={"webhooks": {"secret": secret, "max_attempts": 5}}) as stack:
        hook = stack.mock_url("/hook?capture=wh1&fail=1")
        job_id = stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json")},
                               "callback": {"url": hook}, "metadata": {"order": 7}}).json()["id"]
        assert stack.wait_terminal(job_id)["status"] == "succeeded"

        def captured():
            return request(stack.mock_port, "GET", "/captured?key=wh1").json()
        from harness import wait_until
        deliveries = wait_until(lambda: len(captured()) >= 2 and captured(), 20,
                                "the webhook to be retried and delivered")
        assert len(deliveries) == 2      # the first answered 500, the retry 200
        first, second = deliveries
        assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
        for delivery in deliveries:
            headers = delivery["headers"]
            assert delivery["method"] == "POST"
            signed = "%s.%s.%s" % (headers["webhook-id"], headers["webhook-timestamp"], delivery["body"])
            expected = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest()).decode()
            assert headers["webhook-signature"] == "v1," + expected
            # The Standard Webhooks envelope: type, timestamp (the finish), data.
            event = _json.loads(delivery["body"])
            assert sorted(event) == ["data", "timestamp", "type"], event
            assert event["type"] == "job.succeeded"
            body = event["data"]
            assert body["id"] == job_id and body["status"] == "succeeded"
            assert body["metadata"] == {"order": 7}
            assert event["timestamp"] == body["finished_at"]
        # The job shows how its delivery went: two attempts, the last
        # answered 200, nothing more due.
        webhook = wait_until(lambda: (stack.get_path("/v1/jobs/" + job_id).json()["webhook"]
                                      if stack.get_path("/v1/jobs/" + job_id).json()["webhook"]["state"]
                                      == "delivered" else None), 10, "the delivery state")
        assert webhook["id"] == first["headers"]["webhook-id"], webhook
        assert (webhook["attempts"], webhook["max_attempts"], webhook["last_status"]) == (2, 5, 200)
        assert webhook["last_error"] is None and webhook["next_attempt_at"] is None, webhook
        # Deliveries are internal: they never show in the client's listing.
        assert [j["id"] for j in stack.get_path("/v1/jobs").json()["jobs"]] == [job_id]
        # The broker counts each attempt by outcome: one retried, one
        # delivered, and every outcome is a series from the start.
        lines = stack.broker_metrics().splitlines()
        deliveries = {line.split('"')[1]: float(line.split()[-1]) for line in lines
                      if line.startswith("jobgate_webhook_deliveries_total{")}
        assert deliveries == {"delivered": 1, "retried": 1, "given_up": 0, "not_queued": 0}, deliveries


def test_webhook_given_up_shows_on_the_job():
    # A receiver that always fails: every attempt is retried until the
    # budget is spent; the job says so, attempt by attempt.
    with Stack(config_extra={"webhooks": {"max_attempts": 2}}) as stack:
        hook = stack.mock_url("/hook?capture=wh3&fail=100")
        job_id = stack.submit({"kind": "http", "request": {"url": stack.mock_url("/flaky?key=gu&fail=100&status=404")},
                               "max_attempts": 1, "callback": {"url": hook}}).json()["id"]
        assert stack.wait_terminal(job_id)["status"] == "failed"
        from harness import wait_until

        def state():
            webhook = stack.get_path("/v1/jobs/" + job_id).json()["webhook"]
            return webhook if webhook["state"] == "given_up" else None
        webhook = wait_until(state, 20, "the delivery to give up")
        assert (webhook["attempts"], webhook["max_attempts"], webhook["last_status"]) == (2, 2, 500)
        assert webhook["last_error"] == "upstream_status" and webhook["next_attempt_at"] is None
        deliveries = request(stack.mock_port, "GET", "/captured?key=wh3").json()
        assert len(deliveries) == 2
        assert [__import__("json").loads(d["body"])["type"] for d in deliveries] == ["job.failed"] * 2


def test_webhook_to_a_private_address_is_blocked():
    with Stack(config_extra={"security": {"allow_private_networks": False}}) as stack:
        job_id = stack.submit({"kind": "http", "provider": "mock", "request": {"path": "/json"},
                               "callback": {"url": stack.mock_url("/hook?capture=wh2")}}).json()["id"]
        assert stack.wait_terminal(job_id)["status"] == "succeeded"
        time.sleep(1.5)
        assert request(stack.mock_port, "GET", "/captured?key=wh2").json() == []
        assert "blocked_by_policy" in stack.log("worker0")
