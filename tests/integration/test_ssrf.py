"""The SSRF policy end to end (SPEC §5, issue 4): user URLs towards
loopback in every spelling are refused before a packet is sent, a redirect
from an allowed host to a denied one is refused, the operator's
allow-list opens exactly what it names, and a configured provider on
loopback (operator-trusted) still works.

Only loopback addresses are used, so a leak could never send a packet off
this machine; the mock upstream counts what reaches it."""
import http.client
import json
import os
import signal
import subprocess

from harness import BUILD, Stack, wait_until

DENIED = {"allow_private_networks": False}

# Every way of writing a loopback (or unspecified) address that libcurl
# accepts: decimal, hex and octal IPv4, IPv6 loopback, IPv4-mapped IPv6.
LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.2", "localhost", "0.0.0.0", "[::1]",
                  "[::ffff:127.0.0.1]", "2130706433", "0x7f000001", "0177.0.0.1"]


def _blocked(job):
    return job["status"] == "failed" and (job.get("error") or {}).get("type") == "blocked_by_policy"


def test_ssrf_loopback_forms_blocked_provider_allowed():
    with Stack(config_extra={"security": DENIED}) as stack:
        stack.mock_reset()
        ids = []
        for host in LOOPBACK_HOSTS:
            url = "http://%s:%d/json" % (host, stack.mock_port)
            for kind in ("http", "crawl"):
                resp = stack.submit({"kind": kind, "max_attempts": 1, "request": {"url": url}})
                ids.append((kind, url, resp.json()["id"]))
        for kind, url, job_id in ids:
            job = stack.wait_terminal(job_id, timeout=30)
            assert _blocked(job), (kind, url, job)
            assert job["attempts"] == 1, job
            assert "result" not in job or job["result"] is None, job
        # Not one request reached the mock, whichever spelling was used.
        stats = stack.mock_stats()
        assert stats["served"] == 0, stats
        assert sum(stats["arrivals_by_second"].values()) == 0, stats
        # The operator's provider on loopback is trusted and still works.
        job = stack.wait_terminal(stack.submit(
            {"kind": "http", "provider": "mock", "request": {"path": "/json"}}).json()["id"])
        assert job["status"] == "succeeded", job
        assert stack.mock_stats()["served"] == 1


def _start_second_mock(stack):
    """Starts a mock on 127.0.0.2 (ephemeral port); returns (process, port)."""
    port_file = os.path.join(stack.dir, "mock2.port")
    log = open(os.path.join(stack.dir, "mock2.log"), "ab")
    proc = subprocess.Popen([os.path.join(BUILD, "tests/mock/jobgate-mock-upstream"),
                             "--listen", "127.0.0.2:0", "--port-file", port_file],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()

    def read_port():
        try:
            with open(port_file) as f:
                text = f.read().strip()
            return int(text) if text else None
        except (OSError, ValueError):
            return None
    try:
        return proc, wait_until(read_port, 10, "the second mock on 127.0.0.2")
    except AssertionError:
        proc.kill()
        proc.wait()
        raise


def _second_stats(port):
    """/stats of the mock on 127.0.0.2 (the harness talks to 127.0.0.1 only)."""
    conn = http.client.HTTPConnection("127.0.0.2", port, timeout=10)
    try:
        conn.request("GET", "/stats")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _stop(proc, stack):
    """Stops the second mock by its PID; fails on a sanitizer report."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with open(os.path.join(stack.dir, "mock2.log"), errors="replace") as f:
        text = f.read()
    for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
        assert marker not in text, text[-4000:]


def test_ssrf_redirect_from_allowed_to_denied():
    security = dict(DENIED, allow_networks=["127.0.0.2/32"])
    with Stack(config_extra={"security": security}) as stack:
        second, second_port = _start_second_mock(stack)
        try:
            allowed = "http://127.0.0.2:%d" % second_port
            stack.mock_reset()
            # The allow-list opens 127.0.0.2, and only it.
            job = stack.wait_terminal(stack.submit(
                {"kind": "http", "max_attempts": 1, "request": {"url": allowed + "/json"}}).json()["id"])
            assert job["status"] == "succeeded", job
            # A crawl that the allowed host redirects to the denied one.
            target = "http://127.0.0.1:%d/json" % stack.mock_port
            for to in (target, "http://localhost:%d/json" % stack.mock_port,
                       "http://[::ffff:127.0.0.1]:%d/json" % stack.mock_port):
                url = allowed + "/redirect?to=" + to.replace(":", "%3A").replace("/", "%2F")
                job = stack.wait_terminal(stack.submit(
                    {"kind": "crawl", "max_attempts": 1, "request": {"url": url}}).json()["id"])
                assert _blocked(job), (to, job)
            # A denied host is still denied directly.
            job = stack.wait_terminal(stack.submit(
                {"kind": "crawl", "max_attempts": 1, "request": {"url": target}}).json()["id"])
            assert _blocked(job), job
            # The allowed mock saw the first hops; the denied one saw nothing.
            second_stats = _second_stats(second_port)
            assert second_stats["by_path"].get("/redirect") == 3, second_stats
            stats = stack.mock_stats()
            assert stats["served"] == 0, stats
            assert sum(stats["arrivals_by_second"].values()) == 0, stats
            # The provider on loopback still works.
            job = stack.wait_terminal(stack.submit(
                {"kind": "http", "provider": "mock", "request": {"path": "/json"}}).json()["id"])
            assert job["status"] == "succeeded", job
        finally:
            _stop(second, stack)


def test_pooled_provider_connection_is_never_reused_for_a_user_url():
    # A provider call leaves a kept-alive connection to the mock in the
    # worker's pool; a user URL to the same address must still be checked.
    with Stack(config_extra={"security": {"allow_private_networks": False}}) as stack:
        for _ in range(3):
            job = stack.wait_terminal(stack.submit(
                {"kind": "http", "provider": "mock", "request": {"path": "/json"}}).json()["id"])
            assert job["status"] == "succeeded"
        served = stack.mock_stats()["served"]
        job = stack.wait_terminal(stack.submit(
            {"kind": "http", "request": {"url": stack.mock_url("/json")}}).json()["id"])
        assert job["status"] == "failed" and job["error"]["type"] == "blocked_by_policy", job
        assert stack.mock_stats()["served"] == served
