"""The client's procedures written once, without I/O ("sans-I/O"): each is
a generator that yields what it needs done and is sent (or thrown) the
outcome. Client runs them with blocking calls, AsyncClient with awaits, so
the two behave the same by construction. The steps a flow yields:

  Call(method, path, kwargs)   one HTTP request; sent the httpx.Response, or
                               thrown the httpx.TransportError
  Sleep(seconds)               a pause; sent None
  Open(path, headers, timeout) opens an event stream (closing the one open
                               before); sent the response: status, headers,
                               and the body read only when it is an error
  NextLine()                   the next line of the open stream, None at its
                               end; the transport error is thrown
  Emit(event)                  hands an event to the caller of events()

A flow's return value (StopIteration.value) is its result.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Generator, List, Optional, Sequence, TypeVar, Union, cast

import httpx

from . import _core
from ._errors import AmbiguousSubmitError, APIError
from ._models import Event, Job, SSEParser


@dataclass
class Call:
    method: str
    path: str
    kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Sleep:
    seconds: float


@dataclass
class Open:
    path: str
    headers: Dict[str, str]
    timeout: httpx.Timeout


class NextLine:
    pass


@dataclass
class Emit:
    event: Event


Step = Union[Call, Sleep, Open, NextLine, Emit]
T = TypeVar("T")
#: A flow that returns a T.
Flow = Generator[Step, Any, T]


def send(policy: _core.RetryPolicy, timeout: httpx.Timeout, method: str, path: str, *,
         resend_safe: bool, wait: float = 0.0, **kwargs: Any) -> Flow[httpx.Response]:
    """One request, retried per policy (429/503 honouring Retry-After,
    transport errors when resending is safe: _core.retryable_exception)."""
    if wait:
        kwargs["timeout"] = _core.read_timeout(timeout, wait)
    attempt = 0
    while True:
        try:
            response = yield Call(method, path, kwargs)
        except httpx.TransportError as exc:
            if attempt >= policy.retries or not _core.retryable_exception(exc, resend_safe):
                raise
            delay = policy.delay(attempt)
        else:
            if response.status_code not in _core.RETRY_STATUSES or attempt >= policy.retries:
                return cast(httpx.Response, response)
            delay = policy.delay(attempt, _core.parse_retry_after(response.headers.get("Retry-After")))
        attempt += 1
        yield Sleep(delay)


def submit(policy: _core.RetryPolicy, timeout: httpx.Timeout, spec: Dict[str, Any],
           wait: Optional[float], idempotency_key: Optional[str]) -> Flow[Job]:
    """POST /v1/jobs with an Idempotency-Key (made up when not given, the
    same for every resend) and Prefer: wait; then long polls until the job
    is finished or ``wait`` has passed."""
    deadline = time.monotonic() + wait if wait else None
    headers = {"Idempotency-Key": idempotency_key or _core.new_idempotency_key()}
    if wait:
        headers["Prefer"] = _core.prefer_wait(wait)
    response = yield from send(policy, timeout, "POST", "/v1/jobs", json=spec, headers=headers,
                               resend_safe=True, wait=min(wait or 0, _core.SERVER_MAX_WAIT))
    job = _core.job_of(response)
    if deadline is not None and not job.done:
        job = yield from wait_until(policy, timeout, job.id, deadline, job)
    return job


def get(policy: _core.RetryPolicy, timeout: httpx.Timeout, job_id: str,
        wait: Optional[float]) -> Flow[Job]:
    if wait:
        return (yield from wait_until(policy, timeout, job_id, time.monotonic() + wait))
    return _core.job_of((yield from send(policy, timeout, "GET", "/v1/jobs/" + job_id,
                                         resend_safe=True)))


def wait_until(policy: _core.RetryPolicy, timeout: httpx.Timeout, job_id: str, deadline: float,
               job: Optional[Job] = None) -> Flow[Job]:
    """Long-polls (?wait ≤ the server's cap) until the job is finished or
    the deadline; a gateway briefly unavailable (503, a broker restarting,
    a dropped connection) is waited for until the deadline."""
    while True:
        left = deadline - time.monotonic()
        if job is not None and (job.done or left <= 0):
            return job
        # Whole seconds, at least 1: a last fraction of a second is waited
        # for on the server, not by polling again and again.
        seconds = max(1, min(_core.SERVER_MAX_WAIT, math.ceil(left)))
        try:
            response = yield from send(policy, timeout, "GET", "/v1/jobs/" + job_id,
                                       resend_safe=True, params={"wait": seconds}, wait=seconds)
            job = _core.job_of(response)
        except (APIError, httpx.TransportError) as exc:
            transient = isinstance(exc, httpx.TransportError) or exc.status in _core.RETRY_STATUSES
            if not transient or time.monotonic() >= deadline:
                raise
            yield Sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def events(policy: _core.RetryPolicy, timeout: httpx.Timeout, job_id: str,
           last_event_id: Optional[str]) -> Flow[None]:
    """The job's Server-Sent Events until its result; a dropped stream is
    reopened with Last-Event-ID (the server then sends only what is new),
    a quiet one (read timeout) too; other failures at most policy.retries
    times in a row."""
    parser = SSEParser()
    parser.last_event_id = last_event_id
    failures = 0
    while True:
        headers = {"Accept": "text/event-stream"}
        if parser.last_event_id:
            headers["Last-Event-ID"] = parser.last_event_id
        try:
            response = yield Open("/v1/jobs/%s/events" % job_id, headers,
                                  _core.read_timeout(timeout, 0))
            if response.status_code >= 400:
                if response.status_code not in _core.RETRY_STATUSES or failures >= policy.retries:
                    _core.check(response)
                failures += 1
                yield Sleep(policy.delay(failures, _core.parse_retry_after(
                    response.headers.get("Retry-After"))))
                continue
            while True:
                line = yield NextLine()
                if line is None:
                    break                # ended before the result: resume
                event = parser.feed(line)
                if event is not None:
                    failures = 0
                    yield Emit(event)
                    if event.event == "result":
                        return None
        except httpx.ReadTimeout:
            continue                     # a quiet job: reopen, nothing is lost
        except httpx.TransportError:
            if failures >= policy.retries:
                raise
            failures += 1
            yield Sleep(policy.delay(failures))


def submit_all(policy: _core.RetryPolicy, timeout: httpx.Timeout, specs: Sequence[Dict[str, Any]],
               batch_size: int, return_exceptions: bool) -> Flow[List[Union[Job, APIError]]]:
    """POST /v1/batch in runs of at most batch_size; the jobs answered 429
    or 503 (never recorded: gateway/batch.h) are sent again, at most
    policy.retries more rounds. A batch whose answer was lost is not resent
    (AmbiguousSubmitError): the endpoint takes no idempotency key."""
    results: Dict[int, Union[Job, APIError]] = {}
    todo = list(range(len(specs)))
    round_ = 0
    while todo:
        again: List[int] = []
        for positions in _core.batches(todo, batch_size):
            body = {"jobs": [specs[i] for i in positions]}
            try:
                response = yield from send(policy, timeout, "POST", "/v1/batch", json=body,
                                           resend_safe=False)
            except httpx.TransportError as exc:
                if _core.retryable_exception(exc, resend_safe=False):
                    raise
                raise AmbiguousSubmitError(body["jobs"], exc) from exc
            accepted, refused, retry = _core.read_batch_answer(_core.check(response), positions)
            if refused and not return_exceptions:
                raise refused[min(refused)]
            results.update(accepted)
            results.update(refused)
            again.extend(retry)
        todo = again
        if todo:
            if round_ >= policy.retries:
                raise APIError(503, {"title": "Service Unavailable", "detail":
                                     "%d jobs were not accepted after %d tries" % (
                                         len(todo), round_ + 1)}, index=todo[0])
            yield Sleep(policy.delay(round_))
            round_ += 1
    return [results[i] for i in range(len(specs))]

