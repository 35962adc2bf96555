"""Provider kinds and secrets (issue 4): search request templates, LLM chat
completions plain and streamed (chunks relayed, the answer assembled),
provider auth from an env var or a file, and secrets kept out of results
and logs."""
import http.client
import json
import os

from harness import Stack, wait_until

SECRET = "sk-test-0123456789abcdef"          # what the mock requires
WRONG = "sk-wrong-fedcba9876543210"          # a key the mock refuses
SECRET_ENV = "JOBGATE_TEST_PROVIDER_KEY"
WRONG_ENV = "JOBGATE_TEST_PROVIDER_WRONG_KEY"


def _stack(providers, workers=1, worker_extra=None, start_workers=True):
    """A stack whose config gains providers (a function of the mock's base
    URL and the stack's directory, known only once the mock runs) before
    anything else starts."""
    stack = Stack(workers=0, start=False)
    base = "http://127.0.0.1:%d" % stack.mock_port
    stack.config["providers"].update(providers(base, stack.dir))
    if worker_extra:
        stack.config["worker"].update(worker_extra)
    stack.start_all(workers if start_workers else 0)
    return stack


def _run(stack, spec):
    return stack.wait_terminal(stack.submit(spec).json()["id"])


def _search_providers(base, _dir):
    return {
        # A real-looking GET template against the mock's /search.
        "web": {"base_url": base,
                "search": {"method": "GET", "path": "/search", "query_param": "q",
                           "count_param": "count", "params": {"safe": "active"}}},
        # The same template shape against /echo, to see exactly what is sent.
        "web_echo": {"base_url": base,
                     "search": {"path": "/echo", "query_param": "query", "count_param": "num",
                                "params": {"safe": "active", "lang": "en"}}},
        "post_echo": {"base_url": base,
                      "search": {"method": "POST", "path": "/echo", "params": {"safe": "active"}}},
    }


def test_search_template():
    with _stack(_search_providers) as stack:
        job = _run(stack, {"kind": "search", "provider": "web",
                           "request": {"query": "zeromq", "count": 3}})
        assert job["status"] == "succeeded", job
        body = job["result"]["body"]
        assert body["query"] == "zeromq"
        assert [r["url"] for r in body["results"]] == ["http://127.0.0.1/r/%d" % i for i in range(3)]
        # query → query_param, count → count_param, extras and template
        # params as they are (the request's extras win).
        job = _run(stack, {"kind": "search", "provider": "web_echo",
                           "request": {"query": "a b", "count": 7, "lang": "fr", "page": 2}})
        assert job["status"] == "succeeded", job
        echo = job["result"]["body"]
        assert echo["method"] == "GET" and echo["path"] == "/echo", echo
        assert echo["query"] == {"safe": "active", "lang": "fr", "page": "2",
                                 "query": "a b", "num": "7"}, echo
        # A POST template sends the same fields as a JSON body.
        job = _run(stack, {"kind": "search", "provider": "post_echo",
                           "request": {"query": "cats", "region": "eu"}})
        assert job["status"] == "succeeded", job
        echo = job["result"]["body"]
        assert echo["method"] == "POST", echo
        assert json.loads(echo["body"]) == {"safe": "active", "region": "eu", "q": "cats"}, echo


def _llm_providers(base, _dir):
    return {"llm": {"base_url": base + "/v1"}}


def _chat(stream, text="hello big world", model="mock-1"):
    request = {"model": model, "messages": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": text}]}
    if stream:
        request["stream"] = True
    return {"kind": "llm", "provider": "llm", "request": request}


def test_llm_plain():
    with _stack(_llm_providers) as stack:
        job = _run(stack, _chat(False))
        assert job["status"] == "succeeded", job
        body = job["result"]["body"]
        assert body["object"] == "chat.completion", body
        assert body["model"] == "mock-1"
        assert body["choices"][0]["message"] == {"role": "assistant",
                                                 "content": "Echo: hello big world"}, body
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
        assert "streamed" not in body
        assert "chunks=" not in stack.log("worker0")


def test_llm_stream():
    words = ["w%d" % i for i in range(12)]
    with _stack(_llm_providers) as stack:
        job = _run(stack, _chat(True, " ".join(words)))
        assert job["status"] == "succeeded", job
        body = job["result"]["body"]
        assert body["streamed"] is True, body
        assert body["object"] == "chat.completion"
        assert body["model"] == "mock-1"
        choice = body["choices"][0]
        assert choice["message"] == {"role": "assistant",
                                     "content": "Echo: " + " ".join(words)}, body
        assert choice["finish_reason"] == "stop"
        assert body["usage"]["completion_tokens"] == len(words) + 1, body
        # Every token went to the broker as a CHUNK (one per delta).
        log = stack.log("worker0")
        assert "attempt 1 succeeded status=200" in log and "chunks=%d" % (len(words) + 1) in log, log
        assert stack.mock_stats()["by_path"] == {"/v1/chat/completions": 1}


def test_llm_stream_over_cap_fails():
    # 400 tokens of ~10 bytes: the assembled text passes the 1 KiB cap.
    with _stack(_llm_providers, worker_extra={"max_response_bytes": 1024}) as stack:
        spec = _chat(True, " ".join("token%04d" % i for i in range(400)))
        spec["max_attempts"] = 1
        job = _run(stack, spec)
        assert job["status"] == "failed", job
        assert job["error"]["type"] == "response_too_large", job


def _read_events(port, job_id, timeout=30):
    """Reads a job's SSE stream to its end: [(id, event, data)]."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", "/v1/jobs/%s/events" % job_id)
    resp = conn.getresponse()
    assert resp.status == 200, (resp.status, resp.read())
    events, current = [], {}
    for raw in resp:
        line = raw.decode().rstrip("\r\n")
        if line == "":
            if current:
                events.append((current.get("id"), current.get("event"), current.get("data", "")))
            current = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            current[key] = current[key] + "\n" + value if key == "data" and key in current else value
    conn.close()
    return events


def _chunk_text(data):
    """The delta text of a chunk event's data (JSON with "data", or text)."""
    try:
        value = json.loads(data)
    except ValueError:
        return data, None
    if isinstance(value, dict):
        return value.get("data", ""), value.get("index")
    return data, None


def test_llm_stream_sse_events():
    # Needs the gateway's GET /v1/jobs/{id}/events (issue 4, the lead's side).
    words = ["t%d" % i for i in range(30)]
    with _stack(_llm_providers) as stack:
        job_id = stack.submit(_chat(True, " ".join(words))).json()["id"]
        events = _read_events(stack.gateway_port, job_id)
        kinds = [e[1] for e in events]
        assert kinds and kinds[-1] == "result", events
        chunks = [e for e in events if e[1] == "chunk"]
        assert chunks, events
        assert kinds.index("result") > max(i for i, k in enumerate(kinds) if k == "chunk"), kinds
        texts, indexes = zip(*(_chunk_text(e[2]) for e in chunks))
        expected = ["Echo:"] + [" " + w for w in words]
        assert list(texts) == expected, texts
        if indexes[0] is not None:
            assert list(indexes) == list(range(len(expected))), indexes
        result = json.loads(events[-1][2])
        assert result["status"] == "succeeded", result
        content = result["result"]["body"]["choices"][0]["message"]["content"]
        assert content == "".join(expected), result


def _auth_providers(base, dir):
    key_file = os.path.join(dir, "provider.key")
    with open(key_file, "w") as f:
        f.write(SECRET + "\n")            # the trailing newline is stripped
    os.chmod(key_file, 0o600)
    search = {"path": "/echo?require_key=" + SECRET}
    return {
        "by_env": {"base_url": base, "search": search,
                   "auth": {"header": "Authorization", "prefix": "Bearer ", "env": SECRET_ENV}},
        "by_file": {"base_url": base, "search": search,
                    "auth": {"header": "Authorization", "prefix": "Bearer ", "file": key_file}},
        "wrong_key": {"base_url": base, "search": search,
                      "auth": {"header": "Authorization", "prefix": "Bearer ", "env": WRONG_ENV}},
        "no_key": {"base_url": base, "search": search},
        "custom_header": {"base_url": base,
                          "auth": {"header": "X-Mock-Key", "env": SECRET_ENV}},
    }


def test_provider_auth_and_redaction():
    os.environ[SECRET_ENV] = SECRET
    os.environ[WRONG_ENV] = WRONG
    try:
        with _stack(_auth_providers) as stack:
            for provider in ("by_env", "by_file"):
                job = _run(stack, {"kind": "search", "provider": provider,
                                   "request": {"query": "q"}})
                # 200 means the key arrived: the mock requires it.
                assert job["status"] == "succeeded", job
                echo = job["result"]["body"]
                headers = {k.lower(): v for k, v in echo["headers"].items()}
                assert headers["authorization"] == "Bearer [redacted]", headers
                assert echo["query"]["require_key"] == "[redacted]", echo
                assert SECRET not in json.dumps(job), job
            # A wrong or missing key is a 401: final, not retried.
            for provider in ("wrong_key", "no_key"):
                job = _run(stack, {"kind": "search", "provider": provider,
                                   "request": {"query": "q"}})
                assert job["status"] == "failed", job
                assert job["attempts"] == 1, job
                assert job["result"]["status"] == 401, job
                assert job["error"]["upstream_status"] == 401, job
                assert WRONG not in json.dumps(job), job
            # Any header name works; user headers cannot replace the key.
            job = _run(stack, {"kind": "http", "provider": "custom_header",
                               "request": {"path": "/echo", "headers": {"X-Mock-Key": "mine"}}})
            assert job["status"] == "succeeded", job
            headers = {k.lower(): v for k, v in job["result"]["body"]["headers"].items()}
            assert headers["x-mock-key"] == "[redacted]", headers
            # A user URL never gets a provider's key, even on the same host.
            job = _run(stack, {"kind": "http", "request": {"url": stack.mock_url("/echo")}})
            headers = {k.lower(): v for k, v in job["result"]["body"]["headers"].items()}
            assert "authorization" not in headers and "x-mock-key" not in headers, headers
        for name in ("worker0", "broker", "gateway", "mock"):
            text = stack.log(name)
            assert SECRET not in text and WRONG not in text, name
    finally:
        os.environ.pop(SECRET_ENV, None)
        os.environ.pop(WRONG_ENV, None)


def test_missing_secret_stops_the_worker():
    os.environ.pop(SECRET_ENV, None)
    with _stack(lambda base, _dir: {"needs_key": {"base_url": base, "auth": {"env": SECRET_ENV}}},
                start_workers=False) as stack:
        proc = stack.start_worker()
        wait_until(lambda: proc.poll() is not None, 10, "the worker to exit")
        assert proc.returncode == 1, proc.returncode
        lines = stack.log("worker0").strip().splitlines()
        assert len(lines) == 1, lines
        assert "providers.needs_key.auth" in lines[0] and SECRET_ENV in lines[0], lines
