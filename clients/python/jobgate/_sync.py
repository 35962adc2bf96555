"""jobgate.Client — the blocking client (SPEC §9). What each method does
is written once in _flows.py; this runs those flows with blocking calls."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generator, TypeVar, cast, Dict, Iterator, List, Optional, Sequence, Union

import httpx

from . import _core, _flows
from ._errors import APIError
from ._models import Event, Job, JobList

T = TypeVar("T")


class Client:
    """A client of one jobgate gateway. Thread-safe (one pooled httpx
    client); use it as a context manager or call ``close()``.

    Every request the gateway could not take (429, 503, a connection that
    failed) is retried per ``retry`` (a RetryPolicy), honouring Retry-After;
    a submission carries an Idempotency-Key (made up when not given) so a
    retry never makes a second job."""

    def __init__(self, base_url: str = _core.DEFAULT_URL, api_key: Optional[str] = None, *,
                 timeout: float = 30.0, retry: Optional[_core.RetryPolicy] = None,
                 transport: Optional[httpx.BaseTransport] = None) -> None:
        self.retry_policy = retry or _core.RetryPolicy()
        self._timeout = httpx.Timeout(timeout)
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=_core.headers_for(api_key),
                                  timeout=self._timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- running a flow ---

    def _drive(self, flow: _flows.Flow[T]) -> Generator[Event, None, T]:
        """Runs flow: yields the events it emits, returns what it returns."""
        stream: Optional[httpx.Response] = None
        lines: Optional[Iterator[str]] = None
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
                        result = self._http.request(step.method, step.path, **step.kwargs)
                    elif isinstance(step, _flows.Sleep):
                        time.sleep(step.seconds)
                    elif isinstance(step, _flows.Open):
                        if stream is not None:
                            stream.close()
                        stream = None
                        request = self._http.build_request("GET", step.path, headers=step.headers,
                                                           timeout=step.timeout)
                        stream = result = self._http.send(request, stream=True)
                        if stream.status_code >= 400:
                            stream.read()
                        lines = stream.iter_lines()
                    elif isinstance(step, _flows.NextLine):
                        result = next(lines, None) if lines is not None else None
                except httpx.TransportError as exc:
                    step = flow.throw(exc)
                else:
                    step = flow.send(result)
        except StopIteration as stop:
            return cast(T, stop.value)
        finally:
            flow.close()
            if stream is not None:
                stream.close()

    def _run(self, flow: _flows.Flow[T]) -> T:
        events = self._drive(flow)
        while True:
            try:
                next(events)
            except StopIteration as stop:
                return cast(T, stop.value)

    def _request(self, method: str, path: str, resend_safe: bool, **kwargs: Any) -> httpx.Response:
        return self._run(_flows.send(self.retry_policy, self._timeout, method, path,
                                     resend_safe=resend_safe, **kwargs))

    # --- the API ---

    def submit(self, spec: Dict[str, Any], wait: Optional[float] = None,
               idempotency_key: Optional[str] = None) -> Job:
        """Submits one job. With ``wait`` (seconds), returns once it is
        finished or ``wait`` has passed (Prefer: wait, then long polls past
        the server's 60 s cap); else at once with the queued job."""
        return self._run(_flows.submit(self.retry_policy, self._timeout, spec, wait,
                                       idempotency_key))

    def get(self, job_id: str, wait: Optional[float] = None) -> Job:
        """The job; with ``wait`` (seconds), long-polls until it is finished
        or ``wait`` has passed."""
        return self._run(_flows.get(self.retry_policy, self._timeout, job_id, wait))

    def cancel(self, job_id: str) -> Job:
        """Cancels a job (409 APIError when it had already finished)."""
        return _core.job_of(self._request("DELETE", "/v1/jobs/" + job_id, resend_safe=False))

    def retry(self, job_id: str) -> Job:
        """Runs a failed or canceled job again."""
        return _core.job_of(self._request("POST", "/v1/jobs/%s/retry" % job_id, resend_safe=False))

    def list(self, status: Optional[str] = None, limit: Optional[int] = None,
             cursor: Optional[str] = None) -> JobList:
        """One page of the caller's jobs, newest first (``.next_cursor``)."""
        return _core.job_list_of(self._request("GET", "/v1/jobs", resend_safe=True,
                                               params=_core.list_params(status, limit, cursor)))

    def events(self, job_id: str, last_event_id: Optional[str] = None) -> Iterator[Event]:
        """The job's Server-Sent Events until its result; a dropped stream
        is reopened with Last-Event-ID, so no event is missed or repeated."""
        return self._drive(_flows.events(self.retry_policy, self._timeout, job_id, last_event_id))

    def map(self, specs: Sequence[Dict[str, Any]], wait: Optional[float] = 30,
            batch_size: int = _core.BATCH_MAX, concurrency: int = 16,
            return_exceptions: bool = False) -> List[Union[Job, APIError]]:
        """Submits every spec (POST /v1/batch, at most ``batch_size`` per
        batch) and, with ``wait``, waits for all of them (at most
        ``concurrency`` long polls at once) until ``wait`` seconds have
        passed. Returns the jobs in the order of ``specs``. A spec refused
        raises its APIError (``.index`` says which), or with
        ``return_exceptions`` takes its place in the list."""
        deadline = time.monotonic() + (wait or 0)
        jobs = self._run(_flows.submit_all(self.retry_policy, self._timeout, specs, batch_size,
                                           return_exceptions))
        if not wait:
            return jobs

        def finish(index: int, job: Job) -> None:
            jobs[index] = self._run(_flows.wait_until(self.retry_policy, self._timeout, job.id,
                                                      deadline, job))

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for future in [pool.submit(finish, i, job) for i, job in _core.unfinished(jobs)]:
                future.result()
        return jobs

    # --- operations ---

    def providers(self) -> List[Dict[str, Any]]:
        """The configured upstreams and their live state (GET /v1/providers)."""
        return _core.providers_of(self._request("GET", "/v1/providers", resend_safe=True))

    def metrics(self) -> str:
        """The gateway's Prometheus text (GET /metrics)."""
        return _core.text_of(self._request("GET", "/metrics", resend_safe=True))
