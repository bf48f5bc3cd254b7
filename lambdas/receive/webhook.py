"""Twilio's incoming-message webhook, as pure logic: no AWS, no globals, no I/O.

The VTL request template (stacks/templates/receive_request.vtl) hands the Lambda an event
whose client-controlled values are base64-encoded. This module decodes it byte for byte,
rebuilds the URL Twilio signed, checks `X-Twilio-Signature` with twilio's
`RequestValidator`, validates the fields and decides what happens:

- `Forbidden` / `BadRequest` exceptions: API Gateway maps their `Forbidden:` / `BadRequest:`
  message prefixes to 403 / 400 (see stacks/webhook_api.py);
- `Unbound`: `To` is bound to no device, answer empty TwiML;
- `TooLong`: the body exceeds the limit, or the whole message would exceed what the board
  can receive (`MAX_DEVICE_PAYLOAD_BYTES`), answer TwiML that tells the sender;
- `Publish`: the message for `{prefix}/{thing}/inbound` (DESIGN.md's contract).
"""

from __future__ import annotations

import base64
import binascii
import html
import itertools
import json
import math
import re
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from payload_limit import MAX_DEVICE_PAYLOAD_BYTES
from twilio.request_validator import RequestValidator

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
MAX_FIELDS = 200
"""More form fields than Twilio ever sends: beyond this the body is rejected unparsed."""
MAX_MEDIA = 10
"""Twilio delivers at most 10 media per message."""
MAX_BODY_BYTES = 64 * 1024
"""Largest form body accepted, checked before anything is parsed or signed.

Twilio's incoming-message webhook is a few KB: a 1,600-character Body is at most ~19 KB
even when every character is a percent-encoded 4-byte UTF-8 sequence (12 bytes each), and
10 media URLs plus every optional field add ~3 KB. 64 KiB leaves 3x headroom, while a
forged multi-MB body, hashed once per candidate URL, could outlast the Lambda's timeout."""
MAX_QUERY_PARAMETERS = 4
"""Query parameters on the webhook URL: every order is tried (4! = 24 orders), so more
would multiply the HMACs a forged request costs (5! = 120, 6! = 720...): beyond, 400."""
_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{26}[AEIMQUYcgkosw048]=")
"""X-Twilio-Signature: base64 of a 20-byte HMAC-SHA1 digest, 28 characters. 160 bits fill
26 characters and 4 bits of the 27th (its 2 low bits are 0), then one `=` of padding."""

_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
_DIGITS = re.compile(r"[0-9]{1,4}")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][\w!#$&^.+-]{0,126}/[A-Za-z0-9][\w!#$&^.+-]{0,126}(;.{0,200})?"
)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_MEDIA_KEY = re.compile(r"Media(Url|ContentType)([0-9]+)")


class WebhookError(Exception):
    """A request that must not be processed; `str()` starts with the API Gateway prefix."""

    prefix = "Error"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{self.prefix}: {reason}")
        self.reason = reason


class Forbidden(WebhookError):
    """Missing or wrong signature: API Gateway answers 403."""

    prefix = "Forbidden"


class BadRequest(WebhookError):
    """Malformed event, form body or field: API Gateway answers 400."""

    prefix = "BadRequest"


class ConfigurationError(Exception):
    """The deployment is wrong (setting, secret); not the caller's fault: answered 5xx."""


# -- Fields -----------------------------------------------------------------------------------


def _free_text(value: str) -> bool:
    return len(value) <= 256


def _e164_or_empty(value: str) -> bool:
    return value == "" or re.fullmatch(r"\+?[0-9]{1,20}", value) is not None


FIELD_VALIDATORS: Mapping[str, Callable[[str], bool]] = {
    "AccountSid": lambda v: _SID.fullmatch(v) is not None and v.startswith("AC"),
    "MessagingServiceSid": lambda v: _SID.fullmatch(v) is not None and v.startswith("MG"),
    "NumSegments": lambda v: _DIGITS.fullmatch(v) is not None,
    "NumMedia": lambda v: _DIGITS.fullmatch(v) is not None,
    "ReferralNumMedia": lambda v: _DIGITS.fullmatch(v) is not None,
    "SmsStatus": lambda v: re.fullmatch(r"[a-z_-]{1,32}", v) is not None,
    "ApiVersion": lambda v: re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", v) is not None,
    "FromCity": _free_text,
    "FromState": _free_text,
    "FromZip": _free_text,
    "FromCountry": lambda v: re.fullmatch(r"([A-Z]{2})?", v) is not None,
    "ToCity": _free_text,
    "ToState": _free_text,
    "ToZip": _free_text,
    "ToCountry": lambda v: re.fullmatch(r"([A-Z]{2})?", v) is not None,
    "OptOutType": lambda v: re.fullmatch(r"[A-Z]{1,32}", v) is not None,
    "ProfileName": _free_text,
    "WaId": _e164_or_empty,
}
"""Webhook parameters that may be forwarded (`EXTRA_FIELDS`), each with its check. Kept in
step with `FORWARDABLE_FIELDS` of stacks/settings.py (a test compares them)."""


class FormParams(dict[str, list[str]]):
    """A form body: every value of every name, in the order sent.

    `getall` is the interface twilio's `RequestValidator` uses for repeated names (it signs
    each name with each of its values), so no value escapes the signature check.
    """

    def getall(self, name: str) -> list[str]:
        """Every value sent for `name`."""
        return self[name]

    def one(self, name: str) -> str:
        """The one value of `name`; missing or repeated (ambiguous) is a bad request."""
        value = self.maybe(name)
        if value is None:
            raise BadRequest(f"missing parameter {name}")
        return value

    def maybe(self, name: str) -> str | None:
        """The one value of `name` or None if absent; repeated is a bad request."""
        values = self.get(name)
        if values is None:
            return None
        if len(values) != 1:
            raise BadRequest(f"parameter {name} is repeated")
        return values[0]


# -- Event -------------------------------------------------------------------------------------


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


def parse_form(body: str) -> FormParams:
    """Parses an `application/x-www-form-urlencoded` body strictly (UTF-8, `+` is a space).

    Raises BadRequest for a field without `=`, an empty field, a malformed `%` escape,
    bytes that are not UTF-8 and more than `MAX_FIELDS` fields.
    """
    if _BAD_PERCENT.search(body):
        raise BadRequest("the form body has a malformed % escape")
    try:
        pairs = urllib.parse.parse_qsl(
            body,
            keep_blank_values=True,
            strict_parsing=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except ValueError as error:  # UnicodeDecodeError is a ValueError
        raise BadRequest("the body is not a valid UTF-8 form") from error
    form = FormParams()
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


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


# -- Signature -----------------------------------------------------------------------------------

# How the query string of the configured webhook URL may have been written. API Gateway hands
# the template decoded values, so the original spelling is gone: these are the spellings
# people and tools produce (RFC 3986 minimal, everything-escaped, HTML form style).
_QUERY_ENCODINGS: tuple[Callable[[str], str], ...] = (
    lambda s: urllib.parse.quote(s, safe="!$'()*,/:;=?@~"),
    lambda s: urllib.parse.quote(s, safe=""),
    lambda s: urllib.parse.quote_plus(s, safe=""),
)
MAX_CANDIDATE_URLS = math.factorial(MAX_QUERY_PARAMETERS) * len(_QUERY_ENCODINGS)
"""Most URLs a request's signature is checked against (24 orders x 3 spellings = 72)."""


def candidate_urls(domain: str, path: str, query: Sequence[tuple[str, str]]) -> Iterator[str]:
    """The URLs Twilio may have signed, most likely first.

    `https://{$context.domainName}{$context.path}` is the URL as called: on the
    execute-api domain the path starts with the stage, behind a custom domain with the base
    path (never the stage). A query string comes back decoded and unordered, so each
    spelling and each order is tried: at most `MAX_CANDIDATE_URLS` URLs, as `parse_event`
    admits at most `MAX_QUERY_PARAMETERS` parameters (ValueError beyond).
    """
    if len(query) > MAX_QUERY_PARAMETERS:
        raise ValueError(f"more than {MAX_QUERY_PARAMETERS} query parameters")
    base = f"https://{domain}{path}"
    if not query:
        yield base
        return
    seen: set[str] = set()
    for order in itertools.permutations(query):
        for encode in _QUERY_ENCODINGS:
            url = base + "?" + "&".join(f"{encode(k)}={encode(v)}" for k, v in order)
            if url not in seen:
                seen.add(url)
                yield url


def signature_is_valid(request: WebhookRequest, auth_token: str) -> bool:
    """True if `X-Twilio-Signature` signs one of the candidate URLs and every parameter.

    Computes at most 2 HMACs (twilio tries the URL with and without its port) per candidate
    URL, over the URL and the form (at most `MAX_BODY_BYTES`).
    """
    if not _SIGNATURE.fullmatch(request.signature) or not auth_token:
        return False  # not an HMAC-SHA1 signature: no need to compute any
    validator = RequestValidator(auth_token)
    return any(
        validator.validate(url, request.form, request.signature)
        for url in candidate_urls(request.domain, request.path, request.query)
    )


class TokenSource(Protocol):
    """Where the Twilio auth token comes from (cached; refreshable after a rotation)."""

    def current(self) -> str:
        """The cached token; raises ConfigurationError if the secret is not filled in."""
        ...

    def refreshed(self) -> str | None:
        """A freshly fetched token, or None when one was fetched too recently."""
        ...


def authenticate(request: WebhookRequest, tokens: TokenSource) -> None:
    """Raises Forbidden unless the request is signed with the (possibly rotated) token."""
    if not request.signature:
        # Nothing to check, and no reason to read the secret again.
        raise Forbidden("missing X-Twilio-Signature")
    if not _SIGNATURE.fullmatch(request.signature):
        # A wrong signature (403), found without reading the secret or computing any HMAC.
        raise Forbidden("X-Twilio-Signature is not an HMAC-SHA1 signature (28 base64 characters)")
    token = tokens.current()
    if signature_is_valid(request, token):
        return
    # The token may have been rotated since it was cached: fetch it again (rate-limited,
    # so forged requests cannot hammer Secrets Manager) and retry once.
    fresh = tokens.refreshed()
    if fresh is not None and fresh != token and signature_is_valid(request, fresh):
        return
    raise Forbidden("invalid X-Twilio-Signature")


# -- Decision --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiveConfig:
    """The receive Lambda's settings (from its environment)."""

    topic_prefix: str
    things_by_number: Mapping[str, str]
    body_limit: int = 160
    extra_fields: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ReceiveConfig:
        """Reads TOPIC_PREFIX, THINGS_BY_NUMBER (JSON), BODY_LIMIT and EXTRA_FIELDS."""
        try:
            things = json.loads(environ.get("THINGS_BY_NUMBER", "{}"))
            limit = int(environ.get("BODY_LIMIT", "160"))
        except ValueError as error:
            raise ConfigurationError("THINGS_BY_NUMBER or BODY_LIMIT is malformed") from error
        extra = tuple(f for f in environ.get("EXTRA_FIELDS", "").split(",") if f)
        unknown = sorted(set(extra) - set(FIELD_VALIDATORS))
        if unknown or not isinstance(things, dict) or limit < 1:
            raise ConfigurationError(f"bad receive settings (unknown extra fields: {unknown})")
        return cls(
            topic_prefix=environ.get("TOPIC_PREFIX", "sms"),
            things_by_number={str(k): str(v) for k, v in things.items()},
            body_limit=limit,
            extra_fields=extra,
        )


@dataclass(frozen=True)
class Unbound:
    """`To` is bound to no device: empty TwiML, nothing published."""

    to: str
    twiml: str = EMPTY_TWIML


@dataclass(frozen=True)
class TooLong:
    """The body exceeds the limit: the sender is told, nothing published."""

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
                f"{MAX_DEVICE_PAYLOAD_BYTES}). Please send a shorter message or fewer pictures."
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
        return encode_message(self.message)


def encode_message(message: Mapping[str, Any]) -> bytes:
    """Raw UTF-8 JSON, never `\\uXXXX` escapes: MicroPython mis-decodes escaped surrogates."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


Decision = Unbound | TooLong | Publish


def _media(form: FormParams) -> list[dict[str, str]]:
    declared = form.maybe("NumMedia")
    if declared is not None and not _DIGITS.fullmatch(declared):
        raise BadRequest("NumMedia is not a number")
    indexes = sorted(
        {int(m.group(2)) for name in form if (m := _MEDIA_KEY.fullmatch(name)) is not None}
    )
    count = int(declared) if declared is not None else len(indexes)
    if count > MAX_MEDIA or indexes != list(range(count)):
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


def decide(form: FormParams, config: ReceiveConfig) -> Decision:
    """What to do with a webhook whose signature is valid."""
    to = form.one("To")
    thing = config.things_by_number.get(to)
    if thing is None:
        return Unbound(to=to)
    sid = form.one("MessageSid")
    sender = form.one("From")
    body = form.maybe("Body") or ""
    if not _SID.fullmatch(sid):
        raise BadRequest("MessageSid is not a Twilio SID")
    if not sender or len(sender) > 256:
        raise BadRequest("From is empty or too long")
    media = _media(form)
    extras: dict[str, str] = {}
    for name in config.extra_fields:
        value = form.maybe(name)
        if value is None:
            continue
        if not FIELD_VALIDATORS[name](value):
            raise BadRequest(f"parameter {name} is not valid")
        extras[name] = value
    if len(body) > config.body_limit:
        return TooLong(thing=thing, message_sid=sid, length=len(body), limit=config.body_limit)
    message: dict[str, Any] = {
        "Type": "Incoming",
        "Id": sid,
        "From": sender,
        "To": to,
        "Body": body,
        "Media": media,
        **extras,
    }
    size = len(encode_message(message))
    if size > MAX_DEVICE_PAYLOAD_BYTES:
        return TooLong(
            thing=thing,
            message_sid=sid,
            length=len(body),
            limit=config.body_limit,
            payload_bytes=size,
        )
    return Publish(thing=thing, topic=f"{config.topic_prefix}/{thing}/inbound", message=message)


def mask_number(value: str) -> str:
    """A phone number fit for logs: `+15551234567` -> `+15*******67`."""
    if len(value) <= 6:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 5) + value[-2:]
