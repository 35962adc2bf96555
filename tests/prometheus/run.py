"""run — the operator's kit against a real Prometheus (issue 13): a jobgate
stack (broker, gateway, two workers, the mock upstream) under a bounded load,
Debian's Prometheus scraping the broker's and the gateway's /metrics with
deploy/prometheus/alerts.yml loaded, and the questions an operator asks:

* `promtool check metrics` on every endpoint, `promtool check rules` and
  `promtool test rules` on the shipped rules, `promtool check config`;
* histogram_quantile of the upstream latency (and queue wait, end to end,
  group commit) has an answer; jobs by status, failures by error type,
  workers told apart by their label;
* every alert rule is evaluated without error, and the measure of each
  (its expression less the final comparison) has an answer on this stack.

Usage: run.py [--record docs/operations.md]  (JOBGATE_BUILD=build)
With --record, the queries and their answers replace the generated block
of that file. Everything runs on 127.0.0.1 with ephemeral ports in a temp
dir, stopped by pid, also on failure."""
import concurrent.futures
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from harness import Stack, free_port, request, wait_until  # noqa: E402

RULES = os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")
RULE_TESTS = os.path.join(ROOT, "deploy", "prometheus", "alerts.test.yml")
SCRAPE_CONFIG = os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")
DASHBOARD = os.path.join(ROOT, "deploy", "grafana", "jobgate.json")
# The load: bounded in count and in time.
LOAD_JOBS = 800
LOAD_SECONDS = 20
LOAD_THREADS = 8
LOAD_RATE = 40      # jobs per second offered, all clients together
BEGIN = "<!-- generated: tests/prometheus/run.py --record; do not edit by hand -->"
END = "<!-- end of generated figures -->"


def promtool(*args, stdin=None):
    proc = subprocess.run(["promtool"] + list(args), input=stdin, capture_output=True,
                          timeout=60)
    return proc.returncode, (proc.stdout + proc.stderr).decode().strip().replace(ROOT + "/", "")


class Prometheus:
    """Debian's Prometheus in its own temp dir, on an ephemeral port."""

    def __init__(self, targets, workdir):
        self.port = free_port()
        self.dir = workdir
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [RULES],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets
            ],
        }
        path = os.path.join(workdir, "prometheus.yml")
        with open(path, "w") as f:
            json.dump(config, f)  # JSON is YAML
        self.log = open(os.path.join(workdir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            ["prometheus", "--config.file=" + path,
             "--storage.tsdb.path=" + os.path.join(workdir, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: self._ready(), 30, "Prometheus ready")
        # Its scrape manager takes its targets a few seconds after that.
        wait_until(lambda: self._scraping(len(targets)), 30, "every target scraped and up")

    def _ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("Prometheus exited: see " + self.log.name)
        try:
            return request(self.port, "GET", "/-/ready", timeout=2).status == 200
        except OSError:
            return False

    def _scraping(self, count):
        targets = self.api("targets")["activeTargets"]
        return len(targets) == count and all(t["health"] == "up" for t in targets)

    def api(self, path, **params):
        query = "?" + urllib.parse.urlencode(params) if params else ""
        resp = request(self.port, "GET", "/api/v1/" + path + query, timeout=30)
        body = json.loads(resp.body)
        assert resp.status == 200 and body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, promql):
        """The instant vector of promql now: [(labels, float)]."""
        data = self.api("query", query=promql)
        assert data["resultType"] in ("vector", "scalar"), data
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(row["metric"], float(row["value"][1])) for row in data["result"]]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def load(stack):
    """Submits up to LOAD_JOBS jobs for at most LOAD_SECONDS from
    LOAD_THREADS clients, LOAD_RATE a second in all: upstream latencies from 5 to 300 ms on provider
    mock, and every tenth job one that fails on provider shaky. Returns
    (submitted, accepted, ids)."""
    deadline = time.monotonic() + LOAD_SECONDS
    counter = iter(range(LOAD_JOBS))
    ids = []

    def client():
        mine = []
        for n in counter:
            if time.monotonic() > deadline:
                break
            if n % 10 == 9:
                spec = {"kind": "http", "provider": "shaky", "max_attempts": 1,
                        "request": {"path": "/flaky?key=f%d&fail=9&status=500" % n}}
            else:
                spec = {"kind": "http", "provider": "mock",
                        "request": {"path": "/json?latency_ms=%d" % (5 + (n * 37) % 296)}}
            resp = request(stack.gateway_port, "POST", "/v1/jobs", body=spec, timeout=30)
            mine.append((resp.status, resp.json().get("id") if resp.status == 202 else None))
            time.sleep(LOAD_THREADS / LOAD_RATE)
        return mine

    with concurrent.futures.ThreadPoolExecutor(LOAD_THREADS) as pool:
        for mine in pool.map(lambda _: client(), range(LOAD_THREADS)):
            ids.extend(mine)
    accepted = [job_id for status, job_id in ids if status == 202]
    return len(ids), accepted


def finite(rows):
    return [value for _, value in rows if not math.isnan(value) and not math.isinf(value)]


def alert_measure(expr):
    """The measure of an alert: its expression less the final comparison
    with a number (deploy/prometheus/alerts.yml's convention)."""
    match = re.match(r"^(.*\S)\s*(==|!=|>=|<=|>|<)\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)$",
                     " ".join(expr.split()))
    assert match, "alert expression not MEASURE OP NUMBER: " + expr
    return match.group(1)


def fmt(rows, keys=None):
    """Rows as text: 'label=value …: number' per row."""
    out = []
    for labels, value in sorted(rows, key=lambda r: sorted(r[0].items())):
        shown = {k: v for k, v in labels.items() if keys is None or k in keys}
        name = ", ".join("%s=%s" % item for item in sorted(shown.items()))
        out.append("%s%s" % (name + ": " if name else "", "%.4g" % value))
    return "; ".join(out) if out else "(empty)"


def main(args):
    record = args[args.index("--record") + 1] if "--record" in args else None
    started = time.monotonic()
    figures = []   # (what, query, answer)
    checks = []    # (command, output)

    # The shipped files first: no stack needed.
    for command in (("check", "config", SCRAPE_CONFIG), ("check", "rules", RULES),
                    ("test", "rules", RULE_TESTS)):
        rc, out = promtool(*command)
        checks.append(("promtool " + " ".join(os.path.relpath(a, ROOT) if "/" in a else a
                                               for a in command), out))
        assert rc == 0, out

    workdir = tempfile.mkdtemp(prefix="jobgate-prometheus-")
    stack = Stack(workers=0, start=False)
    prometheus = None
    try:
        stack.config["providers"]["mock"].update(circuit_failures=0)
        stack.config["providers"]["shaky"] = {
            "base_url": stack.config["providers"]["mock"]["base_url"],
            "circuit_failures": 3, "circuit_open_ms": 120000, "circuit_fail_fast": True}
        stack.start_all(2)
        stack.wait_ready()
        prometheus = Prometheus([("jobgate-broker", "127.0.0.1:%d" % stack.metrics_port),
                                 ("jobgate-gateway", "127.0.0.1:%d" % stack.gateway_port)],
                                workdir)
        load_started = time.monotonic()
        submitted, accepted = load(stack)
        load_seconds = time.monotonic() - load_started
        # Every accepted job ends (the shaky ones fail, fast once its breaker
        # is open).
        def idle():
            text = stack.broker_metrics()
            queued = sum(float(line.split()[-1]) for line in text.splitlines()
                         if line.startswith("jobgate_queued_jobs{"))
            running = [line for line in text.splitlines() if line.startswith("jobgate_running_jobs ")]
            return queued == 0 and running and float(running[0].split()[-1]) == 0
        wait_until(idle, 60, "every accepted job finished")
        time.sleep(3)  # a few scrapes and rule evaluations after the last job

        # promtool check metrics on every endpoint, after the load.
        for name, port, path in (("broker", stack.metrics_port, "/metrics"),
                                 ("gateway", stack.gateway_port, "/metrics")):
            text = request(port, "GET", path).body
            rc, out = promtool("check", "metrics", stdin=text)
            checks.append(("curl -s %s/metrics | promtool check metrics" % name,
                           out or "(no problems)"))
            assert rc == 0, (name, out)

        window = "%ds" % max(30, int(load_seconds) + 10)
        questions = [
            ("upstream latency p50, mock (s)",
             'histogram_quantile(0.5, sum by (le) (rate(jobgate_upstream_duration_seconds_bucket{provider="mock"}[%s])))' % window),
            ("upstream latency p99, mock (s)",
             'histogram_quantile(0.99, sum by (le) (rate(jobgate_upstream_duration_seconds_bucket{provider="mock"}[%s])))' % window),
            ("upstream latency p99 by provider (s)",
             'histogram_quantile(0.99, sum by (le, provider) (rate(jobgate_upstream_duration_seconds_bucket[%s])))' % window),
            ("queue wait p99 by provider (s)",
             'histogram_quantile(0.99, sum by (le, provider) (rate(jobgate_queue_wait_seconds_bucket[%s])))' % window),
            ("end to end p99, http jobs (s)",
             'histogram_quantile(0.99, sum by (le) (rate(jobgate_job_duration_seconds_bucket{kind="http"}[%s])))' % window),
            ("group commit p99 (s)",
             'histogram_quantile(0.99, sum by (le) (rate(jobgate_store_commit_duration_seconds_bucket[%s])))' % window),
            ("jobs finished by provider and status",
             'sum by (provider, status) (increase(jobgate_jobs_finished_total[%s])) > 0' % window),
            ("failures by error type",
             'sum by (provider, error_type) (increase(jobgate_jobs_failed_total[%s])) > 0' % window),
            ("breaker transitions",
             'sum by (provider, to) (jobgate_breaker_transitions_total) > 0'),
            ("HTTP answers per second by code (all gateways)",
             'sum by (code) (rate(jobgate_http_responses_total[%s]))' % window),
            ("workers, by label",
             'count(jobgate_worker_resident_memory_bytes)'),
            ("worker CPU seconds per second, by worker",
             'rate(jobgate_worker_cpu_seconds_total[%s])' % window),
        ]
        answers = {}
        for what, promql in questions:
            rows = prometheus.query(promql)
            answers[what] = rows
            figures.append((what, promql, fmt(rows, keys=("provider", "status", "error_type", "code",
                                                          "to", "worker"))))
            assert rows, (what, promql)
        for what in ("upstream latency p50, mock (s)", "upstream latency p99, mock (s)",
                     "end to end p99, http jobs (s)", "group commit p99 (s)"):
            values = finite(answers[what])
            assert values and values[0] > 0, (what, answers[what])
        assert finite(answers["upstream latency p99, mock (s)"])[0] >= \
            finite(answers["upstream latency p50, mock (s)"])[0]
        assert answers["workers, by label"][0][1] == 2
        finished = {(l["provider"], l["status"]): v
                    for l, v in answers["jobs finished by provider and status"]}
        assert ("mock", "succeeded") in finished and ("shaky", "failed") in finished, finished

        # Every alert rule evaluated, without error; each measure answers.
        def evaluated():
            rules = [rule for group in prometheus.api("rules")["groups"]
                     for rule in group["rules"] if rule["type"] == "alerting"]
            return rules if rules and all(r["lastEvaluation"] > "2000" for r in rules) else None
        rules = wait_until(evaluated, 15, "every alert rule evaluated")
        assert len(rules) == 6, [r["name"] for r in rules]
        for rule in rules:
            assert rule["health"] == "ok", rule
            measure = alert_measure(rule["query"])
            rows = prometheus.query(measure)
            assert finite(rows), (rule["name"], measure, rows)
            full = prometheus.query(rule["query"])
            figures.append(("alert %s (%s): measure" % (rule["name"], rule["state"]), measure,
                            fmt(rows, keys=("provider", "job"))))
            figures.append(("alert %s: whole expression" % rule["name"], " ".join(rule["query"].split()),
                            fmt(full, keys=("provider", "job"))))
        # Every query of the Grafana dashboard is PromQL that Prometheus
        # evaluates; those not filtered by a comparison have an answer.
        with open(DASHBOARD) as f:
            dashboard = json.load(f)
        panels_answered = 0
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                promql = (target["expr"].replace("$broker_job", "jobgate-broker")
                          .replace("$gateway_job", "jobgate-gateway")
                          .replace("$__rate_interval", window))
                rows = prometheus.query(promql)
                assert rows or re.search(r"[<>]=? *0$", promql), (panel["title"], promql)
            panels_answered += 1
        figures.append(("Grafana panels evaluated (deploy/grafana/jobgate.json)", "(each target)",
                        "%d of %d" % (panels_answered, len(dashboard["panels"]))))
        states = {rule["name"]: rule["state"] for rule in rules}
        # The failing provider is seen for what it is; the healthy rest is quiet.
        assert states["JobgateBreakerOpen"] in ("pending", "firing"), states
        assert states["JobgateNoWorkers"] == "inactive" and states["JobgateBrokerDown"] == "inactive"
        summary = ("%d jobs submitted in %.1f s by %d clients (%d accepted; every tenth to provider "
                   "shaky, which fails), 2 workers, scrape and evaluation every 1 s"
                   % (submitted, load_seconds, LOAD_THREADS, len(accepted)))
    except BaseException:
        stack.dump_logs()
        if prometheus:
            try:
                for target in prometheus.api("targets")["activeTargets"]:
                    sys.stderr.write("target %s: %s %s\n" % (target["scrapeUrl"], target["health"],
                                                             target["lastError"]))
            except Exception as error:  # noqa: BLE001 (a diagnosis only)
                sys.stderr.write("targets unknown: %s\n" % error)
            prometheus.log.flush()
            with open(prometheus.log.name) as f:
                sys.stderr.write("---- prometheus log ----\n" + f.read()[-4000:])
        raise
    finally:
        if prometheus:
            prometheus.stop()
        stack.close()
        shutil.rmtree(workdir, ignore_errors=True)

    lines = ["Run of `tests/prometheus/run.py` (%s; %s). Queries as Prometheus %s answered "
             "them against the live stack:" % (time.strftime("%Y-%m-%d", time.gmtime()), summary,
                                               prometheus_version()),
             "", "| what | query | answer |", "|---|---|---|"]
    for what, promql, answer in figures:
        lines.append("| %s | `%s` | %s |" % (what, promql.replace("|", "\\|"), answer))
    lines += ["", "Checks:", ""]
    for command, output in checks:
        lines += ["```", "$ " + command, output, "```"]
    text = "\n".join(lines)
    print(text)
    if record:
        with open(record) as f:
            doc = f.read()
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        with open(record, "w") as f:
            f.write(head + BEGIN + "\n" + text + "\n" + END + tail)
    print("prometheus test: passed in %.1f s" % (time.monotonic() - started))
    return 0


def prometheus_version():
    out = subprocess.run(["prometheus", "--version"], capture_output=True).stdout.decode()
    match = re.search(r"version (\S+)", out)
    return match.group(1) if match else "?"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
