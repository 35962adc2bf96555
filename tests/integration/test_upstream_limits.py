"""Answers an upstream sizes itself: a decompression bomb stops at the cap
on decoded bytes, for the http kind (response_too_large) and the crawl kind
(a truncated page), and the worker does not swell on the way.

The bomb is served by a small stdlib HTTP server of the test's own on
127.0.0.1: 64 MiB of zeros gzip'd to ~64 KiB."""
import gzip
import http.server
import os
import threading

from harness import Stack

BOMB_BYTES = 64 * 1024 * 1024
BOMB = gzip.compress(b"\x00" * BOMB_BYTES, compresslevel=9)


class _BombHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if "page" in self.path else "application/octet-stream")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(BOMB)))
        self.end_headers()
        try:
            self.wfile.write(BOMB)
        except OSError:
            pass    # the worker hung up at its cap

    def log_message(self, *args):
        pass


def _vmrss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def test_decompression_bomb_stops_at_the_cap():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BombHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = "http://127.0.0.1:%d" % server.server_address[1]
    try:
        extra = {"worker": {"max_response_bytes": 4 * 1024 * 1024}}
        with Stack(config_extra=extra) as stack:
            assert len(BOMB) < BOMB_BYTES // 500
            job = stack.wait_terminal(stack.submit({"kind": "http", "max_attempts": 1,
                                                    "request": {"url": url + "/bomb"}}).json()["id"])
            assert job["status"] == "failed", job
            assert job["error"]["type"] == "response_too_large", job["error"]
            page = stack.wait_terminal(stack.submit({"kind": "crawl",
                                                     "request": {"url": url + "/page",
                                                                 "max_bytes": 1024 * 1024}}).json()["id"])
            assert page["status"] == "succeeded", page.get("error")
            assert page["result"]["truncated"] is True
            # 64 MiB decoded never sat in the worker at once: its peak stays
            # near its resting size plus a few MiB.
            peak = _vmrss_kb(stack.procs["worker0"].pid)
            print("worker VmHWM after two bombs: %d kB" % peak)
            bound_kb = 48 * 1024 * (3 if os.environ.get("JOBGATE_SANITIZED") else 1)
            assert peak < bound_kb, peak
    finally:
        server.shutdown()
        server.server_close()
