"""Duplicate upstream calls after a broker outage longer than 5 s (issue 15):
a worker keeps every RESULT until the broker acknowledges it (ACK, after
the commit) and sends the unacknowledged ones again after it reconnects
(docs/protocol.md §3.2.3), so a call that finished while the broker was
down is not made again when the broker gives up waiting for it."""
import time

from harness import Stack, wait_until


def test_calls_finished_during_a_long_broker_outage_are_not_made_again():
    with Stack(workers=1) as stack:
        stack.mock_reset()
        count = 20
        ids = [stack.submit({"kind": "http", "provider": "mock",
                             "request": {"path": "/json?latency_ms=1500"}}).json()["id"]
               for _ in range(count)]
        wait_until(lambda: stack.mock_stats()["in_flight"] == count, 20,
                   "every call running at the worker")
        stack.stop("broker", sig=9)
        # The calls finish while the broker is down; their RESULTs have no
        # broker to go to.
        wait_until(lambda: stack.mock_stats()["served"] == count, 20, "the calls to finish")
        # Longer than the restarted broker's wait for its running jobs' workers
        # (5 s) and the worker's broker liveness (3 s): the worker recreates
        # its socket meanwhile, and what that socket held is gone.
        time.sleep(6)
        stack.start_broker()
        # Each job finished by its first attempt: none was dispatched again
        # (a finished job never is), and the upstream saw each call once.
        for job_id in ids:
            job = stack.wait_terminal(job_id)
            assert job["status"] == "succeeded" and job["attempts"] == 1, job
        assert stack.mock_stats()["served"] == count, stack.mock_stats()
        assert "RESULT" in stack.log("worker0") and "resent" in stack.log("worker0")
