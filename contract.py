"""The contract every part of the system agrees on, defined once (standard library only).

Topics, message fields and their limits, phone-number and thing-name shapes, the webhook
fields that may be forwarded to a device, the names of the stack, its secret and outputs,
the device's CSR file, the topic rule's field list and the dead-letter record. The stacks,
every Lambda bundle (copied in beside the handler), the device tool and the local loop
import it. The firmware (MicroPython, on the board) cannot: it builds the same topics from
the prefix the device tool writes into its configuration, and the end-to-end tests run it
against the synthesized stack's device policy and topic rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

# -- Topics -------------------------------------------------------------------------------------

DEFAULT_TOPIC_PREFIX = "sms"
TOPIC_LEVEL = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""One MQTT topic level (the prefix): no wildcard, no separator, nothing reserved for AWS."""
THING_LEVEL = 2
"""Level of the thing name in `{prefix}/{thing}/...` (IoT SQL's `topic(2)`)."""


def inbound_topic(prefix: str, thing: str) -> str:
    """The topic a device receives its messages on (the receive Lambda publishes there)."""
    return f"{prefix}/{thing}/inbound"


def outbound_topic(prefix: str, thing: str) -> str:
    """The topic a device publishes its messages on (the topic rule reads it)."""
    return f"{prefix}/{thing}/outbound"


def ack_topic(prefix: str, thing: str) -> str:
    """The topic a device confirms a message on (`{"Id": ...}`): it leaves the mailbox."""
    return f"{prefix}/{thing}/ack"


def redeliver_topic(prefix: str, thing: str) -> str:
    """The topic a device asks on, after connecting without a session, for its mailbox."""
    return f"{prefix}/{thing}/redeliver"


# -- Things and numbers ---------------------------------------------------------------------------

THING_NAME = re.compile(r"^[A-Za-z0-9_:-]{1,128}$")
"""AWS IoT thing names: letters, digits, colon, underscore, hyphen; 128 characters at most."""
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
"""A phone number in E.164 form: `+`, a country code that does not start with 0, 7-15 digits."""


def is_e164(value: object) -> TypeGuard[str]:
    """True for a string that is an E.164 phone number."""
    return isinstance(value, str) and E164.match(value) is not None


SENDER_ADDRESS = re.compile(
    r"(?:whatsapp:|rcs:)?\+[1-9][0-9]{6,14}"  # E.164, or a channel address around it
    r"|messenger:[0-9]{1,32}"  # a Messenger page-scoped id
    r"|[0-9]{3,8}"  # a short code (digits only)
)
"""`From`/`To` of an incoming message (and an `allowed_senders` entry): E.164,
`whatsapp:+...`, `rcs:+...`, `messenger:...` or a short code. No letters after the number,
so a field whose name and value were re-split (`From=+15551234567FromCountryUS`) cannot
pass."""


def is_sender_address(value: object) -> TypeGuard[str]:
    """True for a number or channel address Twilio puts in an incoming message's From/To."""
    return isinstance(value, str) and SENDER_ADDRESS.fullmatch(value) is not None


# -- Messages -----------------------------------------------------------------------------------

INBOUND_TYPE = "Incoming"
"""`Type` of a message the cloud hands a device."""
OUTBOUND_TYPE = "Outgoing"
"""`Type` of a message a device asks the cloud to send."""
DEFAULT_BODY_LIMIT = 160
"""Longest inbound body (characters) forwarded to a device unless configured otherwise."""
MAX_BODY_CHARACTERS = 1600
"""Twilio's limit for one message (it splits longer text into segments up to this)."""
MAX_MEDIA = 10
"""Twilio's limit of media per message, both ways."""
MAX_URL_LENGTH = 2048
"""Longest media URL a device may send."""
MESSAGE_ID = re.compile(r"^[!-~]{1,128}$")
"""A device's message `Id`: printable ASCII without spaces, bounded (it becomes a table key)."""

OUTBOUND_FIELDS = ("Type", "Id", "From", "To", "Body", "MediaUrl", "Image")
"""What the topic rule selects from a device's message, and all the send Lambda reads.

Listed rather than `*`: with `SELECT *, topic(2) AS thing` a device could put its own
`thing` key in the payload and send from another device's number. `From` is selected so
the send Lambda can refuse a device that names a number other than its own; `Image` is the
classic tutorial's name for `MediaUrl`."""
THING_FIELD = "thing"
"""Added to the outbound event by the topic rule: the publishing thing, from the topic."""


def outbound_rule_sql(prefix: str) -> str:
    """The topic rule's query: every device's outbound messages, with the thing's name."""
    fields = ", ".join(OUTBOUND_FIELDS)
    topic = outbound_topic(prefix, "+")
    # IoT SQL built from a validated topic level (TOPIC_LEVEL) and constants, not user input.
    return f"SELECT {fields}, topic({THING_LEVEL}) AS {THING_FIELD} FROM '{topic}'"  # noqa: S608


def encode_message(message: Mapping[str, Any]) -> bytes:
    """A message as its MQTT payload: UTF-8 JSON with raw non-ASCII text.

    Never `\\uXXXX` escapes: MicroPython's `json.loads` turns an escaped surrogate pair
    into two broken characters instead of one emoji.
    """
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# -- What the board can receive ------------------------------------------------------------------
# The ESP8266 port builds axTLS with `RT_MAX_PLAIN_LENGTH=1024` and `RT_EXTRA=4096`, so a TLS
# record carries at most 5,120 bytes of plaintext. Measured with that build, a 5,000-byte MQTT
# payload arrives and a 6,000-byte one kills the connection (`RECORD_OVERFLOW`); with QoS 1
# and a persistent session it comes back at every reconnect and the board never gets past
# it. The whole MQTT PUBLISH packet must fit in the record, so its framing, with the longest
# topic the settings allow, comes off. The firmware cannot import this module: its `MAX_RAW`
# (device/board/smscore.py) is kept equal by a test.

TLS_RECORD_PLAINTEXT_BYTES = 1024 + 4096
"""axTLS on the ESP8266: RT_MAX_PLAIN_LENGTH + RT_EXTRA."""
MAX_TOPIC_BYTES = 64 + len("/") + 128 + len("/inbound")
"""`{prefix}/{thing}/inbound`: a topic level of at most 64 bytes, a thing name of 128."""
MQTT_PUBLISH_FRAMING_BYTES = 1 + 4 + 2 + MAX_TOPIC_BYTES + 2
"""Fixed header byte, remaining length (up to 4 bytes), topic length, topic, packet id."""
MAX_DEVICE_PAYLOAD_BYTES = TLS_RECORD_PLAINTEXT_BYTES - MQTT_PUBLISH_FRAMING_BYTES
"""Largest inbound payload (the whole JSON, UTF-8) published to a device: 4,910 bytes."""


# -- Webhook fields a device may also receive ------------------------------------------------------

_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
_COUNT = re.compile(r"[0-9]{1,4}")
_COUNTRY = re.compile(r"([A-Z]{2})?")
# Strict shapes: a value that absorbed the next field's name (a re-split: `FromCity=BOSTON`
# + `FromCountry=US` sent as `FromCity=BOSTONFromCountryUS`) has lower-case letters or is
# too long. Twilio writes places in capitals.
_LONGEST_FREE_TEXT = 64
"""The longest free-text value a forwardable field admits (a place; a profile name: 32)."""
_PLACE = re.compile(rf"[A-Z0-9 .,'()/-]{{0,{_LONGEST_FREE_TEXT}}}")
_POSTCODE = re.compile(r"[A-Z0-9 -]{0,12}")
_PROFILE_NAME = re.compile(r"[^\x00-\x1f\x7f]{0,32}")
"""A WhatsApp profile name (WhatsApp allows 25 characters), no control characters."""


def is_sid(value: str, prefix: str | None = None) -> bool:
    """True for a Twilio SID (two capitals, 32 hex digits), of `prefix` if given."""
    return _SID.fullmatch(value) is not None and (prefix is None or value.startswith(prefix))


def is_count(value: str) -> bool:
    """True for a small decimal count (NumMedia, NumSegments): 1-4 digits."""
    return _COUNT.fullmatch(value) is not None


def _place(value: str) -> bool:
    return _PLACE.fullmatch(value) is not None


def _postcode(value: str) -> bool:
    return _POSTCODE.fullmatch(value) is not None


def _country(value: str) -> bool:
    return _COUNTRY.fullmatch(value) is not None


FORWARDABLE_FIELDS: Mapping[str, Callable[[str], bool]] = {
    "AccountSid": lambda v: is_sid(v, "AC"),
    "MessagingServiceSid": lambda v: is_sid(v, "MG"),
    "NumSegments": is_count,
    "NumMedia": is_count,
    "ReferralNumMedia": is_count,
    "SmsStatus": lambda v: re.fullmatch(r"[a-z_-]{1,32}", v) is not None,
    "ApiVersion": lambda v: re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", v) is not None,
    "FromCity": _place,
    "FromState": _place,
    "FromZip": _postcode,
    "FromCountry": _country,
    "ToCity": _place,
    "ToState": _place,
    "ToZip": _postcode,
    "ToCountry": _country,
    "ProfileName": lambda v: _PROFILE_NAME.fullmatch(v) is not None,
    "WaId": lambda v: re.fullmatch(r"([0-9]{1,15})?", v) is not None,
}
"""Webhook parameters Twilio documents for incoming messages that an environment may
forward to its devices (`extra_fields`), each with the strict check its value must pass:
Twilio's signature concatenates names and values without separators, so every forwarded
field's shape is checked. `OptOutType` is not forwardable: a message that carries it is a
consent signal, never forwarded (`CONSENT_KEYWORDS`)."""

TRUSTED_FIELDS = ("From", "To", "Body", "MessageSid", "OptOutType")
"""Webhook fields whose values decide where a message goes and whether it is forwarded."""
DOCUMENTED_WEBHOOK_PARAMETERS = frozenset(
    {
        *FORWARDABLE_FIELDS,
        *TRUSTED_FIELDS,
        *("SmsSid", "SmsMessageSid", "AddOns", "Forwarded", "FrequentlyForwarded"),
        *("ButtonText", "ButtonPayload", "ChannelMetadata", "MessageType"),
        *("Latitude", "Longitude", "Address", "Label"),
        *("OriginalRepliedMessageSender", "OriginalRepliedMessageSid"),
        *("ReferralBody", "ReferralHeadline", "ReferralSourceId", "ReferralSourceType"),
        *("ReferralSourceUrl", "ReferralMediaId", "ReferralMediaContentType"),
        *("ReferralMediaUrl", "ReferralCtwaClid"),
    }
)
"""Parameters Twilio documents for incoming messages (SMS, MMS, WhatsApp, RCS), besides
`MediaUrl{N}`/`MediaContentType{N}`. Twilio adds parameters without notice, so others are
accepted (signed, never forwarded), except right after a trusted field, where only a
re-split request would put them."""


# -- Consent: Twilio's opt-out keywords ---------------------------------------------------------

OPT_OUT_TYPES = ("STOP", "START", "HELP")
"""The values of `OptOutType` (Twilio Advanced Opt-Out), custom keywords included."""
CONSENT_KEYWORDS: Mapping[str, str] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), "STOP"
    ),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "START"),
    **dict.fromkeys(("HELP", "INFO"), "HELP"),
}
"""Twilio's default keywords on long codes -> their `OptOutType`: a body that is only one
of them (any case, surrounding spaces and end punctuation ignored) is answered by Twilio,
recorded in the Contacts table, and never forwarded to a device."""


# -- Replays ------------------------------------------------------------------------------------

DEFAULT_REPLAY_WINDOW_DAYS = 400
"""Twilio's signature has no timestamp: a MessageSid is remembered this long (over a year)
unless configured otherwise, so a captured request replayed later is not published again."""


# Worst case of one inbound message, for the settings check (`body_limit` must fit the
# board). The receive Lambda measures the real payload of every message; these bound what a
# valid message can need.
WORST_BYTES_PER_BODY_CHARACTER = 6
"""A control character is written as `\\u00XX` (6 bytes); any other character takes at
most 4 bytes of UTF-8 (`"` and `\\` take 2)."""
WORST_ENVELOPE_BYTES = len('{"Type":"Incoming","Id":"","From":"","To":"","Body":"","Media":[]}') + (
    34 + 2 * 48
)
"""The contract's keys, a 34-character MessageSid and two addresses of up to 48 bytes
(`whatsapp:+` and 15 digits, with room to spare)."""
WORST_MEDIA_BYTES = len('{"Url":"","ContentType":""},') + 200 + 64
"""One media entry: Twilio's media URL (162 characters; 200 allowed for) and a content type
of up to 64 characters."""
WORST_EXTRA_FIELD_VALUE_BYTES = _LONGEST_FREE_TEXT * WORST_BYTES_PER_BODY_CHARACTER
"""A forwarded free-text parameter: its validator admits at most 64 characters."""
SHORT_EXTRA_FIELDS = {
    "AccountSid": 34,
    "MessagingServiceSid": 34,
    "NumSegments": 4,
    "NumMedia": 4,
    "ReferralNumMedia": 4,
    "SmsStatus": 32,
    "ApiVersion": 10,
    "FromCountry": 2,
    "ToCountry": 2,
    "WaId": 15,
}
"""Forwardable parameters whose validator bounds them tighter (ASCII: characters = bytes)."""


def worst_case_payload_bytes(body_limit: int, extra_fields: tuple[str, ...] = ()) -> int:
    """The largest payload a valid message with a body of `body_limit` characters can need."""
    extras = sum(
        len(f',"{name}":""') + SHORT_EXTRA_FIELDS.get(name, WORST_EXTRA_FIELD_VALUE_BYTES)
        for name in extra_fields
    )
    return (
        WORST_ENVELOPE_BYTES
        + MAX_MEDIA * WORST_MEDIA_BYTES
        + extras
        + body_limit * WORST_BYTES_PER_BODY_CHARACTER
    )


def largest_body_limit(extra_fields: tuple[str, ...] = ()) -> int:
    """The largest `body_limit` whose worst case fits in `MAX_DEVICE_PAYLOAD_BYTES`."""
    spare = MAX_DEVICE_PAYLOAD_BYTES - worst_case_payload_bytes(0, extra_fields)
    return max(0, spare // WORST_BYTES_PER_BODY_CHARACTER)


# -- The mailbox ----------------------------------------------------------------------------------
# Every inbound message waits in a DynamoDB table until its device confirms it by Id on
# `ack_topic`; after a connection without a session the device asks on `redeliver_topic`
# and every waiting message is published again, oldest first, with the same bytes. The
# receive Lambda writes items, the mailbox Lambdas read and delete them, the stack declares
# the table: the item's shape is defined here once.

DEFAULT_MAILBOX_RETENTION_DAYS = 7
"""How long a message waits for its device before the sweeper expires it."""
MAX_MAILBOX_RETENTION_DAYS = 14
MAILBOX_TTL_GRACE_SECONDS = 2 * 24 * 3600
"""DynamoDB's TTL only backs the sweeper up, which expires (and counts) messages first."""
MAILBOX_THING = "thing"
"""Partition key: the device's thing name."""
MAILBOX_ID = "id"
"""Sort key: the message's Id (its MessageSid)."""
MAILBOX_ARRIVED = "arrived"
"""When the message arrived, epoch milliseconds: the sort key of `MAILBOX_BY_ARRIVAL`."""
MAILBOX_EXPIRES_AT = "expires_at"
"""DynamoDB TTL attribute (epoch seconds)."""
MAILBOX_BY_ARRIVAL = "by_arrival"
"""Local secondary index: a device's messages in arrival order."""
MAILBOX_METRICS_NAMESPACE = "TextDevice"
MAILBOX_METRICS_SERVICE = "mailbox"
"""The sweeper's metrics: namespace and `service` dimension (an `environment` one is added)."""
OLDEST_PENDING_AGE_METRIC = "OldestPendingAgeSeconds"
"""Age of the oldest message still waiting for its device (seconds), per environment."""
EXPIRED_MESSAGES_METRIC = "ExpiredMessages"
"""Messages that expired in the mailbox (their device never took them)."""
MAILBOX_REQUESTS = ("ack", "redeliver")
"""The last topic level of a device's mailbox requests (`ack_topic`, `redeliver_topic`)."""


def mailbox_lifetime_seconds(retention_days: int) -> int:
    """The longest a message can stay in the mailbox (retention, then the TTL's grace): how
    long the reply Ids of a redelivered message must be remembered to be texted once."""
    return retention_days * 86400 + MAILBOX_TTL_GRACE_SECONDS


@dataclass(frozen=True, kw_only=True)
class MailboxEntry:
    """One message waiting in a device's mailbox, exactly as it was published."""

    thing: str
    message_id: str
    arrived_ms: int
    topic: str
    payload: str

    def item(self, expires_at: int) -> dict[str, Any]:
        """The DynamoDB item (low-level attribute values)."""
        return {
            MAILBOX_THING: {"S": self.thing},
            MAILBOX_ID: {"S": self.message_id},
            MAILBOX_ARRIVED: {"N": str(self.arrived_ms)},
            "topic": {"S": self.topic},
            "payload": {"S": self.payload},
            MAILBOX_EXPIRES_AT: {"N": str(expires_at)},
        }

    @classmethod
    def from_item(cls, item: Mapping[str, Any]) -> MailboxEntry:
        """The entry a DynamoDB item holds (as `item()` wrote it)."""
        return cls(
            thing=item[MAILBOX_THING]["S"],
            message_id=item[MAILBOX_ID]["S"],
            arrived_ms=int(item[MAILBOX_ARRIVED]["N"]),
            topic=item["topic"]["S"],
            payload=item["payload"]["S"],
        )


def mailbox_key(thing: str, message_id: str) -> dict[str, Any]:
    """The DynamoDB key of a message in a device's mailbox."""
    return {MAILBOX_THING: {"S": thing}, MAILBOX_ID: {"S": message_id}}


def mailbox_request_sql(prefix: str, request: str) -> str:
    """A mailbox request rule's query: every device's `request` topic, with the thing and
    the request named from the topic, never from the payload."""
    if request not in MAILBOX_REQUESTS:
        raise ValueError(f"unknown mailbox request {request!r}")
    topic = f"{prefix}/+/{request}"
    # IoT SQL built from a validated topic level (TOPIC_LEVEL) and constants, not user input.
    return (
        f"SELECT Id, topic({THING_LEVEL}) AS {THING_FIELD}, topic({THING_LEVEL + 1}) AS request "  # noqa: S608
        f"FROM '{topic}'"
    )


# -- Contacts and the outbound policy -----------------------------------------------------------

CONTACTS_TABLE_VARIABLE = "CONTACTS_TABLE"
"""The environment variable naming the Contacts table (set on the receive and send Lambdas)."""
CONTACT_KEY_ATTRIBUTE = "pk"
LAST_INBOUND_ATTRIBUTE = "last_inbound_at"
"""Epoch seconds of the last accepted message from the number (opens the reply window)."""
OPTED_OUT_ATTRIBUTE = "opted_out"
"""True after STOP until START: the send Lambda never texts the number (Twilio's 21610)."""
CONTACT_EXPIRY_ATTRIBUTE = "expires_at"
"""DynamoDB TTL (epoch seconds) of a Contacts item: a contact `CONTACT_RECORD_DAYS` after
its last message (none while opted out: an opt-out holds until START), or a send counter (a
day and an hour after its day)."""
CONTACT_RECORD_DAYS = 400
"""How long a contact is remembered after its last message: longer than any reply window
the send side allows (at most a year), so the window, not the TTL, decides."""


def contact_key(thing: str, number: str) -> str:
    """The Contacts item of `number` texting `thing`: `{thing}#{number}`."""
    return f"{thing}#{number}"


def send_counter_key(thing: str, now: float) -> str:
    """The Contacts item counting `thing`'s sends on the UTC day of `now` (epoch seconds).

    `#sent#` never occurs in a contact key (a number follows the first `#` there).
    """
    return f"{thing}#sent#{datetime.fromtimestamp(now, UTC):%Y%m%d}"


SEND_COUNTER_DAY_ATTRIBUTE = "day"
"""The day's count in a send counter item (beside one `mHHMM` count per minute)."""
DEFAULT_REPLY_WINDOW_DAYS = 30
"""A device may text a number that texted it within this many days, unless configured."""
DEFAULT_SEND_LIMIT_PER_MINUTE = 10
DEFAULT_SEND_LIMIT_PER_DAY = 200
"""Per-device send caps unless configured (`send_limit_per_minute`, `send_limit_per_day`)."""
OUTBOUND_REFUSED_METRIC = "OutboundRefused"
"""The send Lambda's CloudWatch metric (EMF) of messages the outbound policy refused; the
stack's RepeatedRefusals alarm watches it."""
RECIPIENT_OPTED_OUT_METRIC = "RecipientOptedOut"
"""The send Lambda's metric of replies not sent because the recipient opted out (STOP)."""
SEND_METRIC_DIMENSIONS = {"service": "send"}
"""The dimensions of the send Lambda's metrics (its Powertools service)."""


def metrics_namespace(environment: str) -> str:
    """The CloudWatch namespace of an environment's custom metrics (its stack's name)."""
    return stack_name(environment)


# -- Names of deployed things --------------------------------------------------------------------


def stack_name(environment: str) -> str:
    """The CloudFormation stack of an environment."""
    return f"TextDevice-{environment}"


def twilio_secret_name(environment: str) -> str:
    """The Secrets Manager secret holding an environment's Twilio credentials."""
    return f"text-device/{environment}/twilio"


TWILIO_SECRET_PLACEHOLDER = {"account_sid": "", "auth_token": ""}
"""The secret's JSON shape, as the stack creates it (the user puts the values)."""
SECONDARY_AUTH_TOKEN_KEY = "secondary_auth_token"  # noqa: S105 (a key name, not a secret)
"""Optional key of the secret during a rotation: the token Twilio is rotating to (or from).
Both tokens verify webhooks and status callbacks."""
WEBHOOK_URL_OUTPUT = "WebhookUrl"
TOPIC_PREFIX_OUTPUT = "TopicPrefix"
SEND_DEAD_LETTER_QUEUE_OUTPUT = "SendDeadLetterQueueUrl"
RULE_ERROR_QUEUE_OUTPUT = "RuleErrorQueueUrl"
REFUSED_QUEUE_OUTPUT = "RefusedQueueUrl"
SEND_IDEMPOTENCY_TABLE_OUTPUT = "SendIdempotencyTable"
"""The outputs `make redrive` reads: the three queues it lists and the table of the send
Lambda's attempt markers."""
TWILIO_SECRET_NAME_OUTPUT = "TwilioSecretName"  # noqa: S105 (an output name, not a secret)
DEVICE_COUNT_OUTPUT = "DeviceCount"
INBOUND_TOPIC_OUTPUT = "InboundTopic"
OUTBOUND_TOPIC_OUTPUT = "OutboundTopic"
DEVICE_POLICY_NAME_OUTPUT = "DevicePolicyName"
BINDINGS_TABLE_OUTPUT = "BindingsTableName"
"""Outputs are counts, patterns and names, never one per device: a stack has at most 200
outputs, and a fleet has up to 1,000 devices."""
OTA_BUCKET_OUTPUT = "OtaBucketName"
"""The bucket the `ota` tool uploads compiled app modules to."""
OTA_STREAM_ROLE_OUTPUT = "OtaStreamRoleArn"
"""The role AWS IoT assumes to read those files for an MQTT stream."""
OTA_UPDATE_PREFIX = "updates/"
"""Key prefix of the update files in that bucket; the stream role may read nothing else."""


# -- The fleet's committed files ------------------------------------------------------------------

DEVICES_DIR = "devices"
"""`devices/{env}/` in the repository: the fleet of an environment (public files only)."""
DEVICES_FILE = "devices.json"
"""`devices/{env}/devices.json`: thing name -> the Twilio number bound to it."""
CSR_SUFFIX = ".csr.pem"
"""`devices/{env}/{thing}.csr.pem`: the device's certificate signing request(s), current
first (two during a rotation). The device tool writes it, the CDK app reads it."""


# -- Bindings table -------------------------------------------------------------------------------

BINDING_KEY = "id"
"""The bindings table's partition key (Powertools' DynamoDBProvider default)."""
BINDING_VALUE = "value"
"""The attribute holding what a key is bound to (Powertools' DynamoDBProvider default)."""
BINDINGS_TABLE_VARIABLE = "BINDINGS_TABLE"
"""The environment variable naming the bindings table (receive and send Lambdas)."""


def binding_items(bindings: Mapping[str, str]) -> dict[str, str]:
    """The bindings table's items (key -> value) for `bindings` (thing -> number): both
    directions, number -> thing (the receive Lambda's lookup) and thing -> number (the send
    Lambda's). They cannot collide: an E.164 number starts with `+`, no thing name has one."""
    items: dict[str, str] = {}
    for thing, number in bindings.items():
        items[number] = thing
        items[thing] = number
    return items


# -- Dead letters -------------------------------------------------------------------------------

RETRIES_EXHAUSTED = "RetriesExhausted"
"""Condition of a record Lambda writes after its retries of an asynchronous event."""
PERMANENT_TWILIO_ERROR = "PermanentTwilioError"
"""Condition of a record the send Lambda writes when Twilio refuses a message for good."""
EVENT_AGE_EXCEEDED = "EventAgeExceeded"
"""Condition of a record Lambda writes when an event outlived its maximum age."""
OUTBOUND_POLICY_REFUSED = "OutboundPolicyRefused"
"""Condition of a record the send Lambda puts in the refused queue (`responsePayload` holds
`reason` and `detail`): never retried."""
RULE_ERROR_PAYLOAD_FIELD = "base64OriginalPayload"
"""The field of a topic rule's error-action record holding the device's payload."""
SEND_EVENT_MAX_AGE_SECONDS = 6 * 3600
"""How long Lambda keeps retrying a send event: a dead-lettered event's first attempt is at
most this much older than its record."""
DEFAULT_SEND_IDEMPOTENCY_SECONDS = 24 * 3600
"""How long the send Lambda remembers a message unless configured (the stack makes it as
long as the mailbox keeps a message): longer than the event's maximum age, so every retry
of an event finds it; a redrive after that relies on the attempt marker."""


def message_key(thing: str, message_id: str) -> str:
    """The send Lambda's idempotency key of a device's message: unique per device and `Id`,
    so two devices reusing an Id never collide (thing names have no `#`)."""
    return f"{thing}#{message_id}"


def attempt_marker_id(idempotency_key: str) -> str:
    """Key of the send Lambda's marker saying "a request for this message may have reached
    Twilio" (`idempotency_key` is `{thing}#{Id}`).

    It lives in the idempotency table beside Powertools' records (whose keys start with the
    function's name), so it needs no table, permission or TTL setting of its own.
    """
    return f"attempt#{idempotency_key}"


def attempt_marker_item(
    idempotency_key: str, *, first_attempt: float, expires_at: int
) -> dict[str, Any]:
    """The attempt marker as a DynamoDB item: when the first attempt started and when the
    marker expires (`expiration`, DynamoDB's TTL, as Powertools' records), epoch seconds."""
    return {
        "id": {"S": attempt_marker_id(idempotency_key)},
        "first_attempt": {"N": f"{first_attempt:.3f}"},
        "expiration": {"N": str(expires_at)},
    }


ATTEMPT_MARKER_ABSENT_OR_EXPIRED = "attribute_not_exists(id) OR expiration < :now"
"""The condition that writes a marker only where no live one exists (`:now`, epoch seconds)."""


def dead_letter_record(
    event: Any,
    *,
    condition: str,
    request_id: str,
    function_arn: str,
    error: Mapping[str, Any],
    invoke_count: int = 1,
    function_error: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """A dead-letter record shaped like Lambda's own on-failure destination record.

    The queue then holds one format whichever path put the event there (Lambda after its
    retries, or the send Lambda on a permanent Twilio error), and one redrive tool reads
    both: the event to send again is `requestPayload`.
    """
    timestamp = (now or datetime.now(UTC)).isoformat(timespec="milliseconds")
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if function_error is not None:
        response_context["functionError"] = function_error
    return {
        "version": "1.0",
        "timestamp": timestamp.replace("+00:00", "Z"),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "requestPayload": event,
        "responseContext": response_context,
        "responsePayload": dict(error),
    }
