"""Bad input gets the right 4xx and the gateway keeps serving."""
import socket

from harness import Stack, request


def _problem(resp, status):
    assert resp.status == status, (resp.status, resp.body)
    assert resp.header("Content-Type").startswith("application/problem+json"), resp.headers
    problem = resp.json()
    assert problem["status"] == status
    assert problem["title"] and problem["type"]
    return problem


def _fields(problem):
    return sorted(e["field"] for e in problem.get("errors", []))


def test_invalid_specs_list_every_bad_field():
    with Stack(workers=0) as stack:
        port = stack.gateway_port
        post = lambda body, ct="application/json": request(
            port, "POST", "/v1/jobs", body=body, headers={"Content-Type": ct})
        cases = [
            ('{"kind": "http", "request": {"url": "http://127.0.0.1/"', None),   # truncated
            ('[1, 2, 3]', None),                                                  # not an object
            ('"just a string"', None),
            ('{}', ["kind", "request"]),
            ('{"kind": "http", "request": {"url": "http://127.0.0.1/"}, "colour": "red"}', ["colour"]),
            ('{"kind": 5, "request": []}', ["kind", "request"]),
            ('{"kind": "http", "request": {"url": "http://127.0.0.1/"}, "priority": 10, '
             '"max_attempts": 0, "timeout_ms": -1}', ["max_attempts", "priority", "timeout_ms"]),
            ('{"kind": "http", "request": {"url": "ftp://127.0.0.1/x"}}', ["request.url"]),
            ('{"kind": "crawl", "request": {"url": "file:///etc/passwd"}}', ["request.url"]),
            ('{"kind": "http", "provider": "nope", "request": {"path": "/x"}}', ["provider"]),
            ('{"kind": "search", "request": {"query": "x"}}', ["provider"]),
            ('{"kind": "http", "request": {"url": "http://127.0.0.1/"}, "priority": 5.5}', ["priority"]),
        ]
        for body, fields in cases:
            problem = _problem(post(body), 400)
            if fields is not None:
                assert _fields(problem) == fields, (body, problem)
            else:
                assert problem.get("errors"), (body, problem)
        # invalid UTF-8 and 100,000-deep nesting
        _problem(post(b'{"kind": "http", "request": {"url": "http://\xff\xfe/"}}'), 400)
        _problem(post("[" * 100000 + "]" * 100000), 400)
        _problem(post('{"a":' * 100000 + "1" + "}" * 100000), 400)
        assert stack.get_path("/healthz").status == 200


def test_size_type_and_ids():
    with Stack(workers=0) as stack:
        port = stack.gateway_port
        big = '{"kind": "http", "request": {"url": "http://127.0.0.1/"}, "metadata": {"x": "' + "a" * 3000000 + '"}}'
        _problem(request(port, "POST", "/v1/jobs", body=big,
                         headers={"Content-Type": "application/json"}), 413)
        _problem(request(port, "POST", "/v1/jobs", body='{"kind":"http"}',
                         headers={"Content-Type": "text/plain"}), 415)
        _problem(request(port, "POST", "/v1/jobs", body='{"kind":"http"}'), 415)
        for path in ("/v1/jobs/unknown", "/v1/jobs/00000000-0000-4000-8000-000000000000",
                     "/v1/jobs/" + "a" * 5000, "/v1/jobs/..%2F..%2Fetc%2Fpasswd",
                     "/v1/jobs/../../etc/passwd", "/nope", "/v1/jobs/x/y"):
            _problem(stack.get_path(path), 404)
        _problem(request(port, "DELETE", "/v1/nothing"), 404)
        _problem(stack.get_path("/v1/jobs/00000000-0000-4000-8000-000000000000?wait=abc"), 400)
        assert stack.get_path("/healthz").status == 200


def _raw(port, payload, read=True):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        if not read:
            return b""
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except (ConnectionResetError, socket.timeout):
            pass
        return b"".join(chunks)


def test_garbage_and_oversized_headers_on_the_socket():
    with Stack(workers=0) as stack:
        port = stack.gateway_port
        answer = _raw(port, bytes(range(256)) * 40 + b"\r\n\r\n")
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:100]
        answer = _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
        assert answer == b"" or answer.split(b" ")[1][:1] == b"4", answer[:100]
        answer = _raw(port, b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        assert answer == b"" or answer.split(b" ")[1][:1] == b"4", answer[:100]
        _raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", read=False)   # half a request, then gone
        assert stack.get_path("/healthz").status == 200
        assert stack.get_path("/healthz").status == 200
