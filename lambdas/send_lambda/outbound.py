"""Pure logic of the send Lambda: validate a device's outbound message, classify failures,
recognise a message an earlier, ambiguous attempt already got Twilio to send.

No I/O here (no AWS, no Twilio calls), so every rule is unit-tested without mocks. The
message's fields and limits are the contract's (`contract.OUTBOUND_FIELDS`, which the topic
rule selects), plus `thing`, which the rule adds from the topic, so the sender number is
the one bound to the publishing device, never one the device names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

import contract
from send_lambda.config import SendConfig

# How far before our first attempt Twilio's clock may date the message that attempt created.
# Lambda's and Twilio's clocks are NTP-synchronised (well under 1 s apart) and Twilio's dates
# are truncated to the second; a minute covers both, and stays short because a wider window
# could mistake an identical earlier text (same recipient, same body) for ours.
RECONCILE_CLOCK_SKEW = timedelta(seconds=60)
# What Twilio puts before every body sent from a trial account.
TRIAL_PREFIX = "Sent from your Twilio trial account - "


class Reason(StrEnum):
    """Why a message was rejected before reaching Twilio: one specific log line each."""

    NOT_AN_OBJECT = "not-an-object"
    UNKNOWN_THING = "unknown-thing"
    WRONG_TYPE = "wrong-type"
    INVALID_ID = "invalid-id"
    INVALID_TO = "invalid-to"
    FROM_NOT_ALLOWED = "from-not-allowed"
    INVALID_BODY = "invalid-body"
    BODY_TOO_LONG = "body-too-long"
    EMPTY_MESSAGE = "empty-message"
    INVALID_MEDIA_URL = "invalid-media-url"
    TOO_MANY_MEDIA = "too-many-media"
    MEDIA_ALIAS_CONFLICT = "media-alias-conflict"
    ID_REUSED = "id-reused"


class Rejected(ValueError):
    """The message breaks the contract or the environment's rules: never sent, never retried."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Failure(StrEnum):
    """How a failed Twilio call is handled."""

    TRANSIENT = "transient"
    """5xx, 429, timeout, connection error: raise, so Lambda retries the invocation."""
    PERMANENT = "permanent"
    """Any other 4xx (21211 invalid number...): dead-letter now, never retry."""


class NumberLookup(Protocol):
    """Thing -> the number bound to it, or None (`lambda_shared.bindings.NumbersByThing`, or
    a dict in tests)."""

    def get(self, thing: str, /) -> str | None:
        """The number bound to `thing`."""
        ...


@dataclass(frozen=True, kw_only=True)
class OutboundMessage:
    """A validated message, ready for Twilio's Messages API."""

    thing: str
    id: str
    from_: str
    to: str
    body: str
    media_urls: tuple[str, ...] = field(default=())

    @property
    def idempotency_key(self) -> str:
        """Unique per device and message (contract.message_key)."""
        return contract.message_key(self.thing, self.id)

    @property
    def attempt_marker_id(self) -> str:
        """Key of the "attempted" marker in the idempotency table (contract.attempt_marker_id)."""
        return contract.attempt_marker_id(self.idempotency_key)

    def as_record(self) -> dict[str, Any]:
        """The fields that define this message (what a retried delivery must repeat)."""
        return {
            "key": self.idempotency_key,
            "from": self.from_,
            "to": self.to,
            "body": self.body,
            "media": list(self.media_urls),
        }


@dataclass(frozen=True, kw_only=True)
class ListedMessage:
    """One message of Twilio's Messages list: only what reconciliation compares."""

    sid: str
    to: str
    from_: str
    body: str
    num_media: int | None
    """None when Twilio's answer has no usable count (then it is not compared)."""
    date_created: datetime | None
    status: str


def find_earlier_send(
    candidates: Iterable[ListedMessage],
    *,
    to: str,
    from_: str,
    body: str,
    media_count: int,
    first_attempt: datetime,
    skew: timedelta = RECONCILE_CLOCK_SKEW,
) -> ListedMessage | None:
    """The message an earlier attempt got Twilio to accept, or None if Twilio lists none.

    A candidate matches when it goes from `from_` to `to`, has our body (trial accounts
    prefix it) and, when Twilio gives it, our media count, and was created no earlier than
    `skew` before our first attempt. Of several matches (the device texted the same words
    twice), the one created closest to our first attempt is ours.
    """
    first = first_attempt.astimezone(UTC).replace(microsecond=0)  # Twilio's resolution
    matches = [
        c
        for c in candidates
        if c.to == to
        and c.from_ == from_
        and c.body in (body, TRIAL_PREFIX + body)
        and (c.num_media is None or c.num_media == media_count)
        and c.date_created is not None
        and c.date_created >= first - skew
    ]
    return min(
        matches,
        key=lambda c: abs((c.date_created or first) - first),
        default=None,
    )


def _media_urls(event: Mapping[str, Any]) -> tuple[str, ...]:
    media = event.get("MediaUrl")
    alias = event.get("Image")  # the classic tutorial's name for it
    if media is not None and alias is not None and media != alias:
        raise Rejected(Reason.MEDIA_ALIAS_CONFLICT, "MediaUrl and Image differ; send one")
    value = media if media is not None else alias
    if value is None or value == "" or value == []:
        return ()
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise Rejected(Reason.INVALID_MEDIA_URL, "MediaUrl must be a URL or a list of URLs")
    if len(urls) > contract.MAX_MEDIA:
        raise Rejected(Reason.TOO_MANY_MEDIA, f"{len(urls)} media, at most {contract.MAX_MEDIA}")
    for url in urls:
        if not is_https_url(url):
            raise Rejected(Reason.INVALID_MEDIA_URL, "every MediaUrl must be an https:// URL")
    return tuple(urls)


def is_https_url(url: str) -> bool:
    """True for an absolute https URL with a host and no whitespace or control characters."""
    if len(url) > contract.MAX_URL_LENGTH or any(c.isspace() or ord(c) < 0x20 for c in url):
        return False
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and port_ok


def parse_message(
    event: Any, config: SendConfig, numbers_by_thing: NumberLookup
) -> OutboundMessage:
    """Validates the topic rule's event; raises Rejected with a specific reason."""
    if not isinstance(event, Mapping):
        raise Rejected(Reason.NOT_AN_OBJECT, "the payload is not a JSON object")
    thing = event.get(contract.THING_FIELD)
    sender = numbers_by_thing.get(thing) if isinstance(thing, str) else None
    if sender is None or not isinstance(thing, str):
        raise Rejected(Reason.UNKNOWN_THING, "no number is bound to the publishing thing")
    kind = event.get("Type", contract.OUTBOUND_TYPE)
    if kind != contract.OUTBOUND_TYPE:
        raise Rejected(Reason.WRONG_TYPE, f"Type must be {contract.OUTBOUND_TYPE!r}")
    message_id = event.get("Id")
    if not isinstance(message_id, str) or not contract.MESSAGE_ID.match(message_id):
        raise Rejected(Reason.INVALID_ID, "Id must be 1-128 printable ASCII characters")
    to = event.get("To")
    if not isinstance(to, str) or not contract.is_e164(to):
        raise Rejected(Reason.INVALID_TO, "To must be an E.164 number (+ and 7-15 digits)")
    claimed_from = event.get("From")
    if claimed_from is not None and claimed_from != sender:
        raise Rejected(Reason.FROM_NOT_ALLOWED, "From is set by the cloud, not the device")
    body = event.get("Body", "")
    if not isinstance(body, str):
        raise Rejected(Reason.INVALID_BODY, "Body must be a string")
    if len(body) > contract.MAX_BODY_CHARACTERS:
        raise Rejected(
            Reason.BODY_TOO_LONG,
            f"Body has {len(body)} characters, at most {contract.MAX_BODY_CHARACTERS}",
        )
    media = _media_urls(event)
    if not body and not media:
        raise Rejected(Reason.EMPTY_MESSAGE, "a message needs a Body or a MediaUrl")
    return OutboundMessage(
        thing=thing, id=message_id, from_=sender, to=to, body=body, media_urls=media
    )


def classify_status(status: int) -> Failure:
    """Twilio answered `status`: retry on 5xx and 429 (rate limit), give up on other 4xx."""
    if status >= 500 or status == 429:
        return Failure.TRANSIENT
    return Failure.PERMANENT


def twilio_refused(status: int) -> bool:
    """Twilio answered `status`: True when that proves it did not take the message.

    A 4xx (429 included) comes from Twilio's API, which refused the request. A 5xx does
    not: a 502/503/504 from Twilio's edge can follow a request the API behind it had
    already accepted, so after a 5xx the message may exist.
    """
    return 400 <= status < 500
