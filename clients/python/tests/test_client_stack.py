"""The client against a running stack (broker, gateway, worker, mock
upstream on loopback): every method, sync and async; SSE resumption
after a dropped connection; map() across a broker restart; webhook
deliveries verified."""
import asyncio
import json
import signal
import socket
import threading
import time

import httpx

from clientstack import gateway_url, harness, jobgate, quick_retry


def _stack(**extra):
    """A stack with the mock as an LLM provider too, and a webhook secret."""
    config = {"webhooks": {"secret": WEBHOOK_SECRET}}
    config.update(extra)
    stack = harness.Stack(start=False, config_extra=config)
    stack.config["providers"]["llm"] = {"base_url": stack.mock_url("/v1")}
    stack.config["providers"]["fast"] = {"base_url": stack.mock_url("/fast")}
    stack.start_all(1)
    return stack


WEBHOOK_SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


def _echo(n, latency_ms=0):
    return {"kind": "http", "provider": "mock",
            "request": {"path": "/echo", "query": {"n": str(n), "latency_ms": str(latency_ms)}}}


def _chat(words):
    return {"kind": "llm", "provider": "llm", "request": {
        "model": "m", "stream": True, "messages": [{"role": "user", "content": " ".join(words)}]}}


def test_sync_client_every_method():
    with _stack() as stack, jobgate.Client(gateway_url(stack), retry=quick_retry()) as client:
        job = client.submit(_echo(1), wait=10)
        assert job.status == "succeeded" and job.done, job
        assert job.result["body"]["query"]["n"] == "1"
        queued = client.submit(_echo(2, 300))
        assert queued.status == "queued" and not queued.done and queued.result is None
        finished = client.get(queued.id, wait=20)
        assert finished.done and finished.id == queued.id and finished.attempts == 1
        assert client.get(queued.id).status == "succeeded"
        # One idempotency key, one job.
        first = client.submit(_echo(3), idempotency_key="order-3")
        again = client.submit(_echo(3), idempotency_key="order-3")
        assert first.id == again.id
        # Errors carry the problem details.
        try:
            client.submit({"kind": "nope"})
        except jobgate.APIError as exc:
            assert exc.status == 400 and {e["field"] for e in exc.errors} >= {"kind", "request"}
        else:
            raise AssertionError("an invalid spec was accepted")
        try:
            client.get("00000000-0000-4000-8000-000000000000")
        except jobgate.APIError as exc:
            assert exc.status == 404 and exc.problem["status"] == 404
        else:
            raise AssertionError("an unknown job was found")
        # Cancel, cancel again (409), retry, list.
        slow = client.submit(_echo(4, 30000))
        canceled = client.cancel(slow.id)
        assert canceled.status == "canceled" and canceled.error["type"] == "canceled"
        try:
            client.cancel(slow.id)
        except jobgate.APIError as exc:
            assert exc.status == 409
        else:
            raise AssertionError("a finished job was canceled twice")
        assert [j.id for j in client.list(status="canceled")] == [slow.id]
        rerun = client.retry(slow.id)
        assert rerun.id == slow.id and rerun.status in ("queued", "running")
        assert client.cancel(slow.id).status == "canceled"
        page = client.list(limit=2)
        assert len(page) == 2 and page.next_cursor
        rest = client.list(cursor=page.next_cursor, limit=100)
        listed = [j.id for j in page] + [j.id for j in rest]
        assert sorted(listed) == sorted({first.id, job.id, queued.id, slow.id}), listed
        # Events of a streamed LLM job: its tokens, then the result.
        words = ["w%d" % i for i in range(8)]
        llm = client.submit(_chat(words))
        events = list(client.events(llm.id))
        assert "".join(e.text for e in events if e.text) == "Echo: " + " ".join(words)
        assert events[-1].event == "result" and events[-1].data["status"] == "succeeded"
        # map: in order, batched, all waited for.
        jobs = client.map([_echo(100 + i, 50 * (i % 3)) for i in range(25)], wait=30, batch_size=10)
        assert [j.result["body"]["query"]["n"] for j in jobs] == [str(100 + i) for i in range(25)]
        assert all(j.status == "succeeded" for j in jobs)
        names = {p["name"] for p in client.providers()}
        assert names == {"mock", "llm", "fast"}, names
        assert "jobgate_jobs_accepted_total" in client.metrics()


def test_async_client_every_method():
    async def run(url):
        async with jobgate.AsyncClient(url, retry=quick_retry()) as client:
            job = await client.submit(_echo(1), wait=10)
            assert job.status == "succeeded" and job.result["body"]["query"]["n"] == "1"
            queued = await client.submit(_echo(2, 300), idempotency_key="a-2")
            assert (await client.submit(_echo(2, 300), idempotency_key="a-2")).id == queued.id
            assert (await client.get(queued.id, wait=20)).status == "succeeded"
            slow = await client.submit(_echo(3, 30000))
            assert (await client.cancel(slow.id)).status == "canceled"
            try:
                await client.cancel(slow.id)
            except jobgate.APIError as exc:
                assert exc.status == 409
            else:
                raise AssertionError("a finished job was canceled twice")
            assert (await client.retry(slow.id)).id == slow.id
            await client.cancel(slow.id)
            assert [j.id for j in await client.list(status="canceled")] == [slow.id]
            words = ["a%d" % i for i in range(6)]
            llm = await client.submit(_chat(words))
            events = [e async for e in client.events(llm.id)]
            assert "".join(e.text for e in events if e.text) == "Echo: " + " ".join(words)
            assert events[-1].event == "result"
            jobs = await client.map([_echo(200 + i) for i in range(12)], wait=30, batch_size=5,
                                    concurrency=4)
            assert [j.result["body"]["query"]["n"] for j in jobs] == [str(200 + i) for i in range(12)]
            assert {p["name"] for p in await client.providers()} == {"mock", "llm", "fast"}
            assert "jobgate_parked_requests" in await client.metrics()
    with _stack() as stack:
        asyncio.run(run(gateway_url(stack)))


class CuttingProxy:
    """A TCP proxy on 127.0.0.1 to the gateway that cuts its first
    connection once ``cut_after`` bytes of the answer went through, and
    records each request's head (to see Last-Event-ID)."""

    def __init__(self, port, cut_after):
        self.target = port
        self.cut_after = cut_after
        self.heads = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            limit = self.cut_after if not self.heads else None
            self.heads.append(b"")
            index = len(self.heads) - 1
            threading.Thread(target=self._pipe, args=(client, upstream, index, None),
                             daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, None, limit),
                             daemon=True).start()

    def _pipe(self, source, sink, head_index, limit):
        sent = 0
        try:
            while True:
                data = source.recv(4096)
                if not data:
                    break
                if head_index is not None:
                    self.heads[head_index] += data
                if limit is not None and sent + len(data) >= limit:
                    sink.sendall(data[:limit - sent])
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self):
        self.closed = True
        self.listener.close()


def test_events_resume_after_a_dropped_connection():
    # 60 tokens, 1.5 s of quiet, 60 more: the proxy cuts the first stream
    # mid-way; the client reopens it with Last-Event-ID and gets every
    # token exactly once, in order — sync and async.
    with _stack() as stack:
        for mode in ("sync", "async"):
            spec = {"kind": "llm", "provider": "fast", "timeout_ms": 60000, "request": {
                "model": "fast-60-8-1500-60", "stream": True,
                "messages": [{"role": "user", "content": "go"}]}}
            proxy = CuttingProxy(stack.gateway_port, cut_after=3000)
            try:
                url = "http://127.0.0.1:%d" % proxy.port
                if mode == "sync":
                    with jobgate.Client(url, retry=quick_retry()) as client:
                        job_id = client.submit(spec).id
                        events = list(client.events(job_id))
                else:
                    async def run():
                        async with jobgate.AsyncClient(url, retry=quick_retry()) as client:
                            job_id = (await client.submit(spec)).id
                            return job_id, [e async for e in client.events(job_id)]
                    job_id, events = asyncio.run(run())
            finally:
                proxy.close()
            streams = [h for h in proxy.heads if b"/events" in h]
            assert len(streams) >= 2, (mode, proxy.heads)
            assert b"last-event-id" not in streams[0].lower()
            assert b"last-event-id: " in streams[1].lower(), streams[1]
            chunks = [e.data["index"] for e in events if e.event == "chunk"]
            assert chunks == list(range(120)), (mode, chunks)
            assert events[-1].event == "result" and events[-1].data["id"] == job_id
            assert len([e for e in events if e.event == "result"]) == 1


class PausingTransport(httpx.HTTPTransport):
    """The client's transport, which holds the batch after ``pause_after``
    batches until ``resume`` is set (so the broker restarts while map() is
    still submitting), and counts the jobs the gateway did not accept."""

    def __init__(self, pause_after):
        super().__init__()
        self.pause_after = pause_after
        self.batches = 0
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.not_accepted = 0

    def handle_request(self, request):
        if request.url.path == "/v1/batch":
            self.batches += 1
            if self.batches == self.pause_after + 1:
                self.paused.set()
                assert self.resume.wait(60)
        response = super().handle_request(request)
        if request.url.path == "/v1/batch":
            response.read()
            if response.status_code == 202:
                self.not_accepted += sum(1 for j in response.json()["jobs"] if "error" in j)
            else:
                self.not_accepted += len(json.loads(request.content)["jobs"])
        return response


def test_map_across_a_broker_restart_loses_and_duplicates_nothing():
    count = 240
    transport = PausingTransport(pause_after=4)
    with _stack() as stack, jobgate.Client(gateway_url(stack), retry=quick_retry(),
                                           transport=transport) as client:
        outcome = {}

        def run_map():
            try:
                outcome["jobs"] = client.map([_echo(i, 400) for i in range(count)], wait=90,
                                             batch_size=20, concurrency=8)
            except Exception as exc:   # reported by the assertion below
                outcome["error"] = exc
        thread = threading.Thread(target=run_map)
        thread.start()
        # After 4 batches of 20, the broker goes down; the 5th batch is sent
        # while it is down, and the broker comes back 4.5 s later (past the
        # gateway's submit_timeout_ms of 3 s: that batch's jobs are answered
        # 503, not accepted, and map() must send them again).
        assert transport.paused.wait(30), "map() did not submit 4 batches"
        stack.stop("broker", signal.SIGTERM)
        transport.resume.set()
        time.sleep(4.5)
        stack.start_broker()
        thread.join(120)
        assert not thread.is_alive(), "map() did not return"
        assert "error" not in outcome, outcome.get("error")
        assert transport.not_accepted >= 1, "the restart did not reach map()"
        jobs = outcome["jobs"]
        assert [j.result["body"]["query"]["n"] for j in jobs] == [str(i) for i in range(count)]
        assert all(j.status == "succeeded" for j in jobs)
        # Exactly the jobs map() returned exist: none lost, none twice.
        listed, cursor = [], None
        while True:
            page = client.list(limit=100, cursor=cursor)
            listed += [j.id for j in page]
            cursor = page.next_cursor
            if not cursor:
                break
        assert len(listed) == count and set(listed) == {j.id for j in jobs}, (len(listed), count)


def test_webhook_deliveries_of_a_running_stack_verify():
    with _stack() as stack, jobgate.Client(gateway_url(stack), retry=quick_retry()) as client:
        job = client.submit({"kind": "http", "provider": "mock", "request": {"path": "/json"},
                             "callback": {"url": stack.mock_url("/hook?capture=py")},
                             "metadata": {"order": 9}}, wait=10)
        assert job.status == "succeeded"
        deliveries = harness.wait_until(
            lambda: harness.request(stack.mock_port, "GET", "/captured?key=py").json(), 20,
            "the webhook delivery")
        delivery = deliveries[0]
        event = jobgate.verify_webhook(WEBHOOK_SECRET, delivery["body"].encode(), delivery["headers"])
        assert event["type"] == "job.succeeded" and event["timestamp"] == event["data"]["finished_at"]
        assert event["data"]["id"] == job.id and event["data"]["metadata"] == {"order": 9}
        # The job shows its delivery: the id the receiver saw, delivered.
        delivered = harness.wait_until(
            lambda: (lambda j: j if j.webhook["state"] == "delivered" else None)(client.get(job.id)),
            10, "the delivery state")
        assert delivered.webhook["id"] == delivery["headers"]["webhook-id"], delivered.webhook
        try:
            jobgate.verify_webhook("whsec_" + "QUJD" * 8, delivery["body"].encode(), delivery["headers"])
        except jobgate.WebhookVerificationError:
            pass
        else:
            raise AssertionError("verified with another secret")
