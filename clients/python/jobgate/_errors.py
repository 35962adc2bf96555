"""The exceptions of the client."""
from __future__ import annotations

from typing import Any, Dict, List, Optional


class JobgateError(Exception):
    """Base class of every error this package raises."""


class APIError(JobgateError):
    """The gateway answered with an error: ``status`` is the HTTP status,
    ``problem`` the RFC 9457 problem details (``type``, ``title``,
    ``status``, ``detail``, ``errors``) as sent, or {} when the body was not
    one. ``index`` is the spec's position for an error of ``map()``."""

    def __init__(self, status: int, problem: Optional[Dict[str, Any]] = None,
                 index: Optional[int] = None, retry_after: Optional[float] = None) -> None:
        self.status = status
        self.problem: Dict[str, Any] = problem or {}
        self.index = index
        self.retry_after = retry_after
        super().__init__(self._message())

    @property
    def title(self) -> Optional[str]:
        return self.problem.get("title")

    @property
    def detail(self) -> Optional[str]:
        return self.problem.get("detail")

    @property
    def errors(self) -> List[Dict[str, Any]]:
        """The invalid fields, [{"field", "message"}], of a 400."""
        errors = self.problem.get("errors")
        return errors if isinstance(errors, list) else []

    def _message(self) -> str:
        text = "HTTP %d" % self.status
        if self.title:
            text += " " + str(self.title)
        if self.detail:
            text += ": " + str(self.detail)
        for error in self.errors:
            if isinstance(error, dict):
                text += "; %s %s" % (error.get("field"), error.get("message"))
        if self.index is not None:
            text += " (spec %d)" % self.index
        return text


class AmbiguousSubmitError(JobgateError):
    """A batch was sent but its answer was lost (the connection broke after
    the request went out): its jobs may or may not have been recorded, and
    the batch endpoint takes no idempotency key, so it is not sent again
    (that could make duplicates). ``specs`` are the specs concerned."""

    def __init__(self, specs: List[Dict[str, Any]], cause: BaseException) -> None:
        self.specs = specs
        super().__init__("the answer to a batch of %d jobs was lost (%s); not resent, as that "
                         "could duplicate jobs" % (len(specs), cause))


class WebhookVerificationError(JobgateError):
    """A webhook delivery failed verification (Standard Webhooks)."""
