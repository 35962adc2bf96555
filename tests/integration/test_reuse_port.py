"""gateway.reuse_port: several gateway processes serve one port."""
import os
import subprocess

from harness import BUILD, Stack, request, wait_until


def _accepted(stack, name):
    """Jobs a gateway accepted, from its debug log (one line per job)."""
    return sum(1 for line in stack.log(name).splitlines() if line.endswith(" accepted"))


def test_two_gateways_share_the_port_and_each_serves():
    extra = {"gateway": {"reuse_port": True}, "log_level": "debug"}
    with Stack(workers=1, config_extra=extra) as stack:
        stack._spawn("gateway2", [os.path.join(BUILD, "gateway/jobgate-gateway"),
                                  "--config", stack.config_path])
        wait_until(lambda: "gateway serving" in stack.log("gateway2"), 10, "the second gateway")
        spec = {"kind": "http", "request": {"url": stack.mock_url("/json")}}
        # each request is a new connection: the kernel picks a gateway for each
        ids = [stack.submit(spec).json()["id"] for _ in range(60)]
        for job_id in ids:
            assert stack.wait_terminal(job_id)["status"] == "succeeded"
        first, second = _accepted(stack, "gateway"), _accepted(stack, "gateway2")
        assert first + second == 60 and first > 0 and second > 0, (first, second)
        # One gateway leaves; the port goes on being served by the other.
        assert stack.stop("gateway") == 0
        resp = request(stack.gateway_port, "POST", "/v1/jobs", spec,
                       headers={"Prefer": "wait=20"})
        assert resp.status == 200 and resp.json()["status"] == "succeeded", resp.body
        assert _accepted(stack, "gateway2") == second + 1


def test_without_reuse_port_a_second_gateway_is_refused_clearly():
    with Stack(workers=0) as stack:
        result = subprocess.run([os.path.join(BUILD, "gateway/jobgate-gateway"),
                                 "--config", stack.config_path],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        assert result.returncode != 0
        text = result.stdout.decode(errors="replace")
        assert "cannot listen on 127.0.0.1:%d" % stack.gateway_port in text, text
        assert "Address already in use" in text, text
