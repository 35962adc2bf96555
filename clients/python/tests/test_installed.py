"""The package as a user gets it: `pip install ./clients/python` offline in a
fresh venv (--system-site-packages, --no-index), then the README's snippet,
the `jobgate` command through its entry point, and the FastAPI example
under uvicorn — each against a running stack."""
import atexit
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from clientstack import CLIENT_DIR, ROOT, gateway_url, harness, jobgate
from test_client_stack import WEBHOOK_SECRET, _stack

_venv = {}


def venv():
    """A fresh venv with the package installed (made once per run)."""
    if "dir" not in _venv:
        work = tempfile.mkdtemp(prefix="jobgate-venv-")
        atexit.register(shutil.rmtree, work, True)
        source = os.path.join(work, "src")
        shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns("tests", "__pycache__"))
        env_dir = os.path.join(work, "venv")
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", env_dir],
                       check=True)
        pip = subprocess.run([os.path.join(env_dir, "bin", "pip"), "install", "--no-index",
                              "--no-cache-dir", "--disable-pip-version-check", source],
                             capture_output=True, text=True)
        assert pip.returncode == 0, pip.stdout + pip.stderr
        _venv["dir"] = env_dir
    return _venv["dir"]


def _run(argv, url, **kwargs):
    env = dict(os.environ, JOBGATE_URL=url)
    env.pop("JOBGATE_API_KEY", None)
    env.pop("PYTHONPATH", None)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, **kwargs)


def readme_snippet():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    section = text[text.index("## Python client"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_pip_install_offline_then_the_readme_snippet():
    env_dir = venv()
    python = os.path.join(env_dir, "bin", "python")
    where = subprocess.run([python, "-c", "import jobgate, os; print(os.path.dirname(jobgate.__file__))"],
                           capture_output=True, text=True, cwd="/", check=True).stdout.strip()
    assert where.startswith(env_dir), where                  # the installed copy, not the tree
    assert os.path.exists(os.path.join(where, "py.typed"))
    with _stack() as stack:
        url = gateway_url(stack)
        code = readme_snippet().replace("http://127.0.0.1:8080", url)
        assert url in code
        result = _run([python, "-c", code], url, cwd="/")
        assert result.returncode == 0, result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith("succeeded {'ok': True"), lines
        assert lines[1] == "100 of 100 succeeded", lines


def test_the_jobgate_command():
    bin_dir = os.path.join(venv(), "bin")
    command = os.path.join(bin_dir, "jobgate")
    with _stack() as stack:
        url = gateway_url(stack)
        done = _run([command, "submit", '{"kind":"http","provider":"mock","request":{"path":"/json"}}',
                     "--wait", "10"], url)
        assert done.returncode == 0, done.stderr
        job = json.loads(done.stdout)
        assert job["status"] == "succeeded" and job["result"]["body"]["ok"] is True
        got = _run([os.path.join(bin_dir, "python"), "-m", "jobgate", "get", job["id"]], url)
        assert got.returncode == 0 and json.loads(got.stdout)["id"] == job["id"], got.stderr
        slow = json.loads(_run([command, "submit", "-"], url, input=json.dumps(
            {"kind": "http", "provider": "mock", "request": {"path": "/json?latency_ms=30000"}})).stdout)
        assert slow["status"] == "queued"
        canceled = _run([command, "cancel", slow["id"]], url)
        assert json.loads(canceled.stdout)["status"] == "canceled", canceled.stderr
        again = _run([command, "cancel", slow["id"]], url)
        assert again.returncode == 1 and "409" in again.stderr and '"status": 409' in again.stderr
        listing = _run([command, "ls", "--status", "canceled"], url)
        assert listing.returncode == 0 and slow["id"] in listing.stdout and job["id"] not in listing.stdout
        llm = json.loads(_run([command, "submit", json.dumps({
            "kind": "llm", "provider": "llm", "request": {
                "model": "m", "stream": True, "messages": [{"role": "user", "content": "one two three"}]}})],
            url).stdout)
        # Tokens as they come (5, a pause of 1.5 s, 5 more), or the answer of
        # a job that finished before the stream opened.
        live = json.loads(_run([command, "submit", json.dumps({
            "kind": "llm", "provider": "fast", "request": {
                "model": "fast-5-3-1500-5", "stream": True,
                "messages": [{"role": "user", "content": "go"}]}})], url).stdout)
        events = _run([command, "events", live["id"]], url)
        assert events.returncode == 0 and events.stdout == "xxx" * 10 + "\n", events
        assert "[running]" in events.stderr and "[succeeded]" in events.stderr
        assert _run([command, "get", llm["id"], "--wait", "10"], url).returncode == 0
        events = _run([command, "events", llm["id"]], url)
        assert events.returncode == 0 and events.stdout == "Echo: one two three\n", events
        raw = _run([command, "events", "--raw", live["id"]], url)
        assert [json.loads(line)["event"] for line in raw.stdout.splitlines()] == ["status", "result"]
        top = _run([command, "top", "--once"], url)
        assert top.returncode == 0, top.stderr
        rows = {line.split()[0]: line.split() for line in top.stdout.splitlines()[4:]}
        assert set(rows) == {"mock", "llm", "fast"}, top.stdout
        assert "workers 1" in top.stdout and "broker up 1" in top.stdout
        bad = _run([command, "submit", '{"kind":"nope"}'], url)
        assert bad.returncode == 1 and "kind" in bad.stderr and "400" in bad.stderr
        broken = _run([command, "submit", "{not json"], url)
        assert broken.returncode != 0 and "not JSON" in broken.stderr
        usage = _run([command, "frobnicate"], url)
        assert usage.returncode == 2
        gone = _run([command, "get", job["id"]], "http://127.0.0.1:%d" % harness.free_port())
        assert gone.returncode == 1 and "ConnectError" in gone.stderr


def test_the_fastapi_example_under_uvicorn():
    python = os.path.join(venv(), "bin", "python")
    with _stack() as stack:
        port = harness.free_port()
        app_url = "http://127.0.0.1:%d" % port
        env = dict(os.environ, JOBGATE_URL=gateway_url(stack), JOBGATE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                   JOBGATE_CALLBACK_URL=app_url + "/hooks/jobgate")
        log = open(os.path.join(stack.dir, "example.log"), "wb")
        app = subprocess.Popen([python, "-m", "uvicorn", "--app-dir",
                                os.path.join(ROOT, "examples", "fastapi"), "app:app",
                                "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=log, stderr=subprocess.STDOUT, cwd="/")
        log.close()
        try:
            def up():
                try:
                    return harness.request(port, "GET", "/hooks/jobgate", timeout=2).status == 200
                except OSError:
                    return False
            harness.wait_until(up, 30, "the example app")
            accepted = harness.request(port, "POST", "/search/?query=cats")
            assert accepted.status == 202, accepted.body
            job_id = accepted.json()["id"]
            answered = harness.request(port, "GET", "/search/?query=dogs")
            assert answered.status == 200 and answered.json()["ok"] is True, answered.body
            with jobgate.Client(gateway_url(stack)) as client:
                assert client.get(job_id, wait=10).status == "succeeded"
                ids = {job.id for job in client.list(limit=10)}
            assert len(ids) == 2 and job_id in ids
            # Both jobs' webhooks reached the app and passed verification.
            finished = harness.wait_until(
                lambda: len(harness.request(port, "GET", "/hooks/jobgate").json()["finished"]) == 2
                and harness.request(port, "GET", "/hooks/jobgate").json()["finished"], 20,
                "the webhook deliveries")
            assert {f["id"] for f in finished} == ids and all(f["status"] == "succeeded" for f in finished)
            forged = harness.request(port, "POST", "/hooks/jobgate", body={"id": "x"}, headers={
                "webhook-id": "msg_1", "webhook-timestamp": str(int(time.time())),
                "webhook-signature": "v1,AAAA"})
            assert forged.status == 400
        finally:
            app.terminate()
            app.wait(20)
            if app.returncode not in (0, -15):
                print(open(os.path.join(stack.dir, "example.log")).read())
