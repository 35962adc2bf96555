"""collect.py OUT.json (JOBGATE_BUILD names the build) — drives a real stack (tests/integration/harness.py)
through every operation of gateway/assets/openapi.json and the answers it
documents (successes, 400, 401, 404, 405, 409, 413, 415, 429, 503, the
OpenAI door's errors), and writes what came back — status, headers, body —
for validate.mjs to check against the document's schemas. Also a webhook
delivery as the receiver got it, and the job specs it sent, which the
document's JobSpec must accept."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import Stack, request, wait_until  # noqa: E402

SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
OPERATOR = {"Authorization": "Bearer key-ops"}
TENANT = {"Authorization": "Bearer key-t"}
QUOTA = {"Authorization": "Bearer key-q"}


class Samples:
    def __init__(self, stack):
        self.stack = stack
        self.items = []
        self.specs = []

    def call(self, template, method, path, body=None, headers=None, expect=None, timeout=30):
        headers = dict(OPERATOR if headers is None else headers)
        if isinstance(body, str):
            headers.setdefault("Content-Type", "application/json")
        resp = request(self.stack.gateway_port, method.upper(), path, body=body, headers=headers,
                       timeout=timeout)
        if expect is not None:
            assert resp.status == expect, (method, path, resp.status, resp.body)
        content_type = (resp.header("Content-Type") or "").split(";")[0].strip()
        text = resp.body.decode("utf-8", "replace")
        parsed = text
        if content_type.endswith("json") and text:
            parsed = json.loads(text)
        self._keep_specs(template, method, body, resp.status, parsed)
        self.items.append({"path": template, "method": method.lower(), "status": resp.status,
                           "content_type": content_type,
                           "headers": {k.lower(): v for k, v in resp.headers},
                           "body": parsed, "raw": text if content_type == "text/event-stream" else None})
        return resp


    def _keep_specs(self, template, method, body, status, answer):
        # The job specs sent, each with the gateway's verdict: accepted, or
        # refused as invalid (400); the document's JobSpec must agree.
        if method.upper() != "POST" or not isinstance(body, dict):
            return
        if template == "/v1/jobs" and status in (200, 202, 400):
            self.specs.append({"spec": body, "valid": status != 400})
        elif template == "/v1/batch" and status == 202:
            for spec, item in zip(body["jobs"], answer["jobs"]):
                if "id" in item or item["error"]["status"] == 400:
                    self.specs.append({"spec": spec, "valid": "id" in item})


def _wait_terminal(stack, job_id):
    def finished():
        job = request(stack.gateway_port, "GET", "/v1/jobs/%s?wait=5" % job_id,
                      headers=OPERATOR).json()
        return job if job["status"] in ("succeeded", "failed", "canceled") else None
    return wait_until(finished, 60, "job %s to finish" % job_id)


def _config(stack):
    base = "http://127.0.0.1:%d" % stack.mock_port
    stack.config["providers"]["mock"]["models"] = ["gpt-mock", "text-embedding-mock"]
    stack.config["providers"]["llm"] = {"base_url": base + "/v1"}
    stack.config["providers"]["web"] = {
        "base_url": base, "search": {"method": "GET", "path": "/search", "query_param": "q",
                                     "count_param": "count"}}
    stack.config["gateway"]["api_keys"] = [
        {"key": "key-ops", "tenant": "ops", "operator": True},
        {"key": "key-t", "tenant": "t"}, {"key": "key-q", "tenant": "q"}]
    stack.config["quotas"] = {"q": {"submit_rate": 1, "max_queued": 1}}
    stack.config["webhooks"] = {"secret": SECRET, "max_attempts": 3}


def collect(out_path):
    stack = Stack(start=False)
    _config(stack)
    stack.start_all(1)
    try:
        s = Samples(stack)
        mock = stack.mock_url
        hook = mock("/hook?capture=contract&fail=1")
        # Submissions of each kind, and what they become.
        ok = s.call("/v1/jobs", "POST", "/v1/jobs",
                    {"kind": "http", "provider": "mock", "request": {"path": "/json"},
                     "metadata": {"order": 1}, "callback": {"url": hook}}, expect=202).json()
        s.call("/v1/jobs", "POST", "/v1/jobs",
               {"kind": "http", "request": {"url": mock("/json"), "method": "POST",
                                            "headers": {"X-A": "1"}, "body": {"a": 1}},
                "priority": 7, "max_attempts": 2, "timeout_ms": 5000,
                "cache": {"ttl_ms": 60000}},
               headers=dict(OPERATOR, Prefer="wait=10", **{"Idempotency-Key": "k1"}), expect=200)
        crawl = s.call("/v1/jobs", "POST", "/v1/jobs",
                       {"kind": "crawl", "request": {"url": mock("/html")}}, expect=202).json()
        search = s.call("/v1/jobs", "POST", "/v1/jobs",
                        {"kind": "search", "provider": "web", "request": {"query": "zeromq",
                                                                          "count": 2}},
                        expect=202).json()
        llm = s.call("/v1/jobs", "POST", "/v1/jobs",
                     {"kind": "llm", "provider": "llm",
                      "request": {"model": "mock-1", "messages": [{"role": "user",
                                                                   "content": "hi"}]}},
                     expect=202).json()
        failed = s.call("/v1/jobs", "POST", "/v1/jobs",
                        {"kind": "http", "request": {"url": mock("/flaky?key=c1&fail=9&status=404")},
                         "max_attempts": 1}, expect=202).json()
        slow = s.call("/v1/jobs", "POST", "/v1/jobs",
                      {"kind": "http", "request": {"url": mock("/echo?latency_ms=30000")}},
                      expect=202).json()
        for job in (ok, crawl, search, llm, failed):
            _wait_terminal(stack, job["id"])
        # Read at once: the mock forgets what it captured at its next /flaky
        # request (tests/mock/mock_upstream.c, s_flaky_attempt).
        deliveries = wait_until(lambda: len(request(stack.mock_port, "GET",
                                                    "/captured?key=contract").json()) >= 2
                                and request(stack.mock_port, "GET",
                                            "/captured?key=contract").json(), 20,
                                "the webhook delivery, retried once")
        for job in (ok, crawl, search, llm, failed):
            s.call("/v1/jobs/{id}", "get", "/v1/jobs/" + job["id"], expect=200)
        s.call("/v1/jobs/{id}", "get", "/v1/jobs/%s?wait=1" % slow["id"], expect=200)
        s.call("/v1/jobs/{id}/events", "get", "/v1/jobs/%s/events" % ok["id"], expect=200)
        s.call("/v1/jobs/{id}/spec", "get", "/v1/jobs/%s/spec" % ok["id"], expect=200)
        s.call("/v1/jobs/{id}/spec", "get", "/v1/jobs/%s/spec" % ok["id"], headers=TENANT,
               expect=404)
        s.call("/v1/jobs/{id}", "delete", "/v1/jobs/" + slow["id"], expect=200)
        s.call("/v1/jobs/{id}", "delete", "/v1/jobs/" + ok["id"], expect=409)
        s.call("/v1/jobs/{id}/retry", "post", "/v1/jobs/%s/retry" % failed["id"], expect=202)
        s.call("/v1/jobs/{id}/retry", "post", "/v1/jobs/%s/retry" % ok["id"], expect=409)
        _wait_terminal(stack, failed["id"])
        unknown = "0190a000-0000-7000-8000-000000000000"
        for template, method, path in (("/v1/jobs/{id}", "get", "/v1/jobs/" + unknown),
                                       ("/v1/jobs/{id}", "delete", "/v1/jobs/" + unknown),
                                       ("/v1/jobs/{id}/retry", "post",
                                        "/v1/jobs/%s/retry" % unknown),
                                       ("/v1/jobs/{id}/events", "get",
                                        "/v1/jobs/%s/events" % unknown)):
            s.call(template, method, path, expect=404)
        # Lists and batches.
        s.call("/v1/jobs", "get", "/v1/jobs?limit=2", expect=200)
        s.call("/v1/jobs", "get", "/v1/jobs?status=failed", expect=200)
        s.call("/v1/jobs", "get", "/v1/jobs?status=lost", expect=400)
        s.call("/v1/batch", "post", "/v1/batch",
               {"jobs": [{"kind": "http", "provider": "mock", "request": {"path": "/json"}},
                         {"kind": "http", "request": {"path": "/json"}}]}, expect=202)
        s.call("/v1/batch", "post", "/v1/batch", {"jobs": []}, expect=400)
        # Refusals.
        s.call("/v1/jobs", "post", "/v1/jobs", {"kind": "ftp", "request": {}, "priority": 12},
               expect=400)
        s.call("/v1/jobs", "post", "/v1/jobs", "{not json", expect=400)
        s.call("/v1/jobs", "post", "/v1/jobs", "x", headers=dict(OPERATOR,
                                                                 **{"Content-Type": "text/plain"}),
               expect=415)
        s.call("/v1/jobs", "post", "/v1/jobs", "[" * 10 + "1" * (2 * 1024 * 1024), expect=413)
        s.call("/v1/jobs", "post", "/v1/jobs",
               {"kind": "http", "provider": "mock", "request": {"path": "/json?x=1"}},
               headers=dict(OPERATOR, **{"Idempotency-Key": "k1"}), expect=409)
        s.call("/v1/jobs", "get", "/v1/jobs", headers={}, expect=401)
        s.call("/v1/jobs", "post", "/v1/jobs", {"kind": "http", "request": {"url": mock("/json")}},
               headers={"Authorization": "Bearer wrong"}, expect=401)
        statuses = [s.call("/v1/jobs", "post", "/v1/jobs",
                           {"kind": "http", "request": {"url": mock("/echo?latency_ms=20000")}},
                           headers=QUOTA).status for _ in range(3)]
        assert 429 in statuses, statuses
        s.call("/v1/batch", "put", "/v1/batch", {}, expect=405)
        # Providers, usage, the probes and documents.
        s.call("/v1/providers", "get", "/v1/providers", expect=200)
        s.call("/v1/providers", "get", "/v1/providers", headers=TENANT, expect=200)
        s.call("/v1/usage", "get", "/v1/usage", expect=200)
        s.call("/v1/usage", "get", "/v1/usage?since=2026-01-01T00:00:00Z", expect=200)
        s.call("/v1/usage", "get", "/v1/usage?since=yesterday", expect=400)
        s.call("/v1/stats", "get", "/v1/stats", expect=200)
        s.call("/v1/stats", "get", "/v1/stats", headers=TENANT, expect=403)
        s.call("/v1/stats", "get", "/v1/stats", headers={}, expect=401)
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/"):
            s.call(path, "get", path, headers={}, expect=200)
        # The OpenAI-compatible door.
        chat = {"model": "gpt-mock", "messages": [{"role": "user", "content": "hi"}]}
        s.call("/v1/chat/completions", "post", "/v1/chat/completions", chat, expect=200)
        s.call("/v1/chat/completions", "post", "/v1/chat/completions", dict(chat, stream=True),
               expect=200)
        s.call("/v1/chat/completions", "post", "/v1/chat/completions", chat,
               headers=dict(OPERATOR, Prefer="respond-async"), expect=202)
        s.call("/v1/chat/completions", "post", "/v1/chat/completions", dict(chat, model="nope"),
               expect=404)
        s.call("/v1/chat/completions", "post", "/v1/chat/completions", {"messages": []},
               expect=400)
        s.call("/v1/chat/completions", "post", "/v1/chat/completions", chat, headers={},
               expect=401)
        s.call("/v1/embeddings", "post", "/v1/embeddings",
               {"model": "text-embedding-mock", "input": "hi"}, expect=200)
        s.call("/v1/models", "get", "/v1/models", expect=200)
        s.call("/v1/models/{id}", "get", "/v1/models/mock/gpt-mock", expect=200)
        s.call("/v1/models/{id}", "get", "/v1/models/nope", expect=404)
        s.call("/v1/models", "get", "/v1/models", headers={}, expect=401)
        # The broker gone: 503 for what needs it, readiness says so.
        stack.stop("broker")
        s.call("/v1/jobs/{id}", "get", "/v1/jobs/" + unknown, expect=503)
        s.call("/v1/jobs", "post", "/v1/jobs", {"kind": "http", "request": {"url": mock("/json")}},
               expect=503)
        s.call("/readyz", "get", "/readyz", headers={}, expect=503)
        with open(out_path, "w") as out:
            json.dump({"responses": s.items, "specs": s.specs, "webhook_secret": SECRET,
                       "webhooks": [{"body": d["body"], "headers": d["headers"]}
                                    for d in deliveries]}, out, indent=1)
        print("collect: %d responses, %d specs, %d webhook deliveries"
              % (len(s.items), len(s.specs), len(deliveries)))
    except BaseException:
        stack.dump_logs()
        raise
    finally:
        stack.close()


if __name__ == "__main__":
    collect(sys.argv[1])
