"""Fallbacks (providers.NAME.fallback, docs/protocol.md §3.2.2): when a
provider's breaker is open, it is paused longer than the job can wait, or an
attempt failed retryably, the next attempt goes to the next provider of its
list; the job shows which provider answered (answered_by)."""
import json

from harness import Stack, free_port, request


def _stack(providers, workers=1):
    """A stack whose providers are providers(mock_base_url, closed_base_url):
    the mock answers, nothing listens on the closed one (connect_failed)."""
    stack = Stack(workers=0, start=False)
    closed = "http://127.0.0.1:%d" % free_port()
    stack.config["providers"].update(providers(stack.mock_url(""), closed))
    stack.start_all(workers)
    return stack


def _run(stack, spec):
    return stack.wait_terminal(stack.submit(spec).json()["id"], timeout=60)


def _brief(value):
    return json.dumps(value)[:2000]


def _provider_state(stack, name):
    providers = stack.get_path("/v1/providers").json()["providers"]
    return [p for p in providers if p["name"] == name][0]


def test_retryable_failure_moves_the_next_attempt_to_the_fallback():
    with _stack(lambda mock, closed: {
            "down": {"base_url": closed, "circuit_failures": 0, "retry_base_ms": 60000,
                     "fallback": ["backup"]},
            "alone": {"base_url": closed, "circuit_failures": 0},
            "backup": {"base_url": mock}}) as stack:
        # The first attempt cannot connect; the second goes to the fallback
        # at once (down's 60 s backoff is down's), which answers.
        job = _run(stack, {"kind": "http", "provider": "down", "max_attempts": 3,
                           "request": {"path": "/json"}})
        assert job["status"] == "succeeded", _brief(job)
        assert job["attempts"] == 2, _brief(job)
        assert job["provider"] == "down" and job["answered_by"] == "backup", _brief(job)
        # Its own provider answering is named too.
        job = _run(stack, {"kind": "http", "provider": "backup", "request": {"path": "/json"}})
        assert job["answered_by"] == "backup", _brief(job)
        # Without a fallback nothing changes: failed, and nobody answered.
        job = _run(stack, {"kind": "http", "provider": "alone", "max_attempts": 1,
                           "request": {"path": "/json"}})
        assert job["status"] == "failed" and job["error"]["type"] == "connect_failed", _brief(job)
        assert "answered_by" not in job, _brief(job)


def test_open_breaker_sends_calls_to_the_fallback():
    with _stack(lambda mock, closed: {
            "down": {"base_url": closed, "circuit_failures": 1, "circuit_open_ms": 60000,
                     "circuit_fail_fast": True, "fallback": ["backup"]},
            "lonely": {"base_url": closed, "circuit_failures": 1, "circuit_open_ms": 60000,
                       "circuit_fail_fast": True},
            "backup": {"base_url": mock}}) as stack:
        # One failure opens down's breaker; that job's retry goes to backup.
        job = _run(stack, {"kind": "http", "provider": "down", "request": {"path": "/json"}})
        assert job["status"] == "succeeded" and job["attempts"] == 2, _brief(job)
        assert _provider_state(stack, "down")["circuit"] == "open"
        # While it is open, down's jobs go straight to backup (their first
        # attempt), and are not failed fast: backup can take them.
        stack.mock_reset()
        ids = [stack.submit({"kind": "http", "provider": "down", "max_attempts": 1,
                             "request": {"path": "/json"}}).json()["id"] for _ in range(5)]
        for job_id in ids:
            job = stack.wait_terminal(job_id)
            assert job["status"] == "succeeded", _brief(job)
            assert job["attempts"] == 1 and job["answered_by"] == "backup", _brief(job)
        assert stack.mock_stats()["by_path"].get("/json") == 5
        down = _provider_state(stack, "down")
        assert down["circuit"] == "open" and down["totals"]["started"] == 1, _brief(down)
        # A provider without a fallback still fails fast.
        _run(stack, {"kind": "http", "provider": "lonely", "max_attempts": 1,
                     "request": {"path": "/json"}})
        job = _run(stack, {"kind": "http", "provider": "lonely", "request": {"path": "/json"}})
        assert job["status"] == "failed" and job["error"]["type"] == "circuit_open", _brief(job)


def test_pause_longer_than_the_job_can_wait_goes_to_the_fallback():
    with _stack(lambda mock, closed: {
            "primary": {"base_url": mock, "fallback": ["backup"]},
            "backup": {"base_url": mock}}) as stack:
        # primary answers 429 with Retry-After: 30: it is paused 30 s, and
        # the retry goes to backup at once (flaky answers its 2nd call).
        job = _run(stack, {"kind": "http", "provider": "primary", "max_attempts": 2,
                           "request": {"path": "/flaky?key=pause&fail=1&status=429&retry_after=30"}})
        assert job["status"] == "succeeded" and job["attempts"] == 2, _brief(job)
        assert job["answered_by"] == "backup", _brief(job)
        assert _provider_state(stack, "primary")["blocked_for_ms"] > 20000
        # A job that can wait 5 s (its timeout) does not wait 30 s for
        # primary: its first attempt goes to backup.
        job = _run(stack, {"kind": "http", "provider": "primary", "timeout_ms": 5000,
                           "request": {"path": "/json"}})
        assert job["status"] == "succeeded" and job["attempts"] == 1, _brief(job)
        assert job["answered_by"] == "backup", _brief(job)


def test_llm_fallback_sends_the_fallbacks_model():
    with _stack(lambda mock, closed: {
            "down": {"base_url": closed, "circuit_failures": 0, "fallback": ["keep", "backup"],
                     "models": ["down-model"]},
            "keep": {"base_url": closed, "circuit_failures": 0},
            "backup": {"base_url": mock, "models": ["backup-model", "other"]}}) as stack:
        # down, then keep (no models: the request's model kept, still no
        # answer), then backup with its first model.
        spec = {"kind": "llm", "provider": "down", "max_attempts": 3,
                "request": {"model": "down-model",
                            "messages": [{"role": "user", "content": "hello"}]}}
        job = _run(stack, spec)
        assert job["status"] == "succeeded" and job["attempts"] == 3, _brief(job)
        assert job["answered_by"] == "backup", _brief(job)
        assert job["result"]["body"]["model"] == "backup-model", _brief(job)
        # A stream is relayed from the fallback as well.
        spec["request"]["stream"] = True
        job = _run(stack, spec)
        assert job["status"] == "succeeded" and job["answered_by"] == "backup", _brief(job)
        assert job["result"]["body"]["model"] == "backup-model", _brief(job)
        events = request(stack.gateway_port, "GET", "/v1/jobs/%s/events" % job["id"]).body
        assert b"event: result" in events, events[:2000]
