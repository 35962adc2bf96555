#!/usr/bin/env python3
"""bench.py — the Python standard-library half of bench/run.sh.

Subcommands (all traffic to 127.0.0.1 only, every wait bounded):

  free-port                      print a TCP port free on 127.0.0.1 right now
  wait-port FILE SECONDS         wait until FILE holds a port number; print it
  wait-http PORT PATH SECONDS    wait until GET PATH answers 2xx
  get-json PORT PATH OUT         GET PATH and save the JSON body to OUT
  poll-jobs PORT IDS OUT SECONDS read every job id in IDS (long-polling with
                                 ?wait=) until finished or SECONDS pass;
                                 write counts and result latencies to OUT
  seed-drain PORT OUT SECONDS    poll the seed app's /stats until every
                                 started upstream call ended (bounded)
  wrk-parse TXT OUT              turn wrk's text output into JSON
  report DIR OUTBASE             build the Markdown table (stdout, OUTBASE.md)
                                 and the raw JSON (OUTBASE.json) from DIR
"""
import datetime
import http.client
import json
import math
import os
import re
import socket
import sys
import threading
import time


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def parse_stamp(text):
    """'2026-11-26T20:14:15.033Z' → seconds since the epoch (float), or None."""
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except ValueError:
        return None


def percentile(sorted_values, pct):
    """Nearest-rank percentile (as the loadgen computes it)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), int(math.ceil(pct / 100.0 * len(sorted_values)))))
    return sorted_values[rank - 1]


TERMINAL = ("succeeded", "failed", "cancelled", "canceled", "expired", "dead")


def cmd_poll_jobs(port, ids_path, out, seconds, threads=16):
    """Reads every job until it is terminal or the deadline passes."""
    port = int(port)
    with open(ids_path) as f:
        ids = [line.strip() for line in f if line.strip()]
    start = time.monotonic()
    deadline = start + float(seconds)
    lock = threading.Lock()
    cursor = [0]
    final = {}          # id → job JSON (terminal) or last status string
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
                final[job_id] = job or {"status": "unknown"}
        if conn is not None:
            conn.close()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()

    by_status = {}
    result_ms = []          # finished_at - created_at of succeeded jobs
    upstream_ms = []        # result.latency_ms of succeeded jobs
    attempts = {}
    last_finish = None
    for job in final.values():
        status = job.get("status", "unknown")
        by_status[status] = by_status.get(status, 0) + 1
        if status == "succeeded":
            created, finished = parse_stamp(job.get("created_at")), parse_stamp(job.get("finished_at"))
            if created is not None and finished is not None:
                result_ms.append(round((finished - created) * 1000.0, 1))
                last_finish = finished if last_finish is None else max(last_finish, finished)
            result = job.get("result") or {}
            if isinstance(result.get("latency_ms"), (int, float)):
                upstream_ms.append(float(result["latency_ms"]))
        if "attempts" in job:
            key = str(job["attempts"])
            attempts[key] = attempts.get(key, 0) + 1
    result_ms.sort()
    upstream_ms.sort()
    summary = {
        "ids": len(ids),
        "polled": len(final),
        "by_status": by_status,
        "succeeded": by_status.get("succeeded", 0),
        "attempts": attempts,
        "poll_errors": errors[0],
        "poll_seconds": round(time.monotonic() - start, 2),
        "last_finished_at": last_finish,
        "result_latency_ms": {
            "p50": percentile(result_ms, 50), "p99": percentile(result_ms, 99),
            "max": result_ms[-1] if result_ms else None,
        },
        "upstream_latency_ms": {
            "p50": percentile(upstream_ms, 50), "p99": percentile(upstream_ms, 99),
            "max": upstream_ms[-1] if upstream_ms else None,
        },
    }
    with open(out, "w") as f:
        json.dump(summary, f, indent=2)
    print("bench: %d ids, %s, result latency p50 %s ms p99 %s ms (%.1f s of polling)"
          % (len(ids), by_status, summary["result_latency_ms"]["p50"],
             summary["result_latency_ms"]["p99"], summary["poll_seconds"]))
    return 0


def cmd_seed_drain(port, out, seconds):
    """Polls /stats until started == ok + failed and nothing moved for 2 s."""
    port = int(port)
    start = time.monotonic()
    deadline = start + float(seconds)
    samples = []
    stats = None
    stable_since = None
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
        stats, "drained" if summary["drained"] else "NOT drained", summary["drain_seconds"]))
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
    with open(out, "w") as f:
        json.dump(data, f, indent=2)
    return 0


# ---------------------------------------------------------------- report

def _load(directory, name):
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _fmt_ms(value):
    if value is None:
        return "—"
    if value >= 10000:
        return "%.1f s" % (value / 1000.0)
    if value >= 1000:
        return "%.2f s" % (value / 1000.0)
    if value >= 100:
        return "%.0f ms" % value
    return "%.1f ms" % value


def _fmt_statuses(load):
    parts = ["%s×%d" % (code, count) for code, count in sorted(load.get("status", {}).items())]
    errors = load.get("errors", {})
    for name in ("connect", "io", "parse"):
        if errors.get(name):
            parts.append("%s-err×%d" % (name, errors[name]))
    if load.get("timeouts"):
        parts.append("timeout×%d" % load["timeouts"])
    if load.get("unfinished"):
        parts.append("unfinished×%d" % load["unfinished"])
    return " ".join(parts) or "—"


def _row_from_load(system, scenario, load, duration, ok_codes):
    answered = sum(count for code, count in load.get("status", {}).items())
    good = sum(count for code, count in load.get("status", {}).items() if int(code) in ok_codes)
    scheduled = load.get("scheduled") or 0
    lat = load.get("latency_ms", {})
    return {
        "system": system, "scenario": scenario,
        "offered_rate": load.get("rate"), "achieved_rate": load.get("achieved_rate"),
        "scheduled": scheduled, "answered": answered,
        "answered_pct": 100.0 * answered / scheduled if scheduled else None,
        "good": good, "good_codes": sorted(ok_codes),
        "statuses": _fmt_statuses(load),
        "p50_ms": lat.get("p50"), "p99_ms": lat.get("p99"), "max_ms": lat.get("max"),
        "completed": None, "accepted": good,
        "completed_per_s": None, "result_p50_ms": None, "result_p99_ms": None,
        "drain": None, "duration_s": duration,
    }


def _mock_served(directory, name):
    data = _load(directory, name + ".mock.json")
    try:
        return data["body"]["served"]
    except (TypeError, KeyError):
        return None


def _completion_rate(row, duration):
    """Completed jobs per second over the whole window: from the first
    scheduled send to the last completion (or to the end of the bounded
    wait when not everything finished, which makes it an upper bound)."""
    if row.get("completed") is None:
        return
    extra = row.get("drain")
    if extra is None:
        extra = row.get("waited_s")
    if extra is None:
        return
    row["completion_window_s"] = duration + max(0.0, extra)
    row["completed_per_s"] = row["completed"] / row["completion_window_s"]


def cmd_report(directory, outbase):
    meta = _load(directory, "meta.json") or {}
    duration = float(meta.get("duration_s", 20))
    rows = []
    raw = {"meta": meta, "scenarios": {}}

    def add_raw(name, *files):
        raw["scenarios"][name] = {f: _load(directory, f) for f in files}

    # jobgate accept mode
    load = _load(directory, "jobgate-accept.load.json")
    if load:
        add_raw("jobgate-accept", "jobgate-accept.load.json", "jobgate-accept.poll.json",
                "jobgate-accept.mock.json")
        row = _row_from_load("jobgate", "accept: 202 then 5 s upstream", load, duration, {202})
        poll = _load(directory, "jobgate-accept.poll.json")
        if poll:
            row["completed"] = poll["succeeded"]
            row["result_p50_ms"] = poll["result_latency_ms"]["p50"]
            row["result_p99_ms"] = poll["result_latency_ms"]["p99"]
            start = meta.get("load_starts", {}).get("jobgate-accept")
            if poll.get("last_finished_at") and start:
                row["drain"] = poll["last_finished_at"] - (start + duration)
            row["drained"] = poll["succeeded"] == poll["ids"]
            _completion_rate(row, duration)
        row["mock_served"] = _mock_served(directory, "jobgate-accept")
        rows.append(row)

    # jobgate wait mode
    load = _load(directory, "jobgate-wait.load.json")
    if load:
        add_raw("jobgate-wait", "jobgate-wait.load.json", "jobgate-wait.poll.json",
                "jobgate-wait.mock.json")
        row = _row_from_load("jobgate", "wait: Prefer wait=20, 2 s upstream", load, duration, {200})
        poll = _load(directory, "jobgate-wait.poll.json")
        if poll:
            row["completed"] = poll["succeeded"]
            row["result_p50_ms"] = poll["result_latency_ms"]["p50"]
            row["result_p99_ms"] = poll["result_latency_ms"]["p99"]
            start = meta.get("load_starts", {}).get("jobgate-wait")
            if poll.get("last_finished_at") and start:
                row["drain"] = poll["last_finished_at"] - (start + duration)
            row["drained"] = poll["succeeded"] == poll["ids"]
            _completion_rate(row, duration)
        row["mock_served"] = _mock_served(directory, "jobgate-wait")
        rows.append(row)

    # seed peers
    for name, label in (("seed", "seed FastAPI (as written)"),
                        ("seed-shared", "seed FastAPI SHARED_CLIENT=1")):
        load = _load(directory, name + ".load.json")
        if not load:
            continue
        add_raw(name, name + ".load.json", name + ".stats.json", name + ".mock.json")
        row = _row_from_load(label, "accept: 200 then 5 s upstream", load, duration, {200})
        drain = _load(directory, name + ".stats.json")
        row["mock_served"] = _mock_served(directory, name)
        if drain and drain.get("stats"):
            row["completed"] = drain["stats"]["ok"]
            row["upstream_failed"] = drain["stats"]["failed"]
            row["upstream_started"] = drain["stats"]["started"]
            start = meta.get("load_starts", {}).get(name)
            if drain["drained"] and start and drain.get("last_change_epoch"):
                row["drain"] = drain["last_change_epoch"] - (start + duration)
            row["drained"] = drain["drained"]
            row["waited_s"] = drain.get("waited_seconds")
            _completion_rate(row, duration)
        elif drain:
            # /stats never answered: the app was too busy to say
            row["stats_unanswered_s"] = drain.get("waited_seconds")
            row["drained"] = False
        rows.append(row)

    # nginx at the same rate
    load = _load(directory, "nginx.load.json")
    if load:
        add_raw("nginx", "nginx.load.json")
        rows.append(_row_from_load("nginx fixed 202", "accept only (no work)", load, duration, {202}))

    # wrk max-rate probes
    wrk = {}
    for name, label in (("wrk-jobgate", "jobgate"), ("wrk-nginx", "nginx fixed 202")):
        data = _load(directory, name + ".json")
        if not data:
            continue
        raw["scenarios"][name] = data
        wrk[name] = data
        rps = data.get("requests_per_s")
        requests = data.get("requests")
        bad = data.get("non_2xx_3xx", 0)
        errs = sum(data.get("socket_errors", {}).values())
        lat = data.get("latency_ms", {})
        statuses = "2xx×%s" % ((requests - bad) if requests is not None else "?")
        if bad:
            statuses += " non-2xx×%d" % bad
        if errs:
            statuses += " sock-err×%d" % errs
        rows.append({
            "system": label, "scenario": "max rate: wrk 10 s, 64 conns, 2 thr (closed loop)",
            "offered_rate": None, "achieved_rate": rps, "scheduled": None,
            "answered": requests, "answered_pct": None, "statuses": statuses,
            "p50_ms": lat.get("p50"), "p99_ms": lat.get("p99"), "max_ms": lat.get("max"),
            "completed": None, "accepted": None, "completed_per_s": None,
            "result_p50_ms": None, "result_p99_ms": None, "drain": None, "wrk": True,
        })

    # ratios vs jobgate
    base = next((r for r in rows if r["scenario"].startswith("accept: 202")), None)
    wrk_base = next((r for r in rows if r.get("wrk") and r["system"] == "jobgate"), None)
    for row in rows:
        ratio = None
        if row.get("wrk"):
            if wrk_base and wrk_base["achieved_rate"] and row["achieved_rate"]:
                ratio = row["achieved_rate"] / wrk_base["achieved_rate"]
        elif row["system"].startswith("nginx"):
            if base and base["good"]:
                ratio = row["good"] / base["good"]
        elif row["system"].startswith("seed"):
            if base and base.get("completed_per_s"):
                if row.get("completed_per_s") is not None:
                    ratio = row["completed_per_s"] / base["completed_per_s"]
                elif row.get("mock_served") is not None:
                    # no /stats: the mock's count bounds the completed calls from above
                    ratio = row["mock_served"] / (duration + (row.get("stats_unanswered_s") or 0)) \
                        / base["completed_per_s"]
                    row["ratio_is_bound"] = True
        elif row is base:
            ratio = 1.0
        row["ratio_vs_jobgate"] = ratio
    raw["rows"] = rows

    jobgate_over_nginx = None
    if wrk_base and wrk.get("wrk-nginx", {}).get("requests_per_s"):
        jobgate_over_nginx = wrk_base["achieved_rate"] / wrk["wrk-nginx"]["requests_per_s"]
    raw["jobgate_over_nginx_max_rate"] = jobgate_over_nginx

    lines = []
    lines.append("# jobgate benchmark — %s" % meta.get("date", "?"))
    lines.append("")
    lines.append("* machine: %s CPU(s), %s; %s" % (meta.get("nproc", "?"), meta.get("cpu", "?"),
                                                     meta.get("kernel", "")))
    lines.append("* git commit: `%s`%s" % (meta.get("commit", "?"),
                                           " (working tree modified)" if meta.get("dirty") else ""))
    lines.append("* load: open loop (jobgate-loadgen), %s req/s for %s s per scenario; latency measured "
                 "from each request's intended send time" % (meta.get("rate", "?"), meta.get("duration_s", "?")))
    lines.append("* jobgate: broker durability `%s`, %s workers × concurrency %s; upstream = "
                 "jobgate-mock-upstream on loopback" % (meta.get("durability", "?"),
                                                        meta.get("workers", "?"),
                                                        meta.get("concurrency", "?")))
    lines.append("* peers: %s" % meta.get("peers", ""))
    lines.append("* load average at start / at report: %s / %s" % (meta.get("loadavg_at_start", "?"),
                                                              meta.get("loadavg_at_report", "?")))
    lines.append("")
    header = ["system", "scenario", "offered/s", "achieved/s", "answered", "status codes",
              "p50", "p99", "max", "completed / accepted", "upstream calls (mock)",
              "result p50 / p99", "all done after", "completed/s", "ratio vs jobgate"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * len(header)) + "|")
    for row in rows:
        if row.get("wrk"):
            completed = "—"
        elif row.get("stats_unanswered_s") is not None:
            completed = "unknown: /stats unanswered for %.0f s" % row["stats_unanswered_s"]
        elif row["completed"] is None:
            completed = "n/a"
        else:
            completed = "%d / %d" % (row["completed"], row["accepted"])
            if row["accepted"]:
                completed += " (%.1f%%)" % (100.0 * row["completed"] / row["accepted"])
            if "upstream_failed" in row:
                completed += "; upstream failed %d" % row["upstream_failed"]
        result = "—"
        if row["result_p50_ms"] is not None:
            result = "%s / %s" % (_fmt_ms(row["result_p50_ms"]), _fmt_ms(row["result_p99_ms"]))
        if row.get("drain") is not None:
            drain = "+%.1f s" % row["drain"]
        elif row.get("drained") is False:
            drain = "not within %.0f s" % (row.get("waited_s") or row.get("stats_unanswered_s") or 0)
        else:
            drain = "—"
        ratio = "—" if row["ratio_vs_jobgate"] is None else "%s%.2f×" % (
            "≤ " if row.get("ratio_is_bound") else "", row["ratio_vs_jobgate"])
        mock = "—" if row.get("mock_served") is None else "%d" % row["mock_served"]
        per_s = "—" if row.get("completed_per_s") is None else "%.0f" % row["completed_per_s"]
        answered = "—" if row["answered_pct"] is None else "%.1f%%" % row["answered_pct"]
        cells = [row["system"], row["scenario"],
                 "—" if row["offered_rate"] is None else "%.0f" % row["offered_rate"],
                 "—" if row["achieved_rate"] is None else "%.0f" % row["achieved_rate"],
                 answered, row["statuses"], _fmt_ms(row["p50_ms"]), _fmt_ms(row["p99_ms"]),
                 _fmt_ms(row["max_ms"]), completed, mock, result, drain, per_s, ratio]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("p50/p99/max: open-loop latency from the intended send to the response (the ack "
                 "in accept rows, the finished job in wait mode). Completed: jobgate ids read back as "
                 "`succeeded`; seed: upstream calls that ended `ok` in its /stats. Upstream calls "
                 "(mock): requests the mock upstream answered during the scenario. Result p50/p99: "
                 "jobgate `finished_at − created_at`. All done after: last completion (jobgate "
                 "`finished_at`; seed: last change of /stats, ±0.5 s) in seconds after the last "
                 "scheduled send. Completed/s: completed ÷ (send window + all done after). Ratio: "
                 "completed/s vs jobgate accept mode (seed rows; ≤ = upper bound from the mock's "
                 "count), 202s vs jobgate's (nginx at the same rate), requests/s vs jobgate's (wrk rows).")
    if jobgate_over_nginx is not None:
        lines.append("")
        lines.append("**Max accept rate, jobgate / nginx fixed 202: %.3f** (%.0f vs %.0f requests/s)."
                     % (jobgate_over_nginx, wrk_base["achieved_rate"], wrk["wrk-nginx"]["requests_per_s"]))
    checks = []
    accept = base
    if accept:
        checks.append("accept ack p99 ≤ 50 ms: %s (%s)" % (
            "yes" if accept["p99_ms"] is not None and accept["p99_ms"] <= 50 else "NO", _fmt_ms(accept["p99_ms"])))
        checks.append("every accepted job completed: %s (%s / %s)" % (
            "yes" if accept["completed"] == accept["accepted"] and accept["answered"] == accept["scheduled"]
            else "NO", accept["completed"], accept["accepted"]))
    wait = next((r for r in rows if r["scenario"].startswith("wait")), None)
    if wait:
        checks.append("wait mode all 200 and p99 ≤ 2.6 s: %s (%s of %s are 200, p99 %s)" % (
            "yes" if wait["good"] == wait["scheduled"] and wait["p99_ms"] is not None and wait["p99_ms"] <= 2600
            else "NO", wait["good"], wait["scheduled"], _fmt_ms(wait["p99_ms"])))
    if checks:
        lines.append("")
        lines.append("Targets: " + "; ".join(checks) + ".")
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(outbase + ".md", "w") as f:
        f.write(text)
    with open(outbase + ".json", "w") as f:
        json.dump(raw, f, indent=2)
    return 0


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[1], argv[2:]
    if command == "free-port":
        print(free_port())
        return 0
    handlers = {
        "wait-port": cmd_wait_port, "wait-http": cmd_wait_http, "get-json": cmd_get_json,
        "poll-jobs": cmd_poll_jobs, "seed-drain": cmd_seed_drain, "wrk-parse": cmd_wrk_parse,
        "report": cmd_report,
    }
    if command not in handlers:
        print(__doc__, file=sys.stderr)
        return 2
    return handlers[command](*args)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
