"""Pure logic of the mailbox Lambdas: what a device asks, what expires, what the sender is
told. No I/O here (`store` talks to DynamoDB, IoT and Lambda).

A device publishes, under its own topics (the IoT policy allows nothing else):

- `{prefix}/{thing}/ack` `{"Id": "SM..."}` once it has taken a message (replied or not):
  the message leaves the mailbox;
- `{prefix}/{thing}/redeliver` (any payload) when its MQTT connection started without a
  session (session present = 0: the broker forgot it after expiry, a reflash, a failover):
  every message still in its mailbox is published to it again, oldest first.

The topic rules add `thing` and `request` from the topic (`contract.mailbox_request_sql`),
so a device can only act on its own mailbox.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import contract

EXPIRY_NOTICE = (
    "Sorry, your message could not be delivered: the device it was for has been offline "
    "for {days} days."
)


class BadRequest(ValueError):
    """A device request that cannot be served; the reason holds no message data."""


@dataclass(frozen=True)
class Ack:
    """The device took message `message_id`: remove it from the mailbox."""

    thing: str
    message_id: str


@dataclass(frozen=True)
class Redeliver:
    """The device has a new session: publish every pending message again, oldest first."""

    thing: str


DeviceRequest = Ack | Redeliver


def parse_request(event: Any) -> DeviceRequest:
    """The request a topic rule event carries; raises BadRequest."""
    if not isinstance(event, Mapping):
        raise BadRequest("the event is not an object")
    thing = event.get(contract.THING_FIELD)
    if not isinstance(thing, str) or not contract.THING_NAME.match(thing):
        raise BadRequest("the event names no valid thing")
    request = event.get("request")
    if request == "redeliver":
        return Redeliver(thing=thing)
    if request == "ack":
        message_id = event.get("Id")
        if not isinstance(message_id, str) or not contract.MESSAGE_ID.match(message_id):
            raise BadRequest("an ack needs the message's Id (printable, without spaces)")
        return Ack(thing=thing, message_id=message_id)
    raise BadRequest("unknown request")


def expiry_cutoff_ms(now_s: float, retention_s: int) -> int:
    """Messages that arrived before this instant (epoch ms) have expired."""
    return int(now_s * 1000) - retention_s * 1000


def age_seconds(now_s: float, arrived_ms: int) -> float:
    """How long a message has waited, in seconds (never negative: clocks differ a little)."""
    return max(0.0, now_s - arrived_ms / 1000)


def expiry_notice(message: contract.MailboxEntry, retention_s: int) -> dict[str, Any] | None:
    """The send Lambda's event that tells the sender their message expired, or None when
    the stored message names no sender.

    The Id derives from the inbound Id, so however often this runs, the send Lambda's
    idempotency (thing + Id) texts the sender once.
    """
    try:
        inbound = json.loads(message.payload)
    except ValueError:
        return None
    sender = inbound.get("From") if isinstance(inbound, dict) else None
    if not contract.is_e164(sender):
        return None  # not a phone number (a WhatsApp or other channel address): not texted
    return {
        contract.THING_FIELD: message.thing,
        "Type": contract.OUTBOUND_TYPE,
        "Id": f"{message.message_id}:expired",
        "To": sender,
        "Body": EXPIRY_NOTICE.format(days=max(1, retention_s // 86400)),
    }
