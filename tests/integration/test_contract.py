"""The HTTP contract against the real gateway (issue 13, "The contract,
strict"): what gateway/assets/openapi.json describes is what the gateway
serves. Every path and method the document names is served (never 404 or
405); every other method on those paths is 405 with exactly the documented
methods in Allow; a path the document does not name is 404 whatever the
method, "%00" and empty or malformed segments included."""
from harness import Stack, request

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
MODEL = "mock/gpt-mock"


def _contract_stack():
    stack = Stack(start=False)
    stack.config["providers"]["mock"]["models"] = ["gpt-mock"]
    stack.start_all(1)
    return stack


def _call(stack, method, path):
    # A body for the methods that take one: "{}" is a valid JSON body that
    # every documented POST refuses (400) or acts on without harm.
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    return request(stack.gateway_port, method, path, body=body, headers=headers, timeout=20)


def test_documented_routes_are_the_served_ones():
    with _contract_stack() as stack:
        job_id = stack.submit({"kind": "http", "provider": "mock",
                               "request": {"path": "/json"}}).json()["id"]
        assert stack.wait_terminal(job_id)["status"] == "succeeded"
        doc = stack.get_path("/openapi.json").json()
        checked = 0
        for template, item in doc["paths"].items():
            path = template.replace("{id}", MODEL if template.startswith("/v1/models/") else job_id)
            documented = {m.upper() for m in item if m.upper() in METHODS}
            assert documented, template
            if "GET" in documented:
                documented.add("HEAD")
            for method in METHODS:
                resp = _call(stack, method, path)
                if method in documented:
                    assert resp.status not in (404, 405), (method, path, resp.status, resp.body)
                else:
                    assert resp.status == 405, (method, path, resp.status, resp.body)
                    allow = {m.strip() for m in (resp.header("Allow") or "").split(",")}
                    assert allow == documented, (method, path, allow, documented)
                checked += 1
        assert checked == len(doc["paths"]) * len(METHODS)


def test_wrong_paths_are_404_whatever_the_method():
    with _contract_stack() as stack:
        job_id = stack.submit({"kind": "http", "provider": "mock",
                               "request": {"path": "/json"}}).json()["id"]
        wrong = ["/v1/jobs/%00/retry", "/v1/jobs/%00", "/v1/jobs/%00/events", "/v1/jobs/",
                 "/v1/jobs//retry", "/v1/jobs%00", "/v1/jobs%00/x", "/healthz%00x",
                 "/v1/jobs/not-a-job/retry", "/v1/jobs/%s/retry/" % job_id,
                 "/v1/jobs/%s/nope" % job_id, "/v1/jobs/%s%%00/retry" % job_id,
                 "/v1/models/", "/v1/nothing", "/V1/JOBS", "/openapi.json/x"]
        for path in wrong:
            for method in METHODS:
                resp = _call(stack, method, path)
                assert resp.status == 404, (method, path, resp.status, resp.body)
                if method != "HEAD":
                    assert resp.header("Content-Type") == "application/problem+json", path
        # The job itself is untouched by all of that.
        assert stack.job(job_id)["status"] in ("queued", "running", "succeeded")
