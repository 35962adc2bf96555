#!/usr/bin/python3
"""plot — acknowledgement latency against offered rate, from a bench run.

  /usr/bin/python3 bench/plot.py RESULTS.json OUT.png

Reads the "sweep" section bench/report.py wrote (one open-loop step per
system and rate) and draws p50 (dashed) and p99 (solid) per system on log
axes, a cross where the system collapsed, and below it the share of good
answers. Needs matplotlib (Debian's python3-matplotlib, run.sh installs it).
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLOURS = {"jobgate": "tab:blue", "nginx": "tab:green", "seed": "tab:red", "seed-shared": "tab:orange",
           "bullmq-always": "tab:purple", "bullmq-everysec": "tab:pink", "gearman": "tab:brown"}
LABELS = {"jobgate": "jobgate (accept, fsync)", "nginx": "nginx fixed 202",
          "seed": "seed FastAPI (as written)", "seed-shared": "seed FastAPI SHARED_CLIENT=1",
          "bullmq-always": "BullMQ + Redis AOF always", "bullmq-everysec": "BullMQ + Redis AOF everysec",
          "gearman": "Gearman (not durable)"}


def main(source, target):
    with open(source) as f:
        data = json.load(f)
    sweep = data.get("sweep") or {}
    if not sweep:
        print("plot: no sweep in %s; nothing to draw" % source, file=sys.stderr)
        return 0
    meta = data.get("meta", {})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 8), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    for system, points in sweep.items():
        colour = COLOURS.get(system)
        rates = [p["rate"] for p in points if p["p50_ms"] is not None]
        p50 = [max(p["p50_ms"], 0.01) for p in points if p["p50_ms"] is not None]
        p99 = [max(p["p99_ms"], 0.01) for p in points if p["p99_ms"] is not None]
        label = LABELS.get(system, system)
        top.plot(rates, p99, "-o", color=colour, label=label + " p99")
        top.plot(rates, p50, "--", marker=".", color=colour, label=label + " p50")
        for p in points:
            if not p["held"] and p["p99_ms"] is not None:
                top.plot([p["rate"]], [max(p["p99_ms"], 0.01)], "x", color="black", markersize=12)
        bottom.plot([p["rate"] for p in points],
                    [100.0 * p["good"] / p["scheduled"] if p["scheduled"] else 0 for p in points],
                    "-o", color=colour, label=label)
    top.set_xscale("log")
    top.set_yscale("log")
    top.set_ylabel("ack latency (ms), open loop, from intended send")
    top.grid(True, which="both", alpha=0.3)
    top.legend(fontsize=7, ncol=2)
    sweep_meta = meta.get("sweep", {})
    top.set_title("Acknowledgement latency vs offered rate — %s s per step; × = collapsed\n%s, %s CPUs, commit %s" % (
        sweep_meta.get("duration_s", "?"), meta.get("date", ""), meta.get("nproc", "?"), meta.get("commit", "?")),
        fontsize=9)
    bottom.set_xscale("log")
    bottom.set_ylim(0, 105)
    bottom.set_ylabel("good answers %")
    bottom.set_xlabel("offered rate (requests/s)")
    bottom.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    print("plot: %s" % target, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
