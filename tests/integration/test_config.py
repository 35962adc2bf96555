"""The configuration table (issue 11): every binary prints the same
reference, docs/config.md holds exactly it, and a misspelt key or
environment override stops every binary with one line naming the fix."""
import json
import os
import subprocess
import tempfile

from harness import BUILD, ROOT

BINARIES = ["broker/jobgate-broker", "gateway/jobgate-gateway", "worker/jobgate-worker"]
BEGIN = "<!-- generated: jobgate-broker --config-reference; do not edit by hand -->"
END = "<!-- end of generated reference -->"


def _run(binary, args, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([os.path.join(BUILD, binary)] + args, capture_output=True, text=True,
                          timeout=20, env=env, stdin=subprocess.DEVNULL)


def test_docs_hold_the_reference_of_the_table():
    with open(os.path.join(ROOT, "docs", "config.md")) as f:
        doc = f.read()
    generated = doc.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    for binary in BINARIES:
        result = _run(binary, ["--config-reference"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == generated, \
            "docs/config.md is out of date: run scripts/config-reference.sh"


def test_misspelt_keys_stop_every_binary_with_a_suggestion():
    cases = [
        ({"security": {"allow_privte_networks": True}}, None,
         "unknown key security.allow_privte_networks (did you mean security.allow_private_networks?)"),
        ({"gatway": {"listen": "127.0.0.1:1"}}, None, "unknown key gatway (did you mean gateway?)"),
        ({}, {"JOBGATE_BROKER_DATADIR": "/tmp"},
         "environment variable JOBGATE_BROKER_DATADIR names no key "
         "(did you mean JOBGATE_BROKER_DATA_DIR?)"),
    ]
    with tempfile.TemporaryDirectory(prefix="jobgate-test-") as tmp:
        path = os.path.join(tmp, "config.json")
        for config, env, message in cases:
            with open(path, "w") as f:
                json.dump(config, f)
            for binary in BINARIES:
                result = _run(binary, ["--config", path], env)
                assert result.returncode == 1, (binary, result.returncode, result.stderr)
                lines = result.stderr.strip().splitlines()
                assert len(lines) == 1 and message in lines[0], (binary, result.stderr)
