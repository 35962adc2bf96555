"""The values the API returns, as typed dataclasses (SPEC §3)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

#: The statuses after which a job never changes again (until a retry).
TERMINAL = frozenset(("succeeded", "failed", "canceled"))


@dataclass
class Job:
    """A job object (SPEC §3). Fields the server did not send are None; the
    whole object as sent is in ``raw``."""

    id: str
    status: str
    kind: Optional[str] = None
    provider: Optional[str] = None
    attempts: Optional[int] = None
    created_at: Optional[str] = None
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    metadata: Any = None
    result: Optional[Dict[str, Any]] = None
    error: Optional[Dict[str, Any]] = None
    usage: Optional[Dict[str, Any]] = None
    cache: Optional[str] = None
    #: How the delivery of its callback goes (state, attempts, last_status,
    #: last_error, next_attempt_at, …), when it has a callback.
    webhook: Optional[Dict[str, Any]] = None
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        """True once the job is succeeded, failed or canceled."""
        return self.status in TERMINAL

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "Job":
        return cls(id=data["id"], status=data["status"], kind=data.get("kind"),
                   provider=data.get("provider"), attempts=data.get("attempts"),
                   created_at=data.get("created_at"), started_at=data.get("started_at"),
                   finished_at=data.get("finished_at"), metadata=data.get("metadata"),
                   result=data.get("result"), error=data.get("error"), usage=data.get("usage"),
                   cache=data.get("cache"), webhook=data.get("webhook"), raw=data)


class JobList(List[Job]):
    """One page of ``list()``: the jobs, newest first, and ``next_cursor``
    (None on the last page) to pass as ``cursor=`` for the next one."""

    next_cursor: Optional[str] = None


@dataclass
class Event:
    """One Server-Sent Event of a job: ``event`` is "status", "chunk" or
    "result"; ``data`` the decoded JSON (the text when it is not JSON);
    ``id`` what a resumption sends as Last-Event-ID."""

    event: str
    data: Any
    id: Optional[str] = None

    @property
    def text(self) -> Optional[str]:
        """The text a chunk carries (an LLM token), else None."""
        if self.event == "chunk" and isinstance(self.data, dict):
            piece = self.data.get("data")
            return piece if isinstance(piece, str) else None
        return None


class SSEParser:
    """Reads an event stream line by line (the WHATWG rules a client needs:
    id, event, multi-line data, comments); ``feed`` returns an Event when a
    blank line ends one."""

    def __init__(self) -> None:
        self.last_event_id: Optional[str] = None
        self._event = ""
        self._data: List[str] = []
        self._id: Optional[str] = None

    def feed(self, line: str) -> Optional[Event]:
        line = line.rstrip("\r\n")
        if line == "":
            if not self._data and not self._event:
                return None
            text = "\n".join(self._data)
            try:
                data: Any = json.loads(text)
            except ValueError:
                data = text
            event = Event(self._event or "message", data, self._id)
            if self._id is not None:
                self.last_event_id = self._id
            self._event, self._data, self._id = "", [], None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None
