#!/usr/bin/env python3
"""faults — the fault suite: nothing accepted is lost (SPEC §4, issue 3).

Starts the real stack on loopback (broker, 2 gateways, 3 workers, the mock
upstream), offers steady open-loop submission load and, in each round, does
one fault at a random moment:

  kill-worker   SIGKILL a random worker, restart it 0.2–2 s later
  kill-broker   SIGKILL the broker, restart it 0.1–1.5 s later (one time in
                three 3.5–5 s later: longer than the gateway's submit timeout)
  kill-gateway  SIGKILL a random gateway, restart it 0.1–1 s later
  stop-worker   SIGSTOP a random worker for 5 s, then SIGCONT

Load stops at the end of each round; every job that got a 202 must then
reach exactly one terminal state (succeeded — the mock never fails), within
a bound. Every job is polled until terminal and re-read afterwards: a job
seen terminal and later non-terminal, or with another finished_at /
attempts / result / error, "finished twice". A GET answering 404 for an
accepted job, or a job not terminal by the bound, is "lost".

Upstream calls are counted per job: each job calls the mock's
/flaky?key=TAG&fail=0 (TAG unique per submission), whose per-key counter
the runner reads back afterwards (a probe that the mock answers 418 and
that is subtracted). duplicates = calls beyond one per accepted job, plus
calls made for submissions that did not get a 202 ("phantom" jobs).

Prints one line per round and the total:
  rounds R, accepted A, lost L, finished twice T, duplicate upstream calls D
Exits non-zero on any lost, finished twice, misrouted result, unexpected
HTTP status, process that died on its own, or unclean SIGTERM at the end.

  python3 tests/faults/faults.py                 # 3 rounds (make test)
  python3 tests/faults/faults.py --rounds 24     # make test-faults
  JOBGATE_BUILD=build-asan python3 tests/faults/faults.py
"""
import argparse
import http.client
import json
import os
import random
import signal
import socket
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from faultlib import TERMINAL, Client, FaultStack, wait_until

FAULTS = ("kill-worker", "kill-broker", "kill-gateway", "stop-worker")
EXTRA_FAULTS = ("stop-broker", "stop-gateway")   # only when asked for with --faults


def log(*args):
    print(*args, flush=True)


class Job:
    __slots__ = ("id", "tag", "round", "gateway", "accepted_at", "snap", "snap_text",
                 "terminal_at", "last_status", "n404", "first404", "twice", "misrouted",
                 "calls", "probes", "polls")

    def __init__(self, job_id, tag, rnd, gateway):
        self.id = job_id
        self.tag = tag
        self.round = rnd
        self.gateway = gateway
        self.accepted_at = time.monotonic()
        self.snap = None          # the job object when first seen terminal
        self.snap_text = None
        self.terminal_at = None
        self.last_status = None
        self.n404 = 0
        self.first404 = None
        self.twice = []           # descriptions of every "finished twice" observation
        self.misrouted = None
        self.calls = None
        self.probes = 0
        self.polls = 0


def snapshot(obj):
    return json.dumps({k: obj.get(k) for k in ("status", "finished_at", "attempts", "result", "error")},
                      sort_keys=True)


class Tracker:
    """Every accepted job and what was seen of it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.jobs = []
        self.by_id = {}
        self.duplicate_ids = []    # a 202 naming an id already accepted for another tag
        self.by_tag = {}
        self.two_jobs = []         # one Idempotency-Key (tag), two different job ids
        self.deduplicated = 0      # a retried submission answered with the original job

    def add(self, job):
        with self.lock:
            if job.id in self.by_id:
                if self.by_id[job.id].tag == job.tag:
                    self.deduplicated += 1
                else:
                    self.duplicate_ids.append((job.id, self.by_id[job.id].tag, job.tag))
                return
            if job.tag in self.by_tag:
                self.two_jobs.append((job.tag, self.by_tag[job.tag].id, job.id))
            self.by_tag[job.tag] = job
            self.by_id[job.id] = job
            self.jobs.append(job)

    def observe(self, job, status, body, where):
        now = time.monotonic()
        if status == 404:
            with self.lock:
                job.n404 += 1
                if job.first404 is None:
                    job.first404 = (round(now - job.accepted_at, 2), where)
            return
        if status != 200:
            return
        try:
            obj = json.loads(body)
        except ValueError:
            return
        st = obj.get("status")
        with self.lock:
            job.polls += 1
            job.last_status = st
            if job.snap is None:
                if st in TERMINAL:
                    job.snap = obj
                    job.snap_text = snapshot(obj)
                    job.terminal_at = now
                    res = obj.get("result") or {}
                    body_obj = res.get("body") if isinstance(res, dict) else None
                    if st == "succeeded" and not (isinstance(body_obj, dict) and body_obj.get("key") == job.tag):
                        job.misrouted = "result body %r is not for tag %s" % (body_obj, job.tag)
                return
            if st not in TERMINAL:
                job.twice.append("seen %s at +%.1fs (via %s) after %s" % (
                    st, now - job.terminal_at, where, job.snap.get("status")))
            else:
                text = snapshot(obj)
                if text != job.snap_text:
                    job.twice.append("changed at +%.1fs (via %s): first %s, now %s" % (
                        now - job.terminal_at, where, job.snap_text[:300], text[:300]))


class Multi:
    """Clients to every gateway; a request goes to the first that answers.
    Gateways are ports on 127.0.0.1 or (host, port) pairs (tests/multihost)."""

    def __init__(self, ports, timeout=10):
        self.clients = [Client(p, timeout) if isinstance(p, int) else Client(p[1], timeout, host=p[0])
                        for p in ports]
        self.next = random.randrange(len(ports))

    def get(self, path):
        n = len(self.clients)
        for k in range(n):
            c = self.clients[(self.next + k) % n]
            try:
                status, hdrs, body = c.request("GET", path)
            except (OSError, http.client.HTTPException):
                continue
            if status == 503:
                continue
            self.next = (self.next + k) % n
            return status, body, "gw:%s:%d" % (c.host, c.port)
        return None, None, None

    def close(self):
        for c in self.clients:
            c.close()


class Pollers:
    """P threads polling every accepted, not yet terminal job (and re-reading
    a few terminal ones each pass)."""

    def __init__(self, stack, tracker, threads=4):
        self.stack = stack
        self.tracker = tracker
        self.threads = threads
        self.stop = threading.Event()
        self.workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        for t in self.workers:
            t.start()

    def _run(self, i):
        multi = Multi(self.stack.gateway_ports)
        mine = []
        seen = 0
        recheck = 0
        while not self.stop.is_set():
            with self.tracker.lock:
                fresh = self.tracker.jobs[seen:]
                seen = len(self.tracker.jobs)
            mine.extend(j for j in fresh if hash(j.id) % self.threads == i)
            pending = [j for j in mine if j.snap is None]
            for job in pending:
                if self.stop.is_set():
                    break
                status, body, where = multi.get("/v1/jobs/" + job.id)
                if status is not None:
                    self.tracker.observe(job, status, body, where)
            done = [j for j in mine if j.snap is not None]
            for _ in range(min(5, len(done))):
                recheck = (recheck + 1) % len(done)
                job = done[recheck]
                status, body, where = multi.get("/v1/jobs/" + job.id)
                if status is not None:
                    self.tracker.observe(job, status, body, where)
            if not pending:
                time.sleep(0.05)
            else:
                time.sleep(0.01)
        multi.close()

    def close(self):
        self.stop.set()
        for t in self.workers:
            t.join(15)


class Load:
    """Open-loop-ish submitters: each thread keeps its own schedule
    (rate / threads per second) and drops backlog older than 1 s."""

    def __init__(self, stack, tracker, args, run_id):
        self.stack = stack
        self.tracker = tracker
        self.args = args
        self.run_id = run_id
        self.round = 0
        self.active = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.seq = 0
        self.busy = 0              # submissions (with their retries) in progress
        self.stats = {}            # round -> {outcome: count}
        self.ambiguous = {}        # round -> [tag] submissions without a 202 that may have been recorded
        self.unexpected = []       # (round, status, body)
        self.slow = []             # (round, seconds, outcome)
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(args.threads)]
        for t in self.threads:
            t.start()

    def _count(self, rnd, outcome, tag=None, ambiguous=False):
        with self.lock:
            st = self.stats.setdefault(rnd, {})
            st[outcome] = st.get(outcome, 0) + 1
            if ambiguous and tag:
                self.ambiguous.setdefault(rnd, []).append(tag)

    def _due(self, rng, interval, paced=True):
        """Yields whenever a submission is due while the load is active:
        every interval s on the thread's own schedule (a backlog older than
        1 s is dropped), or at once when not paced (a closed-loop client)."""
        next_t = time.monotonic() + rng.uniform(0, interval)
        while not self.stop.is_set():
            if not self.active.is_set():
                self.active.wait(0.2)
                next_t = time.monotonic() + rng.uniform(0, interval)
                continue
            if paced:
                now = time.monotonic()
                if next_t > now:
                    time.sleep(min(next_t - now, 0.2))
                    continue
                if now - next_t > 1.0:
                    next_t = now
                next_t += interval
            yield

    def _spec(self, tag, rng):
        """The job of one submission: a call to the mock counted under tag."""
        latency = rng.randint(self.args.latency_min, self.args.latency_max)
        return {"kind": "http", "provider": "mock",
                "request": {"path": "/flaky", "query": {"key": tag, "fail": 0, "latency_ms": latency}},
                "timeout_ms": 5000, "max_attempts": self.args.max_attempts,
                "metadata": {"tag": tag}}

    def _run(self, i):
        rng = random.Random(self.args.seed * 1000 + i)
        gw = self.stack.gateway_names[i % len(self.stack.gateway_names)]
        client = Client(self.stack.gateway_port_of(gw), timeout=self.args.client_timeout)
        for _ in self._due(rng, self.args.threads / self.args.rate):
            rnd = self.round
            with self.lock:
                self.seq += 1
                tag = "%s-r%d-%d" % (self.run_id, rnd, self.seq)
            spec = self._spec(tag, rng)
            headers = {"Idempotency-Key": tag} if self.args.idempotency or self.args.retry else None
            give_up = time.monotonic() + self.args.retry_for
            with self.lock:
                self.busy += 1
            while True:
                outcome = self._submit(client, rnd, tag, spec, headers, gw)
                if not self.args.retry or outcome in ("202", "other") or time.monotonic() > give_up \
                        or self.stop.is_set():
                    break
                self._count(rnd, "retried")
                time.sleep(0.1 if outcome != "503" else 0.5)
            with self.lock:
                self.busy -= 1
        client.close()

    def _submit(self, client, rnd, tag, spec, headers, gw):
        """One POST; returns 202, 503, refused, timeout, conn-error or other."""
        started = time.monotonic()
        try:
            status, hdrs, body = client.request("POST", "/v1/jobs", spec, headers)
        except ConnectionRefusedError:
            self._count(rnd, "refused")
            time.sleep(0.05)
            return "refused"
        except socket.timeout:
            self._count(rnd, "timeout", tag, True)
            self.slow.append((rnd, round(time.monotonic() - started, 1), "timeout"))
            return "timeout"
        except (OSError, http.client.HTTPException):
            self._count(rnd, "conn-error", tag, True)
            time.sleep(0.05)
            return "conn-error"
        took = time.monotonic() - started
        if took > self.args.slow_submit:
            self.slow.append((rnd, round(took, 1), status))
        if status == 202:
            try:
                job_id = json.loads(body)["id"]
            except (ValueError, KeyError):
                self.unexpected.append((rnd, status, body[:200]))
                self._count(rnd, "bad-202", tag, True)
                return "other"
            self.tracker.add(Job(job_id, tag, rnd, gw))
            self._count(rnd, "202")
            return "202"
        if status == 503:
            self._count(rnd, "503", tag, True)
            if not hdrs.get("retry-after"):
                self._count(rnd, "503-without-retry-after")
            return "503"
        self.unexpected.append((rnd, status, body[:200]))
        self._count(rnd, "status-%d" % status, tag, True)
        return "other"

    def close(self):
        self.stop.set()
        self.active.set()
        for t in self.threads:
            t.join(self.args.client_timeout + 5)


class Mock:
    """Reads the mock's per-key counters: GET /flaky?key=K&fail=HUGE&status=418
    answers with attempt = calls so far + probes so far + 1."""

    def __init__(self, port, host="127.0.0.1"):
        self.port = port
        self.host = host
        self.local = threading.local()
        self.probes = {}           # tag -> probes sent
        self.lock = threading.Lock()

    def _client(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = self.local.c = Client(self.port, timeout=10, host=self.host)
        return c

    def stats(self):
        status, _, body = self._client().request("GET", "/stats")
        return json.loads(body)

    def calls(self, tag):
        path = "/flaky?" + urllib.parse.urlencode({"key": tag, "fail": 1000000000, "status": 418})
        for _ in range(3):
            try:
                status, _, body = self._client().request("GET", path)
                break
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
        else:
            return None
        attempt = json.loads(body)["attempt"]
        with self.lock:
            before = self.probes.get(tag, 0)
            self.probes[tag] = before + 1
        return attempt - 1 - before

    def calls_many(self, tags, pool):
        return dict(zip(tags, pool.map(self.calls, tags)))

    def quiesce(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats()["in_flight"] == 0:
                return True
            time.sleep(0.1)
        return False


def do_fault(kind, stack, rng):
    """Does one fault (blocking); returns a description."""
    if kind == "kill-worker":
        name = rng.choice(stack.worker_names)
        pid = stack.kill9(name)
        down = rng.uniform(0.2, 2.0)
        time.sleep(down)
        new = stack.restart(name).pid
        return "kill -9 %s (pid %d), restarted after %.1fs as pid %d" % (name, pid, down, new)
    if kind == "kill-broker":
        pid = stack.kill9("broker")
        # mostly a quick restart; one in three outlasts gateway.submit_timeout_ms (3 s)
        down = rng.uniform(3.5, 5.0) if rng.random() < 1 / 3 else rng.uniform(0.1, 1.5)
        time.sleep(down)
        new = stack.restart("broker").pid
        return "kill -9 broker (pid %d), restarted after %.1fs as pid %d" % (pid, down, new)
    if kind == "kill-gateway":
        name = rng.choice(stack.gateway_names)
        pid = stack.kill9(name)
        down = rng.uniform(0.1, 1.0)
        time.sleep(down)
        new = stack.restart(name).pid
        return "kill -9 %s (pid %d), restarted after %.1fs as pid %d" % (name, pid, down, new)
    if kind in ("stop-broker", "stop-gateway"):
        name = "broker" if kind == "stop-broker" else rng.choice(stack.gateway_names)
        pid = stack.pid(name)
        secs = rng.uniform(2.0, 6.0)
        stack.signal(name, signal.SIGSTOP)
        time.sleep(secs)
        stack.signal(name, signal.SIGCONT)
        return "SIGSTOP %s (pid %d) for %.1fs, SIGCONT" % (name, pid or -1, secs)
    if kind == "stop-worker":
        name = rng.choice(stack.worker_names)
        stack.signal(name, signal.SIGSTOP)
        time.sleep(5.0)
        stack.signal(name, signal.SIGCONT)
        return "SIGSTOP %s (pid %d) for 5s, SIGCONT" % (name, stack.pid(name) or -1)
    raise ValueError(kind)


def count_calls(mine, ambiguous, mock, pool):
    """The mock's calls per job (set on each as .calls), and (duplicate
    calls, phantoms): calls beyond one per accepted job, plus every call of a
    submission whose answer was lost and that no accepted job owns."""
    amb = sorted(set(ambiguous))
    calls = mock.calls_many([j.tag for j in mine] + amb, pool)
    for j in mine:
        j.calls = calls.get(j.tag)
    accepted_tags = {j.tag for j in mine}
    phantoms = [(t, calls[t]) for t in amb if t not in accepted_tags and calls.get(t)]
    dups = sum(max((j.calls or 0) - 1, 0) for j in mine) + sum(c for _, c in phantoms)
    return dups, phantoms


def verify(jobs, stack, tracker, pool):
    """Re-reads every job in jobs once (in parallel) and records what is seen."""
    local = threading.local()

    def one(job):
        multi = getattr(local, "m", None)
        if multi is None:
            multi = local.m = Multi(stack.gateway_ports)
        status, body, where = multi.get("/v1/jobs/" + job.id)
        if status is not None:
            tracker.observe(job, status, body, where + " verify")
        return status
    return list(pool.map(one, jobs))


def self_check():
    """The detectors detect: feeds made-up observations to a Tracker."""
    t = Tracker()
    ok = json.dumps({"status": "succeeded", "finished_at": "x", "attempts": 1,
                     "result": {"status": 200, "body": {"ok": True, "key": "t1"}}})
    a = Job("a", "t1", 1, "g")
    t.add(a)
    t.observe(a, 200, json.dumps({"status": "running"}), "p")
    t.observe(a, 200, ok, "p")
    t.observe(a, 200, ok, "p")
    assert a.snap is not None and not a.twice and not a.misrouted
    t.observe(a, 200, json.dumps({"status": "queued"}), "p")
    assert len(a.twice) == 1, a.twice
    b = Job("b", "t2", 1, "g")
    t.add(b)
    t.observe(b, 200, ok, "p")
    assert b.misrouted, "a result for t1 given to t2 must be seen"
    c = Job("c", "t3", 1, "g")
    t.add(c)
    t.observe(c, 200, ok.replace("t1", "t3"), "p")
    t.observe(c, 200, ok.replace("t1", "t3").replace('"x"', '"y"'), "p")
    assert c.twice, "another finished_at must be seen"
    t.observe(Job("d", "t4", 1, "g"), 404, b"", "p")
    t.add(Job("a", "t1", 1, "g"))
    assert t.deduplicated == 1
    t.add(Job("e", "t1", 1, "g"))
    assert t.two_jobs, "two ids for one key must be seen"
    t.add(Job("a", "t9", 1, "g"))
    assert t.duplicate_ids
    print("self-check: the lost / finished-twice / misrouted / idempotency detectors work")


def main(argv):
    if "--self-check" in argv:
        self_check()
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-seconds", type=float, default=8.0, help="load time per round")
    ap.add_argument("--rate", type=float, default=120.0, help="submissions per second offered")
    ap.add_argument("--threads", type=int, default=12, help="submitting threads")
    ap.add_argument("--gateways", type=int, default=2)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--latency-min", type=int, default=100)
    ap.add_argument("--latency-max", type=int, default=500)
    ap.add_argument("--max-attempts", type=int, default=3)
    ap.add_argument("--drain-timeout", type=float, default=45.0)
    ap.add_argument("--allow-failed", type=int, default=0,
                    help="accepted jobs that may end failed without failing the suite")
    ap.add_argument("--client-timeout", type=float, default=15.0)
    ap.add_argument("--slow-submit", type=float, default=8.0, help="report submissions slower than this")
    ap.add_argument("--faults", default=",".join(FAULTS),
                    help="comma-separated, from " + ",".join(FAULTS + EXTRA_FAULTS))
    ap.add_argument("--faults-per-round", type=int, default=1,
                    help="faults per round, each of another kind, each at its own random moment (overlapping)")
    ap.add_argument("--idempotency", action="store_true", help="send Idempotency-Key: TAG with each POST")
    ap.add_argument("--retry", action="store_true",
                    help="retry a POST answered 503 / connection error / timeout with the same body and "
                         "Idempotency-Key until a 202 (at most --retry-for s): one job per key is expected")
    ap.add_argument("--retry-for", type=float, default=15.0)
    ap.add_argument("--durability", default="fsync", choices=("fsync", "os"))
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, store)")
    args = ap.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    self_check()
    kinds = [k for k in args.faults.split(",") if k]
    for k in kinds:
        if k not in FAULTS + EXTRA_FAULTS:
            ap.error("unknown fault " + k)
    rng = random.Random(args.seed)
    run_id = "%06x" % rng.randrange(1 << 24)
    if args.keep:
        os.environ["JOBGATE_TEST_KEEP"] = "1"
    started = time.monotonic()
    log("faults: seed %d, %d rounds of %.0fs at %.0f jobs/s, %d gateways, %d workers (concurrency %d), "
        "mock latency %d-%d ms, durability %s%s" % (
            args.seed, args.rounds, args.round_seconds, args.rate, args.gateways, args.workers,
            args.concurrency, args.latency_min, args.latency_max, args.durability,
            ", client retries with Idempotency-Key" if args.retry else
            ", Idempotency-Key" if args.idempotency else ""))

    stack = FaultStack(gateways=args.gateways, workers=args.workers, concurrency=args.concurrency,
                       config_extra={"broker": {"durability": args.durability}})
    log("stack up in %.1fs: %s (logs in %s)" % (time.monotonic() - started, " ".join(
        "%s=%d" % (n, p.pid) for n, p in stack.procs.items()), stack.dir))
    tracker = Tracker()
    mock = Mock(stack.mock_port)
    pool = ThreadPoolExecutor(8)
    pollers = Pollers(stack, tracker)
    load = Load(stack, tracker, args, run_id)
    problems = []
    totals = {"accepted": 0, "lost": 0, "twice": 0, "dups": 0}
    round_lost = {}
    schedule = []
    try:
        for rnd in range(1, args.rounds + 1):
            chosen = []
            while len(chosen) < min(args.faults_per_round, len(kinds)):
                if not schedule:
                    schedule = list(kinds)
                    rng.shuffle(schedule)
                k = schedule.pop()
                if k not in chosen:
                    chosen.append(k)
            plan = [(k, rng.uniform(1.0, max(1.5, args.round_seconds - 1.0)), random.Random(rng.random()))
                    for k in chosen]
            kind = "+".join(k for k, _, _ in plan)
            fault_at = min(at for _, at, _ in plan)
            t0 = time.monotonic()
            load.round = rnd
            load.active.set()
            outcomes = {}

            def fault_thread(k, at, frng):
                time.sleep(max(0.0, t0 + at - time.monotonic()))
                try:
                    outcomes[k] = "%s at %.1fs: %s" % (k, time.monotonic() - t0, do_fault(k, stack, frng))
                except Exception as exc:   # a restart that failed is a finding, not a crash of the runner
                    outcomes[k] = "%s FAILED: %r" % (k, exc)
                    problems.append("round %d: %s: %r" % (rnd, k, exc))
            fts = [threading.Thread(target=fault_thread, args=p_) for p_ in plan]
            for t in fts:
                t.start()
            for t in fts:
                t.join()
            what = "; ".join(outcomes[k] for k, _, _ in sorted(plan, key=lambda x: x[1]))
            rest = max(t0 + args.round_seconds - time.monotonic(), 1.0)
            time.sleep(rest)
            load.active.clear()
            load_secs = time.monotonic() - t0
            try:                   # let in-progress submissions (and retries) finish
                wait_until(lambda: load.busy == 0, args.retry_for + args.client_timeout + 5,
                           "submissions in progress", interval=0.05)
            except AssertionError:
                problems.append("round %d: submissions still in progress long after the load stopped" % rnd)

            # Drain: every accepted job (this round and before) terminal.
            drain_start = time.monotonic()
            with tracker.lock:
                everyone = list(tracker.jobs)
            mine = [j for j in everyone if j.round == rnd]

            def all_done():
                return all(j.snap is not None for j in everyone)
            try:
                wait_until(all_done, args.drain_timeout, "drain", interval=0.1)
            except AssertionError:
                # Not fatal yet (the final drain decides what is lost), but a
                # round that does not drain in time is a finding in itself.
                problems.append("round %d: %d accepted jobs not terminal %.0f s after the load" % (
                    rnd, sum(1 for j in everyone if j.snap is None), args.drain_timeout))
            drain_secs = time.monotonic() - drain_start
            pending = [j for j in mine if j.snap is None]
            round_lost[rnd] = pending
            if not mock.quiesce():
                problems.append("round %d: the mock still has calls in flight 15 s after the drain" % rnd)

            # Re-read this round's jobs plus a sample of older ones.
            older = [j for j in everyone if j.round != rnd]
            sample = mine + (rng.sample(older, min(len(older), 500)) if older else [])
            verify(sample, stack, tracker, pool)

            # Upstream calls per tag.
            dups, phantoms = count_calls(mine, load.ambiguous.get(rnd, []), mock, pool)
            no_call = [j for j in mine if j.snap and j.snap.get("status") == "succeeded" and j.calls == 0]

            st = load.stats.get(rnd, {})
            twice = [j for j in mine if j.twice]
            failed = [j for j in mine if j.snap and j.snap.get("status") != "succeeded"]
            gone = [j for j in mine if j.n404]
            totals["accepted"] += len(mine)
            totals["dups"] += dups
            log("round %d: %s; load %.1fs, accepted %d, 503 %d, refused %d, conn errors %d, "
                "timeouts %d, drained in %.1fs, lost %d, finished twice %d, failed %d, duplicate upstream calls %d%s" % (
                    rnd, what, load_secs, len(mine), st.get("503", 0), st.get("refused", 0),
                    st.get("conn-error", 0), st.get("timeout", 0), drain_secs, len(pending), len(twice), len(failed),
                    dups, (", phantom jobs %d" % len(phantoms)) if phantoms else "")
                + ((", retried %d" % st.get("retried", 0)) if args.retry else ""))
            for j in pending[:10]:
                log("  LOST? %s tag %s via %s: last status %s, %d polls, 404s %d %s" % (
                    j.id, j.tag, j.gateway, j.last_status, j.polls, j.n404, j.first404 or ""))
            for j in failed[:10]:
                log("  failed %s tag %s: status %s attempts %s error %s" % (
                    j.id, j.tag, j.snap.get("status"), j.snap.get("attempts"), json.dumps(j.snap.get("error"))[:300]))
            for j in gone[:10]:
                log("  404 for accepted job %s (tag %s, accepted via %s): %d times, first at +%ss via %s; final status %s" % (
                    j.id, j.tag, j.gateway, j.n404, j.first404[0], j.first404[1], j.last_status))
            for t, c in phantoms[:10]:
                log("  phantom: submission %s got no 202 but the upstream was called %d times" % (t, c))
            for j in no_call[:10]:
                log("  succeeded without a counted upstream call: %s tag %s" % (j.id, j.tag))
            if st.get("503-without-retry-after"):
                problems.append("round %d: %d 503s without Retry-After" % (rnd, st["503-without-retry-after"]))
            dead = {n: rc for n, rc in stack.exited().items()}
            if dead:
                problems.append("round %d: processes died on their own: %s" % (rnd, dead))
                for n in dead:
                    log("  %s exited %s; restarting it" % (n, dead[n]))
                    stack.restart(n)
                wait_until(stack._all_ready, 20, "readiness after a crash")
            else:
                try:
                    wait_until(stack._all_ready, 20, "readiness")
                except AssertionError:
                    problems.append("round %d: not every gateway ready 20 s after the round" % rnd)

        # Final: everything terminal, re-read all, late calls.
        load.active.clear()
        with tracker.lock:
            everyone = list(tracker.jobs)
        try:
            wait_until(lambda: all(j.snap is not None for j in everyone), args.drain_timeout, "final drain", 0.2)
        except AssertionError:
            problems.append("final drain: %d accepted jobs not terminal after %.0f s" % (
                sum(1 for j in everyone if j.snap is None), args.drain_timeout))
        mock.quiesce()
        verify(everyone, stack, tracker, pool)
        late = mock.calls_many([j.tag for j in everyone], pool)
        late_calls = [(j, late[j.tag] - (j.calls or 0)) for j in everyone
                      if late.get(j.tag) is not None and late[j.tag] > (j.calls or 0)]
        for j, c in late_calls[:10]:
            log("  late upstream call(s) after the job's round was checked: %s tag %s: %d" % (j.id, j.tag, c))
        totals["dups"] += sum(c for _, c in late_calls)
        # late calls for submissions that got no 202 are not re-probed: their
        # tags were probed once per round; calls after that are not counted.

        lost = [j for j in everyone if j.snap is None or j.last_status not in TERMINAL]
        slow = [j for r, js in round_lost.items() for j in js if j.snap is not None]
        twice = [j for j in everyone if j.twice]
        misrouted = [j for j in everyone if j.misrouted]
        for j in lost[:20]:
            log("LOST %s tag %s round %d via %s: last status %s, %d polls, 404s %d %s" % (
                j.id, j.tag, j.round, j.gateway, j.last_status, j.polls, j.n404, j.first404 or ""))
        for j in slow[:10]:
            log("SLOW %s tag %s round %d: terminal only %.1fs after acceptance" % (
                j.id, j.tag, j.round, j.terminal_at - j.accepted_at))
        for j in twice[:20]:
            log("FINISHED TWICE %s tag %s round %d: %s" % (j.id, j.tag, j.round, "; ".join(j.twice[:3])))
        for j in misrouted[:10]:
            log("MISROUTED %s: %s" % (j.id, j.misrouted))
        for rnd, status, body in load.unexpected[:10]:
            log("UNEXPECTED round %d: HTTP %s %r" % (rnd, status, body))
        for rnd, secs, what in load.slow[:10]:
            log("SLOW SUBMIT round %d: %ss (%s)" % (rnd, secs, what))
        if tracker.duplicate_ids:
            problems.append("the same job id was accepted for different submissions: %s" % tracker.duplicate_ids[:5])
        if tracker.two_jobs:
            problems.append("%d Idempotency-Keys got two different jobs, e.g. %s" % (
                len(tracker.two_jobs), tracker.two_jobs[:3]))
        if misrouted:
            problems.append("%d results belong to another job" % len(misrouted))
        if load.unexpected:
            problems.append("%d unexpected HTTP statuses" % len(load.unexpected))
        timeouts = sum(s.get("timeout", 0) for s in load.stats.values())
        if timeouts:
            problems.append("%d submissions unanswered after %.0fs" % (timeouts, args.client_timeout))
        totals["lost"] = len(lost)
        totals["twice"] = len(twice)
    finally:
        load.close()
        pollers.close()
        pool.shutdown()
        failed_total = sum(1 for j in tracker.jobs if j.snap and j.snap.get("status") != "succeeded")
        # Every job is a call to a healthy mock with an attempt budget wider
        # than the faults can spend: a job that failed is one the faults
        # made fail (an attempt lost twice over, a result dropped), which
        # the guarantee does not allow any more than a lost one.
        if failed_total > args.allow_failed:
            problems.append("%d accepted jobs failed (at most %d allowed)" % (failed_total, args.allow_failed))
        for n, rc in stack.exited().items():
            problems.append("%s had died on its own at the end (exit %s)" % (n, rc))
        for proc in stack.procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        try:
            stack.close()
        except AssertionError as exc:
            problems.append("shutdown: %s" % exc)
    log("rounds %d, accepted %d, lost %d, finished twice %d, duplicate upstream calls %d" % (
        args.rounds, totals["accepted"], totals["lost"], totals["twice"], totals["dups"]))
    log("faults: %.1fs, failed (not lost) %d, resubmissions answered with the original job %d, seed %d%s" % (
        time.monotonic() - started, failed_total, tracker.deduplicated, args.seed,
        "".join("\nPROBLEM: " + p for p in problems)))
    return 1 if totals["lost"] or totals["twice"] or problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
