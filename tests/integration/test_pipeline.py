"""The pipeline end to end: curl → gateway → broker → worker → mock."""
import concurrent.futures
import http.client
import json
import time

from harness import Stack, request, wait_until


def test_http_job_by_url():
    with Stack() as stack:
        resp = stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json")},
                             "metadata": {"ticket": 7}})
        accepted = resp.json()
        assert accepted["status"] == "queued"
        assert resp.header("Location") == "/v1/jobs/" + accepted["id"]
        assert resp.header("Retry-After") == "1"
        assert accepted["created_at"].endswith("Z")
        job = stack.wait_terminal(accepted["id"])
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 1
        assert job["result"]["status"] == 200
        assert job["result"]["body"]["ok"] is True
        assert job["metadata"] == {"ticket": 7}
        assert job["started_at"] and job["finished_at"]
        assert isinstance(job["result"]["latency_ms"], int)


def test_http_job_through_provider():
    with Stack() as stack:
        spec = {"kind": "http", "provider": "mock",
                "request": {"method": "POST", "path": "/echo", "query": {"q": "a b", "n": 3},
                            "headers": {"X-Test": "yes"}, "body": {"hello": "world"}}}
        job = stack.wait_terminal(stack.submit(spec).json()["id"])
        assert job["status"] == "succeeded", job
        echo = job["result"]["body"]
        assert echo["method"] == "POST"
        assert echo["path"] == "/echo"
        assert echo["query"] == {"q": "a b", "n": "3"}
        headers = {k.lower(): v for k, v in echo["headers"].items()}
        assert headers["x-test"] == "yes"
        assert headers["content-type"].startswith("application/json")
        assert json.loads(echo["body"]) == {"hello": "world"}
        assert job["provider"] == "mock"


def test_text_and_binary_bodies():
    with Stack() as stack:
        text = stack.wait_terminal(stack.submit(
            {"kind": "http", "request": {"url": stack.mock_url("/bytes?size=25")}}).json()["id"])
        assert text["result"]["body"] == "abcdefghij" * 2 + "abcde", text
        binary = stack.wait_terminal(stack.submit(
            {"kind": "http", "request": {"url": stack.mock_url("/bytes?binary=1")}}).json()["id"])
        assert binary["result"]["body_encoding"] == "base64", binary
        import base64
        assert base64.b64decode(binary["result"]["body"]) == bytes(range(256))


def test_crawl_follows_redirects_and_reads_title():
    with Stack() as stack:
        target = "/html?title=Hello%20Crawler"
        url = stack.mock_url("/redirect?to=" + stack.mock_url(target).replace("?", "%3F").replace("&", "%26"))
        job = stack.wait_terminal(stack.submit({"kind": "crawl", "request": {"url": url}}).json()["id"])
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert result["title"] == "Hello Crawler"
        assert result["final_url"].startswith(stack.mock_url("/html?title=Hello")), result["final_url"]
        assert result["content_type"].startswith("text/html")
        # More than 5 redirects is refused.
        chain = stack.wait_terminal(stack.submit(
            {"kind": "crawl", "max_attempts": 1,
             "request": {"url": stack.mock_url("/redirect-chain?n=7")}}).json()["id"])
        assert chain["status"] == "failed", chain
        ok = stack.wait_terminal(stack.submit(
            {"kind": "crawl", "request": {"url": stack.mock_url("/redirect-chain?n=5")}}).json()["id"])
        assert ok["status"] == "succeeded", ok


def test_long_poll_returns_when_done():
    with Stack() as stack:
        job_id = stack.submit({"kind": "http",
                               "request": {"url": stack.mock_url("/json?latency_ms=700")}}).json()["id"]
        started = time.monotonic()
        job = stack.job(job_id, wait=20)
        elapsed = time.monotonic() - started
        assert job["status"] == "succeeded", job
        assert elapsed < 15, elapsed  # woken by the event, not by the deadline
        # A long-poll on a job that will not finish in time returns its state.
        slow = stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json?latency_ms=4000")}}).json()["id"]
        job = stack.job(slow, wait=1)
        assert job["status"] in ("queued", "running"), job
        assert stack.wait_terminal(slow)["status"] == "succeeded"


def test_every_waiter_of_a_held_job_is_answered_from_its_end_event():
    """The end event of a job submitted with Prefer: wait carries its record
    (docs/protocol.md §3.3), and every client waiting on the job is answered
    from it, however many there are (the gateway once answered 16 so and
    made the rest read the job back)."""
    with Stack() as stack:
        before = stack.gateway_metric("jobgate_answered_from_events_total")
        spec = {"kind": "http", "request": {"url": stack.mock_url("/json?latency_ms=2000")}}
        with concurrent.futures.ThreadPoolExecutor(max_workers=25) as pool:
            held = pool.submit(stack.submit, spec, {"Prefer": "wait=20"}, 200)
            listed = []
            wait_until(lambda: listed.extend(stack.get_path("/v1/jobs?limit=1").json()["jobs"])
                       or listed, 10, "the held job in the listing")
            job_id = listed[0]["id"]
            polls = list(pool.map(lambda _: stack.job(job_id, wait=20), range(24)))
            first = held.result().json()
        assert first["id"] == job_id and first["status"] == "succeeded", first
        assert all(job == first for job in polls), polls
        answered = stack.gateway_metric("jobgate_answered_from_events_total") - before
        # All 25 were parked when the job ended, 2 s after it began; a poll
        # may have been between reads then.
        assert answered >= 24, answered


def test_prefer_wait():
    with Stack() as stack:
        resp = stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json?latency_ms=300")}},
                            headers={"Prefer": "wait=10"}, expect=200)
        job = resp.json()
        assert job["status"] == "succeeded", job
        assert job["result"]["body"]["ok"] is True
        assert resp.header("Preference-Applied") == "wait=10"
        # Not done in time: 202 with the job's location.
        resp = stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json?latency_ms=3000")}},
                            headers={"Prefer": "wait=1"}, expect=202)
        assert resp.header("Location") == "/v1/jobs/" + resp.json()["id"]
        assert stack.wait_terminal(resp.json()["id"])["status"] == "succeeded"


def test_404_is_not_retried():
    with Stack() as stack:
        job = stack.wait_terminal(stack.submit(
            {"kind": "http", "max_attempts": 3,
             "request": {"url": stack.mock_url("/flaky?key=nf&fail=100&status=404")}}).json()["id"])
        assert job["status"] == "failed", job
        assert job["attempts"] == 1
        assert job["error"]["type"] == "upstream_status"
        assert job["error"]["upstream_status"] == 404
        assert job["result"]["status"] == 404  # the upstream's answer is kept
        assert stack.mock_stats()["by_path"]["/flaky"] == 1


def test_500_is_retried_until_max_attempts():
    with Stack() as stack:
        job = stack.wait_terminal(stack.submit(
            {"kind": "http", "max_attempts": 3,
             "request": {"url": stack.mock_url("/flaky?key=five&fail=100&status=500")}}).json()["id"])
        assert job["status"] == "failed", job
        assert job["attempts"] == 3
        assert job["error"]["upstream_status"] == 500
        assert stack.mock_stats()["by_path"]["/flaky"] == 3
        # A job that fails twice then succeeds ends succeeded on attempt 3.
        job = stack.wait_terminal(stack.submit(
            {"kind": "http", "max_attempts": 3,
             "request": {"url": stack.mock_url("/flaky?key=two&fail=2&status=503")}}).json()["id"])
        assert job["status"] == "succeeded", job
        assert job["attempts"] == 3


def test_timeout_is_retried_and_reported():
    with Stack() as stack:
        job = stack.wait_terminal(stack.submit(
            {"kind": "http", "max_attempts": 2, "timeout_ms": 300,
             "request": {"url": stack.mock_url("/json?latency_ms=3000")}}).json()["id"])
        assert job["status"] == "failed", job
        assert job["attempts"] == 2
        assert job["error"]["type"] == "upstream_timeout"


def test_jobs_survive_broker_restart():
    with Stack(workers=0) as stack:
        ids = [stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json")}}).json()["id"]
               for _ in range(50)]
        assert stack.stop("broker") == 0
        stack.start_broker()
        # While the broker restarts the gateway reconnects by itself.
        stack.start_worker()
        stack.wait_ready()
        for job_id in ids:
            assert stack.wait_terminal(job_id)["status"] == "succeeded"


def test_running_jobs_survive_broker_kill():
    with Stack(workers=1) as stack:
        ids = [stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json?latency_ms=1500")}}).json()["id"]
               for _ in range(40)]
        time.sleep(0.5)  # dispatched, running at the worker
        stack.stop("broker", sig=9)
        stack.start_broker()
        for job_id in ids:
            job = stack.wait_terminal(job_id)
            assert job["status"] == "succeeded", job


def test_thousand_jobs_in_flight():
    with Stack(workers=2, concurrency=600) as stack:
        stack.mock_reset()
        spec = json.dumps({"kind": "http", "request": {"url": stack.mock_url("/json?latency_ms=3000")}})

        def submit(_):
            conn = http.client.HTTPConnection("127.0.0.1", stack.gateway_port, timeout=30)
            ids = []
            for _ in range(50):
                conn.request("POST", "/v1/jobs", body=spec, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                body = resp.read()
                assert resp.status == 202, (resp.status, body)
                ids.append(json.loads(body)["id"])
            conn.close()
            return ids

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            ids = [i for chunk in pool.map(submit, range(20)) for i in chunk]
        assert len(set(ids)) == 1000
        wait_until(lambda: stack.mock_stats()["max_in_flight"] >= 1000, 20, "1000 calls in flight")
        for job_id in ids:
            assert stack.wait_terminal(job_id)["status"] == "succeeded"
        assert stack.mock_stats()["served"] == 1000


def test_health_and_readiness():
    with Stack(workers=0) as stack:
        assert stack.get_path("/healthz").status == 200
        not_ready = stack.get_path("/readyz")
        assert not_ready.status == 503 and not_ready.json()["workers"] == 0
        stack.start_worker()
        stack.wait_ready()
        stack.stop("broker")
        wait_until(lambda: stack.get_path("/readyz").status == 503, 10, "readyz to notice the broker")
        assert stack.get_path("/healthz").status == 200
        # With the broker gone a submission is answered 503, not hung.
        resp = stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json")}}, expect=503)
        assert resp.header("Retry-After")
