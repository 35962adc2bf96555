"""clientstack — what the client's tests share: the client imported from
this tree (clients/python), the harness of tests/integration (the real
processes on loopback), and a fake clock for tests that must not sleep."""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIR = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(CLIENT_DIR))
sys.path.insert(0, CLIENT_DIR)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import harness  # noqa: E402  (after the path is set)
import jobgate  # noqa: E402


def gateway_url(stack):
    return "http://127.0.0.1:%d" % stack.gateway_port


def quick_retry():
    """A retry policy for tests against a stack: the same rules, short
    backoffs, Retry-After honoured up to 2 s."""
    return jobgate.RetryPolicy(retries=8, backoff=0.05, max_backoff=0.5, max_retry_after=2.0)


class FakeTime:
    """Stands in for the time module of jobgate._sync / _async: sleeps
    advance a clock instead of passing, and are recorded."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def time(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    async def asleep(self, seconds):
        self.sleep(seconds)


class fake_clock:
    """with fake_clock() as clock: the flows and both clients use clock."""

    def __enter__(self):
        from jobgate import _async, _flows, _sync
        self.clock = FakeTime()
        self.saved = (_sync.time, _async.time, _flows.time, _async.asyncio)
        _sync.time = self.clock
        _async.time = self.clock
        _flows.time = self.clock

        class FakeAsyncio:
            sleep = staticmethod(self.clock.asleep)

            def __getattr__(self, name):
                import asyncio
                return getattr(asyncio, name)
        _async.asyncio = FakeAsyncio()
        return self.clock

    def __exit__(self, *exc):
        from jobgate import _async, _flows, _sync
        _sync.time, _async.time, _flows.time, _async.asyncio = self.saved
