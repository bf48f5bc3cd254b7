"""Pure logic of the status callback: Twilio's delivery reports for sent messages.

Twilio POSTs a form (MessageSid, MessageStatus, ErrorCode, To, From, ...) to the
StatusCallback URL the send Lambda gave it. Only what tells delivery apart is kept:
never the numbers, never a body.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Message statuses that mean the SMS will not arrive.
FAILED_STATUSES = frozenset({"failed", "undelivered", "canceled"})


class BadCallback(ValueError):
    """The request is not a Twilio status callback (malformed form or missing fields)."""


@dataclass(frozen=True)
class DeliveryReport:
    """One status callback, without personal data."""

    message_sid: str
    status: str
    error_code: str | None

    @property
    def failed(self) -> bool:
        """True when the message will not be delivered."""
        return self.status in FAILED_STATUSES


def form_of(event: Mapping[str, Any]) -> dict[str, str]:
    """The POSTed form of an API Gateway proxy event (the body may be base64).

    Raises BadCallback when the body is not valid base64 (when flagged so), not UTF-8, or
    not a form.
    """
    body = event.get("body") or ""
    if not isinstance(body, str):
        raise BadCallback("the body is not text")
    if event.get("isBase64Encoded"):
        try:
            # validate: a character outside base64's alphabet is an error, not skipped.
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except binascii.Error as error:
            raise BadCallback("the body is not valid base64") from error
        except UnicodeDecodeError as error:
            raise BadCallback("the body is not UTF-8") from error
    try:
        pairs = urllib.parse.parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body))
    except ValueError as error:
        raise BadCallback("the body is not a form") from error
    return dict(pairs)


def signed_url(event: Mapping[str, Any]) -> str:
    """The URL Twilio called (and signed): https://{domain}{stage path}."""
    context = event.get("requestContext") or {}
    return f"https://{context.get('domainName', '')}{context.get('path', '')}"


def signature(event: Mapping[str, Any]) -> str:
    """X-Twilio-Signature, whatever the header's case."""
    headers = event.get("headers") or {}
    for name, value in headers.items():
        if name.lower() == "x-twilio-signature":
            return str(value)
    return ""


def report_of(form: Mapping[str, str]) -> DeliveryReport:
    """The delivery report of a callback form."""
    sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or not status:
        raise BadCallback("MessageSid and MessageStatus are required")
    return DeliveryReport(sid, status, form.get("ErrorCode") or None)
