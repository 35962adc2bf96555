"""jobgate.AsyncClient — the same client as Client, awaitable (SPEC §9):
it runs the flows of _flows.py with awaits."""
from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar, cast, AsyncIterator, Dict, List, Optional, Sequence, Union

import httpx

from . import _core, _flows
from ._errors import APIError
from ._models import Event, Job, JobList

T = TypeVar("T")


class AsyncClient:
    """The asyncio client of one jobgate gateway: ``async with
    jobgate.AsyncClient(url) as client: job = await client.submit(spec)``.
    Retries and idempotency as in Client; every method as in Client."""

    def __init__(self, base_url: str = _core.DEFAULT_URL, api_key: Optional[str] = None, *,
                 timeout: float = 30.0, retry: Optional[_core.RetryPolicy] = None,
                 transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        self.retry_policy = retry or _core.RetryPolicy()
        self._timeout = httpx.Timeout(timeout)
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"),
                                       headers=_core.headers_for(api_key),
                                       timeout=self._timeout, transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def _drive(self, flow: _flows.Flow[T], returned: List[T]) -> AsyncIterator[Event]:
        """Runs flow: yields the events it emits; what it returns is
        appended to ``returned`` (an async generator returns nothing)."""
        stream: Optional[httpx.Response] = None
        lines: Optional[AsyncIterator[str]] = None
        try:
            step = next(flow)
            while True:
                if isinstance(step, _flows.Emit):
                    yield step.event
                    step = flow.send(None)
                    continue
                try:
                    result: Any = None
                    if isinstance(step, _flows.Call):
                        result = await self._http.request(step.method, step.path, **step.kwargs)
                    elif isinstance(step, _flows.Sleep):
                        await asyncio.sleep(step.seconds)
                    elif isinstance(step, _flows.Open):
                        if stream is not None:
                            await stream.aclose()
                        stream = None
                        request = self._http.build_request("GET", step.path, headers=step.headers,
                                                           timeout=step.timeout)
                        stream = result = await self._http.send(request, stream=True)
                        if stream.status_code >= 400:
                            await stream.aread()
                        lines = stream.aiter_lines()
                    elif isinstance(step, _flows.NextLine):
                        result = await lines.__anext__() if lines is not None else None
                except StopAsyncIteration:
                    step = flow.send(None)
                except httpx.TransportError as exc:
                    step = flow.throw(exc)
                else:
                    step = flow.send(result)
        except StopIteration as stop:
            returned.append(cast(T, stop.value))
        finally:
            flow.close()
            if stream is not None:
                await stream.aclose()

    async def _run(self, flow: _flows.Flow[T]) -> T:
        returned: List[T] = []
        async for _ in self._drive(flow, returned):
            pass
        return returned[0]

    async def _request(self, method: str, path: str, resend_safe: bool,
                       **kwargs: Any) -> httpx.Response:
        return await self._run(_flows.send(self.retry_policy, self._timeout, method, path,
                                           resend_safe=resend_safe, **kwargs))

    async def submit(self, spec: Dict[str, Any], wait: Optional[float] = None,
                     idempotency_key: Optional[str] = None) -> Job:
        return await self._run(_flows.submit(self.retry_policy, self._timeout, spec, wait,
                                             idempotency_key))

    async def get(self, job_id: str, wait: Optional[float] = None) -> Job:
        return await self._run(_flows.get(self.retry_policy, self._timeout, job_id, wait))

    async def cancel(self, job_id: str) -> Job:
        return _core.job_of(await self._request("DELETE", "/v1/jobs/" + job_id, resend_safe=False))

    async def retry(self, job_id: str) -> Job:
        return _core.job_of(await self._request("POST", "/v1/jobs/%s/retry" % job_id,
                                                resend_safe=False))

    async def list(self, status: Optional[str] = None, limit: Optional[int] = None,
                   cursor: Optional[str] = None) -> JobList:
        return _core.job_list_of(await self._request(
            "GET", "/v1/jobs", resend_safe=True, params=_core.list_params(status, limit, cursor)))

    def events(self, job_id: str, last_event_id: Optional[str] = None) -> AsyncIterator[Event]:
        returned: List[None] = []
        return self._drive(_flows.events(self.retry_policy, self._timeout, job_id, last_event_id),
                           returned)

    async def map(self, specs: Sequence[Dict[str, Any]], wait: Optional[float] = 30,
                  batch_size: int = _core.BATCH_MAX, concurrency: int = 16,
                  return_exceptions: bool = False) -> List[Union[Job, APIError]]:
        deadline = time.monotonic() + (wait or 0)
        jobs = await self._run(_flows.submit_all(self.retry_policy, self._timeout, specs,
                                                 batch_size, return_exceptions))
        if not wait:
            return jobs
        gate = asyncio.Semaphore(max(1, concurrency))

        async def finish(index: int, job: Job) -> None:
            async with gate:
                jobs[index] = await self._run(_flows.wait_until(
                    self.retry_policy, self._timeout, job.id, deadline, job))

        await asyncio.gather(*(finish(i, job) for i, job in _core.unfinished(jobs)))
        return jobs

    async def providers(self) -> List[Dict[str, Any]]:
        return _core.providers_of(await self._request("GET", "/v1/providers", resend_safe=True))

    async def metrics(self) -> str:
        return _core.text_of(await self._request("GET", "/metrics", resend_safe=True))
