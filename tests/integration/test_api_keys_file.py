"""gateway.api_keys_file (issue 15, Kubernetes): API keys kept in a file apart
from the config — a Secret mounted into the gateway's pod — are added to the
config's; the broker and workers never read it; a gateway whose file is
missing or wrong stops at start with one line and never serves open; its
check (--check-config) and a reload (SIGHUP, a rotated Secret) read the file
too, where the build has them."""
import hashlib
import json
import os
import signal
import subprocess

from harness import BUILD, Stack, request, wait_until


def _keys_file(stack, entries):
    path = os.path.join(stack.dir, "api_keys.json")
    with open(path, "w") as f:
        json.dump(entries, f)
    os.chmod(path, 0o600)
    return path


def test_keys_from_the_file_and_the_config_both_work():
    with Stack(workers=1, start=False) as stack:
        path = _keys_file(stack, [
            {"key_sha256": hashlib.sha256(b"from-the-secret").hexdigest(), "tenant": "b"},
            {"key": "operator-key", "tenant": "ops", "operator": True},
        ])
        stack.config["gateway"]["api_keys"] = [{"key": "from-the-config", "tenant": "a"}]
        stack.config["gateway"]["api_keys_file"] = path
        stack.write_config()
        # Only the gateway reads the file: the broker and the worker start
        # with it gone (a Secret mounted in the gateway's pods only).
        stack.start_gateway()
        os.unlink(path)
        stack.start_broker()
        stack.start_worker()
        stack.wait_ready()
        spec = {"kind": "http", "provider": "mock", "request": {"path": "/json"}}
        ids = {}
        for key, tenant in (("from-the-config", "a"), ("from-the-secret", "b")):
            job = stack.submit(spec, headers={"Authorization": "Bearer " + key})
            ids[tenant] = job.json()["id"]
        # Each key is its own tenant: b cannot see a's job.
        seen = stack.get_path("/v1/jobs/" + ids["a"], headers={"Authorization": "Bearer from-the-secret"})
        assert seen.status == 404, seen.status
        for key in ("wrong", "from-the-secre"):
            refused = request(stack.gateway_port, "POST", "/v1/jobs", body=spec,
                              headers={"Authorization": "Bearer " + key})
            assert refused.status == 401, (key, refused.status)
        assert stack.get_path("/v1/jobs", headers={}).status == 401
        as_b = {"Authorization": "Bearer from-the-secret"}
        wait_until(lambda: stack.get_path("/v1/jobs/%s?wait=5" % ids["b"], headers=as_b).json()["status"]
                   == "succeeded", 30, "b's job to succeed")


def test_a_gateway_with_a_bad_keys_file_does_not_start():
    with Stack(workers=0, start=False) as stack:
        cases = [
            (None, "config: gateway.api_keys_file: cannot read "),
            ("[{\"key\": \"secret-k\", \"tenant\": \"a\"", "config: gateway.api_keys_file: "),
            ("{\"key\": \"secret-k\", \"tenant\": \"a\"}", "config: gateway.api_keys_file must be an array"),
            ("[{\"key\": \"secret-k\"}]", "config: gateway.api_keys_file[0] needs \"tenant\""),
        ]
        path = os.path.join(stack.dir, "api_keys.json")
        stack.config["gateway"]["api_keys_file"] = path
        stack.write_config()
        for content, expected in cases:
            if content is not None:
                with open(path, "w") as f:
                    f.write(content)
            result = subprocess.run([os.path.join(BUILD, "gateway/jobgate-gateway"),
                                     "--config", stack.config_path],
                                    capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 1, (content, result.returncode, result.stderr)
            assert len(lines) == 1 and expected in lines[0], (content, result.stderr)
            assert "secret-k" not in result.stderr


def test_check_config_reads_the_keys_file():
    """The Kubernetes gateway listens on every interface with its keys only
    in the file: its check (start, --check-config, reload) must count them,
    or it refuses open mode off loopback. Nothing is bound by a check."""
    with Stack(workers=0, start=False) as stack:
        path = _keys_file(stack, [{"key_sha256": hashlib.sha256(b"k").hexdigest(), "tenant": "a"}])
        stack.config["gateway"].update({"listen": "0.0.0.0:8080", "api_keys_file": path})
        stack.write_config()
        argv = [os.path.join(BUILD, "gateway/jobgate-gateway"), "--config", stack.config_path, "--check-config"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout + result.stderr
        os.unlink(path)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        assert result.returncode == 1 and "gateway.api_keys_file: cannot read" in result.stdout + result.stderr, \
            result.stdout + result.stderr


def test_reload_reads_the_keys_file_again():
    """A rotated Secret (Kubernetes updates the mounted file in place) and
    SIGHUP: the new key works, the removed one does not, and no key is still
    refused — the reload must not drop the file's keys into open mode."""
    with Stack(workers=1, start=False) as stack:
        path = _keys_file(stack, [{"key": "old-key", "tenant": "a"}])
        stack.config["gateway"]["api_keys_file"] = path
        stack.start_all(workers=1)
        spec = {"kind": "http", "provider": "mock", "request": {"path": "/json"}}

        def status(key):
            headers = {"Authorization": "Bearer " + key} if key else {}
            return request(stack.gateway_port, "POST", "/v1/jobs", body=spec, headers=headers).status
        assert (status("old-key"), status("new-key"), status(None)) == (202, 401, 401)
        _keys_file(stack, [{"key": "new-key", "tenant": "a"}])
        stack.procs["gateway"].send_signal(signal.SIGHUP)
        wait_until(lambda: status("new-key") == 202, 10, "the new key after SIGHUP")
        assert (status("old-key"), status(None)) == (401, 401)
        assert stack.procs["gateway"].poll() is None
