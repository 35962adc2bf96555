#!/usr/bin/env python3
"""scaleout.py [--jobs N] — how far one broker goes, for docs/scale-out.md:
its CPU per job, its memory per queued job and its store's growth, queued
and finished.

A fresh stack on loopback (tests/integration/harness.py: broker with
durability fsync, one gateway, the mock upstream), in two phases:

1. queued: no worker; N jobs submitted through POST /v1/batch (1,000 a
   request); the broker's RSS, its store file (data.mdb) and its CPU time
   (/proc/PID/stat, user + system) before and after, per job;
2. finished: one worker started; every job runs (mock /json, no latency)
   and is read back; the store and the broker's CPU again: per finished job
   with its result (the job kept for broker.result_ttl_s).

Bounded: N ≤ 200,000, each phase ≤ 300 s. Prints a Markdown table and the
conditions (load average, cores). Run it on a quiet machine for figures of
record; its figures move with whatever else runs.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from harness import Stack, request, wait_until  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_bytes(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * PAGE


def store_bytes(stack):
    """Bytes the store's file holds on disk (allocated blocks, not the map size)."""
    path = os.path.join(stack.config["broker"]["data_dir"], "data.mdb")
    return os.stat(path).st_blocks * 512


def snapshot(stack):
    pid = stack.procs["broker"].pid
    return {"cpu": cpu_seconds(pid), "rss": rss_bytes(pid), "store": store_bytes(stack), "t": time.monotonic()}


def queued_total(stack):
    body = stack.get_path("/v1/providers").json()
    return sum(p["queued"] + p["in_flight"] for p in body["providers"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50000)
    args = parser.parse_args()
    if not 1000 <= args.jobs <= 200000:
        parser.error("--jobs from 1,000 to 200,000")
    jobs = args.jobs - args.jobs % 1000
    spec = {"kind": "http", "provider": "mock", "request": {"path": "/json"}}
    load_before = os.getloadavg()
    with Stack(workers=0, start=False,
               config_extra={"broker": {"max_queued": 1000000}, "log_level": "warn"}) as stack:
        stack.start_all(workers=0)
        wait_until(lambda: stack.get_path("/v1/providers").status == 200, 15, "the gateway")
        time.sleep(1)
        start = snapshot(stack)
        for _ in range(jobs // 1000):
            answer = request(stack.gateway_port, "POST", "/v1/batch", body={"jobs": [spec] * 1000})
            assert answer.status == 202, (answer.status, answer.body[:300])
            assert all("id" in entry for entry in answer.json()["jobs"]), answer.body[:300]
        wait_until(lambda: queued_total(stack) >= jobs, 300, "every job queued")
        queued = snapshot(stack)

        stack.start_worker()
        wait_until(lambda: queued_total(stack) == 0, 300, "every job run", interval=0.5)
        finished = snapshot(stack)
        sample = json.loads(request(stack.gateway_port, "GET", "/v1/jobs?limit=1").body)["jobs"][0]
        assert sample["status"] == "succeeded", sample

    def per_job(a, b, key):
        return (b[key] - a[key]) / jobs

    rows = [
        ("broker CPU per job, accepted (batches of 1,000)", "%.1f µs" % (per_job(start, queued, "cpu") * 1e6),
         "%.0f jobs/s per broker core" % (1 / per_job(start, queued, "cpu"))),
        ("broker CPU per job, run (dispatch, result, events)", "%.1f µs" % (per_job(queued, finished, "cpu") * 1e6),
         "%.0f jobs/s per broker core" % (1 / per_job(queued, finished, "cpu"))),
        ("broker CPU per job, both", "%.1f µs" % (per_job(start, finished, "cpu") * 1e6),
         "%.0f jobs/s per broker core, end to end" % (1 / per_job(start, finished, "cpu"))),
        ("broker RSS per queued job", "%.2f KiB" % (per_job(start, queued, "rss") / 1024),
         "spec of %d bytes" % len(json.dumps(spec))),
        ("store growth per queued job", "%.2f KiB" % (per_job(start, queued, "store") / 1024), "data.mdb, allocated"),
        ("store growth per finished job, kept", "%.2f KiB" % (per_job(start, finished, "store") / 1024),
         "result of %d bytes as the API shows it" % len(json.dumps(sample.get("result")))),
    ]
    print("scale-out: %d jobs; %d cores; load average before %.2f %.2f %.2f, after %.2f %.2f %.2f; "
          "accepted in %.1f s, run in %.1f s" % ((jobs, os.cpu_count()) + load_before + os.getloadavg()
                                                + (queued["t"] - start["t"], finished["t"] - queued["t"])))
    print("| figure | measured | note |")
    print("|---|---|---|")
    for row in rows:
        print("| %s | %s | %s |" % row)


if __name__ == "__main__":
    main()
