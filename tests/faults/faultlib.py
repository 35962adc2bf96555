"""faultlib — shared pieces of the fault suite and the overload test.

* FaultStack: the integration harness's Stack (tests/integration/harness.py,
  imported, not modified) with several gateways on their own ports, named
  processes that can be killed and restarted, and RSS sampling.
* Client: one keep-alive HTTP/1.1 connection (http.client) to 127.0.0.1.

Only 127.0.0.1 is used; processes are signalled by their own PID only.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import harness  # noqa: E402  (tests/integration/harness.py)
from harness import BUILD, free_port, wait_until  # noqa: E402,F401

TERMINAL = ("succeeded", "failed", "canceled")


class Client:
    """One keep-alive connection to host:port (127.0.0.1 unless
    tests/multihost gives an address of its own namespaces). request()
    returns (status, headers-dict-lowercase, body bytes) or raises OSError /
    http.client.HTTPException; the connection is dropped after an error."""

    def __init__(self, port, timeout=10.0, host="127.0.0.1"):
        self.port = port
        self.timeout = timeout
        self.host = host
        self.conn = None

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None

    def request(self, method, path, body=None, headers=None, timeout=None):
        headers = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port,
                                                   timeout=timeout or self.timeout)
        elif timeout:
            self.conn.timeout = timeout
            if self.conn.sock is not None:
                self.conn.sock.settimeout(timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            data = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            if resp.will_close:
                self.close()
            return resp.status, hdrs, data
        except Exception:
            self.close()
            raise


def rss_kb(pid):
    """VmRSS of a live process in KiB, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class FaultStack(harness.Stack):
    """Broker, G gateways (gateway0 … on their own ports), W workers and
    the mock upstream. Every process can be SIGKILLed and restarted under
    its name; logs append across restarts (DIR/NAME.log)."""

    def __init__(self, gateways=2, workers=3, concurrency=64, config_extra=None):
        super().__init__(workers=0, concurrency=concurrency, config_extra=config_extra, start=False)
        self.gateway_ports = [self.gateway_port] + [free_port() for _ in range(gateways - 1)]
        self.gateway_names = ["gateway%d" % i for i in range(gateways)]
        self.restarts = {}
        try:
            self.start_broker()
            for name in self.gateway_names:
                self.start_named(name)
            for _ in range(workers):
                self.start_worker()
            wait_until(self._all_ready, 20, "every gateway's /readyz")
        except BaseException:
            self.dump_logs()
            self.close_quietly()
            raise

    # --- processes ---

    def _spawn_env(self, name, argv, env=None):
        log = open(os.path.join(self.dir, name + ".log"), "ab")
        old = self.procs.get(name)
        if old is not None and old.poll() is None:
            log.close()
            raise AssertionError(name + " is already running")
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=full_env)
        log.close()
        self.procs[name] = proc
        return proc

    def gateway_port_of(self, name):
        return self.gateway_ports[self.gateway_names.index(name)]

    def start_named(self, name, wait=True):
        """(Re)starts broker, gatewayN or workerN under its name."""
        if name == "broker":
            return self.start_broker()
        if name.startswith("gateway"):
            port = self.gateway_port_of(name)
            proc = self._spawn_env(name, [os.path.join(BUILD, "gateway/jobgate-gateway"),
                                          "--config", self.config_path],
                                   {"JOBGATE_GATEWAY_LISTEN": "127.0.0.1:%d" % port})
            if wait:
                def up():
                    if proc.poll() is not None:
                        raise AssertionError("%s exited %s at start" % (name, proc.returncode))
                    try:
                        return harness.request(port, "GET", "/healthz", timeout=2).status == 200
                    except OSError:
                        return False
                wait_until(up, 15, name + " /healthz")
            return proc
        if name.startswith("worker"):
            return self._spawn_env(name, [os.path.join(BUILD, "worker/jobgate-worker"),
                                          "--config", self.config_path])
        raise ValueError(name)

    def start_worker(self):
        name = "worker%d" % len(self.worker_names)
        self.worker_names.append(name)
        return self.start_named(name)

    def _all_ready(self):
        for port in self.gateway_ports:
            try:
                if harness.request(port, "GET", "/readyz", timeout=2).status != 200:
                    return False
            except OSError:
                return False
        return True

    def pid(self, name):
        proc = self.procs.get(name)
        return proc.pid if proc is not None and proc.poll() is None else None

    def kill9(self, name):
        """SIGKILL by PID, reaped; returns the old PID."""
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        return proc.pid

    def restart(self, name):
        self.restarts[name] = self.restarts.get(name, 0) + 1
        return self.start_named(name)

    def signal(self, name, sig):
        proc = self.procs[name]
        if proc.poll() is None:
            os.kill(proc.pid, sig)

    def rss(self):
        """{name: VmRSS KiB} for every live process (the mock included)."""
        out = {}
        for name, proc in self.procs.items():
            if proc.poll() is None:
                value = rss_kb(proc.pid)
                if value is not None:
                    out[name] = value
        return out

    def exited(self):
        """Names of processes that died on their own (not signalled by us)."""
        return {name: proc.returncode for name, proc in self.procs.items()
                if proc.poll() is not None}

    def close_quietly(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                except OSError:
                    pass
        try:
            self.close()
        except AssertionError as exc:
            print("close:", exc)

    def grep_logs(self, needle, names=None, limit=20):
        hits = []
        for name in (names or list(self.procs)):
            for line in self.log(name).splitlines():
                if needle in line:
                    hits.append("%s: %s" % (name, line))
                    if len(hits) >= limit:
                        return hits
        return hits
