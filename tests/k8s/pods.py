#!/usr/bin/env python3
"""pods.py BUILD SECRETS_FILE API_KEY — the three pods of deploy/k8s/, as
processes on loopback: each binary runs with what its pod would have —
the ConfigMap's config.json and the Secret files its workload mounts,
the environment its manifest sets and Kubernetes would add (pod-files.mjs,
one directory per role) — and only addresses Kubernetes itself provides are
replaced: the Service address
jobgate-broker becomes 127.0.0.1 ports (through the same JOBGATE_BROKER_*
overrides the StatefulSet uses), the gateway listens on 127.0.0.1, the
store is a temporary directory, and the demo upstream jobgate-mock is the
mock on 127.0.0.1.

Then: /readyz answers 200 (the gateway's readiness probe), a job submitted
with an API key from the jobgate-api-keys Secret succeeds (CURVE between
every process, with the keys of the jobgate-curve-* Secrets), a request with
no key gets 401, and the broker's /metrics (its liveness probe) serves
jobgate_queued_jobs, the series the workers' HPA scales on.

Stops what it started by process id. Exit 0 when all held, 1 otherwise.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import free_port, request, wait_until  # noqa: E402


def main():
    build, secrets_file, api_key = sys.argv[1:4]
    work = tempfile.mkdtemp(prefix="jobgate-k8s-pods-")
    procs = {}
    failed = []

    def spawn(name, argv, env):
        log = open(os.path.join(work, name + ".log"), "ab")
        procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, env=env)
        log.close()

    try:
        mock_port_file = os.path.join(work, "mock.port")
        spawn("mock", [os.path.join(build, "tests/mock/jobgate-mock-upstream"), "--listen", "127.0.0.1:0",
                       "--port-file", mock_port_file], dict(os.environ))
        mock_port = wait_until(lambda: os.path.exists(mock_port_file) and open(mock_port_file).read().strip(),
                               10, "the mock upstream")
        ports = {name: free_port() for name in ("frontend", "backend", "publisher", "metrics", "http")}
        endpoints = {"JOBGATE_BROKER_" + name.upper(): "tcp://127.0.0.1:%d" % ports[name]
                     for name in ("frontend", "backend", "publisher")}
        for role in ("broker", "gateway", "worker"):
            pod = os.path.join(work, role)
            os.makedirs(pod)
            subprocess.run(["node", os.path.join(HERE, "pod-files.mjs"), pod, os.path.join(ROOT, "deploy", "k8s"),
                            secrets_file, role], check=True)
            config_path = os.path.join(pod, "config.json")
            with open(config_path) as f:
                config = f.read()
            with open(config_path, "w") as f:
                f.write(config.replace("http://jobgate-mock:9000", "http://127.0.0.1:%s" % mock_port))
            # The container's environment as its manifest makes it, then the
            # addresses Kubernetes would have provided.
            with open(os.path.join(pod, "env.json")) as f:
                env = dict(os.environ, **json.load(f))
            env.update(endpoints)
            if role == "broker":
                env["JOBGATE_BROKER_DATA_DIR"] = os.path.join(work, "data")
                env["JOBGATE_BROKER_METRICS_LISTEN"] = "127.0.0.1:%d" % ports["metrics"]
            if role == "gateway":
                env["JOBGATE_GATEWAY_LISTEN"] = "127.0.0.1:%d" % ports["http"]
            spawn(role, [os.path.join(build, role, "jobgate-" + role), "--config", config_path], env)

        def ready():
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise AssertionError("%s exited %s" % (name, proc.returncode))
            try:
                return request(ports["http"], "GET", "/readyz", timeout=2).status == 200
            except OSError:
                return False
        wait_until(ready, 30, "the gateway's /readyz (readiness probe)")
        print("k8s-pods: ok   /readyz 200 with broker, gateway and worker on the pods' config and Secret files")

        spec = {"kind": "http", "provider": "mock", "request": {"path": "/json"}}
        auth = {"Authorization": "Bearer " + api_key}
        answer = request(ports["http"], "POST", "/v1/jobs", body=spec, headers=dict(auth, Prefer="wait=20"))
        if answer.status == 200 and answer.json().get("status") == "succeeded":
            print("k8s-pods: ok   a job with a key of the jobgate-api-keys Secret succeeded")
        else:
            failed.append("the job: %s %s" % (answer.status, answer.body[:300]))
        anonymous = request(ports["http"], "POST", "/v1/jobs", body=spec)
        if anonymous.status == 401:
            print("k8s-pods: ok   no key: 401")
        else:
            failed.append("no key: %s, not 401" % anonymous.status)
        metrics = request(ports["metrics"], "GET", "/metrics")
        if metrics.status == 200 and b"jobgate_queued_jobs" in metrics.body:
            print("k8s-pods: ok   the broker's /metrics (liveness probe) serves jobgate_queued_jobs (the workers' HPA)")
        else:
            failed.append("the broker's /metrics: %s, jobgate_queued_jobs %s" % (
                metrics.status, "present" if b"jobgate_queued_jobs" in metrics.body else "missing"))
    except (AssertionError, OSError, subprocess.CalledProcessError) as error:
        failed.append(str(error))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for name, proc in procs.items():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                failed.append("%s did not stop on SIGTERM" % name)
        if failed:
            for name in procs:
                with open(os.path.join(work, name + ".log"), errors="replace") as f:
                    print("---- %s log (last lines) ----\n%s" % (name, "".join(f.readlines()[-15:])))
        shutil.rmtree(work, ignore_errors=True)
    for failure in failed:
        print("k8s-pods: FAIL " + failure)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
