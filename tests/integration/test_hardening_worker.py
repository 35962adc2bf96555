"""The worker's side of the hardening issues (10 and 17), end to end against
the mock upstream's /hardening/worker/ endpoints:

* issue 10 #1: a redirect hop (crawl) or a webhook never rides on a
  connection a provider call left open, and never reaches a denied address;
* issue 10 #5: a tenant cannot redirect a provider call (Host and its
  kin are reserved), the provider's secret arrives once, untouched;
* issue 10 #7: the secret never reaches a client, in any spelling, in the
  result, the chunk events or the logs;
* issue 17 #1: a huge JSON answer neither stalls the worker (another
  tenant's job finishes on its first attempt) nor swells it;
* issue 17 #4: answers with NUL bytes or 2,048 levels keep their result,
  and their webhook is sent;
* issue 17 #13: a broken status line is an upstream_protocol_error,
  retried, and counts for the provider's breaker.

Only loopback addresses are used (127.0.0.1, and 127.0.0.2 for the second
mock); the mocks count what reaches them."""
import base64
import json
import os
import threading
import time

from harness import Stack, request, wait_until
from test_kinds import _chunk_text, _read_events
from test_ssrf import _second_stats, _start_second_mock, _stop

# A provider secret with the characters that defeated a raw-byte scrubber:
# a quote, a backslash and a slash (which PHP escapes as "\/").
SECRET = 'sk-hard"en\\ed/secret-0123456789'
SECRET_ENV = "JOBGATE_TEST_HARDENING_KEY"
KEYS = {"a": "key-tenant-a", "b": "key-tenant-b"}


def _stack(providers, config_extra=None, workers=1):
    """A stack whose providers (a function of the mock's base URL, known
    once the mock runs) are added before anything else starts."""
    stack = Stack(workers=0, config_extra=config_extra, start=False)
    stack.config["providers"].update(providers("http://127.0.0.1:%d" % stack.mock_port))
    stack.start_all(workers)
    return stack


def _auth(base, suffix=""):
    return {"base_url": base + suffix,
            "auth": {"header": "Authorization", "prefix": "Bearer ", "env": SECRET_ENV}}


def _run(stack, spec):
    return stack.wait_terminal(stack.submit(spec).json()["id"])


def _spellings(secret):
    """The ways a JSON or text answer may write the secret."""
    as_json = json.dumps(secret)[1:-1]
    return {secret, as_json, as_json.replace("/", "\\/")}


def _leaks(text, secret=SECRET):
    """True when raw text, or any string decoded from it as JSON, holds the secret."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if any(spelling in text for spelling in _spellings(secret)):
        return True
    try:
        value = json.loads(text)
    except ValueError:
        return False

    def walk(node):
        if isinstance(node, str):
            return secret in node
        if isinstance(node, dict):
            return any(secret in k or walk(v) for k, v in node.items())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False
    return walk(value)


def _brief(value, limit=600):
    """A failure message's view of a job or result: large bodies cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "... (%d chars)" % len(text)


def _body_bytes(result):
    body = result["body"]
    if result.get("body_encoding") == "base64":
        return base64.b64decode(body)
    return (body if isinstance(body, str) else json.dumps(body)).encode("utf-8", "surrogatepass")


# --- issue 10 #1: SSRF through a reused connection ---

def test_redirect_hop_and_webhook_never_ride_a_provider_connection():
    security = {"allow_private_networks": False, "allow_networks": ["127.0.0.2/32"]}
    with Stack(config_extra={"security": security, "webhooks": {"max_attempts": 1}}) as stack:
        second, second_port = _start_second_mock(stack)
        try:
            allowed = "http://127.0.0.2:%d" % second_port

            def through_allowed(target_path):
                to = "http://127.0.0.1:%d%s" % (stack.mock_port, target_path)
                return allowed + "/redirect?to=" + to.replace(":", "%3A").replace("/", "%2F")

            for round_number in range(3):
                # A provider call leaves a kept-alive connection to the mock
                # (127.0.0.1, a denied address for user URLs) in the worker.
                job = _run(stack, {"kind": "http", "provider": "mock", "request": {"path": "/json"}})
                assert job["status"] == "succeeded", _brief(job)
                # A crawl of an allowed URL that redirects to the provider's
                # host is refused on the hop, pooled connection or not.
                job = _run(stack, {"kind": "crawl", "max_attempts": 1,
                                   "request": {"url": through_allowed("/ssrf-target")}})
                assert job["status"] == "failed", _brief(job)
                assert job["error"]["type"] == "blocked_by_policy", _brief(job)
            assert _second_stats(second_port)["by_path"].get("/redirect") == 3
            # Webhooks: one to the denied host itself, one whose receiver
            # redirects there, each right after a provider call.
            hooks = []
            for hook in (stack.mock_url("/ssrf-hook-direct"), through_allowed("/ssrf-hook-target")):
                job = _run(stack, {"kind": "http", "provider": "mock", "request": {"path": "/json"},
                                   "callback": {"url": hook}})
                assert job["status"] == "succeeded", _brief(job)
                hooks.append(job["id"])

            def delivery_attempts():
                # The broker names each delivery; the worker logs its attempt.
                broker, worker = stack.log("broker"), stack.log("worker0")
                ids = [line.split("webhook ")[1].split()[0] for line in broker.splitlines()
                       if "queued for the callback" in line
                       and any("job=" + job_id in line for job_id in hooks)]
                return len(ids) == 2 and all(
                    any("job=%s attempt 1 " % delivery in line for line in worker.splitlines())
                    for delivery in ids)
            wait_until(delivery_attempts, 30, "both webhook deliveries to be attempted")
            assert _second_stats(second_port)["by_path"].get("/redirect") == 4
            by_path = stack.mock_stats()["by_path"]
            for path in ("/ssrf-target", "/ssrf-hook-direct", "/ssrf-hook-target"):
                assert path not in by_path, _brief(by_path)
            assert by_path.get("/json") == 5, _brief(by_path)
        finally:
            _stop(second, stack)


# --- issue 10 #5: a tenant cannot redirect the provider's secret ---

def test_provider_host_and_secret_are_the_operators():
    os.environ[SECRET_ENV] = SECRET
    try:
        with _stack(lambda base: {"keyed": _auth(base)}) as stack:
            path = "/hardening/worker/headers?capture=%s"
            # Request headers naming the auth header in any case lose to it.
            job = _run(stack, {"kind": "http", "provider": "keyed", "request": {
                "path": path % "h1",
                "headers": {"authorization": "Bearer mine", "AUTHORIZATION": "x", "X-Other": "y"}}})
            assert job["status"] == "succeeded", _brief(job)
            captured = request(stack.mock_port, "GET", "/captured?key=h1").json()
            assert len(captured) == 1, _brief(captured)
            pairs = captured[0]
            hosts = [v for k, v in pairs if k.lower() == "host"]
            assert hosts == ["127.0.0.1:%d" % stack.mock_port], _brief(pairs)
            auths = [v for k, v in pairs if k.lower() == "authorization"]
            assert auths == ["Bearer " + SECRET], _brief(pairs)
            assert sum(SECRET in v for _, v in pairs) == 1, _brief(pairs)
            assert ["X-Other", "y"] in pairs, _brief(pairs)
            # Headers that would send the call (and the secret) to another
            # virtual host or resource are refused: at the gateway, or by
            # the worker before anything is sent.
            for name in ("Host", "host", "X-Forwarded-Host", "Forwarded", "X-Original-URL"):
                resp = stack.submit({"kind": "http", "provider": "keyed", "max_attempts": 1,
                                     "request": {"path": path % "h2",
                                                 "headers": {name: "evil.example"}}}, expect=None)
                if resp.status == 202:
                    job = stack.wait_terminal(resp.json()["id"])
                    assert job["status"] == "failed", _brief(job)
                    assert job["error"]["type"] == "invalid_request", _brief(job)
                    assert "reserved" in job["error"]["message"], _brief(job)
                else:
                    assert resp.status == 400, (resp.status, resp.body)
            assert request(stack.mock_port, "GET", "/captured?key=h2").json() == []
    finally:
        os.environ.pop(SECRET_ENV, None)


# --- issue 10 #7: the secret never reaches a client ---

FORMS = ("json", "slash", "unicode", "key", "text", "html", "binary", "header")


def test_secret_is_scrubbed_in_every_spelling_and_stream():
    os.environ[SECRET_ENV] = SECRET
    try:
        with _stack(lambda base: {"echo": _auth(base),
                                  "llm": _auth(base, "/hardening/worker/secret-llm")}) as stack:
            for form in FORMS:
                spec = {"kind": "http", "provider": "echo",
                        "request": {"path": "/hardening/worker/secret-echo?form=" + form}}
                job_id = stack.submit(spec).json()["id"]
                job = stack.wait_terminal(job_id)
                assert job["status"] == "succeeded", _brief((form, job))
                raw = stack.get_path("/v1/jobs/" + job_id).body
                assert not _leaks(raw), _brief((form, raw))
                assert not _leaks(_body_bytes(job["result"])), _brief((form, job))
                # It was there, and was replaced.
                assert "[redacted]" in raw.decode() or b"[redacted]" in _body_bytes(job["result"]), \
                    _brief((form, raw))
            # A stream that sends the secret split across two deltas, then
            # whole: no chunk event, nor their concatenation, holds it.
            job_id = stack.submit({"kind": "llm", "provider": "llm", "request": {
                "model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}}).json()["id"]
            events = _read_events(stack.gateway_port, job_id)
            chunks = [e for e in events if e[1] == "chunk"]
            assert chunks, _brief(events)
            texts = [_chunk_text(e[2])[0] for e in chunks]
            joined = "".join(texts)
            assert joined == "The key is [redacted] and again [redacted].", _brief(texts)
            for event in events:
                assert not _leaks(event[2]), _brief(event)
            job = stack.wait_terminal(job_id)
            assert job["status"] == "succeeded", _brief(job)
            content = job["result"]["body"]["choices"][0]["message"]["content"]
            assert content == joined, _brief(job)
            assert not _leaks(stack.get_path("/v1/jobs/" + job_id).body)
        for name in ("worker0", "broker", "gateway"):
            assert not _leaks(stack.log(name)), name
    finally:
        os.environ.pop(SECRET_ENV, None)


# --- issue 17 #1: one JSON answer must not stall the worker ---

def _vm_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_huge_json_answer_neither_stalls_nor_swells_the_worker():
    tenants = {"gateway": {"api_keys": [{"key": key, "tenant": t} for t, key in KEYS.items()]}}
    with Stack(config_extra=tenants) as stack:
        def as_tenant(tenant):
            return {"Authorization": "Bearer " + KEYS[tenant]}

        def job_of(tenant, job_id, wait=10):
            resp = request(stack.gateway_port, "GET", "/v1/jobs/%s?wait=%d" % (job_id, wait),
                           headers=as_tenant(tenant))
            assert resp.status == 200, (resp.status, resp.body)
            return resp.json()

        def finished(tenant, job_id):
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                job = job_of(tenant, job_id)
                if job["status"] in ("succeeded", "failed", "canceled"):
                    return job
            raise AssertionError("job %s not finished: %s" % (job_id, job))
        pid = stack.procs["worker0"].pid
        peak = {"kb": _vm_rss_kb(pid)}
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                peak["kb"] = max(peak["kb"], _vm_rss_kb(pid))
                time.sleep(0.05)
        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            # Tenant b's slow job runs on the same (only) worker throughout.
            slow = stack.submit({"kind": "http", "provider": "mock",
                                 "request": {"path": "/json?latency_ms=4000"}},
                                headers=as_tenant("b")).json()["id"]
            # Tenant a: [{},{},...] up to the 10 MiB response cap, three
            # times; 1 MiB of it (350,000 values, beyond the JSON policy);
            # 45 KB (15,000 values, within what the worker parses).
            big = [stack.submit({"kind": "http", "provider": "mock", "max_attempts": 1,
                                 "request": {"path": "/hardening/worker/big-json"}},
                                headers=as_tenant("a")).json()["id"] for _ in range(3)]
            wide = stack.submit({"kind": "http", "provider": "mock", "request": {
                "path": "/hardening/worker/big-json?bytes=1048576"}}, headers=as_tenant("a")).json()["id"]
            fits = stack.submit({"kind": "http", "provider": "mock", "request": {
                "path": "/hardening/worker/big-json?bytes=45000"}}, headers=as_tenant("a")).json()["id"]
            job = finished("b", slow)
            assert job["status"] == "succeeded" and job["attempts"] == 1, _brief(job)
            for job_id in big:
                job = finished("a", job_id)
                assert job["status"] == "failed", _brief(job)
                assert job["error"]["type"] == "response_too_large", _brief(job)
            job = finished("a", wide)
            assert job["status"] == "succeeded" and job["attempts"] == 1, _brief(job)
            count = (1048576 - 1) // 3
            assert job["result"]["body_encoding"] == "json_text", job["result"].keys()
            assert job["result"]["body"] == "[" + "{}," * (count - 1) + "{}]", _brief(job)
            job = finished("a", fits)
            assert job["status"] == "succeeded", _brief(job)
            assert job["result"]["body"] == [{}] * ((45000 - 1) // 3), _brief(job)
        finally:
            sampling.set()
            sampler.join()
        # Nothing was taken for a dead worker, and the worker stayed small.
        assert "worker_lost" not in stack.log("broker")
        assert "reconnecting" not in stack.log("worker0")
        print("worker VmRSS peak: %d kB" % peak["kb"])
        bound_mb = 900 if os.environ.get("JOBGATE_SANITIZED") else 300
        assert peak["kb"] < bound_mb * 1024, "worker VmRSS peaked at %d kB" % peak["kb"]


# --- issue 17 #4: results with NUL bytes or deep nesting are kept ---

def test_nul_and_deep_answers_keep_their_result_and_webhook():
    with Stack() as stack:
        cases = {
            "nul-json": ({"kind": "http", "provider": "mock",
                          "request": {"path": "/hardening/worker/nul-json"},
                          "callback": {"url": stack.mock_url("/echo?capture=nul")}},
                         {"text": "a\x00b", "n": 1}),
            "nul-title": ({"kind": "crawl", "request": {
                "url": stack.mock_url("/hardening/worker/nul-title")}},
                "<html><head><title>A\x00B</title></head><body>x\x00y</body></html>"),
            "zeros-gzip": ({"kind": "http", "provider": "mock",
                            "request": {"path": "/hardening/worker/zeros-gzip"}}, b"\x00" * 4096),
            "deep-json": ({"kind": "http", "provider": "mock",
                           "request": {"path": "/hardening/worker/deep-json?depth=2048"}},
                          "[" * 2048 + "]" * 2048),
        }
        ids = {name: stack.submit(spec).json()["id"] for name, (spec, _) in cases.items()}
        for name, (spec, sent) in cases.items():
            job = stack.wait_terminal(ids[name])
            assert job["status"] == "succeeded", _brief((name, job))
            assert "result" in job and job["result"] is not None, _brief((name, job))
            got = _body_bytes(job["result"]) if isinstance(sent, bytes) else job["result"]["body"]
            assert got == sent, _brief((name, job["result"]))
        job = stack.job(ids["nul-title"])
        assert job["result"]["title"] == "A\ufffdB", _brief(job["result"])
        job = stack.job(ids["deep-json"])
        assert job["result"]["body_encoding"] == "json_text", _brief(job)
        # The webhook of the NUL answer is delivered, NUL and all.
        deliveries = wait_until(lambda: request(stack.mock_port, "GET", "/captured?key=nul").json(),
                                30, "the webhook of the NUL answer")
        # The job is the Standard Webhooks envelope's data.
        payload = json.loads(deliveries[0]["body"])["data"]
        assert payload["id"] == ids["nul-json"], _brief(payload)
        assert payload["result"]["body"] == {"text": "a\x00b", "n": 1}, _brief(payload)


# --- issue 17 #13: a broken status line is the upstream's fault ---

def test_broken_status_line_is_an_upstream_protocol_error():
    with _stack(lambda base: {"lines": {"base_url": base, "circuit_failures": 0},
                              "broken": {"base_url": base, "circuit_failures": 2,
                                         "circuit_open_ms": 60000}}) as stack:
        # Every way of not being HTTP: retried, then failed as the upstream's
        # protocol error, never as blocked_by_policy.
        for line in range(4):
            job = _run(stack, {"kind": "http", "provider": "lines", "max_attempts": 2,
                               "request": {"path": "/hardening/worker/bad-status?line=%d" % line}})
            assert job["status"] == "failed", _brief((line, job))
            assert job["error"]["type"] == "upstream_protocol_error", _brief((line, job))
            assert job["attempts"] == 2, _brief((line, job))
        # Two failures in a row open the breaker: they are the provider's.
        job = _run(stack, {"kind": "http", "provider": "broken", "max_attempts": 2,
                           "request": {"path": "/hardening/worker/bad-status"}})
        assert job["error"]["type"] == "upstream_protocol_error", _brief(job)
        providers = stack.get_path("/v1/providers").json()["providers"]
        state = [p for p in providers if p["name"] == "broken"][0]
        assert state["circuit"] in ("open", "half_open"), _brief(state)
        assert state["recent_errors"][0]["type"] == "upstream_protocol_error", _brief(state)
        # A user URL gets the same verdict.
        job = _run(stack, {"kind": "http", "max_attempts": 1, "request": {
            "url": stack.mock_url("/hardening/worker/bad-status?line=2")}})
        assert job["error"]["type"] == "upstream_protocol_error", _brief(job)
