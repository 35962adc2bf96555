#!/usr/bin/env python3
"""overload — offer ~10x what the workers can drain (SPEC §4, issue 3).

Starts broker, 1 gateway, W workers with worker.concurrency C and the mock
with a fixed latency L, so the stack drains W*C/L jobs/s; offers FACTOR times
that (open loop, several load processes with keep-alive threads) for
SECONDS, with broker.max_queued small enough to be reached. Checks:

* every answer is 202 or 503, and every 503 carries Retry-After;
* VmRSS of every process (sampled every 0.25 s from /proc/PID/status)
  stays flat once the queue is full: the peak in the last third of the
  full-queue window exceeds the peak in its first third by no more than
  max(--rss-slack-pct %, --rss-slack-mb MiB); peak RSS per process reported;
* every accepted job succeeds after the load stops (bounded wait).

Prints one summary line:
  overload: offered O/s for S s (capacity C/s): 202 A, 503 B, other 0, ...

  python3 tests/faults/overload.py --fast      # 15 s (make test)
  python3 tests/faults/overload.py             # 60 s (make test-faults)
"""
import argparse
import http.client
import json
import multiprocessing
import os
import random
import socket
import sys
import threading
import time

from faultlib import TERMINAL, Client, FaultStack


def log(*args):
    print(*args, flush=True)


def load_process(port, rate, threads, seconds, latency_ms, seed, out):
    """One load process: `threads` keep-alive clients sharing `rate`/s."""
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()
    res = {"202": [], "503": 0, "503_no_retry_after": 0, "other": {}, "errors": 0,
           "sent": 0, "lat_202": [], "lat_503": [], "first_503_at": None}

    def run(i):
        rng = random.Random(seed * 100 + i)
        client = Client(port, timeout=30)
        interval = threads / rate
        next_t = time.monotonic() + rng.uniform(0, interval)
        while True:
            now = time.monotonic()
            if now >= stop_at:
                break
            if next_t > now:
                time.sleep(min(next_t - now, stop_at - now))
                continue
            if now - next_t > 1.0:
                next_t = now
            next_t += interval
            spec = {"kind": "http", "provider": "mock",
                    "request": {"path": "/json", "query": {"latency_ms": latency_ms}},
                    "timeout_ms": 30000}
            t0 = time.monotonic()
            try:
                status, hdrs, body = client.request("POST", "/v1/jobs", spec)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    res["errors"] += 1
                    res["other"].setdefault("error " + type(exc).__name__, 0)
                    res["other"]["error " + type(exc).__name__] += 1
                time.sleep(0.05)
                continue
            took = time.monotonic() - t0
            with lock:
                res["sent"] += 1
                if status == 202:
                    res["202"].append(json.loads(body)["id"])
                    if len(res["lat_202"]) < 20000:
                        res["lat_202"].append(took)
                elif status == 503:
                    res["503"] += 1
                    if res["first_503_at"] is None:
                        res["first_503_at"] = time.time()
                    if not hdrs.get("retry-after"):
                        res["503_no_retry_after"] += 1
                    if len(res["lat_503"]) < 20000:
                        res["lat_503"].append(took)
                else:
                    key = "%d %s" % (status, body[:120].decode(errors="replace"))
                    res["other"][key] = res["other"].get(key, 0) + 1
        client.close()

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(res)


def pct(values, p):
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fast", action="store_true", help="15 s of load, max_queued 500")
    ap.add_argument("--seconds", type=float, default=None, help="load time (default 60, --fast 15)")
    ap.add_argument("--max-queued", type=int, default=None, help="broker.max_queued (default 2000, --fast 500)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--latency-ms", type=int, default=500)
    ap.add_argument("--factor", type=float, default=10.0, help="offered load / capacity")
    ap.add_argument("--procs", type=int, default=4, help="load processes")
    ap.add_argument("--threads", type=int, default=8, help="threads per load process")
    ap.add_argument("--rss-slack-pct", type=float, default=10.0)
    ap.add_argument("--rss-slack-mb", type=float, default=8.0)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    seconds = args.seconds or (15.0 if args.fast else 60.0)
    max_queued = args.max_queued or (500 if args.fast else 2000)
    capacity = args.workers * args.concurrency * 1000.0 / args.latency_ms
    offered = capacity * args.factor
    if args.keep:
        os.environ["JOBGATE_TEST_KEEP"] = "1"
    started = time.monotonic()
    stack = FaultStack(gateways=1, workers=args.workers, concurrency=args.concurrency,
                       config_extra={"broker": {"max_queued": max_queued}})
    log("overload: capacity %.0f jobs/s (%d worker(s) x %d / %d ms), offering %.0f/s for %.0fs, "
        "max_queued %d; logs in %s" % (capacity, args.workers, args.concurrency, args.latency_ms,
                                      offered, seconds, max_queued, stack.dir))
    problems = []
    samples = []          # (wall time, {name: kib})
    sampling = threading.Event()
    sampling.set()

    def sampler():
        while sampling.is_set():
            samples.append((time.time(), stack.rss()))
            time.sleep(0.25)

    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=load_process,
                         args=(stack.gateway_ports[0], offered / args.procs, args.threads, seconds,
                               args.latency_ms, i, out))
             for i in range(args.procs)]
    load_start = time.time()
    for p in procs:
        p.start()
    st = threading.Thread(target=sampler, daemon=True)
    st.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(30)
    load_end = time.time()

    accepted = [i for r in results for i in r["202"]]
    n503 = sum(r["503"] for r in results)
    no_ra = sum(r["503_no_retry_after"] for r in results)
    sent = sum(r["sent"] for r in results)
    errors = sum(r["errors"] for r in results)
    other = {}
    for r in results:
        for k, v in r["other"].items():
            other[k] = other.get(k, 0) + v
    firsts = [r["first_503_at"] for r in results if r["first_503_at"]]
    full_at = min(firsts) if firsts else None
    lat202 = [x for r in results for x in r["lat_202"]]
    lat503 = [x for r in results for x in r["lat_503"]]
    achieved = (sent + errors) / max(load_end - load_start, 0.001)

    # Drain: every accepted job terminal and succeeded.
    drain_start = time.monotonic()
    pending = set(accepted)
    states = {}
    lock = threading.Lock()
    deadline = drain_start + len(accepted) / capacity * 1.5 + 60

    def poller(ids):
        client = Client(stack.gateway_ports[0], timeout=70)
        for job_id in ids:
            while time.monotonic() < deadline:
                try:
                    status, _, body = client.request("GET", "/v1/jobs/%s?wait=20" % job_id)
                except (OSError, http.client.HTTPException):
                    time.sleep(0.2)
                    continue
                if status == 404:
                    with lock:
                        states[job_id] = "404"
                    break
                if status != 200:
                    time.sleep(0.2)
                    continue
                job = json.loads(body)
                if job["status"] in TERMINAL:
                    with lock:
                        states[job_id] = job["status"] if job["status"] == "succeeded" else \
                            "%s %s" % (job["status"], json.dumps(job.get("error"))[:200])
                    break
        client.close()

    # jobs finish roughly in submission order: poll each shard in order
    shards = [accepted[i::16] for i in range(16)]
    pts = [threading.Thread(target=poller, args=(s,)) for s in shards]
    for t in pts:
        t.start()
    for t in pts:
        t.join()
    drain_secs = time.monotonic() - drain_start
    sampling.clear()
    st.join(2)

    succeeded = sum(1 for v in states.values() if v == "succeeded")
    unfinished = [i for i in accepted if i not in states]
    bad = {i: v for i, v in states.items() if v != "succeeded"}

    # RSS: peak per process; flatness over the full-queue window.
    names = sorted({n for _, s in samples for n in s})
    peak = {n: max((s.get(n, 0) for _, s in samples), default=0) for n in names}
    flat_report = []
    if full_at is not None:
        window = [(t, s) for t, s in samples if full_at + 1.0 <= t <= load_end]
        if len(window) >= 6:
            third = len(window) // 3
            for n in names:
                first = max(s.get(n, 0) for _, s in window[:third])
                last = max(s.get(n, 0) for _, s in window[-third:])
                allowed = max(first * args.rss_slack_pct / 100.0, args.rss_slack_mb * 1024)
                growth = last - first
                flat_report.append("%s %+.1f MiB" % (n, growth / 1024.0))
                if growth > allowed and os.environ.get("JOBGATE_SANITIZED"):
                    flat_report[-1] += " (not judged: sanitized build, ASan's quarantine holds freed memory)"
                elif growth > allowed:
                    problems.append("%s RSS grew %.1f MiB while the queue was full (%.1f -> %.1f MiB)" % (
                        n, growth / 1024.0, first / 1024.0, last / 1024.0))
        else:
            problems.append("the queue was full for too short a time to judge RSS")
    else:
        problems.append("the queue never filled up (no 503): offered load too low or max_queued too high")

    if other:
        problems.append("answers other than 202/503: %s" % other)
    if no_ra:
        problems.append("%d 503s without Retry-After" % no_ra)
    if unfinished:
        problems.append("%d accepted jobs not finished %.0fs after the load stopped, e.g. %s" % (
            len(unfinished), drain_secs, unfinished[:3]))
    if bad:
        problems.append("%d accepted jobs did not succeed, e.g. %s" % (len(bad), list(bad.items())[:3]))
    if achieved < offered * 0.7:
        log("note: the load generator reached only %.0f/s of the %.0f/s asked" % (achieved, offered))
    for n, rc in stack.exited().items():
        problems.append("%s died (exit %s)" % (n, rc))
    try:
        stack.close()
    except AssertionError as exc:
        problems.append("shutdown: %s" % exc)

    log("RSS peak: " + ", ".join("%s %.1f MiB" % (n, peak[n] / 1024.0) for n in names))
    if flat_report:
        log("RSS growth while full (last third vs first third): " + ", ".join(flat_report))
    log("latency: 202 p50 %.1f ms p99 %.1f ms; 503 p50 %.1f ms p99 %.1f ms; queue full after %s" % (
        pct(lat202, 50) * 1000, pct(lat202, 99) * 1000, pct(lat503, 50) * 1000, pct(lat503, 99) * 1000,
        "%.1fs" % (full_at - load_start) if full_at else "never"))
    log("overload: offered %.0f/s for %.0fs (capacity %.0f/s, %.1fx): 202 %d, 503 %d, other %d, errors %d; "
        "accepted jobs succeeded %d/%d, drained in %.1fs; %.1fs total%s" % (
            achieved, seconds, capacity, achieved / capacity, len(accepted), n503, sum(other.values()) - errors,
            errors, succeeded, len(accepted), drain_secs, time.monotonic() - started,
            "".join("\nPROBLEM: " + p for p in problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
