"""The client's rules without a stack: httpx.MockTransport plays the
gateway, a fake clock stands in for sleeping."""
import asyncio
import json

import httpx

from clientstack import fake_clock, jobgate

SPEC = {"kind": "http", "provider": "mock", "request": {"path": "/json"}}
QUEUED = {"id": "j1", "status": "queued", "created_at": "2026-01-01T00:00:00Z"}
DONE = dict(QUEUED, status="succeeded", result={"status": 200, "body": {"ok": True}})

# The Standard Webhooks specification's published test vector
# (standard-webhooks/standard-webhooks, and Svix's manual-verification docs).
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_HEADERS = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
                  "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
VECTOR_BODY = b'{"test": 2432232314}'


def _answer(status, body, headers=None):
    return httpx.Response(status, json=body, headers=headers or {})


def test_webhook_official_vector_and_refusals():
    payload = jobgate.verify_webhook(VECTOR_SECRET, VECTOR_BODY, VECTOR_HEADERS, now=1614265330)
    assert payload == {"test": 2432232314}
    # Header names in any case, a str body, rotation (several signatures).
    mixed = {k.title(): v for k, v in VECTOR_HEADERS.items()}
    mixed["Webhook-Signature"] = "v1,bm90LXRoaXMtb25l " + VECTOR_HEADERS["webhook-signature"]
    assert jobgate.verify_webhook(VECTOR_SECRET, VECTOR_BODY.decode(), mixed,
                                  now=1614265330 + 299) == {"test": 2432232314}
    refused = [
        (VECTOR_SECRET, b'{"test": 2432232315}', VECTOR_HEADERS, 1614265330),       # body altered
        (VECTOR_SECRET, VECTOR_BODY, dict(VECTOR_HEADERS, **{"webhook-id": "msg_x"}), 1614265330),
        (VECTOR_SECRET, VECTOR_BODY, dict(VECTOR_HEADERS, **{"webhook-timestamp": "1614265331"}),
         1614265330),
        ("whsec_" + "A" * 32, VECTOR_BODY, VECTOR_HEADERS, 1614265330),            # other key
        (VECTOR_SECRET, VECTOR_BODY, VECTOR_HEADERS, 1614265330 + 301),            # too old
        (VECTOR_SECRET, VECTOR_BODY, VECTOR_HEADERS, 1614265330 - 301),            # from the future
        (VECTOR_SECRET, VECTOR_BODY, {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek"}, 1614265330),
        (VECTOR_SECRET, VECTOR_BODY, dict(VECTOR_HEADERS, **{"webhook-timestamp": "soon"}), 1614265330),
        (VECTOR_SECRET, VECTOR_BODY, dict(VECTOR_HEADERS, **{"webhook-signature": "v1,"}), 1614265330),
        ("whsec_not base64!", VECTOR_BODY, VECTOR_HEADERS, 1614265330),
    ]
    for secret, body, headers, now in refused:
        try:
            jobgate.verify_webhook(secret, body, headers, now=now)
        except jobgate.WebhookVerificationError:
            continue
        raise AssertionError("accepted: %r %r %r" % (body, headers, now))


def test_sse_parser_reads_ids_multiline_data_and_comments():
    from jobgate._models import SSEParser
    parser = SSEParser()
    lines = [": keep-alive", "id: c1.0", "event: chunk", 'data: {"attempt":1,"index":0,', 'data: "data":"hi"}',
             "", "event: status", "data: not json", "", "", "id: r", "event: result", "data:{}", ""]
    events = [e for e in (parser.feed(line) for line in lines) if e is not None]
    assert [(e.id, e.event) for e in events] == [("c1.0", "chunk"), (None, "status"), ("r", "result")]
    assert events[0].data == {"attempt": 1, "index": 0, "data": "hi"} and events[0].text == "hi"
    assert events[1].data == "not json" and events[1].text is None
    assert parser.last_event_id == "r"


def test_submit_retries_429_503_and_lost_answers_with_one_idempotency_key():
    seen = []

    def gateway(request):
        seen.append(request)
        if len(seen) == 1:
            return _answer(503, {"status": 503, "title": "Service Unavailable"}, {"Retry-After": "2"})
        if len(seen) == 2:
            return _answer(429, {"status": 429, "title": "Too Many Requests"}, {"Retry-After": "7"})
        if len(seen) == 3:
            raise httpx.ReadError("connection reset after the request was sent")
        return _answer(202, QUEUED)

    with fake_clock() as clock, jobgate.Client(transport=httpx.MockTransport(gateway)) as client:
        job = client.submit(SPEC)
    assert job.id == "j1" and not job.done
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(seen) == 4 and len(keys) == 1, keys        # one key for every resend
    assert clock.sleeps[:2] == [2.0, 7.0]                 # Retry-After honoured
    assert json.loads(seen[-1].content) == SPEC
    # A key given by the caller is the one sent.
    seen.clear()
    with fake_clock(), jobgate.Client(transport=httpx.MockTransport(gateway)) as client:
        client.submit(SPEC, idempotency_key="order-42")
    assert {r.headers["Idempotency-Key"] for r in seen} == {"order-42"}


def test_retries_are_bounded_and_errors_carry_the_problem():
    calls = []

    def gateway(request):
        calls.append(request)
        return _answer(503, {"type": "/problems/unavailable", "title": "Service Unavailable",
                             "status": 503, "detail": "queue full"}, {"Retry-After": "1000"})

    policy = jobgate.RetryPolicy(retries=3, max_retry_after=30)
    with fake_clock() as clock, jobgate.Client(retry=policy,
                                               transport=httpx.MockTransport(gateway)) as client:
        try:
            client.get("j1")
        except jobgate.APIError as exc:
            assert exc.status == 503 and exc.problem["detail"] == "queue full"
            assert exc.retry_after == 1000 and "queue full" in str(exc)
        else:
            raise AssertionError("no APIError")
    assert len(calls) == 4 and clock.sleeps == [30, 30, 30]   # a huge Retry-After is capped

    def invalid(request):
        return httpx.Response(400, json={"type": "/problems/invalid-job", "title": "Bad Request",
                                         "status": 400, "detail": "the job spec is invalid",
                                         "errors": [{"field": "kind", "message": "is required"}]},
                              headers={"Content-Type": "application/problem+json"})
    with jobgate.Client(transport=httpx.MockTransport(invalid)) as client:
        try:
            client.submit({})
        except jobgate.APIError as exc:
            assert exc.status == 400 and exc.errors == [{"field": "kind", "message": "is required"}]
        else:
            raise AssertionError("no APIError")


def test_a_cancel_whose_answer_was_lost_is_not_resent_but_a_refused_connection_is():
    calls = []

    def lost(request):
        calls.append(request)
        raise httpx.ReadError("reset")
    with fake_clock(), jobgate.Client(transport=httpx.MockTransport(lost)) as client:
        try:
            client.cancel("j1")
        except httpx.ReadError:
            pass
        else:
            raise AssertionError("no ReadError")
    assert len(calls) == 1
    calls.clear()

    def refused_then_ok(request):
        calls.append(request)
        if len(calls) < 3:
            raise httpx.ConnectError("refused")
        return _answer(200, dict(QUEUED, status="canceled"))
    with fake_clock(), jobgate.Client(transport=httpx.MockTransport(refused_then_ok)) as client:
        assert client.cancel("j1").status == "canceled"
    assert len(calls) == 3


def _waiting_gateway(clock, polls):
    """A gateway whose job finishes at clock 1150 (150 s after the start):
    each request holds the wait it asks for (Prefer / ?wait), as the real
    one does, capped at 60 s."""
    def gateway(request):
        if request.method == "POST":
            wait = int(request.headers["Prefer"].split("=")[1])
            polls.append(("POST", wait))
        else:
            wait = int(request.url.params.get("wait", "0"))
            polls.append(("GET", wait))
        assert wait <= 60
        clock.now = min(clock.now + wait, 1150.0)
        if clock.now >= 1150:
            return _answer(200, DONE)
        return _answer(202 if request.method == "POST" else 200, dict(QUEUED, status="running"))
    return gateway


def test_wait_continues_with_long_polls_past_the_server_cap():
    polls = []
    with fake_clock() as clock, jobgate.Client(
            transport=httpx.MockTransport(_waiting_gateway(clock, polls))) as client:
        job = client.submit(SPEC, wait=150)
    assert job.done and job.result["body"] == {"ok": True}
    assert polls == [("POST", 60), ("GET", 60), ("GET", 30)], polls
    # When the wait ends first, the job comes back unfinished.
    polls.clear()
    with fake_clock() as clock, jobgate.Client(
            transport=httpx.MockTransport(_waiting_gateway(clock, polls))) as client:
        job = client.get("j1", wait=90)
    assert job.status == "running" and polls == [("GET", 60), ("GET", 30)], polls


def test_async_client_follows_the_same_rules():
    seen = []

    def gateway(request):
        seen.append(request)
        if len(seen) == 1:
            return _answer(503, {"status": 503}, {"Retry-After": "3"})
        return _answer(202, QUEUED)

    polls = []

    async def main(clock):
        async with jobgate.AsyncClient(transport=httpx.MockTransport(gateway)) as client:
            job = await client.submit(SPEC)
        async with jobgate.AsyncClient(
                transport=httpx.MockTransport(_waiting_gateway(clock, polls))) as client:
            done = await client.submit(SPEC, wait=150)
        return job, done

    with fake_clock() as clock:
        job, done = asyncio.run(main(clock))
    assert job.id == "j1" and clock.sleeps[0] == 3.0
    assert len({r.headers["Idempotency-Key"] for r in seen}) == 1
    assert done.done and polls == [("POST", 60), ("GET", 60), ("GET", 30)], polls


def test_map_resends_only_what_was_not_accepted_and_never_a_lost_batch():
    batches = []

    def gateway(request):
        specs = json.loads(request.content)["jobs"]
        batches.append([s["n"] for s in specs])
        answers = []
        for spec in specs:
            if spec["n"] == 7 and len(batches) == 2:
                answers.append({"error": {"status": 503, "title": "Service Unavailable"}})
            elif spec["n"] == 9:
                answers.append({"error": {"status": 400, "title": "Bad Request",
                                          "errors": [{"field": "kind", "message": "is required"}]}})
            else:
                answers.append({"id": "id%d" % spec["n"], "status": "queued"})
        return _answer(202, {"jobs": answers})

    specs = [dict(SPEC, n=i) for i in range(12)]
    with fake_clock(), jobgate.Client(transport=httpx.MockTransport(gateway)) as client:
        jobs = client.map(specs, wait=None, batch_size=5, return_exceptions=True)
        assert batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11], [7]], batches
        assert [j.id if isinstance(j, jobgate.Job) else "E" for j in jobs] == \
            ["id%d" % i if i != 9 else "E" for i in range(12)]
        assert jobs[9].status == 400 and jobs[9].index == 9
        batches.clear()
        try:
            client.map(specs, wait=None, batch_size=5)
        except jobgate.APIError as exc:
            assert exc.index == 9
        else:
            raise AssertionError("no APIError")

    def lost(request):
        batches.append(request)
        raise httpx.RemoteProtocolError("server disconnected without an answer")
    batches.clear()
    with fake_clock(), jobgate.Client(transport=httpx.MockTransport(lost)) as client:
        try:
            client.map(specs[:3], wait=None)
        except jobgate.AmbiguousSubmitError as exc:
            assert len(exc.specs) == 3
        else:
            raise AssertionError("no AmbiguousSubmitError")
    assert len(batches) == 1        # sent once: a resend could duplicate


def test_batches_are_split_at_1000():
    sizes = []

    def gateway(request):
        specs = json.loads(request.content)["jobs"]
        sizes.append(len(specs))
        return _answer(202, {"jobs": [{"id": "x%d" % s["n"], "status": "queued"} for s in specs]})
    specs = [dict(SPEC, n=i) for i in range(2500)]
    with jobgate.Client(transport=httpx.MockTransport(gateway)) as client:
        jobs = client.map(specs, wait=None, batch_size=5000)
    assert sizes == [1000, 1000, 500] and [j.id for j in jobs] == ["x%d" % i for i in range(2500)]


def test_the_package_is_typed_strictly():
    import os
    import subprocess
    import tempfile
    from clientstack import CLIENT_DIR
    with tempfile.TemporaryDirectory() as cache:
        check = subprocess.run(["/usr/bin/python3", "-m", "mypy", "--strict", "--cache-dir", cache,
                                os.path.join(CLIENT_DIR, "jobgate")],
                               capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert os.path.exists(os.path.join(CLIENT_DIR, "jobgate", "py.typed"))


def test_a_wait_shorter_than_a_second_is_one_long_poll_not_a_spin():
    polls = []
    with fake_clock() as clock:
        def gateway(request):
            # The gateway holds the poll for its wait; an answer takes 10 ms.
            polls.append(request.url.params.get("wait"))
            clock.now += max(0.01, float(polls[-1]))
            return _answer(200, dict(QUEUED, status="running"))
        with jobgate.Client(transport=httpx.MockTransport(gateway)) as client:
            job = client.get("j1", wait=0.5)
    assert job.status == "running" and polls == ["1"], polls
