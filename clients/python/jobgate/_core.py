"""What the sync and the async client share: no I/O here, only the rules —
when to retry and how long to wait, how a submission is headed, how an
answer becomes a Job or an APIError, how a batch answer is read."""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import httpx

from ._errors import APIError
from ._models import Job, JobList

#: The longest wait the gateway holds one request for (SPEC §3: ?wait ≤ 60).
SERVER_MAX_WAIT = 60
#: Jobs in one POST /v1/batch at most (SPEC §3).
BATCH_MAX = 1000
#: Seconds added to a request's read timeout beyond the wait it asks for.
WAIT_SLACK = 15.0
DEFAULT_URL = "http://127.0.0.1:8080"


@dataclass
class RetryPolicy:
    """How the client retries a request the gateway could not take (429,
    503, connection errors): at most ``retries`` more times, waiting what
    Retry-After says (at most ``max_retry_after`` s) or else an exponential
    backoff with full jitter (``backoff`` · 2^n, at most ``max_backoff``)."""

    retries: int = 5
    backoff: float = 0.25
    max_backoff: float = 8.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, retry_after: Optional[float] = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return random.uniform(0, min(self.max_backoff, self.backoff * (2 ** attempt)))


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Retry-After in seconds (the delta-seconds form the gateway sends);
    None when absent or not a number."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


RETRY_STATUSES = frozenset((429, 503))


def retryable_exception(exc: BaseException, resend_safe: bool) -> bool:
    """Whether a transport error may be retried: always when the request
    never left (connect errors); after it left only when sending it again
    cannot do twice what it did (GET, or a submission with an idempotency
    key)."""
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
        return True
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.ProxyError)):
        return False
    return resend_safe and isinstance(exc, httpx.TransportError)


def new_idempotency_key() -> str:
    return "jobgate-py-" + uuid.uuid4().hex


def prefer_wait(seconds: float) -> str:
    return "wait=%d" % max(1, min(SERVER_MAX_WAIT, int(seconds)))


def read_timeout(base: httpx.Timeout, wait: float) -> httpx.Timeout:
    """The client's timeout, with room for a request the server holds
    ``wait`` seconds."""
    read = base.read if base.read is not None else 0.0
    return httpx.Timeout(connect=base.connect, read=max(read, wait + WAIT_SLACK),
                         write=base.write, pool=base.pool)


def problem_of(response: httpx.Response) -> Dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"status": response.status_code, "detail": response.text[:500]}
    if isinstance(body, dict):
        # The OpenAI door's errors are {"error": {...}}; the rest problem+json.
        return body
    return {"status": response.status_code}


def check(response: httpx.Response) -> Any:
    """The decoded body of a success; APIError for any 4xx/5xx."""
    if response.status_code >= 400:
        raise APIError(response.status_code, problem_of(response),
                       retry_after=parse_retry_after(response.headers.get("Retry-After")))
    return response.json()


def job_of(response: httpx.Response) -> Job:
    return Job.from_json(check(response))


def job_list_of(response: httpx.Response) -> JobList:
    body = check(response)
    page = JobList(Job.from_json(item) for item in body.get("jobs", []))
    page.next_cursor = body.get("next_cursor")
    return page


def list_params(status: Optional[str], limit: Optional[int], cursor: Optional[str]) -> Dict[str, Any]:
    params: Dict[str, Any] = {}
    if status is not None:
        params["status"] = status
    if limit is not None:
        params["limit"] = limit
    if cursor is not None:
        params["cursor"] = cursor
    return params


def batches(indexes: Sequence[int], size: int) -> Iterator[List[int]]:
    """The positions of the specs still to submit, in runs of ``size``."""
    size = max(1, min(BATCH_MAX, size))
    for start in range(0, len(indexes), size):
        yield list(indexes[start:start + size])


def read_batch_answer(body: Any, positions: List[int]) -> Tuple[Dict[int, Job], Dict[int, APIError],
                                                                 List[int]]:
    """Sorts a POST /v1/batch answer: the jobs accepted (by position in the
    caller's list), the specs refused for good, and the positions to submit
    again — those answered 429 or 503, which the gateway guarantees were not
    recorded (gateway/batch.h), so resending them duplicates nothing."""
    answers = body.get("jobs") if isinstance(body, dict) else None
    if not isinstance(answers, list) or len(answers) != len(positions):
        raise APIError(502, {"title": "Bad Gateway",
                             "detail": "the batch answer does not hold one entry per job"})
    accepted: Dict[int, Job] = {}
    refused: Dict[int, APIError] = {}
    again: List[int] = []
    for position, answer in zip(positions, answers):
        if isinstance(answer, dict) and "id" in answer:
            accepted[position] = Job.from_json(answer)
            continue
        problem = answer.get("error") if isinstance(answer, dict) else None
        problem = problem if isinstance(problem, dict) else {}
        status = problem.get("status")
        status = status if isinstance(status, int) else 500
        if status in RETRY_STATUSES:
            again.append(position)
        else:
            refused[position] = APIError(status, problem, index=position)
    return accepted, refused, again


def headers_for(api_key: Optional[str]) -> Dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": "jobgate-python/0.1"}
    if api_key:
        headers["Authorization"] = "Bearer " + api_key
    return headers


def unfinished(jobs: Sequence[Any]) -> List[Tuple[int, Job]]:
    """The jobs of a map() still to wait for, with their positions."""
    return [(i, job) for i, job in enumerate(jobs) if isinstance(job, Job) and not job.done]


def providers_of(response: httpx.Response) -> List[Dict[str, Any]]:
    return list(check(response).get("providers", []))


def text_of(response: httpx.Response) -> str:
    if response.status_code >= 400:
        check(response)
    return response.text
