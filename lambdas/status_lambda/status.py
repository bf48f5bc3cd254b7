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


def form_of(body: str | None, *, base64_encoded: bool) -> dict[str, str]:
    """The POSTed form of a proxy event's body (base64 when flagged so).

    Raises BadCallback when the body is not valid base64 (when flagged so), not UTF-8, or
    not a form. Strict where API Gateway's event class is lenient: it skips characters
    outside base64's alphabet, which would verify a different body than the one sent.
    """
    text = body or ""
    if base64_encoded:
        try:
            # validate: a character outside base64's alphabet is an error, not skipped.
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except binascii.Error as error:
            raise BadCallback("the body is not valid base64") from error
        except UnicodeDecodeError as error:
            raise BadCallback("the body is not UTF-8") from error
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError as error:
        raise BadCallback("the body is not a form") from error
    return dict(pairs)


def signed_url(domain: str, path: str) -> str:
    """The URL Twilio called (and signed): https://{domain}{stage path}."""
    return f"https://{domain}{path}"


def report_of(form: Mapping[str, str]) -> DeliveryReport:
    """The delivery report of a callback form."""
    sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or not status:
        raise BadCallback("MessageSid and MessageStatus are required")
    return DeliveryReport(sid, status, form.get("ErrorCode") or None)
