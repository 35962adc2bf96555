"""Broker hardening (issues 10 and 17): untrusted peers on the broker's
sockets, a full store, tenants that would switch a shared provider off,
attempt identities across cancel + retry, fair shares of execution, one
admission check for all work, one expiry per job.

The peers that attack the broker speak ZMTP 3.0 and msgpack themselves
(standard library only): a raw DEALER that is not a jobgate process."""
import json
import socket
import struct
import time
import uuid

from harness import Stack, request, wait_until
from test_providers import _started


# --- a raw ZeroMQ peer (ZMTP 3.0, NULL mechanism) and msgpack ---

def _pack(value):
    """msgpack for the types JGP/1 bodies use."""
    if value is None:
        return b"\xc0"
    if value is True:
        return b"\xc3"
    if value is False:
        return b"\xc2"
    if isinstance(value, int):
        if 0 <= value < 128:
            return bytes([value])
        return b"\xd3" + struct.pack(">q", value)
    if isinstance(value, str):
        value = value.encode()
        if len(value) < 32:
            return bytes([0xa0 | len(value)]) + value
        return b"\xdb" + struct.pack(">I", len(value)) + value
    if isinstance(value, dict):
        out = b"\xdf" + struct.pack(">I", len(value))
        for key, item in value.items():
            out += _pack(key) + _pack(item)
        return out
    raise TypeError(value)


def _count(byte, data, at, fix, wide16):
    """The element count of a map or array header: fix types hold it in the
    low nibble, the 16- and 32-bit types after the type byte."""
    if byte < fix + 16:
        return byte & 0x0f, at
    width = 2 if byte == wide16 else 4
    return int.from_bytes(data[at:at + width], "big"), at + width


def _unpack(data, at=0):
    """Decodes one msgpack value at data[at:]; returns (value, next)."""
    byte = data[at]
    at += 1
    if byte < 0x80:
        return byte, at
    if byte >= 0xe0:
        return byte - 256, at
    if 0x80 <= byte <= 0x8f or byte in (0xde, 0xdf):
        count, at = _count(byte, data, at, 0x80, 0xde)
        out = {}
        for _ in range(count):
            key, at = _unpack(data, at)
            out[key], at = _unpack(data, at)
        return out, at
    if 0x90 <= byte <= 0x9f or byte in (0xdc, 0xdd):
        count, at = _count(byte, data, at, 0x90, 0xdc)
        out = []
        for _ in range(count):
            item, at = _unpack(data, at)
            out.append(item)
        return out, at
    if 0xa0 <= byte <= 0xbf or byte in (0xd9, 0xda, 0xdb, 0xc4, 0xc5, 0xc6):
        if byte <= 0xbf:
            size = byte & 0x1f
        else:
            width = {0xd9: 1, 0xc4: 1, 0xda: 2, 0xc5: 2, 0xdb: 4, 0xc6: 4}[byte]
            size = int.from_bytes(data[at:at + width], "big")
            at += width
        raw = data[at:at + size]
        return (raw if byte in (0xc4, 0xc5, 0xc6) else raw.decode(errors="replace")), at + size
    if byte == 0xc0:
        return None, at
    if byte in (0xc2, 0xc3):
        return byte == 0xc3, at
    widths = {0xcc: (1, False), 0xcd: (2, False), 0xce: (4, False), 0xcf: (8, False),
              0xd0: (1, True), 0xd1: (2, True), 0xd2: (4, True), 0xd3: (8, True)}
    if byte in widths:
        width, signed = widths[byte]
        return int.from_bytes(data[at:at + width], "big", signed=signed), at + width
    raise ValueError("msgpack type 0x%02x" % byte)


class RawPeer:
    """A DEALER on a TCP socket, written from the ZMTP 3.0 spec (RFC 23)."""

    def __init__(self, endpoint, timeout=10):
        host, port = endpoint[len("tcp://"):].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") \
            + b"\x00" + b"\x00" * 31
        self.sock.sendall(greeting)
        self._read(64)
        ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
        self.sock.sendall(b"\x04" + bytes([len(ready)]) + ready)
        flags, _ = self._frame()
        assert flags & 0x04, "expected the peer's READY command"

    def _read(self, size):
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed by the broker")
            data += chunk
        return data

    def _frame(self):
        flags = self._read(1)[0]
        size = struct.unpack(">Q", self._read(8))[0] if flags & 0x02 else self._read(1)[0]
        return flags, self._read(size)

    def send(self, command, *bodies):
        frames = [b"JGP1", command.encode()] + [_pack(body) for body in bodies]
        out = b""
        for index, frame in enumerate(frames):
            more = 0x01 if index + 1 < len(frames) else 0
            if len(frame) > 255:
                out += bytes([more | 0x02]) + struct.pack(">Q", len(frame)) + frame
            else:
                out += bytes([more, len(frame)]) + frame
        self.sock.sendall(out)

    def recv(self):
        """The next message: (command, [body, ...]); heartbeats skipped."""
        while True:
            frames = []
            while True:
                flags, frame = self._frame()
                if flags & 0x04:
                    continue            # a ZMTP command (PING), not a message
                frames.append(frame)
                if not flags & 0x01:
                    break
            command = frames[1].decode()
            if command != "HEARTBEAT":
                return command, [_unpack(frame)[0] for frame in frames[2:]]

    def close(self):
        self.sock.close()


def _record(tenant, kind, spec, job_id=None):
    """A job record as a gateway's SUBMIT carries it."""
    return {"id": job_id or str(uuid.uuid4()), "tenant": tenant, "kind": kind, "provider": None,
            "status": "queued", "priority": 5, "max_attempts": 3, "attempts": 0,
            "timeout_ms": 30000, "expire_after_ms": 0, "created_at": int(time.time() * 1000),
            "started_at": 0, "finished_at": 0, "spec": json.dumps(spec)}


def _keys(*tenants):
    return {"api_keys": [{"key": "key-" + t, "tenant": t} for t in tenants]}


def _auth(tenant):
    return {"Authorization": "Bearer key-" + tenant}


def _providers(stack, tenant):
    providers = stack.get_path("/v1/providers", headers=_auth(tenant)).json()["providers"]
    return {p["name"]: p for p in providers}


# --- issue 10 #3: peers on the broker's sockets are not trusted ---

def test_raw_peers_cannot_forge_results_work_or_huge_frames():
    with Stack(workers=1) as stack:
        spec = {"kind": "http", "request": {"url": stack.mock_url("/json?latency_ms=1500")}}
        job_id = stack.submit(spec).json()["id"]
        wait_until(lambda: stack.job(job_id)["status"] == "running", 10, "the job to run")

        # A peer that announced itself, and one that did not, report the
        # running attempt as succeeded: without the lease, nothing happens.
        forger = RawPeer(stack.config["broker"]["backend"])
        forger.send("READY", {"credit": 0, "concurrency": 0, "worker": "forger"})
        forged = {"id": job_id, "attempt": 1, "lease": "0" * 32, "outcome": "succeeded",
                  "result": json.dumps({"status": 200, "body": "forged"}), "error": None,
                  "retry_after_ms": 0}
        forger.send("RESULT", forged)
        forger.send("RESULT", dict(forged, lease=None))
        stranger = RawPeer(stack.config["broker"]["backend"])
        stranger.send("RESULT", forged)
        assert stranger.recv()[0] == "RECONNECT"
        # Unbounded credit is not taken either: it would draw every dispatch.
        forger.send("READY", {"credit": 2 ** 63 - 1, "concurrency": 2 ** 63 - 1, "worker": "forger"})
        forger.send("CREDIT", {"credit": 2 ** 62})
        job = stack.wait_terminal(job_id)
        assert job["status"] == "succeeded" and job["result"]["body"]["ok"] is True, job
        forger.close()
        stranger.close()

        # A gateway-side peer may not create webhook deliveries (signed
        # requests to any URL) nor act for an internal tenant.
        gateway = RawPeer(stack.config["broker"]["frontend"])
        delivery = {"request": {"url": stack.mock_url("/echo?capture=forged"), "job_id": job_id,
                                "payload": {"id": job_id, "status": "succeeded"}}}
        gateway.send("SUBMIT", dict(_record("", "webhook", delivery), corr=1))
        command, bodies = gateway.recv()
        assert command == "ERROR" and bodies[0]["code"] == 400, (command, bodies)
        gateway.send("SUBMIT", dict(_record("#webhooks/", "http", spec), corr=2))
        command, bodies = gateway.recv()
        assert command == "ERROR" and bodies[0]["code"] == 400, (command, bodies)
        # GET carries the caller's tenant: another tenant's job is not found.
        gateway.send("GET", {"corr": 3, "id": job_id, "tenant": "someone-else"})
        command, bodies = gateway.recv()
        assert command == "ERROR" and bodies[0]["code"] == 404, (command, bodies)
        gateway.send("GET", {"corr": 4, "id": job_id, "tenant": ""})
        command, bodies = gateway.recv()
        assert command == "JOB" and bodies[0]["status"] == "succeeded", (command, bodies)
        gateway.close()
        time.sleep(0.5)
        assert request(stack.mock_port, "GET", "/captured?key=forged").json() == []

        # A frame over broker.max_frame_bytes (the issue sent 300 MiB): the
        # broker drops the connection at the frame's header, reads nothing
        # of it, and goes on serving.
        big = RawPeer(stack.config["broker"]["backend"])
        big.sock.sendall(b"\x01\x04JGP1" + b"\x02" + struct.pack(">Q", 300 * 1024 * 1024))

        big.sock.settimeout(0.2)

        def closed():
            try:
                big.sock.sendall(b"\x00" * 65536)
            except OSError:
                return True
            try:
                return big.sock.recv(1) == b""
            except socket.timeout:
                return False            # still open: the frame is being read
            except OSError:
                return True
        wait_until(closed, 10, "the broker to drop the oversized frame's connection")
        big.close()
        again = stack.submit({"kind": "http", "request": {"url": stack.mock_url("/json")}}).json()["id"]
        assert stack.wait_terminal(again)["status"] == "succeeded"


# --- issue 10 #4: no tenant can fill the store for all ---

def test_tenant_stored_bytes_quota_answers_429():
    extra = {"broker": {"store_map_mb": 16, "max_result_bytes": 1048576, "result_ttl_s": 3},
             "gateway": _keys("a", "b")}
    with Stack(workers=1, config_extra=extra) as stack:
        spec = {"kind": "http", "request": {"url": stack.mock_url("/echo?size=700000")}}
        # The default share is a quarter of the map: 4 MiB, so a handful of
        # 700 kB results fill a's share, and a is refused, b is not.
        codes = []
        for _ in range(12):
            resp = stack.submit(spec, headers=_auth("a"), expect=None)
            codes.append(resp.status)
            if resp.status == 202:
                path = "/v1/jobs/%s?wait=30" % resp.json()["id"]
                job = stack.get_path(path, headers=_auth("a")).json()
                assert job["status"] == "succeeded", job
            else:
                assert resp.status == 429, (resp.status, resp.body)
                assert int(resp.header("Retry-After")) >= 1
                break
        assert codes[-1] == 429 and 3 <= codes.count(202) <= 7, codes
        assert stack.submit(spec, headers=_auth("b"), expect=None).status == 202
        # a's results expire: a is accepted again by itself.
        wait_until(lambda: stack.submit(spec, headers=_auth("a"), expect=None).status == 202,
                   30, "a's share to free up")


def test_tiny_store_fills_degrades_and_recovers():
    # The results live 12 s: long enough for a loaded machine (ASan, other
    # suites beside) to fill the store and read every job back before the
    # first expires (4 s once was not: a job read after its TTL is a 404).
    extra = {"broker": {"store_map_mb": 16, "max_result_bytes": 1048576, "result_ttl_s": 12},
             "quotas": {"*": {"max_stored_bytes": 1 << 40}}}
    with Stack(workers=1, concurrency=4, config_extra=extra) as stack:
        spec = {"kind": "http", "request": {"url": stack.mock_url("/echo?size=900000")}}
        accepted, refused = [], None
        for _ in range(60):
            resp = stack.submit(spec, expect=None)
            if resp.status != 202:
                refused = resp
                break
            accepted.append(resp.json()["id"])
            time.sleep(0.05)
        assert refused is not None, "the store never filled"
        assert refused.status == 503 and refused.header("Retry-After"), (refused.status, refused.body)
        # Everything accepted reaches a terminal state (a result that could
        # not be stored says so instead of waiting for space forever).
        for job_id in accepted:
            job = stack.wait_terminal(job_id, timeout=60)
            assert job["status"] == "succeeded", job
            assert job.get("result") or job["error"]["type"] == "result_not_stored", job
        # Finished jobs expire and the store takes work again by itself.
        wait_until(lambda: stack.submit(spec, expect=None).status == 202, 60,
                   "the store to take new work again")


# --- issue 17 #2: a tenant cannot switch a shared provider off ---

def test_tenant_cannot_open_the_breaker_or_pause_the_provider_for_all():
    with _started(config_extra={"gateway": _keys("a", "b")}, workers=1, circuit_failures=3,
                  circuit_open_ms=60000, circuit_fail_fast=True, max_pause_ms=1500) as stack:
        def job(tenant, path, **extra_fields):
            spec = {"kind": "http", "provider": "api", "max_attempts": 1,
                    "request": {"path": path}}
            spec.update(extra_fields)
            return stack.submit(spec, headers=_auth(tenant)).json()["id"]

        def finished(tenant, job_id):
            resp = stack.get_path("/v1/jobs/%s?wait=30" % job_id, headers=_auth(tenant))
            return resp.json()

        # Five 1 ms timeouts are the tenant's choice: the breaker stays closed.
        for job_id in [job("a", "/json?latency_ms=200", timeout_ms=1) for _ in range(5)]:
            assert finished("a", job_id)["error"]["type"] == "upstream_timeout"
        state = _providers(stack, "b")["api"]
        assert state["circuit"] == "closed" and state["consecutive_failures"] == 0, state
        assert finished("b", job("b", "/json"))["status"] == "succeeded"

        # Retry-After: 99999999 pauses everyone at most max_pause_ms.
        assert finished("a", job("a", "/json?status=429&retry_after=99999999"))["status"] == "failed"
        state = _providers(stack, "b")["api"]
        assert 0 < state["blocked_for_ms"] <= 1500, state
        assert finished("b", job("b", "/json"))["status"] == "succeeded"
        # a does it again after b was answered: now only a waits.
        assert finished("a", job("a", "/json?status=429&retry_after=99999999"))["status"] == "failed"
        state = _providers(stack, "b")["api"]
        assert state["blocked_for_ms"] == 0 and state["tenants_paused"] == 1, state
        a_job = job("a", "/json")
        b_job = job("b", "/json")
        b_done = finished("b", b_job)
        assert b_done["status"] == "succeeded"
        assert stack.get_path("/v1/jobs/" + a_job, headers=_auth("a")).json()["status"] == "queued"
        a_done = finished("a", a_job)
        assert a_done["status"] == "succeeded"
        assert a_done["started_at"] > b_done["finished_at"], (a_done, b_done)


# --- issue 17 #3: an attempt identity never repeats ---

def test_cancel_and_retry_race_never_applies_the_old_run():
    with Stack(workers=1) as stack:
        spec = {"kind": "http", "request": {"url": stack.mock_url("/json?latency_ms=150")}}
        for _ in range(15):
            job_id = stack.submit(spec).json()["id"]
            wait_until(lambda: stack.job(job_id)["status"] == "running", 10, "the job to run")
            assert request(stack.gateway_port, "DELETE", "/v1/jobs/" + job_id).status == 200
            assert request(stack.gateway_port, "POST", "/v1/jobs/%s/retry" % job_id).status == 202
            job = stack.wait_terminal(job_id)
            assert job["status"] == "succeeded" and job["attempts"] == 1, job
            assert job["result"]["body"]["ok"] is True, job


# --- issue 17 #5: fair shares of execution ---

def test_slow_user_urls_of_one_tenant_do_not_delay_another():
    extra = {"gateway": _keys("a", "b"), "quotas": {"a": {"max_running": 2}},
             "worker": {"drain_timeout_ms": 1000}}
    with Stack(workers=1, concurrency=4, config_extra=extra) as stack:
        slow = {"kind": "http", "priority": 9, "timeout_ms": 60000,
                "request": {"url": stack.mock_url("/json?latency_ms=30000")}}
        a_ids = [stack.submit(slow, headers=_auth("a")).json()["id"] for _ in range(16)]
        wait_until(lambda: stack.mock_stats()["in_flight"] == 2, 10, "a's two calls")
        quick = {"kind": "http", "priority": 0, "request": {"url": stack.mock_url("/json")}}
        b_id = stack.submit(quick, headers=_auth("b")).json()["id"]
        b_job = stack.get_path("/v1/jobs/%s?wait=20" % b_id, headers=_auth("b")).json()
        assert b_job["status"] == "succeeded", b_job
        states = [stack.get_path("/v1/jobs/" + i, headers=_auth("a")).json()["status"] for i in a_ids]
        assert states.count("running") == 2 and states.count("queued") == 14, states
        for job_id in a_ids:
            request(stack.gateway_port, "DELETE", "/v1/jobs/" + job_id, headers=_auth("a"))


def test_webhook_deliveries_count_against_their_tenant():
    extra = {"gateway": _keys("b", "c"), "quotas": {"c": {"max_queued": 5}},
             "webhooks": {"timeout_ms": 60000, "max_attempts": 1},
             "worker": {"drain_timeout_ms": 1000}}
    with Stack(workers=1, concurrency=8, config_extra=extra) as stack:
        hanging = stack.mock_url("/echo?latency_ms=60000&capture=hang")
        spec = {"kind": "http", "request": {"url": stack.mock_url("/json")},
                "callback": {"url": hanging}}
        statuses = []
        for _ in range(20):
            statuses.append(stack.submit(spec, headers=_auth("c"), expect=None).status)
            time.sleep(0.1)
        # c's finished jobs' deliveries hang: each stays one of c's 5.
        assert statuses.count(202) == 5 and set(statuses) == {202, 429}, statuses
        wait_until(lambda: stack.mock_stats()["in_flight"] == 5, 10, "five deliveries at the receiver")
        quick = {"kind": "http", "request": {"url": stack.mock_url("/json")}}
        b_id = stack.submit(quick, headers=_auth("b")).json()["id"]
        b_job = stack.get_path("/v1/jobs/%s?wait=20" % b_id, headers=_auth("b")).json()
        assert b_job["status"] == "succeeded", b_job
        assert stack.mock_stats()["in_flight"] == 5


# --- issue 17 #6: retry goes through the admission check ---

def test_retries_at_max_queued_get_429():
    extra = {"gateway": _keys("e"), "quotas": {"e": {"max_queued": 2}},
             "worker": {"drain_timeout_ms": 1000}}
    with Stack(workers=1, config_extra=extra) as stack:
        failing = {"kind": "http", "max_attempts": 1,
                   "request": {"url": stack.mock_url("/flaky?key=r&fail=1000&status=400")}}
        failed = [stack.submit(failing, headers=_auth("e")).json()["id"] for _ in range(2)]
        for job_id in failed:
            assert stack.get_path("/v1/jobs/%s?wait=10" % job_id,
                                  headers=_auth("e")).json()["status"] == "failed"
        slow = {"kind": "http", "request": {"url": stack.mock_url("/json?latency_ms=20000")}}
        running = [stack.submit(slow, headers=_auth("e")).json()["id"] for _ in range(2)]
        for _ in range(6):
            resp = request(stack.gateway_port, "POST", "/v1/jobs/%s/retry" % failed[0],
                           headers=_auth("e"))
            assert resp.status == 429 and int(resp.header("Retry-After")) >= 1, (resp.status, resp.body)
        for job_id in running:
            request(stack.gateway_port, "DELETE", "/v1/jobs/" + job_id, headers=_auth("e"))
        resp = request(stack.gateway_port, "POST", "/v1/jobs/%s/retry" % failed[0], headers=_auth("e"))
        assert resp.status == 202, (resp.status, resp.body)


# --- issue 17 #9: one expiry per job ---

def test_retried_job_lives_until_its_second_finish_plus_ttl():
    with Stack(workers=1, config_extra={"broker": {"result_ttl_s": 3}}) as stack:
        spec = {"kind": "http", "max_attempts": 1,
                "request": {"url": stack.mock_url("/flaky?key=ttl&fail=1000&status=400")}}
        job_id = stack.submit(spec).json()["id"]
        assert stack.wait_terminal(job_id)["status"] == "failed"
        time.sleep(2)
        assert request(stack.gateway_port, "POST", "/v1/jobs/%s/retry" % job_id).status == 202
        second = stack.wait_terminal(job_id)
        assert second["status"] == "failed"

        def listed():
            jobs = stack.get_path("/v1/jobs?limit=10").json()["jobs"]
            return any(j["id"] == job_id for j in jobs)
        # The first finish's expiry (3 s after it, ~1 s from here) must not
        # delete the job: it is kept 3 s from its second finish.
        for _ in range(20):
            assert listed(), "the retried job was deleted by its first finish's expiry"
            time.sleep(0.1)
        wait_until(lambda: not listed(), 20, "the job to expire after its second finish")
