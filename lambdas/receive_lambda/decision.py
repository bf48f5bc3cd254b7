"""What happens to a webhook whose signature is valid: nothing (`Unbound`), a reply that
the text is too long (`TooLong`: the body exceeds the limit, or the whole message would
exceed what the board can receive, `contract.MAX_DEVICE_PAYLOAD_BYTES`), or the message for
`{prefix}/{thing}/inbound` (`Publish`, the contract's inbound message)."""

from __future__ import annotations

import html
import re
import urllib.parse
from dataclasses import dataclass
from typing import Any, Protocol

import contract
from receive_lambda.config import ReceiveConfig
from receive_lambda.errors import BadRequest
from receive_lambda.form import FormParams

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][\w!#$&^.+-]{0,126}/[A-Za-z0-9][\w!#$&^.+-]{0,126}(;.{0,200})?"
)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_MEDIA_KEY = re.compile(r"Media(Url|ContentType)([0-9]+)")


class ThingLookup(Protocol):
    """Number -> the thing bound to it, or None (`lambda_shared.bindings.ThingsByNumber`, or
    a dict in tests)."""

    def get(self, number: str, /) -> str | None:
        """The thing bound to `number`."""
        ...


@dataclass(frozen=True)
class Unbound:
    """`To` is bound to no device: empty TwiML, nothing published."""

    to: str
    twiml: str = EMPTY_TWIML


@dataclass(frozen=True)
class TooLong:
    """The body exceeds the limit, or the whole message the board's: the sender is told,
    nothing published."""

    thing: str
    message_sid: str
    length: int
    limit: int
    payload_bytes: int | None = None
    """Set when the body fits but the whole message (with its media and fields) does not."""

    @property
    def twiml(self) -> str:
        """A TwiML reply telling the sender the limit (nothing is published)."""
        if self.payload_bytes is None:
            text = (
                f"Sorry, messages to this number are limited to {self.limit} characters; "
                f"yours had {self.length}. Please send a shorter message."
            )
        else:
            text = (
                "Sorry, your message is too large for the device to receive "
                f"({self.payload_bytes} bytes with its media; at most "
                f"{contract.MAX_DEVICE_PAYLOAD_BYTES}). Please send a shorter message or "
                "fewer pictures."
            )
        return (
            '<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
            f"{html.escape(text, quote=False)}</Message></Response>"
        )


@dataclass(frozen=True)
class Publish:
    """Publish `message` on `topic` (QoS 1), at most once per `message["Id"]`."""

    thing: str
    topic: str
    message: dict[str, Any]
    twiml: str = EMPTY_TWIML

    @property
    def payload(self) -> bytes:
        """The MQTT payload."""
        return contract.encode_message(self.message)


Decision = Unbound | TooLong | Publish


def _media(form: FormParams) -> list[dict[str, str]]:
    declared = form.maybe("NumMedia")
    if declared is not None and not contract.is_count(declared):
        raise BadRequest("NumMedia is not a number")
    indexes = sorted(
        {int(m.group(2)) for name in form if (m := _MEDIA_KEY.fullmatch(name)) is not None}
    )
    count = int(declared) if declared is not None else len(indexes)
    if count > contract.MAX_MEDIA or indexes != list(range(count)):
        raise BadRequest("media parameters do not match NumMedia")
    media = []
    for index in range(count):
        url = form.one(f"MediaUrl{index}")
        content_type = form.one(f"MediaContentType{index}")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or _CONTROL.search(url):
            raise BadRequest(f"MediaUrl{index} is not an https URL")
        if not _MEDIA_TYPE.fullmatch(content_type):
            raise BadRequest(f"MediaContentType{index} is not a media type")
        media.append({"Url": url, "ContentType": content_type})
    return media


def decide(form: FormParams, config: ReceiveConfig, things_by_number: ThingLookup) -> Decision:
    """What to do with a webhook whose signature is valid."""
    to = form.one("To")
    thing = things_by_number.get(to)
    if thing is None:
        return Unbound(to=to)
    sid = form.one("MessageSid")
    sender = form.one("From")
    body = form.maybe("Body") or ""
    if not contract.is_sid(sid):
        raise BadRequest("MessageSid is not a Twilio SID")
    if not sender or len(sender) > 256:
        raise BadRequest("From is empty or too long")
    media = _media(form)
    extras: dict[str, str] = {}
    for name in config.extra_fields:
        value = form.maybe(name)
        if value is None:
            continue
        if not contract.FORWARDABLE_FIELDS[name](value):
            raise BadRequest(f"parameter {name} is not valid")
        extras[name] = value
    if len(body) > config.body_limit:
        return TooLong(thing=thing, message_sid=sid, length=len(body), limit=config.body_limit)
    message: dict[str, Any] = {
        "Type": contract.INBOUND_TYPE,
        "Id": sid,
        "From": sender,
        "To": to,
        "Body": body,
        "Media": media,
        **extras,
    }
    size = len(contract.encode_message(message))
    if size > contract.MAX_DEVICE_PAYLOAD_BYTES:
        return TooLong(
            thing=thing,
            message_sid=sid,
            length=len(body),
            limit=config.body_limit,
            payload_bytes=size,
        )
    topic = contract.inbound_topic(config.topic_prefix, thing)
    return Publish(thing=thing, topic=topic, message=message)
