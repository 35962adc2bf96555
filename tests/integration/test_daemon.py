"""Daemon conventions (issue 13): --version and --check-config on every
binary; SIGHUP rereads the file, applies what may change while running
(API keys, quotas, provider limits, log settings), refuses the rest with one
log line and never stops a process; log.file is reopened on SIGHUP (for
logrotate); the systemd notification protocol (READY=1, WATCHDOG=1 from the
event loop, RELOADING=1, STOPPING=1) as a Type=notify unit's systemd would
receive it. The units themselves are checked by tests/systemd/run.sh."""
import array
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading

from harness import BUILD, ROOT, Stack, request, wait_until

BINARIES = {"broker": "broker/jobgate-broker", "gateway": "gateway/jobgate-gateway",
            "worker": "worker/jobgate-worker"}
ALL = ("broker", "gateway", "worker0")


def _run(binary, args):
    return subprocess.run([os.path.join(BUILD, BINARIES[binary])] + args, capture_output=True,
                          text=True, timeout=20, stdin=subprocess.DEVNULL)


def _project_version():
    with open(os.path.join(ROOT, "meson.build")) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


def test_version_names_the_binary_and_the_build():
    version = _project_version()
    for name in BINARIES:
        result = _run(name, ["--version"])
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", result.stderr
        match = re.fullmatch(r"jobgate-(\w+) (\S+) \((\S+)\)\n", result.stdout)
        assert match, result.stdout
        assert match.group(1) == name and match.group(2) == version, result.stdout


def _write(path, config):
    with open(path, "w") as f:
        json.dump(config, f)


def test_check_config_gives_a_one_line_verdict():
    directory = tempfile.mkdtemp(prefix="jobgate-check-")
    path = os.path.join(directory, "config.json")
    secret = os.path.join(directory, "secret")
    with open(secret, "w") as f:
        f.write("s3cret\n")
    good = {"gateway": {"listen": "127.0.0.1:1"},
            "broker": {"data_dir": os.path.join(directory, "data")},
            "providers": {"p": {"base_url": "http://127.0.0.1:1",
                                "auth": {"file": secret}}}}
    try:
        # Valid: one line on stdout, exit 0, and nothing started (no data dir).
        _write(path, good)
        for name in BINARIES:
            result = _run(name, ["--config", path, "--check-config"])
            assert result.returncode == 0, (name, result.stderr)
            assert result.stdout == "jobgate-%s: configuration %s is valid\n" % (name, path), \
                result.stdout
            assert result.stderr == "", result.stderr
        assert not os.path.exists(os.path.join(directory, "data"))

        # What every binary refuses, and what only one knows about.
        open_mode = dict(good, gateway={"listen": "0.0.0.0:1"})
        no_secret = json.loads(json.dumps(good))
        no_secret["providers"]["p"]["auth"]["file"] = os.path.join(directory, "missing")
        cases = [
            ({"gatway": {}}, {"broker", "gateway", "worker"},
             "config: unknown key gatway (did you mean gateway?)"),
            (open_mode, {"gateway"}, "gateway: no gateway.api_keys, so open mode"),
            (no_secret, {"worker"}, "config: providers.p.auth"),
            (dict(good, log={"file": os.path.join(directory, "no-dir", "x.log")}),
             {"broker", "gateway", "worker"}, "log.file: cannot open "),
        ]
        for config, refusing, reason in cases:
            _write(path, config)
            for name in BINARIES:
                result = _run(name, ["--config", path, "--check-config"])
                if name not in refusing:
                    assert result.returncode == 0, (name, config, result.stderr)
                    continue
                assert result.returncode == 1, (name, config, result.stdout)
                assert result.stdout == "", result.stdout
                lines = result.stderr.splitlines()
                assert len(lines) == 1, result.stderr
                prefix = "jobgate-%s: configuration %s is invalid: " % (name, path)
                assert lines[0].startswith(prefix + reason), (lines[0], reason)
        # Not JSON at all: the same one line.
        with open(path, "w") as f:
            f.write('{"gateway": ')
        result = _run("broker", ["--config", path, "--check-config"])
        assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    finally:
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)


def _auth(key):
    return {"Authorization": "Bearer " + key}


def _submit_status(stack, key=None):
    headers = _auth(key) if key else {}
    spec = {"kind": "http", "provider": "mock", "request": {"path": "/json"}}
    return request(stack.gateway_port, "POST", "/v1/jobs", body=spec, headers=headers).status


def _hangup(stack, names=ALL):
    """Sends SIGHUP to each named process and waits until each logged the
    outcome of that reload (applied or refused); returns those lines."""
    before = {name: stack.log(name).count("configuration reloaded from")
              + stack.log(name).count("reload refused") for name in names}
    for name in names:
        stack.procs[name].send_signal(signal.SIGHUP)
    outcomes = {}
    for name in names:
        def logged():
            text = stack.log(name)
            lines = [line for line in text.splitlines()
                     if "configuration reloaded from" in line or "reload refused" in line]
            return lines[before[name]:] if len(lines) > before[name] else None
        outcomes[name] = wait_until(logged, 10, name + "'s reload")[-1]
    for name in names:
        assert stack.procs[name].poll() is None, name + " stopped on SIGHUP"
    return outcomes


def test_sighup_applies_new_api_keys_and_never_stops_a_process():
    keyed = {"gateway": {"api_keys": [{"key": "key-one", "tenant": "a"}]}}
    with Stack(config_extra=keyed) as stack:
        assert _submit_status(stack, "key-one") == 202
        assert _submit_status(stack, "key-two") == 401
        stack.config["gateway"]["api_keys"] = [{"key": "key-two", "tenant": "a"}]
        stack.write_config()
        outcomes = _hangup(stack)
        for name, line in outcomes.items():
            assert "configuration reloaded from " + stack.config_path in line, (name, line)
        assert _submit_status(stack, "key-two") == 202
        assert _submit_status(stack, "key-one") == 401
        # Reloading again with nothing changed is harmless.
        _hangup(stack)
        assert _submit_status(stack, "key-two") == 202
        stack.wait_ready()


def test_sighup_refuses_what_cannot_change_and_keeps_the_running_config():
    keyed = {"gateway": {"api_keys": [{"key": "key-one", "tenant": "a"}]}}
    with Stack(config_extra=keyed) as stack:
        listen = stack.config["gateway"]["listen"]
        # A fixed key changed beside a reloadable one: the whole reload is
        # refused, the new key too.
        stack.config["gateway"]["listen"] = "127.0.0.1:1"
        stack.config["gateway"]["api_keys"] = [{"key": "key-two", "tenant": "a"}]
        stack.write_config()
        for name, line in _hangup(stack).items():
            assert ("reload refused, the running configuration is kept: config: gateway.listen "
                    "changed") in line, (name, line)
        assert _submit_status(stack, "key-one") == 202
        assert _submit_status(stack, "key-two") == 401

        # A provider added; a file that is not JSON; an unknown key.
        stack.config["gateway"]["listen"] = listen
        stack.config["providers"]["other"] = {"base_url": "http://127.0.0.1:1"}
        stack.write_config()
        for name, line in _hangup(stack).items():
            assert "the set of providers changed" in line, (name, line)
        with open(stack.config_path, "w") as f:
            f.write('{"gateway": {')
        for name, line in _hangup(stack).items():
            assert "reload refused, the running configuration is kept: config: " in line, line
        del stack.config["providers"]["other"]
        stack.config["log_levle"] = "debug"
        stack.write_config()
        for name, line in _hangup(stack).items():
            assert "unknown key log_levle (did you mean log_level?)" in line, (name, line)
        assert _submit_status(stack, "key-one") == 202
        stack.wait_ready()
        job_id = stack.submit({"kind": "http", "provider": "mock", "request": {"path": "/json"}},
                              headers=_auth("key-one")).json()["id"]
        job = request(stack.gateway_port, "GET", "/v1/jobs/%s?wait=30" % job_id,
                      headers=_auth("key-one")).json()
        assert job["status"] == "succeeded", job


def test_sighup_applies_quotas_and_provider_limits_in_the_broker():
    # One submission per 1000 s: the second is over quota.
    quota = {"quotas": {"*": {"submit_rate": 0.001}}}
    with Stack(config_extra=quota) as stack:
        assert _submit_status(stack) == 202
        assert _submit_status(stack) == 429
        stack.config["quotas"] = {"*": {"submit_rate": 1000}}
        stack.config["providers"]["mock"]["rate_limit"] = 250
        stack.write_config()
        for name, line in _hangup(stack).items():
            assert "configuration reloaded" in line, (name, line)
        # The tenant's bucket took the new rate: submissions go through.
        assert _submit_status(stack) == 202
        assert _submit_status(stack) == 202
        providers = stack.get_path("/v1/providers").json()
        listed = providers.get("providers", providers)
        mock = [p for p in listed if p["name"] == "mock"][0]
        assert mock["rate_limit"] == 250, mock
        # And back: a tighter quota holds at once.
        stack.config["quotas"] = {"*": {"submit_rate": 0.001}}
        stack.write_config()
        _hangup(stack, ("broker",))
        statuses = [_submit_status(stack) for _ in range(3)]
        assert statuses.count(429) >= 2, statuses


def test_sighup_reopens_the_log_file_and_applies_the_log_level():
    with Stack(start=False) as stack:
        log_path = os.path.join(stack.dir, "jobgate.log")
        stack.config.pop("log_level", None)
        stack.config["log"] = {"file": log_path, "level": "info"}
        stack.start_all()
        wait_until(lambda: os.path.exists(log_path) and "gateway serving" in open(log_path).read(),
                   10, "the gateway's first line in log.file")
        # Nothing but what the harness wrote went to stderr.
        assert "gateway serving" not in stack.log("gateway")

        # logrotate: the file moved away, SIGHUP, a new file at the path.
        rotated = log_path + ".1"
        os.rename(log_path, rotated)
        stack.config["log"]["level"] = "debug"
        stack.config["log"]["format"] = "json"
        stack.write_config()
        for name in ALL:
            stack.procs[name].send_signal(signal.SIGHUP)

        def reloaded_in_new_file():
            try:
                lines = open(log_path).read().splitlines()
            except OSError:
                return None
            entries = [json.loads(line) for line in lines]
            done = [e for e in entries if e["msg"].startswith("configuration reloaded")]
            return entries if len(done) == len(ALL) else None
        entries = wait_until(reloaded_in_new_file, 10, "every process's reload in the new file")
        assert {e["process"] for e in entries} >= {"broker", "gateway", "worker"}
        old = open(rotated).read()
        assert "gateway serving" in old and "configuration reloaded" not in old
        # The new level: debug lines appear with traffic.
        job = stack.submit({"kind": "http", "provider": "mock", "request": {"path": "/json"}})
        stack.wait_terminal(job.json()["id"])
        wait_until(lambda: any(json.loads(line)["level"] == "debug"
                               for line in open(log_path).read().splitlines()),
                   10, "a debug line after the reload")
        for name in ALL:
            assert stack.procs[name].poll() is None, name
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in open(log_path).read() + old, marker


class _SystemdSocket:
    """systemd's end of the notification protocol: a datagram socket named
    by NOTIFY_SOCKET, each message with its sender's pid (SCM_CREDENTIALS),
    read at once by a thread as systemd reads at once (a full queue would
    block the senders)."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.1)
        self.messages = []      # (pid, text)
        self.lock = threading.Lock()
        self.running = True
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while self.running:
            try:
                data, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            pid = None
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = array.array("i", payload[:12])[0]
            with self.lock:
                self.messages.append((pid, data.decode()))

    def of(self, pid):
        with self.lock:
            return [text for sender, text in self.messages if sender == pid]

    def close(self):
        self.running = False
        self.reader.join(5)
        self.sock.close()


def test_systemd_notifications_ready_watchdog_reload_stopping():
    stack = Stack(start=False)
    systemd = _SystemdSocket(stack.dir)
    saved = {name: os.environ.get(name) for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC",
                                                      "WATCHDOG_PID")}
    os.environ["NOTIFY_SOCKET"] = systemd.path
    os.environ["WATCHDOG_USEC"] = "200000"      # a ping every 100 ms
    os.environ.pop("WATCHDOG_PID", None)
    try:
        with stack:
            stack.start_all()
            pids = {name: stack.procs[name].pid for name in ALL}
            for name, pid in pids.items():
                wait_until(lambda: "READY=1\nSTATUS=serving" in systemd.of(pid), 10,
                           name + "'s READY=1")
                # The pings keep coming from the running loop.
                wait_until(lambda: systemd.of(pid).count("WATCHDOG=1") >= 3, 10,
                           name + "'s watchdog pings")
            for name, pid in pids.items():
                ready = systemd.of(pid).index("READY=1\nSTATUS=serving")
                assert "WATCHDOG=1" not in systemd.of(pid)[:ready], name

            # A reload: RELOADING=1, then READY=1 again.
            _hangup(stack)
            for name, pid in pids.items():
                texts = wait_until(lambda: [t for t in systemd.of(pid)
                                            if t.startswith(("RELOADING=1", "READY=1"))][1:] or None,
                                   10, name + "'s reload notifications")
                assert texts[0].startswith("RELOADING=1") and texts[1].startswith("READY=1"), texts

            # SIGTERM: STOPPING=1 before the process exits, and exit 0.
            for name, pid in pids.items():
                assert stack.stop(name) == 0, name
                assert "STOPPING=1\nSTATUS=stopping" in systemd.of(pid), (name, systemd.of(pid))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        systemd.close()
