"""Pure logic of the status callback: Twilio's delivery reports for sent messages.

Twilio POSTs a form (MessageSid, MessageStatus, ErrorCode, To, From, ...) to the
StatusCallback URL the send Lambda gave it. Only what tells delivery apart is kept:
never the numbers, never a body.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Message statuses that mean the SMS will not arrive.
FAILED_STATUSES = frozenset({"failed", "undelivered", "canceled"})

# Bounds checked before the secret is read or any HMAC computed, the same as the message
# webhook's (lambdas/receive/webhook.py): an unsigned request costs no more than a parse.
MAX_BODY_BYTES = 64 * 1024
"""A status callback is under 2 KB; 64 KiB is the webhook's limit, with room to spare."""
MAX_FIELDS = 200
MAX_QUERY_PARAMETERS = 4
"""The callback URL the send Lambda gives Twilio has no query string: anything more is
not Twilio."""
SIGNATURE = re.compile(r"[A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=")
"""Base64 of a 20-byte HMAC-SHA1 digest: 28 characters, the last one `=`."""
SECONDARY_TOKEN_KEY = "secondary_auth_token"  # noqa: S105 (a key name, not a secret)
"""Optional key of the secret: the token Twilio is rotating to (or from); both verify."""


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
    query = event.get("multiValueQueryStringParameters") or {}
    if not isinstance(query, dict) or sum(map(len, query.values())) > MAX_QUERY_PARAMETERS:
        raise BadCallback(f"more than {MAX_QUERY_PARAMETERS} query parameters")
    # base64 of n bytes has 4 * ceil(n / 3) characters; text has at least 1 byte a character.
    limit = 4 * -(-MAX_BODY_BYTES // 3) if event.get("isBase64Encoded") else MAX_BODY_BYTES
    if len(body) > limit:
        raise BadCallback(f"the body is larger than {MAX_BODY_BYTES} bytes")
    if event.get("isBase64Encoded"):
        try:
            # validate: a character outside base64's alphabet is an error, not skipped.
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except binascii.Error as error:
            raise BadCallback("the body is not valid base64") from error
        except UnicodeDecodeError as error:
            raise BadCallback("the body is not UTF-8") from error
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        raise BadCallback(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        pairs = urllib.parse.parse_qsl(
            body, keep_blank_values=True, strict_parsing=bool(body), max_num_fields=MAX_FIELDS
        )
    except ValueError as error:  # also more than MAX_FIELDS fields
        raise BadCallback("the body is not a form of at most 200 fields") from error
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


def signature_is_well_formed(value: str) -> bool:
    """True if `value` can be an X-Twilio-Signature (checked before any HMAC)."""
    return SIGNATURE.fullmatch(value) is not None


def auth_tokens(secret: object) -> tuple[str, ...]:
    """The tokens that verify a callback: `auth_token` and, during a rotation,
    `secondary_auth_token` (empty values skipped)."""
    if not isinstance(secret, Mapping):
        return ()
    tokens = (secret.get("auth_token"), secret.get(SECONDARY_TOKEN_KEY))
    return tuple(dict.fromkeys(t for t in tokens if isinstance(t, str) and t))


def report_of(form: Mapping[str, str]) -> DeliveryReport:
    """The delivery report of a callback form."""
    sid, status = form.get("MessageSid", ""), form.get("MessageStatus", "")
    if not sid or not status:
        raise BadCallback("MessageSid and MessageStatus are required")
    return DeliveryReport(sid, status, form.get("ErrorCode") or None)
