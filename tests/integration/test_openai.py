"""The OpenAI-compatible door (issue 12, SPEC §3.1): chat plain and
streamed, embeddings, model routing both ways, the model list, OpenAI's
error shape for every error jobgate makes there, the upstream's own errors
unchanged, Prefer: respond-async — over plain HTTP here, and through the
official Node SDK (tests/openai) in test_sdk."""
import http.client
import json
import os
import subprocess
import sys
import time

from harness import Stack, request

HERE = os.path.dirname(os.path.abspath(__file__))
SDK_DIR = os.path.join(HERE, "..", "openai")

KEYS = [{"key": "door-key-a", "tenant": "a"}, {"key": "door-key-b", "tenant": "b"},
        {"key": "door-key-tight", "tenant": "tight"}]
AUTH = {"Authorization": "Bearer door-key-a"}


def _door_stack(extra_config=None):
    """A stack whose "mock" provider lists bare models and whose "other"
    provider (the mock again, under /v1) lists none."""
    stack = Stack(workers=0, start=False)
    base = "http://127.0.0.1:%d" % stack.mock_port
    stack.config["providers"]["mock"]["models"] = ["gpt-mock", "text-embedding-mock"]
    stack.config["providers"]["other"] = {"base_url": base + "/v1"}
    stack.config["gateway"]["api_keys"] = KEYS
    for section, values in (extra_config or {}).items():
        stack.config.setdefault(section, {}).update(values)
    stack.start_all(1)
    return stack


def _post(stack, path, body, headers=AUTH, timeout=70):
    return request(stack.gateway_port, "POST", path, body=body, headers=headers, timeout=timeout)


def _chat(model, text, **fields):
    body = {"model": model, "messages": [{"role": "user", "content": text}]}
    body.update(fields)
    return body


def _openai_error(resp, status, code, param=None):
    """Checks an answer is OpenAI's error shape with status and code."""
    assert resp.status == status, (resp.status, resp.body)
    assert resp.header("Content-Type") == "application/json", resp.headers
    error = resp.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["code"] == code and error["param"] == param, error
    assert error["message"], error
    return error


def _job(stack, job_id, key="door-key-a"):
    resp = stack.get_path("/v1/jobs/" + job_id, headers={"Authorization": "Bearer " + key})
    assert resp.status == 200, (resp.status, resp.body)
    return resp.json()


def test_door_chat_and_routing():
    with _door_stack() as stack:
        # A bare model: the provider that lists it, the model sent as it is.
        resp = _post(stack, "/v1/chat/completions", _chat("gpt-mock", "hello door"))
        assert resp.status == 200, (resp.status, resp.body)
        assert resp.header("Content-Type") == "application/json"
        body = resp.json()
        assert body["object"] == "chat.completion" and body["model"] == "gpt-mock", body
        assert body["choices"][0]["message"] == {"role": "assistant",
                                                 "content": "Echo: hello door"}, body
        assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 3,
                                 "total_tokens": 5}, body
        # Every call is a job, the caller's, named in a header.
        job_id = resp.header("X-Jobgate-Job-Id")
        job = _job(stack, job_id)
        assert job["kind"] == "llm" and job["provider"] == "mock", job
        assert job["status"] == "succeeded" and job["result"]["body"] == body, job
        other = stack.get_path("/v1/jobs/" + job_id, headers={"Authorization": "Bearer door-key-b"})
        assert other.status == 404, other.status
        # PROVIDER/MODEL: that provider, the model without the prefix.
        resp = _post(stack, "/v1/chat/completions", _chat("other/llama-x", "hi"))
        assert resp.status == 200, (resp.status, resp.body)
        assert resp.json()["model"] == "llama-x", resp.body
        assert _job(stack, resp.header("X-Jobgate-Job-Id"))["provider"] == "other"
        assert stack.mock_stats()["by_path"] == {"/chat/completions": 1,
                                                 "/v1/chat/completions": 1}


def _read_stream(stack, body, headers=AUTH):
    """POSTs a streamed call; returns (response, [data lines], raw text)."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.gateway_port, timeout=60)
    headers = dict(headers, **{"Content-Type": "application/json"})
    conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
    resp = conn.getresponse()
    raw = resp.read().decode()
    conn.close()
    data = [line[6:] for line in raw.split("\n") if line.startswith("data: ")]
    return resp, data, raw


def test_door_stream():
    words = ["w%d" % i for i in range(20)]
    with _door_stack() as stack:
        resp, data, raw = _read_stream(
            stack, _chat("gpt-mock", " ".join(words), stream=True,
                         stream_options={"include_usage": True}))
        assert resp.status == 200, raw
        assert resp.getheader("Content-Type") == "text/event-stream", resp.getheaders()
        assert resp.getheader("X-Jobgate-Job-Id"), resp.getheaders()
        assert data[-1] == "[DONE]", raw
        chunks = [json.loads(d) for d in data[:-1]]
        assert all(c["object"] == "chat.completion.chunk" for c in chunks), chunks
        texts = [c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]]
        assert "".join(texts) == "Echo: " + " ".join(words), texts
        # Relayed token by token as they came (the mock sends one every 20 ms),
        # the first naming the role, then the finish and the usage asked for.
        assert len([t for t in texts if t]) >= 10, texts
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant", chunks[0]
        finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
        assert finish[-1] == "stop" and set(finish[:-1]) == {None}, finish
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 21
        job = _job(stack, resp.getheader("X-Jobgate-Job-Id"))
        assert job["status"] == "succeeded", job
        # Without include_usage: no usage chunk.
        resp, data, raw = _read_stream(stack, _chat("gpt-mock", "short", stream=True))
        assert resp.status == 200 and data[-1] == "[DONE]", raw
        assert "usage" not in raw, raw


def test_door_embeddings():
    with _door_stack() as stack:
        resp = _post(stack, "/v1/embeddings", {"model": "text-embedding-mock",
                                               "input": ["one two", "three"]})
        assert resp.status == 200, (resp.status, resp.body)
        body = resp.json()
        assert body["object"] == "list" and len(body["data"]) == 2, body
        assert [d["index"] for d in body["data"]] == [0, 1], body
        assert all(len(d["embedding"]) == 8 for d in body["data"]), body
        assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}, body
        job = _job(stack, resp.header("X-Jobgate-Job-Id"))
        assert job["kind"] == "llm" and job["status"] == "succeeded", job
        # PROVIDER/MODEL works here too; embeddings are never streamed.
        resp = _post(stack, "/v1/embeddings", {"model": "other/e", "input": "x"})
        assert resp.status == 200 and resp.json()["model"] == "e", resp.body
        assert stack.mock_stats()["by_path"] == {"/embeddings": 1, "/v1/embeddings": 1}
        _openai_error(_post(stack, "/v1/embeddings", {"model": "other/e", "input": "x",
                                                      "stream": True}),
                      400, "invalid_value", "stream")
        _openai_error(_post(stack, "/v1/embeddings", {"model": "other/e"}),
                      400, "invalid_value", "input")


def test_door_models():
    with _door_stack() as stack:
        resp = stack.get_path("/v1/models", headers=AUTH)
        assert resp.status == 200, (resp.status, resp.body)
        body = resp.json()
        assert body["object"] == "list", body
        assert [m["id"] for m in body["data"]] == ["mock/gpt-mock", "mock/text-embedding-mock"]
        assert all(m["object"] == "model" and m["owned_by"] == "mock"
                   and isinstance(m["created"], int) for m in body["data"]), body
        resp = stack.get_path("/v1/models/gpt-mock", headers=AUTH)
        assert resp.status == 200 and resp.json()["id"] == "mock/gpt-mock", resp.body
        _openai_error(stack.get_path("/v1/models/nope", headers=AUTH), 404, "model_not_found",
                      "model")
        _openai_error(stack.get_path("/v1/models"), 401, "invalid_api_key")
        doc = stack.get_path("/openapi.json").json()
        for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/models/{id}"):
            assert path in doc["paths"], path


def test_door_errors_in_openai_shape():
    with _door_stack() as stack:
        error = _openai_error(_post(stack, "/v1/chat/completions", _chat("no-such-model", "x")),
                              404, "model_not_found", "model")
        assert "no-such-model" in error["message"], error
        _openai_error(_post(stack, "/v1/chat/completions", _chat("nobody/x", "x")),
                      404, "model_not_found", "model")
        # The SDKs send the key as a bearer token; a wrong or missing one is 401.
        resp = _post(stack, "/v1/chat/completions", _chat("gpt-mock", "x"),
                     headers={"Authorization": "Bearer wrong"})
        assert _openai_error(resp, 401, "invalid_api_key")["type"] == "invalid_request_error"
        _openai_error(_post(stack, "/v1/embeddings", {"model": "gpt-mock", "input": "x"},
                            headers={}), 401, "invalid_api_key")
        # Bad bodies: every problem named as the caller sent it.
        _openai_error(_post(stack, "/v1/chat/completions", {"model": "gpt-mock"}),
                      400, "invalid_value", "messages")
        _openai_error(_post(stack, "/v1/chat/completions", {"messages": []}),
                      400, "missing_required_parameter", "model")
        _openai_error(_post(stack, "/v1/chat/completions", "{not json",
                            headers=dict(AUTH, **{"Content-Type": "application/json"})),
                      400, "invalid_json")
        _openai_error(_post(stack, "/v1/chat/completions", "x",
                            headers=dict(AUTH, **{"Content-Type": "text/plain"})),
                      415, "unsupported_media_type")
        resp = request(stack.gateway_port, "GET", "/v1/chat/completions", headers=AUTH)
        _openai_error(resp, 405, "method_not_allowed")
        assert resp.header("Allow") == "POST", resp.headers
        # The upstream's own refusal comes back unchanged, status and body.
        resp = _post(stack, "/v1/chat/completions", _chat("other/mock-status-400", "x"))
        assert resp.status == 400, (resp.status, resp.body)
        assert resp.json() == {"error": {"message": "the mock refused this call as asked",
                                         "type": "mock_error", "param": None,
                                         "code": "mock_refusal"}}, resp.body
        job = _job(stack, resp.header("X-Jobgate-Job-Id"))
        assert job["status"] == "failed" and job["result"]["status"] == 400, job
        # A streamed call refused before any chunk: a plain JSON answer too.
        resp, data, raw = _read_stream(stack, _chat("other/mock-status-400", "x", stream=True))
        assert resp.status == 400 and json.loads(raw)["error"]["code"] == "mock_refusal", raw


def test_door_respond_async():
    with _door_stack() as stack:
        resp = _post(stack, "/v1/chat/completions", _chat("gpt-mock", "later"),
                     headers=dict(AUTH, Prefer="respond-async"))
        assert resp.status == 202, (resp.status, resp.body)
        job_id = resp.json()["id"]
        assert resp.header("Location") == "/v1/jobs/" + job_id, resp.headers
        assert resp.header("X-Jobgate-Job-Id") == job_id
        deadline = time.monotonic() + 30
        job = _job(stack, job_id)
        while job["status"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
            job = _job(stack, job_id)
        assert job["status"] == "succeeded", job
        assert job["result"]["body"]["choices"][0]["message"]["content"] == "Echo: later", job


def test_door_answers_from_the_end_event():
    """A client held until its job ends — the door, plain and streamed, and
    Prefer: wait on /v1/jobs — is answered from the committed record the
    job's end event carries (docs/protocol.md §3.3), without reading the job
    back, and the answer is what reading it back gives. (A job that ends
    before its SUBMIT_OK reached the gateway is read back as before: the
    stream and the slow job here cannot.)"""
    with _door_stack() as stack:
        before = stack.gateway_metric("jobgate_answered_from_events_total", AUTH)
        resp = _post(stack, "/v1/chat/completions", _chat("gpt-mock", "from the event"))
        assert resp.status == 200, (resp.status, resp.body)
        assert resp.json()["choices"][0]["message"]["content"] == "Echo: from the event"
        assert resp.json() == _job(stack, resp.header("X-Jobgate-Job-Id"))["result"]["body"]
        words = " ".join("w%d" % i for i in range(10))     # 10 tokens, 20 ms apart
        resp, data, raw = _read_stream(stack, _chat("gpt-mock", words, stream=True))
        assert resp.status == 200 and data[-1] == "[DONE]", raw
        texts = [json.loads(d)["choices"][0]["delta"].get("content", "") for d in data[:-1]]
        assert "".join(texts) == "Echo: " + words, texts
        spec = {"kind": "http", "provider": "mock", "request": {"path": "/json?latency_ms=300"}}
        resp = _post(stack, "/v1/jobs", spec, headers=dict(AUTH, Prefer="wait=20"))
        assert resp.status == 200, (resp.status, resp.body)
        held = resp.json()
        assert held["status"] == "succeeded" and held["result"]["status"] == 200, held
        assert held == _job(stack, held["id"]), held
        # Not held: answered 202 at once, nothing to answer from an event.
        resp = _post(stack, "/v1/chat/completions", _chat("gpt-mock", "later"),
                     headers=dict(AUTH, Prefer="respond-async"))
        assert resp.status == 202, (resp.status, resp.body)
        answered = stack.gateway_metric("jobgate_answered_from_events_total", AUTH) - before
        assert 2 <= answered <= 3, answered


def test_door_client_leaves_job_goes_on():
    with _door_stack() as stack:
        # The mock streams 30 tokens over ~0.6 s; the client leaves at once.
        conn = http.client.HTTPConnection("127.0.0.1", stack.gateway_port, timeout=10)
        body = json.dumps(_chat("gpt-mock", " ".join("t%d" % i for i in range(30)), stream=True))
        conn.request("POST", "/v1/chat/completions", body=body,
                     headers=dict(AUTH, **{"Content-Type": "application/json"}))
        time.sleep(0.05)
        conn.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            jobs = json.loads(stack.get_path("/v1/jobs?status=succeeded", headers=AUTH).body)
            if jobs.get("jobs"):
                break
            time.sleep(0.1)
        assert jobs.get("jobs"), jobs
        assert jobs["jobs"][0]["kind"] == "llm", jobs


def test_sdk():
    """The official OpenAI SDK for Node against the door: chat plain and
    streamed, embeddings, routing both ways, the model list, an unknown
    model (NotFoundError), a bad key (AuthenticationError), and a tenant
    over its token budget (RateLimitError)."""
    setup = subprocess.run(["sh", os.path.join(SDK_DIR, "setup.sh")], capture_output=True,
                           timeout=600)
    assert setup.returncode == 0, setup.stdout.decode() + setup.stderr.decode()
    env = dict(os.environ, JOBGATE_KEY="door-key-a", JOBGATE_TIGHT_KEY="door-key-tight")
    with _door_stack({"quotas": {"tight": {"tokens_per_day": 1}}}) as stack:
        env["JOBGATE_BASE_URL"] = "http://127.0.0.1:%d/v1" % stack.gateway_port
        run = subprocess.run(["node", os.path.join(SDK_DIR, "sdk_test.mjs")], env=env,
                             capture_output=True, timeout=300)
        out = run.stdout.decode()
        sys.stdout.write(out)
        assert run.returncode == 0, out + run.stderr.decode()
        results = json.loads(out.strip().splitlines()[-1])
        expected = {"chat_plain", "chat_provider_model", "chat_stream", "embeddings",
                    "models", "unknown_model", "bad_key", "over_token_budget"}
        assert set(results) == expected, results
        for name, outcome in results.items():
            assert outcome == "ok", (name, outcome)
