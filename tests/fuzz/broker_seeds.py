"""broker_seeds — writes the seed corpus of fuzz_broker (corpus/broker/):
short conversations of gateways and workers with a broker, in the target's
input format (see fuzz_broker.c). Run it again after changing either:
python3 tests/fuzz/broker_seeds.py"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from test_hardening_broker import _pack, _record  # noqa: E402

COMMANDS = ["SUBMIT", "SUBMIT_OK", "GET", "JOB", "PING", "PONG", "ERROR", "READY", "CREDIT",
            "DISPATCH", "RESULT", "HEARTBEAT", "RECONNECT", "DISCONNECT", "CANCEL", "RETRY",
            "LIST", "LIST_OK", "CHUNK", "PROVIDERS", "PROVIDERS_OK", "EVENT", "USAGE", "USAGE_OK",
            "ACK", "STATS", "STATS_OK"]
GATEWAY, WORKER, SECOND, TICK = 0, 1, 2, 4
JOB = "0190a000-0000-7000-8000-00000000000a"


def message(sender, command, *bodies):
    payload = bytes([sender, COMMANDS.index(command)])
    for body in bodies:
        data = body if isinstance(body, bytes) else _pack(body)
        payload += struct.pack(">H", len(data)) + data
    return struct.pack(">H", len(payload)) + payload


def submit(spec=None, tenant="q", kind="http", provider="p", corr=1, **fields):
    record = _record(tenant, kind, spec or {"request": {"path": "/json"}}, JOB)
    record.update(provider=provider, corr=corr, **fields)
    return message(GATEWAY, "SUBMIT", record)


def ready(credit=2, concurrency=2, sender=WORKER):
    return message(sender, "READY", {"credit": credit, "concurrency": concurrency, "worker": "w0"})


def result(outcome="succeeded", attempt=1, result_text='{"status":200,"body":"ok"}', error=None,
           sender=WORKER, retry_after_ms=0, **extra):
    body = {"id": JOB, "attempt": attempt, "lease": "fuzz", "outcome": outcome,
            "result": result_text, "error": error, "retry_after_ms": retry_after_ms}
    body.update(extra)
    return message(sender, "RESULT", body)


def ask(command, corr=2, tenant="q", **fields):
    body = {"corr": corr, "id": JOB, "tenant": tenant}
    body.update(fields)
    return message(GATEWAY, command, body)


SEEDS = {
    # Revision 4 (docs/protocol.md §3.2.3): numbered RESULTs, acknowledged
    # after the commit; a resend of one already applied; a stray ACK.
    "numbered_results": submit() + ready() + result(seq=1) + result(seq=1)
        + result(seq=2, attempt=2) + message(WORKER | TICK, "ACK", {"seq": 1, "count": 2}),
    "succeed": submit() + ready() + result() + ask("GET", with_chunks=True),
    "retry_then_fail": submit() + ready() + result(
        "retry", error='{"type":"upstream_status","upstream_status":503}', result_text=None,
        retry_after_ms=5) + message(GATEWAY | TICK, "PING", {"corr": 3})
        + result("failed", attempt=2, error='{"type":"upstream_status","upstream_status":404}'),
    "cancel_retry": submit() + ready() + ask("CANCEL") + ask("RETRY", corr=3)
        + result(attempt=1) + result(attempt=2),
    "webhook": submit({"request": {"url": "http://127.0.0.1:9/"},
                       "callback": {"url": "http://127.0.0.1:9/hook"}}, provider=None)
        + ready() + result() + message(GATEWAY | TICK, "PING", {"corr": 4}),
    "chunks": submit() + ready() + message(WORKER, "CHUNK", {"id": JOB, "attempt": 1, "lease": "fuzz",
                                                             "index": 0, "data": "tok"})
        + ask("GET", with_chunks=True),
    "handback_drain": submit() + ready() + message(WORKER, "DISCONNECT", {})
        + result("handback", error='{"type":"worker_stopped"}', result_text=None)
        + ready(sender=WORKER | SECOND),
    "too_large": submit() + ready() + result(result_text=json.dumps({"body": "x" * 5000})),
    "invalid_result": submit() + ready() + result(result_text="{\"body\":")
        + result("exploded", attempt=2),
    "refused_submits": submit(kind="webhook") + submit(tenant="#webhooks/q")
        + submit(metadata="1},{") + submit(timeout_ms=-1),
    "requests": message(GATEWAY, "LIST", {"corr": 5, "tenant": "q", "limit": 10})
        + message(GATEWAY | SECOND, "PROVIDERS", {"corr": 6})
        + message(GATEWAY, "PING", {"corr": 7}) + ask("GET", tenant="other")
        + message(GATEWAY | TICK, "STATS", {"corr": 11}),
    "credit": ready(2 ** 62, 2 ** 62) + message(WORKER, "CREDIT", {"credit": 2 ** 62})
        + message(WORKER | SECOND, "HEARTBEAT", {"running": 0}) + submit(),
    "quota": submit() + submit(corr=2) + submit(corr=3) + submit(corr=4) + ready(4, 4),
    # Revision 3: an llm answer's usage, model and the upstream's token
    # budget; the tenant's totals and the usage metrics.
    "llm_usage": submit({"request": {"model": "m", "max_tokens": 50,
                                     "messages": [{"role": "user", "content": "hi"}]}},
                        kind="llm")
        + ready() + result(usage='{"prompt_tokens":3,"completion_tokens":9}', model="m-1",
                           ratelimit={"remaining_tokens": 0, "reset_tokens_ms": 20})
        + message(GATEWAY, "USAGE", {"corr": 8, "tenant": "q", "since": 0})
        + message(GATEWAY | TICK, "PING", {"corr": 9, "metrics_seq": 0})
        + submit(kind="llm", corr=10),
    # Revision 4: a worker's figures on its HEARTBEAT (its identity a label
    # value of the broker's metrics), negative ones too; a refused tenant.
    "worker_figures": message(WORKER, "READY", {"credit": 1, "concurrency": 1,
                                                "worker": 'w"\\1'})
        + message(WORKER, "HEARTBEAT", {"running": 1, "cpu_ms": 10, "rss_bytes": -1,
                                        "open_fds": 3, "max_fds": 2 ** 62,
                                        "started_at": 1700000000000})
        + submit(tenant='t"\\', corr=11),
    "overload": submit() + ready() + result(
        "retry", error='{"type":"upstream_status","upstream_status":429}', result_text=None,
        retry_after_ms=99999999),
}

if __name__ == "__main__":
    out = os.path.join(HERE, "corpus", "broker")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(SEEDS), out))
