#!/usr/bin/env python3
"""multihost — jobgate across hosts whose links are cut (issue 15).

Each host is a Linux network namespace on one bridge (tests/multihost/
netlab.py, made and removed here; addresses only inside them, 10.77.0.0/24):

  upstream .2   the mock upstream (tests/mock), :9000
  broker   .11  the broker, bound to the service address .10 (added here)
  broker2  .12  where the broker is started when its host is lost
  gw1 .21, gw2 .22   a gateway each, :8080
  w1 .31, w2 .32, w3 .33   a worker each
  rogue    .66  a stranger with no key (build/tests/multihost/jobgate-rogue)
  client   .100 this runner's load, pollers and probes

Every IPv4 packet crossing the switch is delayed (--delay-ms, one way, held
by nfqdelay.py through NFQUEUE: this kernel has no netem) and dropped with
probability --loss (iptables statistic). CURVE is on when
`jobgate-broker --gen-keypair` works: every process gets its own key pair
(files, security.curve.*_file), the broker lists the gateways' and workers'
public keys; without it the suite runs in the clear and says so.

Scenarios, in order, each under the same steady load (open-loop async
submissions plus clients waiting with `Prefer: wait`, spread over both
gateways, each submission retried with its Idempotency-Key after a 503 or a
broken connection):

  worker-cut     worker host w1 cut off for 10 s, then back
  gateway-cut    gw1 cut off from the broker's address for 10 s while
                 clients wait on it (gw1 still reachable by its clients)
  broker-cut     the broker host cut off for 10 s, then back
  broker-moved   the broker host lost for good (process killed, host cut),
                 after --failover-delay s the service address is added on
                 broker2 (gratuitous ARP) and the broker started there from
                 the same data directory
  rogue          a rogue host with no key (and, with CURVE, one with a key of
                 its own) plays worker, gateway and subscriber for 8 s: it
                 must get nothing

After each: load stops, every accepted job must reach a terminal state
exactly once (tests/faults' Tracker: polled until terminal, re-read after).
Upstream calls are counted per job by the mock (/flaky?key=TAG).
  lost              accepted (202/200) but not terminal by the drain bound, or 404
  finished twice    seen terminal, then non-terminal or with another outcome
  duplicate calls   upstream calls beyond one per accepted job, plus calls for
                    submissions that never got accepted
  recovery          from the repair (link back, broker started on broker2)
                    until every job accepted before it is terminal and a job
                    accepted after it through each gateway is terminal (as
                    seen by the pollers: +up to ~0.1 s)
  failed            accepted jobs that ended failed (the mock never fails: a
                    fault made them fail)

  sudo python3 tests/multihost/multihost.py            (make test: tests/multihost/run.sh)
  JOBGATE_BUILD=build-asan python3 tests/multihost/multihost.py
Exit 0 when every scenario holds (a scenario that cannot run here is
printed SKIPPED with its reason), 1 otherwise, 77 when this machine cannot
make network namespaces.
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "faults"))

import netlab  # noqa: E402
from faultlib import Client, FaultStack, harness, wait_until  # noqa: E402
import faults  # noqa: E402  (Job, Tracker, Pollers, Mock, verify: the fault suite's detectors)

BUILD = harness.BUILD
HOSTS = {"upstream": 2, "broker": 11, "broker2": 12, "gw1": 21, "gw2": 22,
         "w1": 31, "w2": 32, "w3": 33, "rogue": 66, "client": 100}
SERVICE_OCTET = 10
GATEWAY_PORT = 8080
MOCK_PORT = 9000
GATEWAYS = ("gw1", "gw2")
WORKERS = ("w1", "w2", "w3")


def log(*args):
    print(*args, flush=True)


def curve_keypair(broker_binary):
    """A fresh key pair from `jobgate-broker --gen-keypair`, or None when
    this build has no CURVE (the option is unknown or fails)."""
    try:
        proc = subprocess.run([broker_binary, "--gen-keypair"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        pair = json.loads(proc.stdout)
    except ValueError:
        return None
    if not (isinstance(pair, dict) and len(pair.get("public_key", "")) == 40
            and len(pair.get("secret_key", "")) == 40):
        return None
    return pair


class MultiStack(harness.Stack):
    """The integration harness's Stack with each process on its own host of
    the lab and one config file per process (its own CURVE keys)."""

    def __init__(self, lab, args, curve):
        self.lab = lab
        self.host_of = {}          # process name -> lab host
        self.curve = curve         # True: every process gets a key pair
        self.killed = set()        # processes killed on purpose (a lost host)
        self.service = "%s.%d" % (lab.subnet, SERVICE_OCTET)
        super().__init__(workers=0, concurrency=args.concurrency, start=False,
                         # Open mode off loopback: the tracker's pollers (tests/faults) send no key.
                         config_extra={"gateway": {"submit_timeout_ms": 3000, "allow_open_mode": True}})
        ep = "tcp://%s:%%d" % self.service
        self.config["broker"].update({"frontend": ep % 5555, "backend": ep % 5556,
                                      "publisher": ep % 5557})
        self.config["providers"]["mock"]["base_url"] = "http://%s:%d" % (lab.addr("upstream"), MOCK_PORT)
        self.gateway_ports = [(lab.addr(g), GATEWAY_PORT) for g in GATEWAYS]
        self.keys = {}
        if curve:
            self._make_keys()

    def _make_keys(self):
        keydir = os.path.join(self.dir, "keys")
        os.makedirs(keydir, mode=0o700)
        broker_bin = os.path.join(BUILD, "broker/jobgate-broker")
        for name in ("broker",) + GATEWAYS + WORKERS:
            pair = curve_keypair(broker_bin)
            if pair is None:
                raise RuntimeError("jobgate-broker --gen-keypair worked once, then failed")
            self.keys[name] = pair
            for kind in ("public", "secret"):
                with open(os.path.join(keydir, "%s.%s" % (name, kind)), "w") as f:
                    f.write(pair[kind + "_key"] + "\n")
        with open(os.path.join(keydir, "authorized_keys"), "w") as f:
            f.write("# the gateways and workers of tests/multihost\n")
            for name in GATEWAYS + WORKERS:
                f.write("\n# %s\n%s\n" % (name, self.keys[name]["public_key"]))

    def config_for(self, name):
        """Writes the config file of process name (broker, gw1, w2, …)."""
        config = json.loads(json.dumps(self.config))
        if self.curve:
            keydir = os.path.join(self.dir, "keys")
            role = "broker" if name.startswith("broker") else name
            curve = {"public_key_file": os.path.join(keydir, role + ".public"),
                     "secret_key_file": os.path.join(keydir, role + ".secret")}
            if role == "broker":
                curve["authorized_keys_file"] = os.path.join(keydir, "authorized_keys")
            else:
                curve["broker_public_key_file"] = os.path.join(keydir, "broker.public")
            config.setdefault("security", {})["curve"] = curve
        path = os.path.join(self.dir, "config-%s.json" % name)
        with open(path, "w") as f:
            json.dump(config, f, indent=2)
        return path

    # --- processes (harness.Stack's, placed on hosts) ---

    def _spawn(self, name, argv, env=None):
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise AssertionError(name + " is already running")
        host = self.host_of.get(name, name)
        proc = self.lab.popen(host, argv, os.path.join(self.dir, name + ".log"), env)
        self.procs[name] = proc
        return proc

    def _start_mock(self):
        self.host_of["mock"] = "upstream"
        port_file = os.path.join(self.dir, "mock.port")
        self._spawn("mock", [os.path.join(BUILD, "tests/mock/jobgate-mock-upstream"),
                             "--listen", "%s:%d" % (self.lab.addr("upstream"), MOCK_PORT),
                             "--port-file", port_file])
        wait_until(lambda: os.path.exists(port_file) and open(port_file).read().strip(), 10,
                   "the mock upstream")
        self.mock_port = MOCK_PORT

    def start_broker(self, host="broker"):
        name = "broker" if host == "broker" else "broker@" + host
        self.host_of[name] = host
        self.broker_name = name
        return self._spawn(name, [os.path.join(BUILD, "broker/jobgate-broker"),
                                  "--config", self.config_for("broker")])

    def start_gateway_on(self, host):
        self.host_of[host] = host
        proc = self._spawn(host, [os.path.join(BUILD, "gateway/jobgate-gateway"),
                                  "--config", self.config_for(host)],
                           {"JOBGATE_GATEWAY_LISTEN": "%s:%d" % (self.lab.addr(host), GATEWAY_PORT)})

        def up():
            if proc.poll() is not None:
                raise AssertionError("%s exited %s at start" % (host, proc.returncode))
            return self.http_status(host, "/healthz") == 200
        wait_until(up, 15, host + " /healthz", interval=0.2)
        return proc

    def start_worker_on(self, host):
        self.host_of[host] = host
        return self._spawn(host, [os.path.join(BUILD, "worker/jobgate-worker"),
                                  "--config", self.config_for(host)])

    def http_status(self, gateway, path):
        client = Client(GATEWAY_PORT, timeout=3, host=self.lab.addr(gateway))
        try:
            return client.request("GET", path)[0]
        except (OSError, http.client.HTTPException):
            return None
        finally:
            client.close()

    def all_ready(self):
        return all(self.http_status(g, "/readyz") == 200 for g in GATEWAYS)

    kill9 = FaultStack.kill9

    def died(self):
        """Processes that exited without being told to (not the killed broker)."""
        return {n: p.returncode for n, p in self.procs.items()
                if p.poll() is not None and n not in self.killed}


class Load(faults.Load):
    """The fault suite's submitters (its counters, ambiguous tags, close),
    in the client namespace and with two kinds of thread: the first
    `async_threads` open-loop at `rate` jobs/s in all, the next
    `wait_threads` closed-loop clients that submit with `Prefer: wait=10`
    and wait; thread i uses gateway i % 2. Each submission is retried with
    its Idempotency-Key (503 after its Retry-After, a broken or timed-out
    connection at once) for up to `retry_for` s; one that never gets a
    202/200 stays ambiguous (its upstream calls are counted as phantom
    duplicates)."""

    def __init__(self, stack, tracker, args, run_id):
        self.waiting = {g: 0 for g in GATEWAYS}   # wait-mode requests in progress per gateway
        args.threads = args.async_threads + args.wait_threads
        args.client_timeout = 20
        super().__init__(stack, tracker, args, run_id)

    def _run(self, i):
        wait_mode = i >= self.args.async_threads
        rng = random.Random(self.args.seed * 1000 + i)
        gw = GATEWAYS[i % len(GATEWAYS)]
        client = Client(GATEWAY_PORT, timeout=20 if wait_mode else 10, host=self.stack.lab.addr(gw))
        for _ in self._due(rng, self.args.async_threads / self.args.rate, paced=not wait_mode):
            rnd = self.round
            with self.lock:
                self.seq += 1
                tag = "%s-s%d-%d" % (self.run_id, rnd, self.seq)
                self.busy += 1
            try:
                self._submit_until_accepted(client, rnd, tag, gw, wait_mode, rng)
            finally:
                with self.lock:
                    self.busy -= 1
        client.close()

    def _submit_until_accepted(self, client, rnd, tag, gw, wait_mode, rng):
        spec = self._spec(tag, rng)
        headers = {"Idempotency-Key": tag}
        if wait_mode:
            headers["Prefer"] = "wait=10"
        give_up = time.monotonic() + self.args.retry_for
        tries = 0
        while True:
            tries += 1
            if tries > 1:
                self._count(rnd, "retried")
            if wait_mode:
                with self.lock:
                    self.waiting[gw] += 1
            try:
                status, hdrs, body = client.request("POST", "/v1/jobs", spec, headers)
            except (OSError, http.client.HTTPException) as exc:
                self._count(rnd, "timeout" if isinstance(exc, socket.timeout) else "conn-error")
                status = None
            finally:
                if wait_mode:
                    with self.lock:
                        self.waiting[gw] -= 1
            if status in (200, 202):
                try:
                    obj = json.loads(body)
                    job = faults.Job(obj["id"], tag, rnd, gw)
                except (ValueError, KeyError, TypeError):
                    self.unexpected.append((rnd, status, body[:200]))
                    return
                self.tracker.add(job)
                job = self.tracker.by_id.get(job.id, job)
                if status == 200:
                    self.tracker.observe(job, 200, body, "wait@" + gw)
                self._count(rnd, "accepted-wait-%d" % status if wait_mode else "accepted")
                return
            if status is not None and status != 503:
                self.unexpected.append((rnd, status, body[:200]))
                self._count(rnd, "status-%d" % status)
                return
            if status == 503:
                self._count(rnd, "503")
            if time.monotonic() > give_up or self.stop.is_set():
                self._count(rnd, "gave-up", tag, ambiguous=True)
                return
            delay = 0.1
            if status == 503:
                try:
                    delay = min(float(hdrs.get("retry-after", "1")), 2.0)
                except ValueError:
                    delay = 1.0
            time.sleep(delay)



class Rogue:
    """jobgate-rogue processes on the rogue host; results() parses their
    one-line JSON reports."""

    def __init__(self, stack, seconds):
        self.stack = stack
        binary = os.path.join(BUILD, "tests/multihost/jobgate-rogue")
        if not os.path.exists(binary):        # a build of the processes from elsewhere
            binary = os.path.join(ROOT, "build", "tests/multihost/jobgate-rogue")
        ep = "tcp://%s:%%d" % stack.service
        argv = [binary, "--frontend", ep % 5555, "--backend", ep % 5556, "--publisher", ep % 5557,
                "--seconds", str(seconds)]
        self.procs = {}
        stack.host_of["rogue"] = "rogue"
        variants = {"no key": argv}
        if stack.curve:
            variants["own key"] = argv + ["--own-key", stack.keys["broker"]["public_key"]]
        for label, words in variants.items():
            out = os.path.join(stack.dir, "rogue-%s.out" % label.replace(" ", "-"))
            self.procs[label] = (stack.lab.popen("rogue", words, out), out)

    def results(self, timeout):
        got = {}
        for label, (proc, out) in self.procs.items():
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                got[label] = {"error": "did not finish"}
                continue
            try:
                with open(out, errors="replace") as f:
                    text = f.read()
                if any(m in text for m in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")):
                    got[label] = {"error": "a sanitizer reported (%s)" % out}
                    continue
                got[label] = json.loads([ln for ln in text.splitlines() if ln.startswith("{")][-1])
            except (OSError, ValueError, IndexError):
                got[label] = {"error": "no report (exit %s)" % proc.returncode}
        return got


def s_connect_ms(address, port):
    started = time.monotonic()
    socket.create_connection((address, port), timeout=5).close()
    return (time.monotonic() - started) * 1000


def recovery_seconds(jobs, repaired_at):
    """From the repair until every job accepted before it is terminal and,
    for each gateway, a job accepted after it is terminal; None if never."""
    before = [j for j in jobs if j.accepted_at < repaired_at]
    if any(j.terminal_at is None for j in before):
        return None
    points = [j.terminal_at for j in before]
    for gw in GATEWAYS:
        after = [j.terminal_at for j in jobs
                 if j.gateway == gw and j.accepted_at >= repaired_at and j.terminal_at is not None]
        if not after:
            return None
        points.append(min(after))
    return max(0.0, max(points) - repaired_at)


def run(args, lab):
    run_id = "%06x" % random.Random(args.seed).randrange(1 << 24)
    for host, octet in HOSTS.items():
        lab.add_host(host, octet)
    service = "%s.%d" % (lab.subnet, SERVICE_OCTET)
    lab.add_address("broker", service)
    lab.impair(args.delay_ms, args.loss)
    netlab.enter(lab.ns("client"))     # this thread and every thread it starts: the client host

    # CURVE is part of every build: a --gen-keypair that fails is a failure
    # of the suite, never a quiet run in the clear (only --no-curve is).
    curve = not args.no_curve
    if curve and curve_keypair(os.path.join(BUILD, "broker/jobgate-broker")) is None:
        log("multihost: FAIL jobgate-broker --gen-keypair gave no key pair")
        return 1
    stack = MultiStack(lab, args, curve)
    log("multihost: seed %d, %s, delay %.1f ms one way, loss %.2f%%, %.0f jobs/s async + %d waiting "
        "clients, logs in %s" % (args.seed, "CURVE on (a key pair per process, from files)" if curve else
                                 "CURVE off (--no-curve)",
                                 args.delay_ms, args.loss * 100, args.rate, args.wait_threads, stack.dir))
    rows = []
    problems = []
    meta = {"curve": curve, "switch": None, "connect_ms": None}
    tracker = faults.Tracker()
    pool = ThreadPoolExecutor(8)
    pollers = load = None
    try:
        stack.start_broker("broker")
        for g in GATEWAYS:
            stack.start_gateway_on(g)
        for w in WORKERS:
            stack.start_worker_on(w)
        wait_until(stack.all_ready, 30, "both gateways' /readyz", interval=0.2)
        connect_ms = min(s_connect_ms(lab.addr("gw1"), GATEWAY_PORT) for _ in range(5))
        meta["connect_ms"] = connect_ms
        log("multihost: TCP connect client -> gw1 takes %.2f ms (one round trip through the switch)" % connect_ms)
        if connect_ms < 2 * args.delay_ms:
            problems.append("the switch's delay is not applied: a connect took %.2f ms, under 2 x %.1f ms" % (
                connect_ms, args.delay_ms))
        mock = faults.Mock(MOCK_PORT, host=lab.addr("upstream"))
        pollers = faults.Pollers(stack, tracker)
        load = Load(stack, tracker, args, run_id)

        def check(condition, what):
            """A cut that did not cut (or a heal that did not heal) makes
            the scenario meaningless: the suite fails on it."""
            if not condition:
                raise AssertionError("the lab did not do it: " + what)

        def hold(since):
            time.sleep(max(0.0, since + args.cut_seconds - time.monotonic()))

        def host_cut(host, what):
            def fault():
                lab.cut(host)
                since = time.monotonic()
                check(not lab.answers(lab.addr(host), 9), "%s cut off from the client host" % host)
                hold(since)
                lab.heal(host)
                check(lab.answers(lab.addr(host), 9, timeout=5), "%s reachable again" % host)
                return "%s, %.0f s" % (what, args.cut_seconds)
            return fault

        def gateway_cut():
            lab.cut_between(lab.addr("gw1"), service)
            since = time.monotonic()
            check(not lab.answers(service, 5555, host="gw1"), "gw1 cut off from the broker")
            check(lab.answers(lab.addr("gw1"), GATEWAY_PORT), "gw1 still reachable by its clients")
            waiting = load.waiting["gw1"]
            hold(since)
            lab.heal_between(lab.addr("gw1"), service)
            check(lab.answers(service, 5555, host="gw1", timeout=5), "gw1 reaches the broker again")
            return "gw1 cut from %s for %.0f s; %d clients waiting on gw1 as it was cut" % (
                service, args.cut_seconds, waiting)

        def broker_moved():
            pid = stack.kill9(stack.broker_name)
            stack.killed.add(stack.broker_name)
            lab.cut("broker")
            lab.del_address("broker", service)
            time.sleep(args.failover_delay)
            lab.add_address("broker2", service)
            if args.control_empty_store:
                stack.config["broker"]["data_dir"] = os.path.join(stack.dir, "data-empty")
            stack.start_broker("broker2")
            check(wait_until(lambda: lab.answers(service, 5555), 10, "the broker on broker2", 0.2),
                  "%s answered from broker2" % service)
            check(not lab.answers(lab.addr("broker"), 9), "the old broker host stays cut off")
            return "broker (pid %d) killed and its host cut for good; %.0f s later %s moved to " \
                   "broker2 and the broker started there on %s" % (
                       pid, args.failover_delay, service,
                       "an EMPTY data dir (negative control)" if args.control_empty_store else "the same data dir")

        rogue_box = {}

        def rogue():
            rogue_box["r"] = Rogue(stack, args.rogue_seconds)
            time.sleep(args.rogue_seconds)
            rogue_box["got"] = rogue_box["r"].results(15)
            return "rogue host: " + "; ".join("%s: %s" % kv for kv in rogue_box["got"].items())

        scenarios = [
            ("worker-cut", host_cut("w1", "worker host w1 cut off")),
            ("gateway-cut", gateway_cut),
            ("broker-cut", host_cut("broker", "broker host cut off")),
            ("broker-moved", broker_moved),
            ("rogue", rogue),
        ]
        wanted = [s for s in args.scenarios.split(",") if s]
        for name in wanted:
            if name not in dict(scenarios):
                raise SystemExit("unknown scenario %s (known: %s)" % (name, ",".join(n for n, _ in scenarios)))
        for rnd, (name, fault) in enumerate([s for s in scenarios if s[0] in wanted], start=1):
            t0 = time.monotonic()
            load.round = rnd
            load.active.set()
            time.sleep(args.warm_seconds)
            try:
                what = fault()
            except Exception as exc:         # a fault that could not be done is a finding, not a crash
                what = "FAULT FAILED: %r" % exc
                problems.append("%s: %r" % (name, exc))
            repaired_at = time.monotonic()
            time.sleep(args.tail_seconds)
            load.active.clear()
            load_secs = time.monotonic() - t0
            try:
                wait_until(lambda: load.busy == 0, args.retry_for + 25, "submissions in progress", 0.05)
            except AssertionError:
                problems.append("%s: submissions still in progress long after the load stopped" % name)
            with tracker.lock:
                everyone = list(tracker.jobs)
            mine = [j for j in everyone if j.round == rnd]
            drain_start = time.monotonic()
            try:
                wait_until(lambda: all(j.snap is not None for j in everyone), args.drain_timeout,
                           "drain", 0.1)
            except AssertionError:
                pass                          # counted below as lost
            drain_secs = time.monotonic() - drain_start
            if not mock.quiesce():
                problems.append("%s: the mock still has calls in flight 15 s after the drain" % name)
            faults.verify(mine, stack, tracker, pool)
            dups, phantoms = faults.count_calls(mine, load.ambiguous.get(rnd, []), mock, pool)
            lost = [j for j in mine if j.snap is None or j.n404]
            twice = [j for j in mine if j.twice]
            failed = [j for j in mine if j.snap and j.snap.get("status") != "succeeded"]
            misrouted = [j for j in mine if j.misrouted]
            rec = None if name == "rogue" else recovery_seconds(mine, repaired_at)
            st = load.stats.get(rnd, {})
            row = {"scenario": name, "accepted": len(mine), "terminal": sum(1 for j in mine if j.snap),
                   "lost": len(lost), "twice": len(twice), "failed": len(failed), "dups": dups,
                   "recovery": rec, "verdict": "ok"}
            log("%s: %s; load %.1fs, accepted %d (%s), drained in %.1fs, lost %d, finished twice %d, "
                "failed %d, duplicate upstream calls %d%s, most attempts of a job %d" % (
                    name, what, load_secs, len(mine),
                    ", ".join("%s %d" % kv for kv in sorted(st.items())), drain_secs, len(lost),
                    len(twice), len(failed), dups, (", phantom jobs %d" % len(phantoms)) if phantoms else "",
                    max([j.snap.get("attempts") or 0 for j in mine if j.snap] or [0])))
            for j in lost[:10]:
                log("  LOST %s tag %s via %s: last status %s, %d polls, 404s %d" % (
                    j.id, j.tag, j.gateway, j.last_status, j.polls, j.n404))
            for j in twice[:10]:
                log("  FINISHED TWICE %s tag %s: %s" % (j.id, j.tag, "; ".join(j.twice[:3])))
            for j in failed[:10]:
                log("  failed %s tag %s: attempts %s error %s" % (
                    j.id, j.tag, j.snap.get("attempts"), json.dumps(j.snap.get("error"))[:300]))
            for j in misrouted[:10]:
                log("  MISROUTED %s: %s" % (j.id, j.misrouted))
            bad = []
            if lost:
                bad.append("%d lost" % len(lost))
            if twice:
                bad.append("%d finished twice" % len(twice))
            if failed:
                bad.append("%d failed" % len(failed))
            if misrouted:
                bad.append("%d results not the job's own" % len(misrouted))
            if rec is None and name != "rogue":
                bad.append("did not recover")
            if name == "rogue":
                got = rogue_box.get("got", {})
                given = {label: sum(v for k, v in r.items() if k != "error") if "error" not in r else None
                         for label, r in got.items()}
                row["rogue"] = got
                broken = {label: r["error"] for label, r in got.items() if "error" in r}
                if broken or not got:
                    problems.append("rogue: the rogue itself failed: %s" % (broken or "never started"))
                if not stack.curve:
                    row["verdict"] = "SKIPPED"
                    row["note"] = ("--no-curve: the rogue was given %s (docs/protocol.md §7)"
                                   % json.dumps(got))
                elif any(v != 0 for v in given.values()):
                    bad.append("the rogue was given something: %s" % json.dumps(got))
            if bad and row["verdict"] != "SKIPPED":
                row["verdict"] = "FAILED: " + ", ".join(bad)
                problems.append("%s: %s" % (name, ", ".join(bad)))
            elif bad:
                row["note"] += "; " + ", ".join(bad)
            rows.append(row)
            dead = stack.died()
            if dead:
                problems.append("%s: processes died on their own: %s" % (name, dead))
                break
            try:
                wait_until(stack.all_ready, 30, "readiness", 0.2)
            except AssertionError:
                problems.append("%s: not every gateway ready 30 s after the scenario" % name)
                break
        if load.unexpected:
            problems.append("%d unexpected HTTP statuses, e.g. %s" % (len(load.unexpected), load.unexpected[:3]))
        if tracker.duplicate_ids or tracker.two_jobs:
            problems.append("idempotency: %s %s" % (tracker.duplicate_ids[:3], tracker.two_jobs[:3]))
        meta["switch"] = lab.counters()
    finally:
        if load is not None:
            load.close()
        if pollers is not None:
            pollers.close()
        pool.shutdown()
        for proc in stack.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        try:
            stack.close()
        except AssertionError as exc:
            problems.append("shutdown: %s" % exc)
    return rows, problems, meta


def table(rows, args, meta):
    head = ("scenario", "accepted", "terminal", "lost", "finished twice", "failed",
            "duplicate upstream calls", "recovery time", "verdict")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        rec = "—" if r["scenario"] == "rogue" else ("%.1f s" % r["recovery"] if r["recovery"] is not None
                                                    else "never")
        lines.append("| %s | %d | %d | %d | %d | %d | %d | %s | %s |" % (
            r["scenario"], r["accepted"], r["terminal"], r["lost"], r["twice"], r["failed"], r["dups"],
            rec, r["verdict"]))
    notes = ["%s: %s" % (r["scenario"], r["note"]) for r in rows if r.get("note")]
    notes += ["rogue %s: %s" % (label, json.dumps(got)) for r in rows if r.get("rogue") and meta["curve"]
              for label, got in r["rogue"].items()]
    cond = ("CURVE %s; %.1f ms one-way delay, %.2f%% loss on every packet crossing the switch; "
            "%.0f async jobs/s + %d waiting clients; mock latency %d-%d ms; cuts of %.0f s" % (
                "on" if meta["curve"] else "off", args.delay_ms, args.loss * 100, args.rate,
                args.wait_threads, args.latency_min, args.latency_max, args.cut_seconds))
    if meta.get("switch"):
        cond += ("; the switch delayed %d packets and dropped %d (loss rule)" % (
            meta["switch"]["delayed"], meta["switch"]["dropped"]))
    if meta.get("connect_ms"):
        cond += "; a TCP connect across it took %.2f ms" % meta["connect_ms"]
    return "\n".join([cond, ""] + lines + ([""] + notes if notes else []))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default="worker-cut,gateway-cut,broker-cut,broker-moved,rogue")
    ap.add_argument("--rate", type=float, default=30.0, help="async submissions per second")
    ap.add_argument("--async-threads", type=int, default=6)
    ap.add_argument("--wait-threads", type=int, default=6, help="clients submitting with Prefer: wait=10")
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency-min", type=int, default=100)
    ap.add_argument("--latency-max", type=int, default=400)
    ap.add_argument("--max-attempts", type=int, default=5)
    ap.add_argument("--delay-ms", type=float, default=2.0, help="one-way delay across the switch")
    ap.add_argument("--loss", type=float, default=0.005, help="packet loss probability across the switch")
    ap.add_argument("--cut-seconds", type=float, default=10.0)
    ap.add_argument("--failover-delay", type=float, default=6.0,
                    help="seconds between losing the broker host and starting the broker on broker2")
    ap.add_argument("--warm-seconds", type=float, default=3.0)
    ap.add_argument("--tail-seconds", type=float, default=6.0)
    ap.add_argument("--rogue-seconds", type=float, default=8.0)
    ap.add_argument("--retry-for", type=float, default=30.0)
    ap.add_argument("--drain-timeout", type=float, default=60.0)
    ap.add_argument("--no-curve", action="store_true", help="run in the clear even if CURVE works")
    ap.add_argument("--control-empty-store", action="store_true",
                    help="negative control: broker-moved starts the broker on an empty data dir (a volume "
                         "not re-attached); the suite must then fail with lost jobs")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--out", help="also write the table (markdown) to this file")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    if args.keep:
        os.environ["JOBGATE_TEST_KEEP"] = "1"
    if os.geteuid() != 0:
        log("multihost: SKIPPED: network namespaces need root")
        return 77
    faults.self_check()
    started = time.monotonic()
    swept = netlab.Lab.sweep()
    if swept:
        log("multihost: removed namespaces left by an earlier run: %s" % " ".join(swept))
    try:
        lab = netlab.Lab()
    except RuntimeError as exc:
        log("multihost: SKIPPED: cannot make a network namespace with a bridge here: %s" % exc)
        return 77
    # Whatever happens (an exception, SIGTERM, Ctrl-C), the lab goes: the
    # processes inside are stopped by run()'s finally, then the namespaces.
    def interrupted(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        rows, problems, meta = run(args, lab)
    finally:
        leftovers = lab.close()
        for p in leftovers:
            log("multihost: cleanup: " + p)
    text = table(rows, args, meta)
    log("")
    log(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    for p in problems:
        log("PROBLEM: " + p)
    log("multihost: %.0f s, %d scenarios, %d problems, seed %d" % (
        time.monotonic() - started, len(rows), len(problems), args.seed))
    return 1 if problems or leftovers else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
