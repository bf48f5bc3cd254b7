"""The event the VTL request template (stacks/templates/receive_request.vtl) hands the
Lambda, decoded: every client-controlled value arrives base64-encoded, and is decoded byte
for byte; the checks that bound what authenticating costs come before any parsing."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from receive_lambda.errors import BadRequest
from receive_lambda.form import FormParams, parse_form

MAX_BODY_BYTES = 64 * 1024
"""Largest form body accepted, checked before anything is parsed or signed.

Twilio's incoming-message webhook is a few KB: a 1,600-character Body is at most ~19 KB
even when every character is a percent-encoded 4-byte UTF-8 sequence (12 bytes each), and
10 media URLs plus every optional field add ~3 KB. 64 KiB leaves 3x headroom, while a
forged multi-MB body, hashed once per candidate URL, could outlast the Lambda's timeout."""
MAX_QUERY_PARAMETERS = 4
"""Query parameters on the webhook URL: every order is tried (4! = 24 orders), so more
would multiply the HMACs a forged request costs (5! = 120, 6! = 720...): beyond, 400."""
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?")


@dataclass(frozen=True)
class WebhookRequest:
    """What the request template sent, decoded."""

    form: FormParams
    signature: str
    domain: str
    path: str
    query: tuple[tuple[str, str], ...]
    api_request_id: str


def _b64(event: Mapping[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"event field {key} is missing")
    return _b64_text(value, key)


def _b64_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"event field {what} is not a string")
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as error:
        raise BadRequest(f"event field {what} is not base64 of UTF-8 text") from error


def _body(event: Mapping[str, Any]) -> str:
    """The form body, its size checked before it is decoded or parsed."""
    value = event.get("body")
    if not isinstance(value, str):
        raise BadRequest("event field body is missing")
    # base64 of n bytes has 4 * ceil(n / 3) characters: a longer value is too large.
    too_large = BadRequest(f"the form body is larger than {MAX_BODY_BYTES} bytes")
    if len(value) > 4 * -(-MAX_BODY_BYTES // 3):
        raise too_large
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error as error:
        raise BadRequest("event field body is not base64") from error
    if len(raw) > MAX_BODY_BYTES:
        raise too_large
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise BadRequest("event field body is not base64 of UTF-8 text") from error


def parse_event(event: object) -> WebhookRequest:
    """Decodes the request template's event; anything else is a BadRequest.

    The checks that bound what authenticating costs come first and compute nothing: at most
    `MAX_QUERY_PARAMETERS` query parameters, a signature that is empty (answered 403 by
    `authenticate`) or well-formed, a body of at most `MAX_BODY_BYTES`.
    """
    if not isinstance(event, Mapping):
        raise BadRequest("the event is not an object")
    domain = _b64(event, "domain")
    path = _b64(event, "path")
    if not _HOST.fullmatch(domain) or not path.startswith("/"):
        raise BadRequest("the event does not name the URL that was called")
    raw_query = event.get("query", [])
    if not isinstance(raw_query, list):
        raise BadRequest("event field query is not a list")
    if len(raw_query) > MAX_QUERY_PARAMETERS:
        raise BadRequest(
            f"the webhook URL has {len(raw_query)} query parameters; "
            f"at most {MAX_QUERY_PARAMETERS} are supported"
        )
    signature = _b64(event, "signature")
    query = []
    for item in raw_query:
        if not isinstance(item, Mapping):
            raise BadRequest("event field query holds a non-object")
        query.append((_b64_text(item.get("name"), "query"), _b64_text(item.get("value"), "query")))
    return WebhookRequest(
        form=parse_form(_body(event)),
        signature=signature,
        domain=domain,
        path=path,
        query=tuple(query),
        api_request_id=_b64(event, "request_id") if "request_id" in event else "",
    )
