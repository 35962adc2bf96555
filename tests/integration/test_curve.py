"""CURVE on every ZeroMQ socket (issue 15, SPEC §6 security.curve): with keys
the stack works end to end; a peer with no key, a wrong key or an unlisted
key gets nothing, and the broker logs (and counts) each refusal by reason."""
import contextlib
import json
import os
import subprocess
import time

from harness import BUILD, Stack, free_port, request, wait_until


def gen_keypair():
    """A new key pair from jobgate-broker --gen-keypair (SPEC §6)."""
    out = subprocess.run([os.path.join(BUILD, "broker/jobgate-broker"), "--gen-keypair"],
                         check=True, capture_output=True, timeout=10).stdout
    pair = json.loads(out)
    assert set(pair) == {"public_key", "secret_key"}
    assert len(pair["public_key"]) == 40 and len(pair["secret_key"]) == 40
    return pair


@contextlib.contextmanager
def environment(**values):
    """Sets environment variables for the processes started inside."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def write_keys(stack, name, pair):
    """Writes a key pair to files (as a mounted secret would be, with a
    trailing newline) and returns the environment that points a process's
    security.curve.public_key_file and secret_key_file at them."""
    paths = {}
    for half in ("public_key", "secret_key"):
        paths[half] = os.path.join(stack.dir, "%s.%s" % (name, half))
        with open(paths[half], "w") as f:
            f.write(pair[half] + "\n")
        os.chmod(paths[half], 0o600)
    return {"JOBGATE_SECURITY_CURVE_PUBLIC_KEY_FILE": paths["public_key"],
            "JOBGATE_SECURITY_CURVE_SECRET_KEY_FILE": paths["secret_key"]}


class CurveStack:
    """A stack whose broker, gateway and worker each have a key pair: the
    shared config names the broker's public key and a file of authorized
    keys; each process's own pair comes from its files (environment)."""

    def __init__(self, stack):
        self.stack = stack
        self.broker = gen_keypair()
        self.gateway = gen_keypair()
        self.worker = gen_keypair()
        authorized = os.path.join(stack.dir, "authorized_keys")
        with open(authorized, "w") as f:
            f.write("# the gateways\n%s\n\n# the workers\n%s  # worker 1\n"
                    % (self.gateway["public_key"], self.worker["public_key"]))
        stack.config["security"]["curve"] = {
            "broker_public_key": self.broker["public_key"],
            "authorized_keys_file": authorized,
        }
        stack.write_config()
        self.env = {name: write_keys(stack, name, getattr(self, name))
                    for name in ("broker", "gateway", "worker")}

    def start(self, workers=1):
        with environment(**self.env["broker"]):
            self.stack.start_broker()
        with environment(**self.env["gateway"]):
            self.stack.start_gateway()
        with environment(**self.env["worker"]):
            for _ in range(workers):
                self.stack.start_worker()

    def rogue_config(self, name, curve):
        """Writes a config like the stack's with another security.curve (None:
        no key at all) and returns its path."""
        config = json.loads(json.dumps(self.stack.config))
        if curve is None:
            del config["security"]["curve"]
        else:
            config["security"]["curve"] = curve
        path = os.path.join(self.stack.dir, name + ".json")
        with open(path, "w") as f:
            json.dump(config, f)
        return path

    def start_rogue_worker(self, name, curve):
        path = self.rogue_config(name, curve)
        self.stack._spawn(name, [os.path.join(BUILD, "worker/jobgate-worker"), "--config", path])


def test_curve_stack_works_end_to_end():
    with Stack(workers=0, start=False) as stack:
        curve = CurveStack(stack)
        curve.start(workers=1)
        stack.wait_ready()
        # Submission (frontend), dispatch and result (backend) and the event
        # that answers the wait (publisher) all cross CURVE sockets.
        resp = request(stack.gateway_port, "POST", "/v1/jobs",
                       body={"kind": "http", "provider": "mock", "request": {"path": "/json"}},
                       headers={"Prefer": "wait=20"})
        assert resp.status == 200, (resp.status, resp.body)
        assert resp.json()["status"] == "succeeded"
        ids = [stack.submit({"kind": "http", "provider": "mock",
                             "request": {"path": "/json?latency_ms=50"}}).json()["id"]
               for _ in range(20)]
        for job_id in ids:
            assert stack.wait_terminal(job_id)["status"] == "succeeded"
        assert "CURVE on: this broker's public key %s, 2 authorized keys" \
            % curve.broker["public_key"] in stack.log("broker")
        for name in ("broker", "gateway", "worker0"):
            assert "CURVE: " not in stack.log(name), stack.log(name)


def test_curve_refuses_peers_without_the_right_key():
    with Stack(workers=0, start=False) as stack:
        curve = CurveStack(stack)
        curve.start(workers=0)
        job_id = stack.submit({"kind": "http", "provider": "mock",
                               "request": {"path": "/json"}}).json()["id"]
        other = gen_keypair()
        # A worker with no key; one that takes another key for the broker's;
        # one with a good pair the broker does not list.
        curve.start_rogue_worker("rogue-no-key", None)
        curve.start_rogue_worker("rogue-wrong-key", {
            "public_key": curve.worker["public_key"], "secret_key": curve.worker["secret_key"],
            "broker_public_key": other["public_key"]})
        curve.start_rogue_worker("rogue-unlisted", {
            "public_key": other["public_key"], "secret_key": other["secret_key"],
            "broker_public_key": curve.broker["public_key"]})
        # A gateway with no key, on its own port.
        rogue_port = free_port()
        rogue_gateway = curve.rogue_config("rogue-gateway", None)
        with open(rogue_gateway) as f:
            config = json.load(f)
        config["gateway"]["listen"] = "127.0.0.1:%d" % rogue_port
        with open(rogue_gateway, "w") as f:
            json.dump(config, f)
        stack._spawn("rogue-gateway", [os.path.join(BUILD, "gateway/jobgate-gateway"),
                                       "--config", rogue_gateway])

        def refused(reason):
            return "refused" in stack.log("broker") and ("(%s)" % reason) in stack.log("broker")
        for reason in ("no_key", "wrong_key", "unlisted_key"):
            wait_until(lambda: refused(reason), 20, "the broker to log a %s refusal" % reason)
        # Each refusal names its socket: the gateway's attempts reached the
        # frontend and the publisher too.
        broker_log = stack.log("broker")
        assert "on backend" in broker_log and "on frontend" in broker_log \
            and "on publisher" in broker_log, broker_log
        # And counts them by reason on its /metrics (a peer without a key may
        # hang up first and count as "other", so only the sum is exact).
        refusals = {line.split('"')[1]: float(line.split()[-1])
                    for line in stack.broker_metrics().splitlines()
                    if line.startswith("jobgate_curve_refused_total{")}
        assert sorted(refusals) == ["no_key", "other", "unlisted_key", "wrong_key"], refusals
        assert refusals["wrong_key"] > 0 and refusals["unlisted_key"] > 0, refusals
        # The refused processes know why.
        wait_until(lambda: "not list this process's public key" in stack.log("rogue-unlisted"),
                   20, "the unlisted worker to log its refusal")
        # They got nothing: the job was never dispatched, the rogue gateway
        # never reached the broker.
        time.sleep(2)
        assert stack.job(job_id)["status"] == "queued"
        assert stack.mock_stats()["served"] == 0
        assert request(rogue_port, "GET", "/readyz").status == 503
        assert request(rogue_port, "POST", "/v1/jobs",
                       body={"kind": "http", "provider": "mock", "request": {"path": "/json"}}
                       ).status == 503
        # A worker with the right key runs it.
        with environment(**curve.env["worker"]):
            stack.start_worker()
        assert stack.wait_terminal(job_id)["status"] == "succeeded"
        assert stack.mock_stats()["served"] == 1


def test_curve_bad_keys_stop_the_process_with_one_line():
    with Stack(workers=0, start=False) as stack:
        pair = gen_keypair()
        other = gen_keypair()
        cases = [
            ("broker", {"public_key": pair["public_key"], "secret_key": other["secret_key"],
                        "authorized_keys": [other["public_key"]]},
             "security.curve.public_key is not the public key of security.curve.secret_key"),
            ("broker", {"public_key": pair["public_key"], "secret_key": pair["secret_key"]},
             "lists no key"),
            ("gateway", {"public_key": pair["public_key"], "secret_key": pair["secret_key"]},
             "security.curve.broker_public_key (or broker_public_key_file) is required"),
            ("worker", {"public_key": pair["public_key"], "secret_key_file": "/nonexistent/k",
                        "broker_public_key": other["public_key"]},
             "security.curve.secret_key_file: cannot read /nonexistent/k"),
            ("broker", {"public_key": pair["public_key"], "secret_key": pair["secret_key"],
                        "authorized_keys": ["short"]},
             "security.curve.authorized_keys[0] must be a Z85 public key of 40 characters"),
        ]
        for process, keys, expected in cases:
            config = json.loads(json.dumps(stack.config))
            config["security"]["curve"] = keys
            path = os.path.join(stack.dir, "bad.json")
            with open(path, "w") as f:
                json.dump(config, f)
            done = subprocess.run([os.path.join(BUILD, "%s/jobgate-%s" % (process, process)),
                                   "--config", path], capture_output=True, timeout=20,
                                  stdin=subprocess.DEVNULL)
            text = (done.stdout + done.stderr).decode(errors="replace")
            assert done.returncode == 1 and expected in text, (process, keys, text)
            # --check-config judges the keys as the start does, on one line.
            done = subprocess.run([os.path.join(BUILD, "%s/jobgate-%s" % (process, process)),
                                   "--config", path, "--check-config"], capture_output=True,
                                  timeout=20, stdin=subprocess.DEVNULL)
            text = done.stderr.decode(errors="replace")
            assert done.returncode == 1 and "is invalid" in text and expected in text \
                and text.count("\n") == 1, (process, keys, text)
