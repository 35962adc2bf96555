"""harness — starts the real jobgate processes on loopback for a test.

Every process gets ephemeral ports and a temporary directory, and is
stopped by its process id when the test ends. Only 127.0.0.1 is used.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(os.environ.get("JOBGATE_BUILD", os.path.join(ROOT, "build")))


_handed_out = set()


def free_port():
    """Returns a TCP port free on 127.0.0.1 right now and not returned
    before in this process: the kernel may pick a port it just released
    again, and a stack given one port twice fails to start (a broker's
    frontend and metrics both on it)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate until it returns a true value; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


class Skip(Exception):
    """Raised by a test that does not apply to this run (its reason is
    printed, and run.py counts it apart: never as passed)."""


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


def request(port, method, path, body=None, headers=None, timeout=70):
    """One HTTP request to 127.0.0.1:port; body may be bytes, str or JSON."""
    headers = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        headers.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return Response(resp.status, resp.getheaders(), resp.read())
    finally:
        conn.close()


class Stack:
    """A broker, a gateway, N workers and a mock upstream on loopback."""

    def __init__(self, workers=1, concurrency=512, config_extra=None, start=True,
                 mock_log=False):
        self.dir = tempfile.mkdtemp(prefix="jobgate-test-")
        self.procs = {}
        self.worker_names = []
        self.mock_port = None
        # With mock_log the mock writes one line per call (mock_calls()).
        self.mock_log = os.path.join(self.dir, "mock-calls.log") if mock_log else None
        self._start_mock()
        self.gateway_port = free_port()
        self.metrics_port = free_port()
        self.config = {
            "gateway": {"listen": "127.0.0.1:%d" % self.gateway_port, "submit_timeout_ms": 3000},
            "broker": {
                "frontend": "tcp://127.0.0.1:%d" % free_port(),
                "backend": "tcp://127.0.0.1:%d" % free_port(),
                "publisher": "tcp://127.0.0.1:%d" % free_port(),
                "data_dir": os.path.join(self.dir, "data"),
                "durability": "fsync",
                "metrics_listen": "127.0.0.1:%d" % self.metrics_port,
            },
            "worker": {"concurrency": concurrency},
            "security": {"allow_private_networks": True},
            "providers": {
                "mock": {"base_url": "http://127.0.0.1:%d" % self.mock_port,
                         "rate_limit": 0, "max_concurrency": 0},
            },
            "log_level": os.environ.get("JOBGATE_TEST_LOG_LEVEL", "info"),
        }
        for section, values in (config_extra or {}).items():
            if isinstance(values, dict):
                self.config.setdefault(section, {}).update(values)
            else:
                self.config[section] = values
        self.config_path = os.path.join(self.dir, "config.json")
        self.write_config()
        if start:
            self.start_all(workers)

    # --- processes ---

    def write_config(self):
        """Writes self.config to the file every process reads."""
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)

    def start_all(self, workers=1):
        """Writes the config as it is now (a test made with start=False may
        edit it first, e.g. with the mock's port) and starts the broker, the
        gateway and workers, ready when there are any."""
        self.write_config()
        self.start_broker()
        self.start_gateway()
        for _ in range(workers):
            self.start_worker()
        if workers:
            self.wait_ready()

    def _spawn(self, name, argv):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        log.close()
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            raise AssertionError(name + " is already running")
        self.procs[name] = proc
        return proc

    def _start_mock(self):
        port_file = os.path.join(self.dir, "mock.port")
        argv = [os.path.join(BUILD, "tests/mock/jobgate-mock-upstream"),
                "--listen", "127.0.0.1:0", "--port-file", port_file]
        if self.mock_log:
            argv += ["--log", self.mock_log]
        self._spawn("mock", argv)

        def read_port():
            try:
                with open(port_file) as f:
                    text = f.read().strip()
                return int(text) if text else None
            except (OSError, ValueError):
                return None
        self.mock_port = wait_until(read_port, 10, "the mock upstream")

    def start_broker(self):
        return self._spawn("broker", [os.path.join(BUILD, "broker/jobgate-broker"),
                                      "--config", self.config_path])

    def start_gateway(self):
        proc = self._spawn("gateway", [os.path.join(BUILD, "gateway/jobgate-gateway"),
                                       "--config", self.config_path])

        def up():
            try:
                return request(self.gateway_port, "GET", "/healthz", timeout=2).status == 200
            except OSError:
                return False
        wait_until(up, 10, "the gateway")
        return proc

    def start_worker(self):
        name = "worker%d" % len(self.worker_names)
        self.worker_names.append(name)
        return self._spawn(name, [os.path.join(BUILD, "worker/jobgate-worker"),
                                  "--config", self.config_path])

    def wait_ready(self, timeout=15):
        wait_until(lambda: self.get_path("/readyz").status == 200, timeout, "/readyz")

    def stop(self, name, sig=signal.SIGTERM, timeout=15):
        """Sends sig to one process and waits for it to exit."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return proc.returncode if proc else None
        proc.send_signal(sig)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("%s did not stop within %ss after %s" % (name, timeout, sig))

    def close(self):
        """Stops every process; fails when one did not exit cleanly on
        SIGTERM or, in a sanitized build, when a sanitizer reported."""
        problems = []
        stopped_here = []
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                stopped_here.append(name)
        for name, proc in list(self.procs.items()):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                problems.append("%s did not stop on SIGTERM" % name)
            if name in stopped_here and proc.returncode != 0:
                problems.append("%s exited %s on SIGTERM" % (name, proc.returncode))
        for name in self.procs:
            text = self.log(name)
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if marker in text:
                    problems.append("%s: %s" % (name, marker))
                    print("---- %s log ----" % name)
                    print(text[-6000:])
        if os.environ.get("JOBGATE_TEST_KEEP") or problems:
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        if problems:
            raise AssertionError("; ".join(problems))

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name + ".log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:
            self.dump_logs()
        self.close()

    def dump_logs(self):
        for name in self.procs:
            text = self.log(name)
            if text:
                print("---- %s log (last 30 lines) ----" % name)
                print("\n".join(text.splitlines()[-30:]))

    # --- API ---

    def get_path(self, path, headers=None, timeout=70):
        return request(self.gateway_port, "GET", path, headers=headers, timeout=timeout)

    def gateway_metric(self, name, headers=None):
        """The value of an unlabelled series on the gateway's GET /metrics."""
        for line in self.get_path("/metrics", headers=headers).body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError("no %s in the gateway's metrics" % name)

    def broker_metrics(self):
        """The broker's GET /metrics (broker.metrics_listen) as text (a
        broker still starting is waited for)."""
        def scrape():
            try:
                return request(self.metrics_port, "GET", "/metrics", timeout=10)
            except ConnectionRefusedError:
                return None
        resp = wait_until(scrape, 10, "the broker's metrics listener")
        assert resp.status == 200, (resp.status, resp.body)
        return resp.body.decode()

    def submit(self, spec, headers=None, expect=202):
        resp = request(self.gateway_port, "POST", "/v1/jobs", body=spec, headers=headers)
        if expect is not None:
            assert resp.status == expect, (resp.status, resp.body)
        return resp

    def job(self, job_id, wait=None):
        path = "/v1/jobs/" + job_id + ("?wait=%d" % wait if wait else "")
        resp = self.get_path(path)
        assert resp.status == 200, (resp.status, resp.body)
        return resp.json()

    def wait_terminal(self, job_id, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id, wait=min(10, max(1, int(deadline - time.monotonic()))))
            if job["status"] in ("succeeded", "failed", "canceled"):
                return job
            if time.monotonic() > deadline:
                raise AssertionError("job %s not finished: %s" % (job_id, job))

    def mock_url(self, path):
        return "http://127.0.0.1:%d%s" % (self.mock_port, path)

    def mock_stats(self):
        return request(self.mock_port, "GET", "/stats").json()

    def mock_reset(self):
        request(self.mock_port, "GET", "/reset")

    def mock_calls(self):
        """The calls the mock logged (mock_log=True): a list of
        (wall ms, path, prompt tokens, completion tokens)."""
        calls = []
        with open(self.mock_log) as f:
            for line in f:
                at, path, prompt, completion = line.split()
                calls.append((int(at), path, int(prompt), int(completion)))
        return calls
