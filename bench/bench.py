#!/usr/bin/env python3
"""bench.py — the Python standard-library half of bench/run.sh.

Subcommands (all traffic to 127.0.0.1 only, every wait bounded):

  free-port [USED]               print a TCP port free on 127.0.0.1 right now (and not
                                 in the file USED, where it is then added)
  wait-port FILE SECONDS         wait until FILE holds a port number; print it
  wait-http PORT PATH SECONDS    wait until GET PATH answers 2xx
  get-json PORT PATH OUT         GET PATH and save the JSON body to OUT
  proc-mark OUT LABEL NAME=PID...
                                 append one snapshot of each process's CPU
                                 time (/proc/PID/stat utime+stime) and memory
                                 (/proc/PID/status VmRSS, VmHWM, RssAnon,
                                 RssFile) to OUT (JSON lines)
  jg-settle PORT BROKER_METRICS_PORT OUT SECONDS [QUEUED]
                                 poll jobgate's /metrics until the broker has
                                 nothing queued or running (or, with QUEUED,
                                 until QUEUED jobs are queued); bounded
  readback PORT IDS OUT SECONDS  read every job of the tenant back through the
                                 list endpoint (pages of 1,000, cursor), re-read
                                 unfinished or missing ids one by one until
                                 SECONDS pass; result latencies to OUT
  poll-jobs PORT IDS OUT SECONDS read every job id in IDS (long-polling with
                                 ?wait=) until finished or SECONDS pass
  wait-tcp PORT SECONDS          wait until 127.0.0.1:PORT accepts a connection
  gearman-settle PORT OUT SECONDS [QUEUED]
                                 poll gearmand's admin "status" until no job
                                 is queued or running (or, with QUEUED, until
                                 QUEUED are queued); bounded
  facts-summary IDS FORMAT OUT FACTS...
                                 a peer's readback: join the loadgen's ids
                                 with the peer's own record of each job
                                 (FORMAT bullmq: "ID STATUS CREATED_MS
                                 FINISHED_MS", from its Redis hashes; gearman:
                                 "HANDLE FINISHED_MS STATUS", from its workers)
                                 into the summary `readback` writes
  seed-drain PORT OUT SECONDS    poll the seed app's /stats until every
                                 started upstream call ended (bounded)
  wrk-parse TXT OUT              turn wrk's text output into JSON
  sweep-ok LOAD GOOD_CODE P99_MS exit 0 when a sweep step held (≥ 99 % good
                                 answers, p99 ≤ P99_MS), 1 when it collapsed
  du DIR OUT                     bytes on disk under DIR, to OUT
  mock-quiet PORT SECONDS        wait until the mock has no request in flight
  cpu-quiet IDLE% ROW MAX        wait (at most MAX s) until the CPUs were IDLE% idle ROW s running
  door-ttft PORT N OUT           time to the first token of N streamed chat
                                 calls sent at once to PORT's
                                 /v1/chat/completions (the door or the mock)
  report DIR OUTBASE             build the Markdown report (stdout,
                                 OUTBASE.md) and the raw JSON (OUTBASE.json)
"""
import calendar
import http.client
import json
import math
import os
import re
import socket
import sys
import threading
import time


def free_port(handed_out_file=None):
    """A TCP port free on 127.0.0.1 right now; with handed_out_file, also
    one not listed there (then listed): the kernel may pick a port it just
    released again, and a stack given one port twice fails to start."""
    handed_out = set()
    if handed_out_file and os.path.exists(handed_out_file):
        with open(handed_out_file) as f:
            handed_out = {int(line) for line in f if line.strip()}
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in handed_out:
            break
    if handed_out_file:
        with open(handed_out_file, "a") as f:
            f.write("%d\n" % port)
    return port


def http_get(port, path, timeout=5.0, conn=None):
    """GET path on 127.0.0.1:port; returns (status, body bytes)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        if own:
            conn.close()


def cmd_wait_port(path, seconds):
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                print(int(text))
                return 0
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    print("bench: no port in %s after %s s" % (path, seconds), file=sys.stderr)
    return 1


def cmd_wait_http(port, path, seconds):
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            status, _ = http_get(int(port), path, timeout=2)
            if 200 <= status < 300:
                return 0
        except OSError:
            pass
        time.sleep(0.1)
    print("bench: GET 127.0.0.1:%s%s not ready after %s s" % (port, path, seconds), file=sys.stderr)
    return 1


def cmd_get_json(port, path, out):
    status, body = http_get(int(port), path, timeout=10)
    data = json.loads(body)
    with open(out, "w") as f:
        json.dump({"status": status, "body": data}, f, indent=2)
    return 0


_SECOND_CACHE = {}


def stamp_ms(text):
    """'2026-11-26T20:14:15.033Z' → ms since the epoch (int), or None.
    jobgate writes every time with millisecond precision in this one form;
    the whole-second part is cached (300,000 jobs share a few hundred)."""
    if not isinstance(text, str) or len(text) != 24 or text[19] != "." or text[23] != "Z":
        return None
    head = text[:19]
    base = _SECOND_CACHE.get(head)
    if base is None:
        try:
            base = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S")) * 1000
        except ValueError:
            return None
        _SECOND_CACHE[head] = base
    try:
        return base + int(text[20:23])
    except ValueError:
        return None


def percentile(sorted_values, pct):
    """Nearest-rank percentile (as the loadgen computes it)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(math.ceil(pct / 100.0 * len(sorted_values)))))
    return sorted_values[rank - 1]


def distribution(values):
    """Summary of a list of numbers: count, min, p50, p90, p99, p99.9, max, mean."""
    values = sorted(values)
    if not values:
        return {"count": 0, "min": None, "p50": None, "p90": None, "p99": None,
                "p99_9": None, "max": None, "mean": None}
    return {"count": len(values), "min": values[0], "p50": percentile(values, 50),
            "p90": percentile(values, 90), "p99": percentile(values, 99),
            "p99_9": percentile(values, 99.9), "max": values[-1],
            "mean": round(sum(values) / len(values), 3)}


# ---------------------------------------------------------------- processes

def proc_snapshot(pid):
    """CPU seconds (user + system) and memory (KiB) of one process, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
        with open("/proc/%d/status" % pid) as f:
            status = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()   # fields[0] is field 3 (state)
    ticks = float(os.sysconf("SC_CLK_TCK"))
    utime, stime = int(fields[11]), int(fields[12])
    snap = {"pid": pid, "utime_s": utime / ticks, "stime_s": stime / ticks,
            "cpu_s": (utime + stime) / ticks}
    for key, name in (("VmRSS", "rss_kib"), ("VmHWM", "hwm_kib"), ("RssAnon", "anon_kib"),
                      ("RssFile", "file_kib"), ("RssShmem", "shmem_kib")):
        match = re.search(r"^%s:\s+(\d+) kB" % key, status, re.M)
        snap[name] = int(match.group(1)) if match else None
    return snap


def cmd_proc_mark(out, label, *named):
    procs = {}
    for item in named:
        name, _, pid = item.partition("=")
        if pid.isdigit():
            procs[name] = proc_snapshot(int(pid))
    with open(out, "a") as f:
        f.write(json.dumps({"label": label, "wall": time.time(), "procs": procs}) + "\n")
    return 0


# ---------------------------------------------------------------- jobgate

def metrics(port, summed=False):
    """jobgate's /metrics as {name: value}: unlabelled samples only, or with
    summed every family's samples added up across their labels."""
    status, body = http_get(port, "/metrics", timeout=5)
    if status != 200:
        return None
    values = {}
    for line in body.decode("utf-8", "replace").splitlines():
        if line.startswith("#") or ("{" in line and not summed):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            parts = rest.rsplit("}", 1)[-1].split()
        else:
            name, parts = line.split(" ", 1)[0], line.split()[1:]
        if len(parts) == 1:
            try:
                values[name] = values.get(name, 0.0) + float(parts[0])
            except ValueError:
                pass
    return values


def settle(read, out, seconds, queued_target, what):
    """Waits (bounded) until read() reports nothing queued or running in
    readings at least 1.1 s apart — or, with queued_target, until that many
    jobs are queued; read() returns {"queued", "running", …} or None when the
    system did not answer. The summary goes to OUT."""
    target = int(queued_target) if queued_target else None
    start = time.monotonic()
    deadline = start + float(seconds)
    samples = []
    first_ok = None
    settled = False
    while True:
        now = time.monotonic()
        sample = read()
        if sample is not None:
            sample["t"] = round(now - start, 2)
            samples.append(sample)
            queued, running = sample["queued"], sample["running"]
            ok = (queued >= target) if target is not None else (queued == 0 and running == 0)
            if ok:
                if first_ok is None:
                    first_ok = now
                if now - first_ok >= 1.1:
                    settled = True
                    break
            else:
                first_ok = None
        if now > deadline:
            break
        time.sleep(0.25 if target is not None else 0.5)
    summary = {"settled": settled, "seconds": round(time.monotonic() - start, 2),
               "bound_s": float(seconds), "queued_target": target,
               "final": samples[-1] if samples else None, "samples": samples[-400:]}
    with open(out, "w") as f:
        json.dump(summary, f, indent=2)
    print("bench: %s%s after %.1f s (%s)" % (what, "settled" if settled else "NOT settled",
                                             summary["seconds"], summary["final"]), file=sys.stderr)
    return 0


def cmd_jg_settle(port, broker_metrics_port, out, seconds, queued_target=""):
    """settle() on jobgate's queue: the broker's own gauges (its /metrics on
    broker.metrics_listen), the gateway's count of jobs accepted."""
    def read():
        try:
            broker = metrics(int(broker_metrics_port), summed=True)
            gateway = metrics(int(port))
        except (OSError, http.client.HTTPException):
            return None
        if broker is None or gateway is None:
            return None
        return {"queued": broker.get("jobgate_queued_jobs", -1),
                "running": broker.get("jobgate_running_jobs", -1),
                "accepted": gateway.get("jobgate_jobs_accepted_total")}
    return settle(read, out, seconds, queued_target, "")


TERMINAL = ("succeeded", "failed", "canceled", "cancelled", "expired", "dead")


def _job_facts(job):
    """The few facts kept per job: (status, created ms, finished ms, attempts, upstream ms)."""
    result = job.get("result")
    upstream = result.get("latency_ms") if isinstance(result, dict) else None
    return (job.get("status", "unknown"), stamp_ms(job.get("created_at")),
            stamp_ms(job.get("finished_at")), job.get("attempts"),
            upstream if isinstance(upstream, (int, float)) else None)


def poll_ids(port, ids, deadline, threads=16):
    """Reads each id (long-polling ?wait=) until terminal or the deadline;
    returns ({id: facts}, errors)."""
    lock = threading.Lock()
    cursor = [0]
    final = {}
    errors = [0]

    def worker():
        conn = None
        while True:
            with lock:
                if cursor[0] >= len(ids):
                    break
                job_id = ids[cursor[0]]
                cursor[0] += 1
            job = None
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait = max(1, min(30, int(left)))
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=wait + 10)
                    status, body = http_get(port, "/v1/jobs/%s?wait=%d" % (job_id, wait), conn=conn)
                except (OSError, http.client.HTTPException):
                    with lock:
                        errors[0] += 1
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.1)
                    continue
                if status != 200:
                    job = {"status": "http_%d" % status}
                    break
                job = json.loads(body)
                if job.get("status") in TERMINAL:
                    break
            with lock:
                final[job_id] = _job_facts(job or {"status": "unknown"})
        if conn is not None:
            conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return final, errors[0]


def read_ids(path):
    """IDS file: 'ID' or 'ID SENT_MS LATENCY_MS' per line (loadgen --ids-format)."""
    ids, sent = [], {}
    if not os.path.exists(path):
        return ids, sent
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            ids.append(parts[0])
            if len(parts) >= 2:
                try:
                    sent[parts[0]] = float(parts[1])
                except ValueError:
                    pass
    return ids, sent


def _summarise(ids, sent, facts, extra_in_store, seconds_taken, poll_errors, pages, method):
    by_status = {}
    server_ms, client_ms, upstream_ms = [], [], []
    attempts = {}
    last_finish = first_created = None
    for job_id in ids:
        fact = facts.get(job_id)
        status = fact[0] if fact else "missing"
        by_status[status] = by_status.get(status, 0) + 1
        if not fact:
            continue
        _, created, finished, tries, upstream = fact
        if tries is not None:
            attempts[str(tries)] = attempts.get(str(tries), 0) + 1
        if created is not None:
            first_created = created if first_created is None else min(first_created, created)
        if status != "succeeded" or finished is None:
            continue
        last_finish = finished if last_finish is None else max(last_finish, finished)
        if created is not None:
            server_ms.append(finished - created)
        if job_id in sent:
            client_ms.append(round(finished - sent[job_id], 3))
        if upstream is not None:
            upstream_ms.append(upstream)
    return {
        "method": method,
        "ids": len(ids),
        "read": sum(1 for job_id in ids if job_id in facts),
        "by_status": by_status,
        "succeeded": by_status.get("succeeded", 0),
        "attempts": attempts,
        "in_store_not_acknowledged": extra_in_store,
        "pages": pages,
        "poll_errors": poll_errors,
        "seconds": round(seconds_taken, 2),
        "first_created_ms": first_created,
        "last_finished_ms": last_finish,
        "result_latency_ms": distribution(server_ms),
        "result_latency_from_send_ms": distribution(client_ms),
        "upstream_latency_ms": distribution(upstream_ms),
    }


def cmd_readback(port, ids_path, out, seconds):
    """Every job of the (default) tenant through GET /v1/jobs?limit=1000 and
    its cursor — a few hundred requests for 300,000 jobs, after the load —
    then the ids still unfinished or missing one by one (long-poll)."""
    port = int(port)
    start = time.monotonic()
    deadline = start + float(seconds)
    ids, sent = read_ids(ids_path)
    wanted = set(ids)
    facts = {}
    extra = 0
    pages = 0
    cursor = None
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        while time.monotonic() < deadline:
            path = "/v1/jobs?limit=1000" + ("&cursor=" + cursor if cursor else "")
            try:
                status, body = http_get(port, path, conn=conn)
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                time.sleep(0.2)
                continue
            if status != 200:
                print("bench: list answered %d: %s" % (status, body[:200]), file=sys.stderr)
                break
            page = json.loads(body)
            pages += 1
            for job in page.get("jobs", []):
                job_id = job.get("id")
                if job_id in wanted:
                    facts[job_id] = _job_facts(job)
                else:
                    extra += 1
            cursor = page.get("next_cursor")
            if not cursor:
                break
    finally:
        conn.close()
    listed = len(facts)
    again = [job_id for job_id in ids if job_id not in facts or facts[job_id][0] not in TERMINAL]
    errors = 0
    if again and time.monotonic() < deadline:
        polled, errors = poll_ids(port, again, deadline)
        facts.update(polled)
    summary = _summarise(ids, sent, facts, extra, time.monotonic() - start, errors, pages,
                         "list endpoint (%d pages), %d ids re-read one by one" % (pages, len(again)))
    summary["listed"] = listed
    with open(out, "w") as f:
        json.dump(summary, f, indent=2)
    print("bench: %d ids, %s, result latency p50 %s ms p99 %s ms (from send: p50 %s p99 %s), %.1f s"
          % (len(ids), summary["by_status"], summary["result_latency_ms"]["p50"],
             summary["result_latency_ms"]["p99"], summary["result_latency_from_send_ms"]["p50"],
             summary["result_latency_from_send_ms"]["p99"], summary["seconds"]), file=sys.stderr)
    return 0


def cmd_poll_jobs(port, ids_path, out, seconds):
    """Reads every job until it is terminal or the deadline passes."""
    port = int(port)
    start = time.monotonic()
    ids, sent = read_ids(ids_path)
    facts, errors = poll_ids(port, ids, start + float(seconds))
    summary = _summarise(ids, sent, facts, 0, time.monotonic() - start, errors, 0,
                         "GET /v1/jobs/{id}?wait= per id")
    with open(out, "w") as f:
        json.dump(summary, f, indent=2)
    print("bench: %d ids, %s, result latency p50 %s ms p99 %s ms (%.1f s of polling)"
          % (len(ids), summary["by_status"], summary["result_latency_ms"]["p50"],
             summary["result_latency_ms"]["p99"], summary["seconds"]), file=sys.stderr)
    return 0


# ---------------------------------------------------------------- peers

def cmd_wait_tcp(port, seconds):
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()
            return 0
        except OSError:
            time.sleep(0.1)
    print("bench: nothing accepts on 127.0.0.1:%s after %s s" % (port, seconds), file=sys.stderr)
    return 1


def gearman_status(port):
    """gearmand's admin "status": {function: (queued+running, running, workers)}."""
    with socket.create_connection(("127.0.0.1", int(port)), timeout=5) as sock:
        sock.sendall(b"status\n")
        data = b""
        while not data.endswith(b".\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    functions = {}
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split("\t")
        if len(parts) == 4:
            functions[parts[0]] = tuple(int(x) for x in parts[1:])
    return functions


def cmd_gearman_settle(port, out, seconds, queued_target=""):
    """settle() on gearmand's status, whose total counts the jobs queued or
    running: queued = total − running."""
    def read():
        try:
            total, running, workers = gearman_status(port).get("call", (0, 0, 0))
        except OSError:
            return None
        return {"queued": total - running, "running": running, "workers": workers}
    return settle(read, out, seconds, queued_target, "gearmand ")


def cmd_facts_summary(ids_path, form, out, *facts_paths):
    """A peer's jobs read back from its own record, summarised as `readback`
    does for jobgate (a job the record lacks counts as missing)."""
    ids, sent = read_ids(ids_path)
    facts = {}
    for path in facts_paths:
        if not os.path.exists(path):
            continue
        with open(path) as f:
            for line in f:
                parts = line.split()
                if form == "bullmq" and len(parts) == 4:
                    job_id, status, created, finished = parts
                    facts[job_id] = (status, int(created) if created.isdigit() else None,
                                     int(finished) if finished.isdigit() else None, None, None)
                elif form == "gearman" and len(parts) == 3:
                    job_id, finished, status = parts
                    # the last word on a job wins (gearmand may hand a job out again)
                    facts[job_id] = (status, None, int(finished), None, None)
    start = time.monotonic()
    summary = _summarise(ids, sent, facts, 0, time.monotonic() - start, 0, 0,
                         "the peer's own record (%s)" % form)
    summary["listed"] = len(facts)
    with open(out, "w") as f:
        json.dump(summary, f, indent=2)
    print("bench: %d ids, %s, result latency from send p50 %s ms p99 %s ms"
          % (len(ids), summary["by_status"], summary["result_latency_from_send_ms"]["p50"],
             summary["result_latency_from_send_ms"]["p99"]), file=sys.stderr)
    return 0


def cmd_seed_drain(port, out, seconds):
    """Polls /stats until started == ok + failed and nothing moved for 2 s."""
    port = int(port)
    start = time.monotonic()
    deadline = start + float(seconds)
    samples = []
    stats = None
    last_change = start
    last_change_epoch = time.time()
    while True:
        now = time.monotonic()
        try:
            status, body = http_get(port, "/stats", timeout=10)
            current = json.loads(body) if status == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            current = None
        if current is not None:
            if current != stats:
                last_change = now
                last_change_epoch = time.time()
            stats = current
            samples.append({"t": round(now - start, 2), **current})
            done = stats["ok"] + stats["failed"] >= stats["started"]
            if done and now - last_change >= 2.0:
                break
        if now > deadline:
            break
        time.sleep(0.5)
    summary = {
        "stats": stats,
        "drained": bool(stats) and stats["ok"] + stats["failed"] >= stats["started"],
        "drain_seconds": round(last_change - start, 2),
        "last_change_epoch": last_change_epoch,
        "waited_seconds": round(time.monotonic() - start, 2),
        "samples": samples,
    }
    with open(out, "w") as f:
        json.dump(summary, f, indent=2)
    print("bench: seed /stats %s, %s after %.1f s" % (
        stats, "drained" if summary["drained"] else "NOT drained", summary["drain_seconds"]),
        file=sys.stderr)
    return 0


def _wrk_ms(value, unit):
    value = float(value)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def cmd_wrk_parse(txt, out):
    with open(txt) as f:
        text = f.read()
    data = {"raw": text}
    match = re.search(r"Requests/sec:\s+([\d.]+)", text)
    data["requests_per_s"] = float(match.group(1)) if match else None
    match = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    if match:
        data["requests"] = int(match.group(1))
        data["seconds"] = _wrk_ms(match.group(2), match.group(3)) / 1000.0
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    data["non_2xx_3xx"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    data["socket_errors"] = ({"connect": int(match.group(1)), "read": int(match.group(2)),
                              "write": int(match.group(3)), "timeout": int(match.group(4))}
                             if match else {})
    latency = {}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M):
        latency["p" + pct] = _wrk_ms(value, unit)
    match = re.search(r"Latency\s+[\d.]+\w+\s+[\d.]+\w+\s+([\d.]+)(us|ms|s|m)", text)
    if match:
        latency["max"] = _wrk_ms(match.group(1), match.group(2))
    data["latency_ms"] = latency
    if data.get("requests") is not None and data.get("seconds"):
        good = data["requests"] - data["non_2xx_3xx"]
        data["good"] = good
        data["good_per_s"] = good / data["seconds"]
    with open(out, "w") as f:
        json.dump(data, f, indent=2)
    return 0


def cmd_sweep_ok(load_path, good_code, p99_ms):
    """0 when the step held: ≥ 99 % of the scheduled requests answered
    GOOD_CODE and p99 ≤ P99_MS; 1 when the system collapsed."""
    try:
        with open(load_path) as f:
            load = json.load(f)
    except (OSError, ValueError):
        return 1
    good = load.get("status", {}).get(str(good_code), 0)
    scheduled = load.get("scheduled") or 0
    p99 = load.get("latency_ms", {}).get("p99")
    held = scheduled > 0 and good >= 0.99 * scheduled and p99 is not None and p99 <= float(p99_ms)
    return 0 if held else 1


def cmd_mock_quiet(port, seconds):
    """Waits (bounded) until the mock upstream has no request in flight, so
    calls left over from the previous scenario (whose clients were stopped)
    do not count in the next one's figures."""
    port = int(port)
    deadline = time.monotonic() + float(seconds)
    in_flight = None
    while time.monotonic() < deadline:
        try:
            status, body = http_get(port, "/stats", timeout=5)
            in_flight = json.loads(body).get("in_flight") if status == 200 else None
        except (OSError, ValueError, http.client.HTTPException):
            in_flight = None
        if in_flight == 0:
            return 0
        time.sleep(0.2)
    print("bench: the mock still has %s requests in flight after %s s" % (in_flight, seconds), file=sys.stderr)
    return 0


def _cpu_times():
    """The machine's CPU time so far (/proc/stat): (idle, total) in ticks."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return fields[3], sum(fields[:8])      # idle; user … steal (guests are in user)


def cmd_cpu_quiet(idle_percent, seconds_in_a_row, max_seconds):
    """Waits (bounded) until the machine's CPUs were at least idle_percent
    idle for seconds_in_a_row whole seconds running, so that a scenario
    measuring milliseconds does not run through what the one before left
    (its stores' and AOFs' write-back, a peer still exiting). iowait does
    not count as idle: a disk busy writing back slows every fsync."""
    want, row, limit = float(idle_percent), int(seconds_in_a_row), float(max_seconds)
    deadline = time.monotonic() + limit
    quiet, seen = 0, []
    idle, total = _cpu_times()
    while time.monotonic() < deadline:
        time.sleep(1)
        idle2, total2 = _cpu_times()
        share = 100.0 * (idle2 - idle) / max(1, total2 - total)
        idle, total = idle2, total2
        seen.append(share)
        quiet = quiet + 1 if share >= want else 0
        if quiet >= row:
            print("bench: machine quiet: %s%% idle over the last %d s (%d s waited)"
                  % (" ".join("%.0f" % x for x in seen[-row:]), row, len(seen)), file=sys.stderr)
            return 0
    print("bench: the machine did not quiet down in %s s (idle %% per second: %s); going on"
          % (max_seconds, " ".join("%.0f" % x for x in seen[-10:])), file=sys.stderr)
    return 0


def cmd_du(directory, out):
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
                total += st.st_blocks * 512
            except OSError:
                pass
    with open(out, "w") as f:
        json.dump({"dir": directory, "bytes_on_disk": total}, f)
    return 0


def cmd_door_ttft(port, count, out):
    """N connections open first, then every streamed call sent at once; each
    one's time from its send to the first byte of a chunk with content (the
    call is then left: its job goes on). Bounded: 60 s in all."""
    import asyncio
    count = int(count)
    body = json.dumps({"model": "mock/m", "stream": True,
                       "messages": [{"role": "user", "content": "one two three four"}]}).encode()
    request = ("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
               ).encode() + body

    async def one(go, times, errors):
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", int(port)), 10)
        except (OSError, asyncio.TimeoutError):
            errors["connect"] = errors.get("connect", 0) + 1
            return
        try:
            await go.wait()
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            seen = b""
            while b'"content"' not in seen:
                data = await asyncio.wait_for(reader.read(65536), 30)
                if not data:
                    errors["closed"] = errors.get("closed", 0) + 1
                    return
                seen = seen[-64:] + data
            times.append((time.perf_counter() - started) * 1000.0)
        except (OSError, asyncio.TimeoutError):
            errors["io"] = errors.get("io", 0) + 1
        finally:
            writer.close()

    async def run():
        go = asyncio.Event()
        times, errors = [], {}
        tasks = [asyncio.ensure_future(one(go, times, errors)) for _ in range(count)]
        await asyncio.sleep(1.0)          # the connections open first
        go.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        return times, errors

    times, errors = asyncio.run(run())
    result = {"streams": count, "ttft_ms": distribution(times), "errors": errors}
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    print("door-ttft: %d streams, first token p50 %s ms, p99 %s ms, errors %s" % (
        count, result["ttft_ms"].get("p50"), result["ttft_ms"].get("p99"), errors))
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[1], argv[2:]
    if command == "free-port":
        print(free_port(args[0] if args else None))
        return 0
    if command == "report":
        sys.dont_write_bytecode = True      # no __pycache__ in the source tree
        import report      # bench/report.py, beside this file
        return report.main(*args)
    handlers = {
        "wait-port": cmd_wait_port, "wait-http": cmd_wait_http, "get-json": cmd_get_json,
        "proc-mark": cmd_proc_mark, "jg-settle": cmd_jg_settle, "readback": cmd_readback,
        "poll-jobs": cmd_poll_jobs, "seed-drain": cmd_seed_drain, "wrk-parse": cmd_wrk_parse,
        "sweep-ok": cmd_sweep_ok, "du": cmd_du, "mock-quiet": cmd_mock_quiet,
        "cpu-quiet": cmd_cpu_quiet,
        "door-ttft": cmd_door_ttft, "wait-tcp": cmd_wait_tcp,
        "gearman-settle": cmd_gearman_settle, "facts-summary": cmd_facts_summary,
    }
    if command not in handlers:
        print(__doc__, file=sys.stderr)
        return 2
    return handlers[command](*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
