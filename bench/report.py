"""report — the Markdown report and raw JSON of one bench/run.sh run.

Called as `bench.py report DIR OUTBASE` (Python standard library only).
Reads what run.sh left in DIR (loadgen, wrk, readback, settle, proc-mark,
mock and seed /stats files), prints the report, writes OUTBASE.md and
OUTBASE.json (every raw figure, for plot.py and later comparisons).
"""
import glob
import json
import os
import sys


# ---------------------------------------------------------------- input

def _load(directory, name):
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        if name.endswith(".jsonl"):
            return [json.loads(line) for line in f if line.strip()]
        return json.load(f)


def _marks(directory, name):
    """{label: {process: snapshot}} from NAME.procs.jsonl."""
    lines = _load(directory, name + ".procs.jsonl") or []
    return {line["label"]: dict(line["procs"], _wall=line["wall"]) for line in lines}


# ---------------------------------------------------------------- formatting

def _ms(value):
    if value is None:
        return "—"
    if value >= 10000:
        return "%.1f s" % (value / 1000.0)
    if value >= 1000:
        return "%.2f s" % (value / 1000.0)
    if value >= 100:
        return "%.0f ms" % value
    if value >= 10:
        return "%.1f ms" % value
    return "%.2f ms" % value


def _n(value, digits=0):
    if value is None:
        return "—"
    if digits == 0:
        return "{:,.0f}".format(value)
    return "{:,.{d}f}".format(value, d=digits)


def _ratio(value):
    if value is None:
        return "—"
    if value >= 100:
        return "%.0f×" % value
    if value >= 10:
        return "%.1f×" % value
    return "%.2f×" % value


def _kib(value_bytes):
    if value_bytes is None:
        return "—"
    return "%.2f KiB" % (value_bytes / 1024.0)


def _pct(part, whole):
    if not whole:
        return "—"
    return "%.1f%%" % (100.0 * part / whole)


def _statuses(load):
    parts = ["%s×%s" % (code, _n(count)) for code, count in sorted(load.get("status", {}).items())]
    errors = load.get("errors", {})
    for name in ("connect", "io", "parse"):
        if errors.get(name):
            parts.append("%s-err×%d" % (name, errors[name]))
    if load.get("timeouts"):
        parts.append("timeout×%s" % _n(load["timeouts"]))
    if load.get("unfinished"):
        parts.append("unfinished×%d" % load["unfinished"])
    return " ".join(parts) or "—"


def _table(lines, header, rows):
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * len(header)) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    lines.append("")


# ---------------------------------------------------------------- figures

def _good(load, code):
    return load.get("status", {}).get(str(code), 0) if load else 0


def _cpu(marks, start_label, end_label, jobs):
    """µs of CPU per job, per process and in total, between two marks."""
    start, end = marks.get(start_label), marks.get(end_label)
    if not start or not end or not jobs:
        return None
    per = {}
    total = 0.0
    for name, snap in start.items():
        if name.startswith("_") or not snap or not end.get(name):
            continue
        seconds = end[name]["cpu_s"] - snap["cpu_s"]
        total += seconds
        per[name] = {"cpu_s": round(seconds, 3), "us_per_job": round(seconds * 1e6 / jobs, 2)}
    return {"jobs": jobs, "window_s": round(end["_wall"] - start["_wall"], 2),
            "from": start_label, "to": end_label, "processes": per,
            "total_cpu_s": round(total, 3), "total_us_per_job": round(total * 1e6 / jobs, 2)}


def _rss_growth(marks, names_prefix, start_label="before", end_label="done"):
    """Peak RSS growth in bytes of the processes whose name starts with
    names_prefix: VmHWM at end_label (the kernel's high-water mark, so no
    peak is missed between samples) minus VmRSS at start_label; with the
    anonymous and file-backed parts of the RSS at end_label beside it."""
    start, end = marks.get(start_label), marks.get(end_label)
    if not start or not end:
        return None
    growth = anon = file_ = 0
    per = {}
    for name, snap in start.items():
        if name.startswith("_") or not name.startswith(names_prefix) or not snap or not end.get(name):
            continue
        one = {"rss_before_kib": snap["rss_kib"], "hwm_end_kib": end[name]["hwm_kib"],
               "rss_end_kib": end[name]["rss_kib"],
               "peak_growth_bytes": (end[name]["hwm_kib"] - snap["rss_kib"]) * 1024,
               "anon_growth_bytes": ((end[name]["anon_kib"] or 0) - (snap["anon_kib"] or 0)) * 1024,
               "file_growth_bytes": ((end[name]["file_kib"] or 0) - (snap["file_kib"] or 0)) * 1024}
        per[name] = one
        growth += one["peak_growth_bytes"]
        anon += one["anon_growth_bytes"]
        file_ += one["file_growth_bytes"]
    if not per:
        return None
    return {"peak_growth_bytes": growth, "anon_growth_bytes": anon, "file_growth_bytes": file_,
            "processes": per}


def _payload(directory):
    """Bytes of the job body of the `queued` scenario, or None."""
    try:
        with open(os.path.join(directory, "queued.payload")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _done_after(readback, load):
    """Seconds from the last scheduled send to the last job's finished_at."""
    if not readback or not load or readback.get("last_finished_ms") is None:
        return None
    if load.get("t0_wall_ms") is None:
        return None
    last_due = load["t0_wall_ms"] + 1000.0 * load["duration_s"]
    return (readback["last_finished_ms"] - last_due) / 1000.0


def _curve_section(directory, meta, body, raw, target):
    """8. CURVE's cost: the same stack without and with security.curve, run
    side by side (bench/run.sh scenario curve)."""
    conns = meta.get("ceiling_connections", [64, 256])
    curve_meta = meta.get("curve", {})
    ceiling_rows, e2e_rows, figures = [], [], {"ceiling": {}, "e2e": {}}
    for c in conns:
        got = {}
        for variant in ("plain", "curve"):
            name = "curve-ceiling-%s-c%d" % (variant, c)
            data = _load(directory, name + ".json")
            if not data:
                continue
            marks = _marks(directory, name)
            cpu = _cpu(marks, "before", "after-load", data.get("good")) if marks else None
            got[variant] = {"good_per_s": data.get("good_per_s"), "p99_ms": data.get("latency_ms", {}).get("p99"),
                            "cpu_us_per_job": cpu and cpu["total_us_per_job"]}
        if len(got) == 2:
            ratio = (got["curve"]["good_per_s"] / got["plain"]["good_per_s"]
                     if got["plain"]["good_per_s"] and got["curve"]["good_per_s"] else None)
            figures["ceiling"][c] = dict(got, ratio=ratio)
            ceiling_rows.append([c, _n(got["plain"]["good_per_s"]), _n(got["curve"]["good_per_s"]), _ratio(ratio),
                                 _ms(got["plain"]["p99_ms"]), _ms(got["curve"]["p99_ms"]),
                                 _n(got["plain"]["cpu_us_per_job"], 1), _n(got["curve"]["cpu_us_per_job"], 1)])
    cpus = {}
    for variant in ("plain", "curve"):
        name = "curve-e2e-%s" % variant
        load = _load(directory, name + ".load.json")
        readback = _load(directory, name + ".readback.json") or {}
        marks = _marks(directory, name)
        if not load or not marks:
            continue
        cpu = _cpu(marks, "before", "done", readback.get("succeeded"))
        if not cpu:
            continue
        cpus[variant] = cpu
        lat = load.get("latency_ms", {})
        figures["e2e"][variant] = {"cpu": cpu, "ack_p50_ms": lat.get("p50"), "ack_p99_ms": lat.get("p99"),
                                   "succeeded": readback.get("succeeded"), "scheduled": load.get("scheduled")}
        e2e_rows.append([variant, "%s / %s" % (_n(readback.get("succeeded")), _n(load.get("scheduled"))),
                         _ms(lat.get("p50")), _ms(lat.get("p99"))]
                        + [_n(cpu["processes"].get(p, {}).get("us_per_job"), 1)
                           for p in sorted(cpu["processes"])]
                        + ["**%s**" % _n(cpu["total_us_per_job"], 1)])
    if len(cpus) == 2:
        names = sorted(cpus["plain"]["processes"])
        diff = cpus["curve"]["total_us_per_job"] - cpus["plain"]["total_us_per_job"]
        figures["e2e"]["curve_minus_plain_us_per_job"] = diff
        e2e_rows.append(["CURVE − plain", "", "", ""]
                        + [_n((cpus["curve"]["processes"].get(p, {}).get("us_per_job") or 0)
                              - (cpus["plain"]["processes"].get(p, {}).get("us_per_job") or 0), 1) for p in names]
                        + ["**%s**" % _n(diff, 1)])
        target("8. CURVE", "CPU per job with CURVE, end to end", "%+.1f µs/job (%s → %s)" % (
            diff, _n(cpus["plain"]["total_us_per_job"], 1), _n(cpus["curve"]["total_us_per_job"], 1)), None)
    for c, f in figures["ceiling"].items():
        target("8. CURVE", "accept ceiling with CURVE, %d conns" % c, "%s of plain (%s → %s jobs/s)" % (
            _ratio(f["ratio"]), _n(f["plain"]["good_per_s"]), _n(f["curve"]["good_per_s"])), None)
    raw["curve"] = figures
    if not ceiling_rows and not e2e_rows:
        return
    body.append("## 8. CURVE's cost — the same stack without and with `security.curve`")
    body.append("")
    body.append("Every ZeroMQ socket encrypted and authenticated (docs/protocol.md §1.1): one key pair "
                "for the broker, one for its gateway and workers. The two variants run one after the "
                "other in the same run, each on a fresh stack.")
    body.append("")
    if ceiling_rows:
        body.append("Accept ceiling (wrk, closed loop, %s s; CPU: all jobgate processes over the run, "
                    "per job accepted):" % meta.get("ceiling_seconds", "?"))
        body.append("")
        _table(body, ["connections", "plain jobs/s", "CURVE jobs/s", "CURVE ÷ plain", "plain p99",
                      "CURVE p99", "plain µs/job", "CURVE µs/job"], ceiling_rows)
    if e2e_rows:
        names = sorted(next(iter(cpus.values()))["processes"]) if cpus else []
        body.append("End to end, %s jobs/s for %s s, %s ms upstream, every job read back (CPU from just "
                    "before the load until nothing was queued or running, per job that succeeded):" % (
                        curve_meta.get("rate", "?"), curve_meta.get("duration_s", "?"),
                        curve_meta.get("upstream_ms", "?")))
        body.append("")
        _table(body, ["variant", "succeeded", "ack p50", "ack p99"] + names + ["total µs/job"], e2e_rows)


# ---------------------------------------------------------------- the peers (issue 16)

PEERS = ("bullmq-always", "bullmq-everysec", "gearman")
LABELS = {"jobgate": "jobgate (fsync)", "nginx": "nginx fixed 202", "seed": "seed FastAPI (as written)",
          "seed-shared": "seed FastAPI SHARED_CLIENT=1",
          "bullmq-always": "BullMQ + Redis AOF always", "bullmq-everysec": "BullMQ + Redis AOF everysec",
          "gearman": "Gearman (not durable)"}
# the peer each issue-16 target compares with: equal durability (jobgate's fsync)
BULLMQ_EQUAL = "bullmq-always"


def _vs(ours, theirs, lower_is_better=False):
    """The ratio a side-by-side table shows: how many times better jobgate is
    (ours ÷ theirs for rates, theirs ÷ ours for costs); None when unknown."""
    if not ours or not theirs:
        return None
    return theirs / ours if lower_is_better else ours / theirs


def _each_system(directory, scenario, systems):
    """(system, file stem, load summary) of each system that ran `scenario`
    (jobgate's files are named after the scenario, a peer's after both)."""
    for system in systems:
        name = scenario if system == "jobgate" else "%s-%s" % (scenario, system)
        load = _load(directory, name + ".load.json")
        if load:
            yield system, name, load


def _vs_cell(system, ours, theirs, lower_is_better=False):
    return "1.00×" if system == "jobgate" else _ratio(_vs(ours, theirs, lower_is_better))


def _side_by_side(directory, meta, body, raw, sweep, target):
    """Section 7: jobgate beside the peers (issue 16), figure by figure, each
    with the ratio, and the issue's targets."""
    systems = ("jobgate",) + PEERS
    present = [s for s in PEERS if _load(directory, "e2e-%s.load.json" % s)
               or _load(directory, "wait-scale-%s.load.json" % s)
               or _load(directory, "queued-%s.load.json" % s) or s in sweep
               or any(_load(directory, "ceiling-%s-c%d.json" % (s, c))
                      for c in meta.get("ceiling_connections", []))]
    if not present:
        return
    side = {"e2e": {}, "wait_scale": {}, "queued": {}, "cpu_sweep": {}, "ceiling": {}}
    body.append("## 7. Side by side with the peers users would pick (issue 16)")
    body.append("")
    body.append("Each peer in the same run, on the same machine, against the same mock and load, in its "
                "best honest configuration: %s. **vs jobgate**: how many times jobgate's figure is better "
                "(rates: jobgate ÷ peer; costs: peer ÷ jobgate), so > 1 means jobgate is ahead." % "; ".join(
                    "**%s**: %s" % (name, text) for name, text in (meta.get("peer_config") or {}).items()))
    body.append("")

    # accept ceiling
    rows = []
    for c in meta.get("ceiling_connections", []):
        jg = _load(directory, "ceiling-jobgate-c%d.json" % c) or {}
        for system in systems:
            data = _load(directory, "ceiling-%s-c%d.json" % (system, c))
            if not data:
                continue
            side["ceiling"]["%s-c%d" % (system, c)] = {
                "accepted_per_s": data.get("good_per_s"), "vs_jobgate": _vs(jg.get("good_per_s"), data.get("good_per_s"))}
            rows.append(["accept ceiling, %d conns (wrk)" % c, LABELS[system], _n(data.get("good_per_s")) + "/s",
                         _vs_cell(system, jg.get("good_per_s"), data.get("good_per_s"))])
    # end to end
    e2e_meta = meta.get("e2e", {})
    for system, name, load in _each_system(directory, "e2e", systems):
        rb = _load(directory, name + ".readback.json") or {}
        done_after = _done_after(rb, load)
        completed = rb.get("succeeded")
        per_s = completed / (load["duration_s"] + max(0.0, done_after)) \
            if completed is not None and done_after is not None else None
        p99 = (rb.get("result_latency_from_send_ms") or {}).get("p99")
        cpu = _cpu(_marks(directory, name), "before", "done", completed)
        figure = {"completed": completed, "scheduled": load.get("scheduled"), "completed_per_s": per_s,
                  "result_p99_ms": p99, "ack_p99_ms": (load.get("latency_ms") or {}).get("p99"),
                  "cpu_us_per_job": cpu["total_us_per_job"] if cpu else None}
        side["e2e"][system] = figure
        base = side["e2e"].get("jobgate", {})
        rows.append(["%s jobs/s end to end, %s ms upstream: completed/s (sustained)" % (
            _n(e2e_meta.get("rate")), e2e_meta.get("upstream_ms")), LABELS[system],
            "%s/s (%s of %s completed, result p99 %s)" % (_n(per_s), _n(completed), _n(load.get("scheduled")),
                                                          _ms(p99)),
            _vs_cell(system, base.get("completed_per_s"), per_s)])
        rows.append(["… CPU per job, all processes", LABELS[system],
                     "%s µs" % _n(figure["cpu_us_per_job"], 1),
                     _vs_cell(system, base.get("cpu_us_per_job"), figure["cpu_us_per_job"], True)])
    # wait mode at scale
    ws_meta = meta.get("wait_scale", {})
    for system, name, load in _each_system(directory, "wait-scale", systems):
        ok = _good(load, 200)
        parked = load.get("max_in_flight")
        growth = _rss_growth(_marks(directory, name), "gateway")
        per_parked = growth["peak_growth_bytes"] / parked if growth and parked else None
        figure = {"ok": ok, "scheduled": load.get("scheduled"), "p99_ms": (load.get("latency_ms") or {}).get("p99"),
                  "parked": parked, "bytes_per_parked": per_parked}
        side["wait_scale"][system] = figure
        base = side["wait_scale"].get("jobgate", {})
        rows.append(["%s/s wait mode, %s ms upstream: answered 200, p99" % (
            _n(ws_meta.get("rate")), ws_meta.get("upstream_ms")), LABELS[system],
            "%s of %s, p99 %s (%s parked at once%s)" % (
                _n(ok), _n(load.get("scheduled")), _ms(figure["p99_ms"]), _n(parked),
                ", %d gateways sharing the port" % ws_meta["gateways"]
                if system == "jobgate" and ws_meta.get("gateways", 1) > 1 else ""),
            _vs_cell(system, base.get("ok"), ok)])
        rows.append(["… memory per parked connection (front door's peak RSS growth)", LABELS[system],
                     _kib(per_parked), _vs_cell(system, base.get("bytes_per_parked"), per_parked, True)])
    # queued jobs
    payload = _payload(directory)
    for system, name, load in _each_system(directory, "queued", systems):
        n = _good(load, 202)
        growth = _rss_growth(_marks(directory, name), "broker")
        per = growth["peak_growth_bytes"] / n if growth and n else None
        side["queued"][system] = {"jobs": n, "bytes_per_job": per, "payload_bytes": payload}
        rows.append(["memory per queued job (the store's peak RSS growth, no worker)", LABELS[system],
                     "%s (%s jobs)" % (_kib(per), _n(n)),
                     _vs_cell(system, side["queued"].get("jobgate", {}).get("bytes_per_job"), per, True)])
    if rows:
        _table(body, ["figure", "system", "measured", "vs jobgate"], rows)

    # CPU per job across the sweep
    rates = sorted({p["rate"] for s in systems for p in sweep.get(s, [])})
    cpu_rows = []
    for r in rates:
        row = [_n(r)]
        at = {s: next((p for p in sweep.get(s, []) if p["rate"] == r), None) for s in systems}
        for system in systems:
            p = at[system]
            row.append("—" if not p or p["cpu_us_per_job"] is None else
                       _n(p["cpu_us_per_job"], 1) + ("" if p["drained"] else " (not drained)"))
        jg, peer = at["jobgate"], at[BULLMQ_EQUAL]
        ratio = None
        if jg and peer and jg["cpu_us_per_job"] and peer["cpu_us_per_job"] and jg["drained"] and peer["drained"]:
            ratio = peer["cpu_us_per_job"] / jg["cpu_us_per_job"]
            target("7. peers", "CPU per job ≤ BullMQ's (AOF always) at %s/s" % _n(r),
                   "%s vs %s µs (%s)" % (_n(jg["cpu_us_per_job"], 1), _n(peer["cpu_us_per_job"], 1), _ratio(ratio)),
                   ratio >= 1)
        side["cpu_sweep"][str(r)] = {s: (at[s] or {}).get("cpu_us_per_job") for s in systems}
        cpu_rows.append(row + [_ratio(ratio)])
    if cpu_rows:
        body.append("CPU µs per job across the rate sweep (all processes of each stack, until its jobs were done):")
        body.append("")
        _table(body, ["offered/s"] + [LABELS[s] for s in systems] + ["BullMQ (always) ÷ jobgate"], cpu_rows)
    raw["side_by_side"] = side

    # the targets that compare with the peers
    accept_cpu = _cpu(_marks(directory, "jobgate-accept"), "before", "done",
                      (_load(directory, "jobgate-accept.readback.json") or {}).get("succeeded"))
    if accept_cpu:
        target("7. peers", "CPU per job ≤ 400 µs at %s/s with fsync (all processes, accept scenario)" % meta.get("rate"),
               "%s µs" % _n(accept_cpu["total_us_per_job"], 1), accept_cpu["total_us_per_job"] <= 400)
    for figure, key, text in (("wait_scale", "bytes_per_parked", "memory per parked connection ≤ BullMQ's"),
                              ("queued", "bytes_per_job", "memory per queued job ≤ BullMQ's")):
        ours = side[figure].get("jobgate", {}).get(key)
        theirs = side[figure].get(BULLMQ_EQUAL, {}).get(key)
        if ours and theirs:
            target("7. peers", text + " (AOF always)", "%s vs %s" % (_kib(ours), _kib(theirs)), ours <= theirs)
    ws = side["wait_scale"].get("jobgate")
    if ws:
        limit = (ws_meta.get("upstream_ms") or 5000) + 50
        for system in PEERS:
            peer = side["wait_scale"].get(system)
            if peer:
                body.append("* %s in wait mode: %s of %s answered 200, p99 %s (jobgate's target: all, p99 ≤ %s)." % (
                    LABELS[system], _n(peer["ok"]), _n(peer["scheduled"]), _ms(peer["p99_ms"]), _ms(limit)))
        body.append("")


# ---------------------------------------------------------------- report

def main(directory, outbase):
    meta = _load(directory, "meta.json") or {}
    raw = {"meta": meta, "files": {}}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))
                       + glob.glob(os.path.join(directory, "*.jsonl"))):
        name = os.path.basename(path)
        if name != "meta.json":
            raw["files"][name] = _load(directory, name)
    targets = []          # (section, target, measured, met)

    def target(section, text, measured, met):
        targets.append({"section": section, "target": text, "measured": measured,
                        "met": None if met is None else bool(met)})

    out = []
    out.append("# jobgate benchmark — %s" % meta.get("date", "?"))
    out.append("")
    out.append("* machine: %s CPU(s), %s; %s; open files %s" % (
        meta.get("nproc", "?"), meta.get("cpu", "?"), meta.get("kernel", ""), meta.get("fd_limit", "?")))
    out.append("* git commit: `%s`%s" % (meta.get("commit", "?"),
                                         " (working tree modified)" if meta.get("dirty") else ""))
    out.append("* jobgate: broker durability `%s`, %s workers × concurrency %s (more in scenarios 3 "
               "and 4 when rate × upstream ÷ workers needs it); upstream = jobgate-mock-upstream on loopback; load generator, "
               "peers and mock on the same cores" % (
                   meta.get("durability", "?"), meta.get("workers", "?"), meta.get("concurrency", "?")))
    out.append("* peers: %s" % meta.get("peers", ""))
    out.append("* load average at start / at report: %s / %s; the whole run took %s s" % (
        meta.get("loadavg_at_start", "?"), meta.get("loadavg_at_report", "?"), meta.get("run_seconds", "?")))
    out.append("* scenarios: `%s`" % meta.get("scenarios", ""))
    out.append("")
    body = []

    # ------------------------------------------------------------ 1. ceiling
    conns = meta.get("ceiling_connections", [64, 256])
    ceiling = {}
    ceiling_systems = ("jobgate",) + PEERS + ("nginx", "seed", "seed-shared")
    for c in conns:
        for system in ceiling_systems:
            data = _load(directory, "ceiling-%s-c%d.json" % (system, c))
            if data:
                ceiling[(system, c)] = data
    if ceiling:
        body.append("## 1. Accept ceiling — wrk, closed loop, %s s per run, 2 threads" %
                    meta.get("ceiling_seconds", "?"))
        body.append("")
        body.append("`POST` of the same job as fast as wrk can: jobgate (fresh stack per run, durability "
                    "`fsync`, %s workers running the accepted jobs meanwhile against the %s ms mock), the "
                    "peers the same way (their front door answering 202 once the job is stored), nginx "
                    "answering a fixed 202, the seed app (200 at once, then its background call). "
                    "**accepted/s** counts 2xx answers only; latency columns are closed-loop (wrk's) "
                    "and for reference. **jobgate ÷ this**: jobgate's accepted/s at the same connection "
                    "count divided by this row's." % (meta.get("ceiling_workers", "?"), meta.get("upstream_ms", "?")))
        body.append("")
        rows = []
        for c in conns:
            base = ceiling.get(("jobgate", c), {}).get("good_per_s")
            for system in ceiling_systems:
                data = ceiling.get((system, c))
                if not data:
                    continue
                good = data.get("good_per_s")
                errors = sum(data.get("socket_errors", {}).values())
                problems = []
                if data.get("non_2xx_3xx"):
                    problems.append("non-2xx×%d" % data["non_2xx_3xx"])
                if errors:
                    problems.append("sock-err×%d (%s)" % (errors, ", ".join(
                        "%s %d" % (k, v) for k, v in data["socket_errors"].items() if v)))
                ratio = base / good if base and good else None
                data["jobgate_over_this"] = ratio
                lat = data.get("latency_ms", {})
                extra = ""
                if system == "jobgate" or system in PEERS:
                    marks = _marks(directory, "ceiling-%s-c%d" % (system, c))
                    cpu = _cpu(marks, "before", "after-load", data.get("good"))
                    data["cpu"] = cpu
                    if cpu:
                        extra = "CPU %s µs/job" % _n(cpu["total_us_per_job"], 1)
                if system.startswith("seed"):
                    mock = _load(directory, "ceiling-%s-c%d.mock.json" % (system, c))
                    arrivals = (mock or {}).get("body", {}).get("arrivals_by_second") or {}
                    secs = int(meta.get("ceiling_seconds", 10))
                    second_half = [arrivals.get(str(s), 0) for s in range(secs // 2, secs)]
                    if second_half:
                        data["upstream_calls_per_s_second_half"] = sum(second_half) / len(second_half)
                        extra = "upstream calls reaching the mock /s, 2nd half of the run: %s" % _n(
                            data["upstream_calls_per_s_second_half"], 1)
                rows.append([LABELS[system], c, _n(good), _ms(lat.get("p50")), _ms(lat.get("p99")),
                             _ms(lat.get("max")), " ".join(problems) or "—",
                             "1.00×" if system == "jobgate" else _ratio(ratio), extra or "—"])
        _table(body, ["system", "connections", "accepted/s", "p50", "p99", "max", "errors",
                      "jobgate ÷ this", "notes"], rows)
        for c in conns:
            jg = ceiling.get(("jobgate", c))
            for system, text, goal in (("nginx", "jobgate / nginx accepted/s (≥ 0.5 retired by issue 16: "
                                                 "a limit of libmicrohttpd; the physical reference)", None),
                                       ("seed", "jobgate / seed (as written) accepted/s ≥ 300×", 300),
                                       ("seed-shared", "jobgate / seed SHARED_CLIENT=1 accepted/s ≥ 10×", 10),
                                       (BULLMQ_EQUAL, "jobgate / BullMQ front door at equal durability "
                                                      "(AOF always) accepted/s ≥ 3×", 3),
                                       ("gearman", "jobgate / Gearman front door accepted/s ≥ 3×", 3)):
                data = ceiling.get((system, c))
                if not jg or not data:
                    continue
                ratio = data.get("jobgate_over_this")
                if system == "nginx":
                    measured = "%.3f (%s vs %s/s)" % (ratio, _n(jg.get("good_per_s")), _n(data.get("good_per_s"))) \
                        if ratio else "—"
                else:
                    measured = "%s (%s vs %s/s)" % (_ratio(ratio), _n(jg.get("good_per_s")),
                                                    _n(data.get("good_per_s"), 1))
                target("1. ceiling, %d conns" % c, text, measured,
                       None if goal is None else ratio is not None and ratio >= goal)

    # ------------------------------------------------------------ 2. the seed's target
    rate, duration = meta.get("rate"), meta.get("duration_s")
    upstream = meta.get("upstream_ms", 5000)
    section2 = []
    base_completed_per_s = None
    for name, mode, code in (("jobgate-accept", "accept: 202, then the job", 202),
                             ("jobgate-wait", "Prefer: wait=%s → 200 with the result" % meta.get("prefer_wait_s"), 200),
                             ("seed-on-jobgate", "seed app on jobgate (examples/fastapi): 202, then the job", 202)):
        load = _load(directory, name + ".load.json")
        if not load:
            continue
        rb = _load(directory, name + ".readback.json") or {}
        mock = _load(directory, name + ".end.mock.json") or {}
        done_after = _done_after(rb, load)
        completed = rb.get("succeeded")
        per_s = completed / (load["duration_s"] + max(0.0, done_after)) \
            if completed is not None and done_after is not None else None
        system = "seed FastAPI on jobgate" if name == "seed-on-jobgate" else "jobgate"
        row = {"system": system, "mode": mode, "load": load, "good": _good(load, code),
               "completed": completed, "accepted": rb.get("ids"), "readback": rb,
               "mock_served": mock.get("body", {}).get("served"), "done_after_s": done_after,
               "completed_per_s": per_s, "name": name}
        if name == "jobgate-accept":
            base_completed_per_s = per_s
        section2.append(row)
    for name, label in (("seed", "seed FastAPI (as written)"), ("seed-shared", "seed FastAPI SHARED_CLIENT=1")):
        load = _load(directory, name + ".load.json")
        if not load:
            continue
        drain = _load(directory, name + ".stats.json") or {}
        mock = _load(directory, name + ".mock.json") or {}
        stats = drain.get("stats")
        row = {"system": label, "mode": "accept: 200, then a background call", "load": load,
               "good": _good(load, 200), "accepted": _good(load, 200), "name": name,
               "mock_served": mock.get("body", {}).get("served"), "drain": drain}
        start = meta.get("load_starts", {}).get(name)
        if stats:
            row["completed"] = stats["ok"]
            row["upstream_failed"] = stats["failed"]
            if drain.get("drained") and drain.get("last_change_epoch") and load.get("t0_wall_ms"):
                row["done_after_s"] = drain["last_change_epoch"] - (load["t0_wall_ms"] / 1000.0 + load["duration_s"])
            elif drain.get("drained") and start:
                row["done_after_s"] = drain["last_change_epoch"] - (start + load["duration_s"])
            window = load["duration_s"] + max(0.0, row.get("done_after_s") if row.get("done_after_s") is not None
                                              else drain.get("waited_seconds", 0))
            row["completed_per_s"] = stats["ok"] / window
            row["completed_per_s_is_bound"] = not drain.get("drained")
        else:
            row["stats_unanswered_s"] = drain.get("waited_seconds")
            if row["mock_served"] is not None:
                # /stats never answered: the mock's count bounds completions from above
                row["completed_per_s"] = row["mock_served"] / (load["duration_s"] + (drain.get("waited_seconds") or 0))
                row["completed_per_s_is_bound"] = True
        section2.append(row)
    load = _load(directory, "nginx.load.json")
    if load:
        section2.append({"system": "nginx fixed 202", "mode": "202, no work", "load": load,
                         "good": _good(load, 202), "name": "nginx"})
    if section2:
        body.append("## 2. The seed's target — %s/s for %s s, %s s upstream, open loop" % (
            rate, duration, upstream / 1000.0))
        body.append("")
        body.append("jobgate-loadgen sends request *i* at *i / rate* and measures from that intended time. "
                    "**ack**: latency of the answer (202/200; in wait mode the answer carries the result). "
                    "**completed**: jobgate jobs read back `succeeded` / ids acknowledged; seed: calls "
                    "`ok` in its /stats / 200s. **result from send**: the job's `finished_at` minus the "
                    "request's intended send time (client-side clock, ms). **done after**: last finish "
                    "after the last scheduled send. **completed/s**: completed ÷ (send window + done "
                    "after). **vs jobgate**: completed/s ÷ jobgate accept mode's (nginx: its 202s ÷ "
                    "jobgate's); `≤` marks an upper bound.")
        body.append("")
        rows = []
        for row in section2:
            load = row["load"]
            lat = load.get("latency_ms", {})
            scheduled = load.get("scheduled")
            if row.get("stats_unanswered_s") is not None:
                completed = "unknown: /stats unanswered for %.0f s" % row["stats_unanswered_s"]
            elif row.get("completed") is None:
                completed = "n/a"
            else:
                completed = "%s / %s (%s)" % (_n(row["completed"]), _n(row["accepted"]),
                                              _pct(row["completed"], row["accepted"]))
                if row.get("upstream_failed"):
                    completed += "; upstream failed %d" % row["upstream_failed"]
            rb = row.get("readback") or {}
            result = "—"
            if rb.get("result_latency_from_send_ms", {}).get("p50") is not None:
                r = rb["result_latency_from_send_ms"]
                result = "%s / %s" % (_ms(r["p50"]), _ms(r["p99"]))
            if row.get("done_after_s") is not None:
                done = "+%.1f s" % row["done_after_s"]
            elif row.get("drain"):
                done = "not within %.0f s" % (row["drain"].get("waited_seconds") or 0)
            else:
                done = "—"
            if row["system"].startswith("nginx"):
                jg = next((r for r in section2 if r.get("name") == "jobgate-accept"), None)
                ratio = row["good"] / jg["good"] if jg and jg["good"] else None
                ratio_text = _ratio(ratio) if ratio is not None else "—"
            elif row.get("completed_per_s") is not None and base_completed_per_s:
                ratio = row["completed_per_s"] / base_completed_per_s
                ratio_text = ("≤ " if row.get("completed_per_s_is_bound") else "") + _ratio(ratio)
            else:
                ratio_text = "—"
            per_s = "—" if row.get("completed_per_s") is None else (
                ("≤ " if row.get("completed_per_s_is_bound") else "") + _n(row["completed_per_s"]))
            rows.append([row["system"], row["mode"], _n(load.get("rate")), _n(load.get("achieved_rate")),
                         _pct(sum(load.get("status", {}).values()), scheduled), _statuses(load),
                         _ms(lat.get("p50")), _ms(lat.get("p99")), _ms(lat.get("max")), completed,
                         "—" if row.get("mock_served") is None else _n(row["mock_served"]),
                         result, done, per_s, ratio_text])
        _table(body, ["system", "mode", "offered/s", "achieved/s", "answered", "status codes",
                      "ack p50", "ack p99", "ack max", "completed / accepted", "upstream calls (mock)",
                      "result from send p50 / p99", "done after", "completed/s", "vs jobgate"], rows)
        accept = next((r for r in section2 if r.get("name") == "jobgate-accept"), None)
        if accept:
            load = accept["load"]
            p99 = load.get("latency_ms", {}).get("p99")
            target("2. %s/s accept" % rate, "ack p99 ≤ 5 ms", _ms(p99), p99 is not None and p99 <= 5)
            target("2. %s/s accept" % rate, "100% answered 202",
                   "%s of %s" % (_n(accept["good"]), _n(load.get("scheduled"))),
                   accept["good"] == load.get("scheduled"))
            target("2. %s/s accept" % rate, "every job completed",
                   "%s of %s" % (_n(accept.get("completed")), _n(load.get("scheduled"))),
                   accept.get("completed") == load.get("scheduled"))
        wait = next((r for r in section2 if r.get("name") == "jobgate-wait"), None)
        if wait:
            load = wait["load"]
            p99 = load.get("latency_ms", {}).get("p99")
            limit = upstream + 50
            target("2. %s/s Prefer: wait" % rate, "100% answered 200",
                   "%s of %s" % (_n(wait["good"]), _n(load.get("scheduled"))), wait["good"] == load.get("scheduled"))
            target("2. %s/s Prefer: wait" % rate, "p99 ≤ upstream + 50 ms = %s" % _ms(limit), _ms(p99),
                   p99 is not None and p99 <= limit)
    raw["seed_target"] = [{k: v for k, v in row.items() if k not in ("load", "readback", "drain")}
                          for row in section2]

    # ------------------------------------------------------------ 3. end to end
    load = _load(directory, "e2e.load.json")
    if load:
        e2e = meta.get("e2e", {})
        rb = _load(directory, "e2e.readback.json") or {}
        settle = _load(directory, "e2e.settle.json") or {}
        mock = _load(directory, "e2e.mock.json") or {}
        mock_end = _load(directory, "e2e.end.mock.json") or {}
        done_after = _done_after(rb, load)
        lat = load.get("latency_ms", {})
        send = rb.get("result_latency_from_send_ms", {})
        server = rb.get("result_latency_ms", {})
        completed = rb.get("succeeded")
        per_s = completed / (load["duration_s"] + max(0.0, done_after)) \
            if completed is not None and done_after is not None else None
        in_flight = mock_end.get("body", {}).get("max_in_flight") or mock.get("body", {}).get("max_in_flight")
        body.append("## 3. End to end at scale — %s jobs/s for %s s, %s ms upstream" % (
            _n(e2e.get("rate")), e2e.get("duration_s"), e2e.get("upstream_ms")))
        body.append("")
        body.append("Open-loop `POST`s (accept mode), %s workers × concurrency %s; after the load the broker's gauges are "
                    "polled until nothing is queued or running (%s), then every job is read back through "
                    "`GET /v1/jobs?limit=1000` and its cursor (%s). **Result latency** = `finished_at` "
                    "(broker, when the result arrived) − the request's intended send time (loadgen, wall "
                    "clock): the open-loop, client-side figure; `finished_at − created_at` (both server "
                    "clocks, ms precision) beside it." % (
                        meta.get("workers"), e2e.get("concurrency", "?"), "settled after %.1f s" % settle["seconds"] if settle.get("settled")
                        else "NOT settled within %.0f s" % settle.get("bound_s", 0), rb.get("method", "—")))
        body.append("")
        _table(body, ["offered/s", "achieved/s", "answered", "status codes", "ack p50 / p99 / max",
                      "completed / accepted", "upstream calls (mock)", "calls at once (mock max)",
                      "result from send p50 / p90 / p99 / max", "created→finished p50 / p99",
                      "done after", "completed/s"],
               [[_n(load.get("rate")), _n(load.get("achieved_rate")),
                 _pct(sum(load.get("status", {}).values()), load.get("scheduled")), _statuses(load),
                 "%s / %s / %s" % (_ms(lat.get("p50")), _ms(lat.get("p99")), _ms(lat.get("max"))),
                 "%s / %s (%s)" % (_n(completed), _n(rb.get("ids")), _pct(completed or 0, rb.get("ids"))),
                 _n(mock_end.get("body", {}).get("served")), _n(in_flight),
                 "%s / %s / %s / %s" % (_ms(send.get("p50")), _ms(send.get("p90")), _ms(send.get("p99")),
                                        _ms(send.get("max"))),
                 "%s / %s" % (_ms(server.get("p50")), _ms(server.get("p99"))),
                 "—" if done_after is None else "+%.1f s" % done_after, _n(per_s)]])
        if rb.get("in_store_not_acknowledged"):
            body.append("Jobs in the store whose 202 the load generator never received: %s." %
                        _n(rb["in_store_not_acknowledged"]))
            body.append("")
        target("3. end to end", "every job completed",
               "%s of %s scheduled" % (_n(completed), _n(load.get("scheduled"))),
               completed == load.get("scheduled"))
        limit = (e2e.get("upstream_ms") or 1000) + 100
        target("3. end to end", "result latency p99 ≤ %s (from the intended send)" % _ms(limit),
               "%s (created→finished %s)" % (_ms(send.get("p99")), _ms(server.get("p99"))),
               send.get("p99") is not None and send["p99"] <= limit)
        raw["e2e"] = {"completed": completed, "done_after_s": done_after, "completed_per_s": per_s,
                      "calls_in_flight_max": in_flight}

    # ------------------------------------------------------------ 4. wait mode at scale
    load = _load(directory, "wait-scale.load.json")
    if load:
        ws = meta.get("wait_scale", {})
        rb = _load(directory, "wait-scale.readback.json") or {}
        lat = load.get("latency_ms", {})
        ok = _good(load, 200)
        body.append("## 4. Wait mode at scale — %s/s with `Prefer: wait=%s`, %s ms upstream, %s s" % (
            _n(ws.get("rate")), meta.get("prefer_wait_s"), ws.get("upstream_ms"), ws.get("duration_s")))
        body.append("")
        body.append("Every submission waits on its connection for the finished job; %s workers × "
                    "concurrency %s. **parked at once**: the load generator's peak of requests on the "
                    "wire (≈ rate × upstream)." % (meta.get("workers"), ws.get("concurrency", "?")))
        body.append("")
        _table(body, ["offered/s", "achieved/s", "status codes", "200s", "p50", "p99", "max",
                      "parked at once", "connections (max open)", "succeeded (read back)"],
               [[_n(load.get("rate")), _n(load.get("achieved_rate")), _statuses(load),
                 "%s / %s (%s)" % (_n(ok), _n(load.get("scheduled")), _pct(ok, load.get("scheduled"))),
                 _ms(lat.get("p50")), _ms(lat.get("p99")), _ms(lat.get("max")),
                 _n(load.get("max_in_flight")), _n(load.get("max_open_connections")),
                 "%s / %s" % (_n(rb.get("succeeded")), _n(rb.get("ids")))]])
        target("4. wait at scale", "100% answered 200", "%s of %s" % (_n(ok), _n(load.get("scheduled"))),
               ok == load.get("scheduled"))
        limit = (ws.get("upstream_ms") or 5000) + 50      # issue 16: 5.05 s at 5 s
        p99 = lat.get("p99")
        target("4. wait at scale", "p99 ≤ %s" % _ms(limit), _ms(p99), p99 is not None and p99 <= limit)

    # ------------------------------------------------------------ 5. cost
    cpu_rows = []
    cost = {"cpu": {}, "memory": {}}
    for name, label, jobs_from in (("jobgate-accept", "2. accept %s/s" % rate, "readback"),
                                   ("jobgate-wait", "2. Prefer: wait %s/s" % rate, "readback"),
                                   ("e2e", "3. end to end", "readback"),
                                   ("wait-scale", "4. wait at scale", "readback"),
                                   ("queued", "5. queued, no worker", "load")):
        marks = _marks(directory, name)
        if not marks:
            continue
        if jobs_from == "readback":
            jobs = (_load(directory, name + ".readback.json") or {}).get("succeeded")
        else:
            jobs = _good(_load(directory, name + ".load.json"), 202)
        cpu = _cpu(marks, "before", "done", jobs)
        if cpu:
            cost["cpu"][name] = cpu
            cpu_rows.append((label, cpu))
    for c in conns:
        data = ceiling.get(("jobgate", c))
        if data and data.get("cpu"):
            cost["cpu"]["ceiling-c%d" % c] = data["cpu"]
            cpu_rows.append(("1. ceiling, %d conns (accept only, jobs not finished)" % c, data["cpu"]))
    mem_rows = []
    queued_marks = _marks(directory, "queued")
    if queued_marks:
        load = _load(directory, "queued.load.json") or {}
        n = _good(load, 202)
        growth = _rss_growth(queued_marks, "broker")
        payload = _payload(directory)
        store = (_load(directory, "queued.store.json") or {}).get("bytes_on_disk")
        if growth and n:
            per = growth["peak_growth_bytes"] / n
            beyond = per - (payload or 0)
            cost["memory"]["queued_job"] = dict(growth, jobs=n, payload_bytes=payload, per_job_bytes=per,
                                                beyond_payload_bytes=beyond, store_bytes_on_disk=store,
                                                anon_per_job_bytes=growth["anon_growth_bytes"] / n,
                                                file_per_job_bytes=growth["file_growth_bytes"] / n)
            mem_rows.append(["queued job (broker, no worker)", "%s MiB" % _n(growth["peak_growth_bytes"] / 2**20, 1),
                             "%s jobs queued" % _n(n), _kib(per),
                             "%s beyond the %s-byte payload (anon %s, file-backed %s per job; store on disk %s MiB)" % (
                                 _kib(beyond), payload, _kib(growth["anon_growth_bytes"] / n),
                                 _kib(growth["file_growth_bytes"] / n),
                                 _n(store / 2**20, 1) if store else "?"),
                             "≤ 2 KiB beyond payload", "yes" if beyond <= 2048 else "NO"])
            target("5. cost", "broker RSS per queued job ≤ 2 KiB beyond the payload",
                   "%s beyond %s bytes (%s per job)" % (_kib(beyond), payload, _kib(per)), beyond <= 2048)
    def per_unit_row(scenario, process, count, key, what, unit, limit_kib, retired=False):
        # Peak RSS growth of `process` in `scenario` per unit held at once.
        marks = _marks(directory, scenario)
        growth = _rss_growth(marks, process) if marks else None
        if not growth or not count:
            return
        per = growth["peak_growth_bytes"] / count
        cost["memory"][key] = dict(growth, held=count, per_unit_bytes=per)
        met = None if retired else per <= limit_kib * 1024
        mem_rows.append([what, "%s MiB" % _n(growth["peak_growth_bytes"] / 2**20, 1),
                         "%s %s" % (_n(count), unit), _kib(per),
                         "anon %s, file-backed %s per unit (RSS at the end)" % (
                             _kib(growth["anon_growth_bytes"] / count),
                             _kib(growth["file_growth_bytes"] / count)),
                         "≤ %d KiB%s" % (limit_kib, " (retired by issue 16)" if retired else ""),
                         "—" if met is None else "yes" if met else "NO"])
        target("5. cost", "%s RSS per %s ≤ %d KiB%s" % (
            process, key.replace("_", " "), limit_kib,
            " (retired by issue 16: a limit of libmicrohttpd; compared with BullMQ's below)" if retired else ""),
            _kib(per), met)

    in_flight = (((_load(directory, "e2e.end.mock.json") or _load(directory, "e2e.mock.json") or {})
                  .get("body") or {}).get("max_in_flight"))
    per_unit_row("e2e", "worker", in_flight, "call_in_flight",
                 "upstream call in flight (workers, scenario 3)", "calls at once (mock's max)", 16)
    parked = (_load(directory, "wait-scale.load.json") or {}).get("max_in_flight")
    per_unit_row("wait-scale", "gateway", parked, "parked_connection",
                 "parked connection (gateway, scenario 4)", "parked at once", 8, retired=True)
    raw["cost"] = cost
    if cpu_rows or mem_rows:
        body.append("## 5. Cost")
        body.append("")
    if cpu_rows:
        names = []
        for _, cpu in cpu_rows:
            for proc in cpu["processes"]:
                if proc not in names:
                    names.append(proc)
        body.append("CPU time (user + system, `/proc/PID/stat`) of every jobgate process from just before "
                    "the load until the broker had nothing queued or running, divided by the jobs that "
                    "succeeded (queued: by the jobs accepted; ceiling: over the wrk run, by the jobs "
                    "accepted). µs per job:")
        body.append("")
        rows = []
        for label, cpu in cpu_rows:
            rows.append([label, _n(cpu["jobs"]), "%.1f s" % cpu["window_s"]]
                        + [_n(cpu["processes"].get(p, {}).get("us_per_job"), 1) for p in names]
                        + ["**%s**" % _n(cpu["total_us_per_job"], 1)])
        _table(body, ["scenario", "jobs", "window"] + names + ["total µs/job"], rows)
    if mem_rows:
        body.append("Memory: peak RSS growth = the process's `VmHWM` at the end minus its `VmRSS` just "
                    "before the load (fresh processes; the kernel's high-water mark misses no peak), "
                    "divided by what was held at once.")
        body.append("")
        _table(body, ["what", "peak RSS growth", "held at once", "per unit", "detail", "target", "met"], mem_rows)

    # ------------------------------------------------------------ 6. the OpenAI door
    door_meta = meta.get("door", {})
    door = {}
    for system in ("direct", "os", "fsync"):
        seq = _load(directory, "door-%s-seq.load.json" % system)
        at_rate = _load(directory, "door-%s-rate.load.json" % system)
        ttft = _load(directory, "door-%s.ttft.json" % system)
        if seq or at_rate or ttft:
            door[system] = {"seq": seq, "rate": at_rate, "ttft": ttft}
    if door:
        def lat(system, part, pct):
            load = door.get(system, {}).get(part) or {}
            return (load.get("ttft_ms" if part == "ttft" else "latency_ms") or {}).get(pct)

        def added(system, part, pct):
            a, b = lat(system, part, pct), lat("direct", part, pct)
            return None if a is None or b is None else a - b

        body.append("## 6. The OpenAI-compatible door — against the mock called directly")
        body.append("")
        body.append("`POST /v1/chat/completions` through jobgate (every call a durable llm job) and "
                    "straight to the mock, in the same run: one call at a time on one connection "
                    "(%s/s for %s s), then %s/s, not streamed; then the time to the first token of %s "
                    "streamed calls sent at once. **added**: jobgate's figure minus the mock's." % (
                        door_meta.get("seq_rate"), door_meta.get("duration_s"), door_meta.get("rate"),
                        _n(door_meta.get("streams"))))
        body.append("")
        rows = []
        names = {"direct": "mock called directly", "os": "door, durability os",
                 "fsync": "door, durability fsync"}
        for system in ("direct", "os", "fsync"):
            if system not in door:
                continue
            d = door[system]
            ttft_errors = (d.get("ttft") or {}).get("errors")
            rows.append([names[system],
                         _ms(lat(system, "seq", "p50")), _ms(lat(system, "seq", "p99")),
                         _ms(lat(system, "rate", "p50")), _ms(lat(system, "rate", "p99")),
                         _statuses(d["rate"]) if d.get("rate") else "—",
                         _ms(lat(system, "ttft", "p50")), _ms(lat(system, "ttft", "p99")),
                         json.dumps(ttft_errors) if ttft_errors else "none",
                         "—" if system == "direct" else "%s / %s / %s" % (
                             _ms(added(system, "seq", "p50")), _ms(added(system, "rate", "p50")),
                             _ms(added(system, "ttft", "p99")))])
        _table(body, ["", "sequential p50", "sequential p99", "%s/s p50" % door_meta.get("rate"),
                      "%s/s p99" % door_meta.get("rate"), "status codes", "first token p50",
                      "first token p99", "stream errors", "added: seq p50 / rate p50 / TTFT p99"], rows)
        raw["door"] = {system: {"seq_p50_added_ms": added(system, "seq", "p50"),
                                "rate_p50_added_ms": added(system, "rate", "p50"),
                                "ttft_p99_added_ms": added(system, "ttft", "p99")}
                       for system in ("os", "fsync") if system in door}
        for system, goal in (("os", 0.4), ("fsync", 1.5)):
            value = added(system, "seq", "p50")
            if system in door:
                target("6. door", "added p50 ≤ %s ms (durability %s, sequential)" % (goal, system),
                       _ms(value), value is not None and value <= goal)
        value = added("fsync", "ttft", "p99")
        if "fsync" in door:
            target("6. door", "TTFT added p99 ≤ 5 ms at %s streams" % _n(door_meta.get("streams")),
                   _ms(value), value is not None and value <= 5)

    # ------------------------------------------------------------ sweep
    _curve_section(directory, meta, body, raw, target)

    sweep_meta = meta.get("sweep", {})
    sweep = {}
    for system in sweep_meta.get("systems", []):
        points = []
        for r in sweep_meta.get("rates", []):
            load = _load(directory, "sweep-%s-%d.load.json" % (system, r))
            if not load:
                continue
            code = 200 if system.startswith("seed") else 202
            good = _good(load, code)
            lat = load.get("latency_ms", {})
            held = (load.get("scheduled") and good >= 0.99 * load["scheduled"]
                    and lat.get("p99") is not None and lat["p99"] <= sweep_meta.get("collapse_p99_ms", 1000))
            # CPU per job of every process of the stack, until its jobs were
            # done (jobgate and the peers): over the jobs accepted, less those
            # still queued or running when the bounded drain ended
            settle = _load(directory, "sweep-%s-%d.settle.json" % (system, r)) or {}
            final = settle.get("final") or {}
            left = max(0, final.get("queued") or 0) + max(0, final.get("running") or 0)
            cpu = _cpu(_marks(directory, "sweep-%s-%d" % (system, r)), "before", "done", good - left) \
                if settle and good > left else None
            points.append({"rate": r, "achieved_rate": load.get("achieved_rate"), "scheduled": load.get("scheduled"),
                           "good": good, "good_code": code, "answered": sum(load.get("status", {}).values()),
                           "timeouts": load.get("timeouts"), "p50_ms": lat.get("p50"), "p90_ms": lat.get("p90"),
                           "p99_ms": lat.get("p99"), "max_ms": lat.get("max"), "held": bool(held),
                           "statuses": _statuses(load), "cpu": cpu, "drained": settle.get("settled"),
                           "cpu_us_per_job": cpu["total_us_per_job"] if cpu else None})
        if points:
            sweep[system] = points
    raw["sweep"] = sweep
    if sweep:
        body.append("## Rate sweep — open loop, %s s per step, a fresh process (stack) per step" %
                    sweep_meta.get("duration_s"))
        body.append("")
        body.append("A system's sweep stops at its first step that does not hold (fewer than 99 %% good "
                    "answers, or p99 above %s); timeouts after %s. **vs jobgate**: this system's p99 ÷ "
                    "jobgate's at the same rate. **CPU µs/job** (jobgate and the peers): CPU time of "
                    "every process of the stack from just before the step's load until its jobs were "
                    "done (drain bounded at %s s; \"not drained\" divides by the jobs that were), over "
                    "those jobs." % (_ms(sweep_meta.get("collapse_p99_ms")), _ms(sweep_meta.get("timeout_ms")),
                                     meta.get("sweep_drain_s", "?")))
        body.append("")
        jg = {p["rate"]: p for p in sweep.get("jobgate", [])}
        rows = []
        for system, points in sweep.items():
            for p in points:
                ratio = None
                if system != "jobgate" and p["rate"] in jg and jg[p["rate"]]["p99_ms"] and p["p99_ms"]:
                    ratio = p["p99_ms"] / jg[p["rate"]]["p99_ms"]
                cpu = "—"
                if p["cpu_us_per_job"] is not None:
                    cpu = _n(p["cpu_us_per_job"], 1) + ("" if p["drained"] else " (not drained)")
                rows.append([system, _n(p["rate"]), _n(p["achieved_rate"]),
                             "%s (%s)" % (_pct(p["good"], p["scheduled"]), p["statuses"]),
                             _ms(p["p50_ms"]), _ms(p["p99_ms"]), _ms(p["max_ms"]),
                             "yes" if p["held"] else "**collapsed**", _ratio(ratio), cpu])
        _table(body, ["system", "offered/s", "achieved/s", "good answers", "p50", "p99", "max", "held",
                      "p99 vs jobgate", "CPU µs/job"], rows)
        body.append("![ack latency against offered rate](%s.png)" % os.path.basename(outbase))
        body.append("")
    _side_by_side(directory, meta, body, raw, sweep, target)

    # ------------------------------------------------------------ targets first
    raw["targets"] = targets
    if targets:
        out.append("## Targets (issues 5 and 16)")
        out.append("")
        _table(out, ["scenario", "target", "measured", "met"],
               [[t["section"], t["target"], t["measured"],
                 "—" if t["met"] is None else ("yes" if t["met"] else "**NOT MET**")] for t in targets])
        met = sum(1 for t in targets if t["met"])
        out.append("%d of %d targets met." % (met, len(targets)))
        out.append("")
    out.extend(body)
    out.append("Compare runs by their ratios more than by absolute times: absolute figures move with the "
               "machine, ratios against peers measured in the same run much less. Raw figures: `%s.json`." %
               os.path.basename(outbase))
    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(outbase + ".md", "w") as f:
        f.write(text)
    with open(outbase + ".json", "w") as f:
        json.dump(raw, f, indent=1)
    return 0
