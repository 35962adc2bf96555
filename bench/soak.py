"""soak — a long steady load with RSS and store size sampled every 10 s.

Runs the real stack (broker, gateway, 2 workers, mock upstream) on loopback,
offers a fixed rate of jobs with the open-loop load generator for the given
duration, and samples every process's resident memory and the store's size
on disk. With a short result TTL the store reaches a steady state, so both
curves must be flat after warm-up. Writes build/bench-results/soak-<time>.md
(--record: bench/results/soak-record.md, the soak of record).

  python3 bench/soak.py [--minutes 30] [--rate 200] [--latency-ms 200]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from harness import BUILD, Stack  # noqa: E402


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


def dir_kib(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total // 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--ttl-s", type=int, default=60)
    parser.add_argument("--record", action="store_true",
                        help="write bench/results/soak-record.md (the soak of record) "
                             "instead of build/bench-results/soak-<time>.md")
    args = parser.parse_args()
    duration = int(args.minutes * 60)
    extra = {"broker": {"result_ttl_s": args.ttl_s}, "log_level": "warn"}
    with Stack(workers=2, config_extra=extra) as stack:
        spec = json.dumps({"kind": "http",
                           "request": {"url": stack.mock_url("/json?latency_ms=%d" % args.latency_ms)}})
        summary = os.path.join(stack.dir, "load.json")
        load = subprocess.Popen(
            [os.path.join(BUILD, "bench/jobgate-loadgen"), "--url",
             "http://127.0.0.1:%d/v1/jobs" % stack.gateway_port, "--method", "POST",
             "--body", spec, "--header", "Content-Type: application/json",
             "--rate", str(args.rate), "--duration", str(duration), "--json", summary],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        names = ["broker", "gateway", "worker0", "worker1"]
        samples = []
        started = time.monotonic()
        try:
            while load.poll() is None and time.monotonic() - started < duration + 60:
                time.sleep(10)
                row = {"t_s": int(time.monotonic() - started),
                       "store_kib": dir_kib(stack.config["broker"]["data_dir"]),
                       "served": stack.mock_stats()["served"]}
                for name in names:
                    row[name + "_rss_kib"] = rss_kib(stack.procs[name].pid)
                samples.append(row)
                print(json.dumps(row), flush=True)
        finally:
            if load.poll() is None:
                load.terminate()
                load.wait()
        with open(summary) as f:
            result = json.load(f)
    stamp = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H%M%SZ")
    if args.record:
        out = os.path.join(HERE, "results", "soak-record.md")
    else:
        os.makedirs(os.path.join(HERE, "..", "build", "bench-results"), exist_ok=True)
        out = os.path.join(HERE, "..", "build", "bench-results", "soak-%s.md" % stamp)
    with open(out, "w") as f:
        f.write("# Soak: %d jobs/s for %.0f min, upstream %d ms, result TTL %d s\n\n"
                % (args.rate, args.minutes, args.latency_ms, args.ttl_s))
        f.write("git %s, %s, %d cores\n\n" % (
            subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, cwd=HERE).stdout.strip(), stamp, os.cpu_count()))
        f.write("Load: %s\n\n" % json.dumps({k: result.get(k) for k in ("sent", "completed", "status", "latency_ms")}))
        f.write("| t (s) | broker RSS (KiB) | gateway RSS | worker0 RSS | worker1 RSS | store (KiB) | upstream calls |\n")
        f.write("|---|---|---|---|---|---|---|\n")
        for row in samples:
            f.write("| %d | %d | %d | %d | %d | %d | %d |\n" % (
                row["t_s"], row["broker_rss_kib"], row["gateway_rss_kib"], row["worker0_rss_kib"],
                row["worker1_rss_kib"], row["store_kib"], row["served"]))
        half = samples[len(samples) // 2:] if samples else []
        if half:
            f.write("\nSecond half, min–max: broker %d–%d KiB, gateway %d–%d KiB, store %d–%d KiB\n" % (
                min(r["broker_rss_kib"] for r in half), max(r["broker_rss_kib"] for r in half),
                min(r["gateway_rss_kib"] for r in half), max(r["gateway_rss_kib"] for r in half),
                min(r["store_kib"] for r in half), max(r["store_kib"] for r in half)))
    print("wrote", out)


if __name__ == "__main__":
    main()
