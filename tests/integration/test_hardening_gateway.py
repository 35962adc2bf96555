"""Hardening of the gateway (issues 10 and 17): operator-only topology,
the connection limit, byte bounds, strict HTTP framing, slow clients, Host
checks in open mode, exact header parsing and provider path rules."""
import http.client
import json
import os
import re
import socket
import subprocess
import time

from harness import BUILD, Stack, request, wait_until


def _raw(port, payload, timeout=10, pieces=None):
    """Sends payload (or pieces, with a pause between) on a fresh socket and
    reads until the server closes or timeout; returns (bytes, closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for piece in pieces or [payload]:
            sock.sendall(piece)
            if pieces:
                time.sleep(0.05)
        chunks, closed = [], False
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    closed = True
                    break
                chunks.append(data)
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed = True
        return b"".join(chunks), closed


def _statuses(answer):
    """The status codes of the HTTP responses in answer, in order."""
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


def _metrics(stack):
    samples = {}
    for line in stack.get_path("/metrics").body.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _healthy(port, attempts_timeout=2):
    try:
        return request(port, "GET", "/healthz", timeout=attempts_timeout).status == 200
    except OSError:
        return False


# --- issue 10 #1: /v1/providers shows topology to operators only ---

def test_providers_show_base_url_to_operators_only():
    keys = [{"key": "op-key", "tenant": "ops", "operator": True},
            {"key": "a-key", "tenant": "a"}]
    with Stack(workers=0, config_extra={"gateway": {"api_keys": keys}}) as stack:
        tenant = stack.get_path("/v1/providers", headers={"Authorization": "Bearer a-key"})
        assert tenant.status == 200, tenant.body
        providers = tenant.json()["providers"]
        assert providers and providers[0]["name"] == "mock"
        assert b"base_url" not in tenant.body and b"127.0.0.1" not in tenant.body, tenant.body
        assert "circuit" in providers[0] and "in_flight" in providers[0]
        operator = stack.get_path("/v1/providers", headers={"Authorization": "Bearer op-key"})
        assert operator.status == 200
        assert operator.json()["providers"][0]["base_url"] == stack.mock_url("")
    # Open mode: the one local caller is the operator.
    with Stack(workers=0) as stack:
        assert stack.get_path("/v1/providers").json()["providers"][0]["base_url"]


# --- issue 10 #2: the connection limit never wedges the gateway ---

def test_connection_flood_at_the_limit_recovers():
    config = {"gateway": {"max_connections": 32, "header_timeout_ms": 1000}}
    with Stack(workers=0, config_extra=config) as stack:
        port = stack.gateway_port
        # Pattern 1: far more idle connections than the limit, held, then closed.
        flood = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(300)]
        time.sleep(0.5)
        for sock in flood:
            sock.close()
        wait_until(lambda: _healthy(port), 30, "the gateway to answer after the flood closed")
        # Pattern 2: held until the gateway itself times them out.
        flood = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(120)]
        wait_until(lambda: _healthy(port), 60, "the gateway to answer after timing the flood out")
        for sock in flood:
            sock.close()
        # Pattern 3: a flood of half requests, then closed.
        flood = []
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            flood.append(sock)
        for sock in flood:
            sock.close()
        wait_until(lambda: _healthy(port), 30, "the gateway to answer after a flood of half requests")
        assert _metrics(stack)["jobgate_http_connections_total"] >= 32


# --- issue 10 #6 / issue 17 #1: memory bounded by bytes, answers streamed ---

def test_list_pages_end_at_a_byte_budget_and_the_cursor_continues():
    config = {"gateway": {"list_max_bytes": 65536}}
    with Stack(config_extra=config) as stack:
        ids = []
        for _ in range(6):
            job = stack.submit({"kind": "http", "request": {"url": stack.mock_url("/x?size=40000")}},
                               headers={"Prefer": "wait=20"}, expect=200).json()
            assert job["status"] == "succeeded" and len(job["result"]["body"]) == 40000
            ids.append(job["id"])
        seen, cursor, pages = [], None, 0
        while True:
            path = "/v1/jobs?limit=50" + ("&cursor=" + cursor if cursor else "")
            resp = stack.get_path(path)
            assert resp.status == 200, resp.body
            page = resp.json()
            pages += 1
            assert len(page["jobs"]) <= 1, [len(page["jobs"])]   # two results do not fit
            for job in page["jobs"]:
                assert len(job["result"]["body"]) == 40000      # spliced whole, not re-parsed
                seen.append(job["id"])
            cursor = page["next_cursor"]
            if not cursor:
                break
            assert pages < 20
        assert seen == list(reversed(ids)), (seen, ids)   # newest first, none lost or twice
        # A page of small jobs is still limited by count only.
        small = [stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json")}}).json()["id"]
                 for _ in range(3)]
        for job_id in small:
            stack.wait_terminal(job_id)
        assert len(stack.get_path("/v1/jobs?limit=3").json()["jobs"]) == 3


def test_finished_job_cache_is_bounded_by_bytes():
    budget = 1024 * 1024
    config = {"gateway": {"cache_max_bytes": budget}}
    with Stack(config_extra=config) as stack:
        for _ in range(6):
            job_id = stack.submit({"kind": "http",
                                   "request": {"url": stack.mock_url("/x?size=200000")}}).json()["id"]
            assert stack.wait_terminal(job_id)["status"] == "succeeded"
            assert len(stack.job(job_id)["result"]["body"]) == 200000
        samples = _metrics(stack)
        assert 0 < samples["jobgate_cache_bytes"] <= budget, samples
        assert 1 <= samples["jobgate_cache_jobs"] <= 5, samples


def _read_events(port, job_id, timeout=60, rcvbuf=None, pause=0):
    """Reads a job's whole event stream, after pause seconds of reading
    nothing (through a receive buffer of rcvbuf bytes); returns the events
    as (id, event, data), comments left out."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.sock = sock
    conn.request("GET", "/v1/jobs/%s/events" % job_id)
    resp = conn.getresponse()
    assert resp.status == 200
    time.sleep(pause)
    body = resp.read().decode()
    conn.close()
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n")
                      if line and not line.startswith(":"))
        if fields:
            events.append((fields.get("id"), fields.get("event"), fields.get("data")))
    return events


def test_sse_result_event_over_4_mib_is_streamed_whole():
    size = 5 * 1024 * 1024
    config = {"worker": {"max_response_bytes": 16 * 1024 * 1024},
              "broker": {"max_result_bytes": 16 * 1024 * 1024}}
    with Stack(config_extra=config) as stack:
        job_id = stack.submit({"kind": "http",
                               "request": {"url": stack.mock_url("/x?size=%d" % size)}}).json()["id"]
        assert stack.wait_terminal(job_id)["status"] == "succeeded"
        events = _read_events(stack.gateway_port, job_id)
        assert [e[1] for e in events] == ["status", "result"], [e[1] for e in events]
        result = json.loads(events[-1][2])
        assert result["id"] == job_id and len(result["result"]["body"]) == size
        # And while it runs: the stream ends with the whole result.
        job_id = stack.submit({"kind": "http", "request": {
            "url": stack.mock_url("/x?size=%d&latency_ms=500" % size)}}).json()["id"]
        events = _read_events(stack.gateway_port, job_id)
        assert events[-1][1] == "result"
        assert len(json.loads(events[-1][2])["result"]["body"]) == size


def test_sse_backlog_over_the_buffer_is_sent_in_order_from_a_bounded_buffer():
    # A client that joins late: the broker keeps the first 256 KiB of the
    # running attempt's chunks (about 900 of these), four times the stream's
    # 64 KiB buffer. The stream holds back what does not fit, fetches it
    # again as the client reads, then goes on live (chunks the broker did
    # not keep were relayed live only; the result has them all).
    config = {"gateway": {"sse_buffer_bytes": 65536},
              "providers": {"fast": {"base_url": "MOCK/fast"}}}
    stack = Stack(workers=0, config_extra=config, start=False)
    stack.config["providers"]["fast"]["base_url"] = stack.mock_url("/fast")
    with stack:
        stack.start_all(workers=1)
        # 1,000 chunks in a second, 12 s of quiet, 50 more.
        # (The held-back count is read only after the second reader.)
        spec = {"kind": "llm", "provider": "fast", "timeout_ms": 120000,
                "request": {"model": "fast-1000-200-12000-50", "stream": True,
                            "messages": [{"role": "user", "content": "go"}]}}
        job_id = stack.submit(spec).json()["id"]
        # A first reader follows the stream live to the quiet part; the
        # second joins then, with the whole kept backlog to catch up on.
        conn = http.client.HTTPConnection("127.0.0.1", stack.gateway_port, timeout=60)
        conn.request("GET", "/v1/jobs/%s/events" % job_id)
        probe = conn.getresponse()
        for raw in probe:
            line = raw.decode()
            if line.startswith("data: {\"attempt\"") and json.loads(line[6:])["index"] >= 950:
                break
        conn.close()
        events = _read_events(stack.gateway_port, job_id, timeout=120)
        indexes = [json.loads(e[2])["index"] for e in events if e[1] == "chunk"]
        assert indexes[:500] == list(range(500)), indexes[:20]
        assert all(a < b for a, b in zip(indexes, indexes[1:])), "chunks out of order or twice"
        assert indexes[-50:] == list(range(1000, 1050)), indexes[-5:]   # live again
        assert events[-1][1] == "result", events[-1][:2]
        assert json.loads(events[-1][2])["status"] == "succeeded", events[-1][2][:300]
        held_back = _metrics(stack)["jobgate_sse_held_back_total"]
        assert held_back >= 1, (held_back, len(indexes))


# --- issue 17 #11: strict HTTP framing ---

def test_ambiguous_framing_is_refused_and_closed():
    with Stack(workers=0) as stack:
        port = stack.gateway_port
        host = b"Host: 127.0.0.1\r\n"
        smuggled = b"GET /healthz HTTP/1.1\r\n" + host + b"\r\n"
        cases = [
            (b"POST /v1/jobs HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
             b"Content-Length: 2\r\nContent-Length: " + str(2 + len(smuggled)).encode() + b"\r\n\r\n{}"
             + smuggled, 400, b"more than one Content-Length"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + host + b"Content-Length: 5\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, b"both"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + host + b"Content-Length: 5\r\nX-A: 1\r\n"
             b" Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 400, b"folding"),
            (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\rX-B: 1\r\n\r\n", 400, b"CR"),
            (b"GET /healthz HTTP/1.1\r\n" + host + b"X-N: a\x00b\r\n\r\n", 400, b"NUL"),
            (b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n", 400, b"LF alone"),
            (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\nX-L: 1\r\n\r\n", 400, b"LF alone"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + host + b"Transfer-Encoding: gzip\r\n\r\nabc", 501, b"chunked"),
            (b"POST /v1/jobs HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\n3;"
             + b"e" * 20000 + b"\r\nabc\r\n0\r\n\r\n", 400, b"extension"),
            (b"GET /healthz HTTP/1.1\r\n" + host + b"Host: evil.example\r\n\r\n", 400, b"Host"),
        ]
        for payload, status, reason in cases:
            answer, closed = _raw(port, payload)
            assert _statuses(answer) == [status], (payload[:80], answer[:300])
            assert b"Connection: close" in answer and reason in answer, (payload[:80], answer)
            assert closed, payload[:80]
        # A valid request before an ambiguous one on the same connection is
        # answered first; the ambiguous one is refused after it.
        answer, closed = _raw(port, smuggled + b"GET /healthz HTTP/1.1\nHost: x\n\n")
        assert _statuses(answer) == [200, 400] and closed, answer
        assert _metrics(stack)["jobgate_http_refused_total"] >= len(cases) + 1
        assert stack.get_path("/healthz").status == 200


# --- issue 17 #12: slowloris ---

def test_trickling_heads_and_slow_bodies_are_cut_at_their_deadline():
    config = {"gateway": {"header_timeout_ms": 1500, "min_body_rate": 200}}
    with Stack(workers=0, config_extra=config) as stack:
        port = stack.gateway_port
        socks = []
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", port), timeout=1)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(sock)
        answers = {id(s): b"" for s in socks}
        done = set()
        deadline = time.monotonic() + 15   # ten times the head deadline, bounded
        while len(done) < len(socks) and time.monotonic() < deadline:
            for sock in socks:
                if id(sock) in done:
                    continue
                try:
                    sock.sendall(b"X-Trickle: 1\r\n")
                except OSError:
                    done.add(id(sock))
                    continue
                try:
                    sock.settimeout(0.3)
                    data = sock.recv(65536)
                    answers[id(sock)] += data
                    if not data:
                        done.add(id(sock))
                except socket.timeout:
                    pass
                except OSError:
                    done.add(id(sock))
            assert stack.get_path("/healthz", timeout=5).status == 200   # others are served
        assert len(done) == len(socks), "a trickling connection was never closed"
        for sock in socks:
            if answers[id(sock)]:
                assert _statuses(answers[id(sock)]) == [408], answers[id(sock)]
            sock.close()
        # A body trickling one byte at a time falls below min_body_rate.
        head = (b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000\r\n\r\n")
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(head)
            got, end = b"", time.monotonic() + 15
            while time.monotonic() < end:
                try:
                    sock.sendall(b" ")
                    data = sock.recv(65536)
                    got += data
                    if not data:
                        break
                except socket.timeout:
                    continue
                except OSError:
                    break
            assert b"408" in got.split(b"\r\n")[0], got
        assert _metrics(stack)["jobgate_http_timed_out_total"] >= 6


# --- issue 17 #8: DNS rebinding ---

def test_open_mode_refuses_a_non_loopback_listen_address():
    stack = Stack(workers=0, start=False,
                  config_extra={"gateway": {"listen": "0.0.0.0:%d" % 1}})
    try:
        proc = subprocess.run([os.path.join(BUILD, "gateway/jobgate-gateway"), "--config",
                               stack.config_path], capture_output=True, timeout=20)
        assert proc.returncode != 0
        lines = proc.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and "allow_open_mode" in lines[0] and "api_keys" in lines[0], lines
    finally:
        stack.close()


def test_open_mode_answers_only_its_own_host_names():
    config = {"gateway": {"allowed_hosts": ["api.test"]}}
    with Stack(workers=0, config_extra=config) as stack:
        port = stack.gateway_port
        for host in ("localhost:%d" % port, "127.0.0.1:%d" % port, "[::1]:%d" % port,
                     "LOCALHOST", "api.test", "api.test:80"):
            resp = request(port, "GET", "/healthz", headers={"Host": host})
            assert resp.status == 200, (host, resp.body)
        for host in ("evil.example", "evil.example:%d" % port, "localhost.evil.example",
                     "127.0.0.2", "api.test.evil.example"):
            for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/healthz")):
                resp = request(port, method, path, headers={"Host": host}, body=None)
                assert resp.status == 403, (host, path, resp.status)
                problem = resp.json()
                assert problem["type"] == "/problems/host-not-allowed" and problem["detail"]


def test_with_keys_host_is_free_unless_allowed_hosts_is_set():
    keys = [{"key": "a-key", "tenant": "a"}]
    with Stack(workers=0, config_extra={"gateway": {"api_keys": keys}}) as stack:
        resp = request(stack.gateway_port, "GET", "/healthz", headers={"Host": "anything.example"})
        assert resp.status == 200
    config = {"gateway": {"api_keys": keys, "allowed_hosts": ["api.test"]}}
    with Stack(workers=0, config_extra=config) as stack:
        for host, status in (("api.test", 200), ("localhost:1", 200), ("evil.example", 403)):
            assert request(stack.gateway_port, "GET", "/healthz",
                           headers={"Host": host}).status == status, host


# --- issue 17 #13 and issue 10 "Smaller": exact headers, paths, params ---

def test_prefer_is_parsed_as_rfc_7240_preferences():
    with Stack() as stack:
        spec = {"kind": "http", "request": {"url": stack.mock_url("/json?latency_ms=300")}}
        for prefer in ("nowait=2", "wait=1e18", "wait=-1", "return=minimal; wait=5",
                       'foo="wait=5"'):
            resp = stack.submit(spec, headers={"Prefer": prefer}, expect=202)
            assert resp.header("Preference-Applied") is None, prefer
        resp = stack.submit(spec, headers={"Prefer": "respond-async, WAIT=10"}, expect=200)
        assert resp.header("Preference-Applied") == "wait=10"
        assert resp.json()["status"] == "succeeded"


def test_idempotency_key_over_the_limit_is_refused():
    with Stack(workers=0) as stack:
        spec = {"kind": "http", "request": {"url": "http://127.0.0.1:9/"}}
        for key in ("k" * 256, "k" * 600):
            resp = stack.submit(spec, headers={"Idempotency-Key": key}, expect=400)
            problem = resp.json()
            assert problem["errors"][0]["field"] == "Idempotency-Key", problem
            assert "255" in problem["errors"][0]["message"]
        first = stack.submit(spec, headers={"Idempotency-Key": "k" * 255}).json()["id"]
        again = stack.submit(spec, headers={"Idempotency-Key": "k" * 255}).json()["id"]
        assert first == again
        # Given twice, which one would count? Neither.
        payload = (b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Idempotency-Key: a\r\nIdempotency-Key: b\r\nConnection: close\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(json.dumps(spec)), json.dumps(spec).encode()))
        answer, _ = _raw(stack.gateway_port, payload)
        assert _statuses(answer) == [400] and b"Idempotency-Key" in answer, answer


def test_paths_routing_headers_and_search_params_are_checked_at_the_gateway():
    with Stack(workers=0) as stack:
        def fields(spec):
            resp = stack.submit(spec, expect=400)
            return sorted(e["field"] for e in resp.json()["errors"])
        for path in ("/a/..;/b", "/a%2f..%2f..%2fb", "/%252e%252e/x", "/a/..%3b/b"):
            assert fields({"kind": "http", "provider": "mock",
                           "request": {"path": path}}) == ["request.path"], path
        assert fields({"kind": "http", "provider": "mock", "request": {
            "path": "/x", "headers": {"Host": "evil.example", "X-Forwarded-Host": "e"}}}) == [
            "request.headers.Host", "request.headers.X-Forwarded-Host"]
        assert fields({"kind": "http", "request": {
            "url": "http://127.0.0.1:9/", "headers": {"host": "evil.example"}}}) == ["request.headers.host"]
        assert fields({"kind": "search", "provider": "mock", "request": {
            "query": "q", "filter": {"a": 1}, "tags": [{"t": 1}], "ok": [1, "2"]}}) == [
            "request.filter", "request.tags"]
