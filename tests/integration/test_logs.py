"""Log lines (issue 17 #10): user- and upstream-supplied text never forges a
line or reaches a terminal raw, in the text format and in the JSON format."""
import json
import os
import re

from harness import Stack, request

# What a jobgate text line starts with: a UTC time stamp and a level.
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (debug|info|warn|error) \S+\[\d+\] job=\S+ ")
HOSTILE = "k\n2026-01-01T00:00:00.000Z error broker[1] job=- forged\x1b[2J\u009b"


def _hostile_traffic(stack):
    """Sends text with line breaks, terminal escapes and C1 controls through
    every field that may be logged, and waits for the jobs to finish."""
    ids = []
    specs = [
        # An extra search parameter whose name carries the payload (its
        # nested value makes the worker refuse it, quoting the name).
        {"kind": "search", "provider": "web", "request": {"query": "x", HOSTILE: {"a": 1}}},
        {"kind": "search", "provider": "web", "request": {"query": "x", HOSTILE: "v"}},
        # Headers, query and metadata values, and a body.
        {"kind": "http", "provider": "mock",
         "request": {"path": "/status/404", "query": {HOSTILE: HOSTILE},
                     "headers": {"X-Note": "a\u009bb\u001b[31m"}, "body": HOSTILE},
         "metadata": {HOSTILE: HOSTILE}, "max_attempts": 1},
        {"kind": "http", "provider": "mock", "request": {"path": "/json"}},
    ]
    for spec in specs:
        resp = request(stack.gateway_port, "POST", "/v1/jobs", body=spec,
                       headers={"Idempotency-Key": "idem\x1b[2J"})
        if resp.status == 202:
            ids.append(resp.json()["id"])
        # Refused specs are fine: what matters is what reached the logs.
    for job_id in ids:
        stack.wait_terminal(job_id)
        request(stack.gateway_port, "GET", "/v1/jobs/%s/events" % job_id,
                headers={"Last-Event-ID": HOSTILE.replace("\n", "")})
    request(stack.gateway_port, "GET", "/v1/jobs/not-an-id%0A%1B")


def _config(extra=None):
    config = {"providers": {"web": {"base_url": "http://127.0.0.1:1",
                                    "search": {"path": "/search"}}}}
    config.update(extra or {})
    return config


def test_text_log_lines_cannot_be_forged():
    with Stack(config_extra=_config({"log_level": "debug"})) as stack:
        _hostile_traffic(stack)
        for name in ("broker", "gateway", "worker0"):
            raw = open(os.path.join(stack.dir, name + ".log"), "rb").read()
            assert b"\x1b" not in raw and b"\xc2\x9b" not in raw, name
            for line in raw.decode("utf-8").splitlines():
                assert LINE.match(line), (name, line)
            assert b"forged" not in raw or b"\\x0a2026-01-01" in raw


def test_json_log_lines_are_one_object_each():
    with Stack(config_extra=_config({"log_level": "debug", "log_format": "json"})) as stack:
        _hostile_traffic(stack)
        for name in ("broker", "gateway", "worker0"):
            raw = open(os.path.join(stack.dir, name + ".log"), "rb").read()
            assert b"\x1b" not in raw and b"\xc2\x9b" not in raw, name
            lines = raw.decode("utf-8").splitlines()
            assert lines, name
            for line in lines:
                entry = json.loads(line)
                assert entry["level"] in ("debug", "info", "warn", "error"), line
                assert entry["process"] and isinstance(entry["pid"], int), line
                assert "\n" not in entry["msg"], line
