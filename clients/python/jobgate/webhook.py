"""verify_webhook — checks a webhook delivery per Standard Webhooks
(https://www.standardwebhooks.com: the signature is the HMAC-SHA256, keyed
with the secret's bytes, of "<webhook-id>.<webhook-timestamp>.<body>",
sent as "v1,<base64>" among space-separated signatures)."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from typing import Any, Mapping, Optional, Union

from ._errors import WebhookVerificationError

SECRET_PREFIX = "whsec_"
#: How far a delivery's timestamp may be from now, in seconds (the scheme's
#: default: older deliveries are replays).
DEFAULT_TOLERANCE = 300


def _key(secret: Union[str, bytes]) -> bytes:
    if isinstance(secret, bytes):
        return secret
    text = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookVerificationError("the secret is not base64 (whsec_...)") from None


def _header(headers: Any, name: str) -> str:
    # Mappings of any case (dict, httpx/Starlette headers, a WSGI environ-like dict).
    value = None
    if hasattr(headers, "get"):
        value = headers.get(name)
    if value is None and hasattr(headers, "items"):
        for key, item in headers.items():
            if str(key).lower() == name:
                value = item
                break
    if value is None:
        raise WebhookVerificationError("missing header " + name)
    return value.decode() if isinstance(value, bytes) else str(value)


def sign(secret: Union[str, bytes], msg_id: str, timestamp: int, body: bytes) -> str:
    """The "v1,<base64>" signature of a delivery."""
    signed = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(_key(secret), signed, hashlib.sha256).digest()).decode()


def verify_webhook(secret: Union[str, bytes], body: Union[bytes, str], headers: Mapping[str, Any],
                   tolerance: Optional[float] = DEFAULT_TOLERANCE, now: Optional[float] = None) -> Any:
    """Verifies a delivery (the raw body as received, and its headers) and
    returns its decoded JSON payload: the Standard Webhooks envelope
    ``{"type": "job.succeeded" | "job.failed" | "job.canceled", "timestamp":
    <the finish, RFC 3339>, "data": <the job object>}``. Raises
    WebhookVerificationError when a header is missing, the timestamp is
    more than ``tolerance`` seconds from ``now`` (None: not checked), or no
    signature matches."""
    if isinstance(body, str):
        body = body.encode()
    msg_id = _header(headers, "webhook-id")
    stamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number") from None
    if tolerance is not None:
        current = time.time() if now is None else now
        if abs(current - timestamp) > tolerance:
            raise WebhookVerificationError("webhook-timestamp is too far from now")
    expected = sign(secret, msg_id, timestamp, body).encode()
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected):
            break
    else:
        raise WebhookVerificationError("no matching signature")
    try:
        return json.loads(body)
    except ValueError:
        raise WebhookVerificationError("the body is not JSON") from None
