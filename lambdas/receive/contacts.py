"""The Contacts table: who texted which device when, and who opted out (read by the send side).

One item per device and sender, `pk = "{thing}#{number}"`:

- `last_inbound_at` (epoch seconds): the last accepted message from that number; the send
  Lambda answers only numbers that texted the device within its reply window;
- `opted_out` (bool): set by STOP, cleared by START, so the send Lambda never texts a number
  Twilio would refuse (error 21610);
- `expires_at` (DynamoDB TTL): the item is forgotten `RECORD_SECONDS` after the last message,
  except while opted out (an opt-out holds until START).

`*_update` build the UpdateItem arguments (pure); `ContactsTable` sends them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from inbound_policy import Consent

RECORD_SECONDS = 400 * 86400
"""How long a contact is remembered after its last message: longer than any reply window
the send side allows (at most a year), so the window, not the TTL, decides."""

Update = dict[str, Any]


def contact_key(thing: str, number: str) -> dict[str, dict[str, str]]:
    """The item's key (DynamoDB JSON)."""
    return {"pk": {"S": f"{thing}#{number}"}}


def inbound_update(thing: str, number: str, now: int) -> Update:
    """An accepted message: opens the reply window; the TTL moves unless opted out."""
    return {
        "Key": contact_key(thing, number),
        "UpdateExpression": "SET last_inbound_at = :now, expires_at = :expires",
        "ConditionExpression": "attribute_not_exists(opted_out) OR opted_out = :false",
        "ExpressionAttributeValues": {
            ":now": {"N": str(now)},
            ":expires": {"N": str(now + RECORD_SECONDS)},
            ":false": {"BOOL": False},
        },
    }


def inbound_update_opted_out(thing: str, number: str, now: int) -> Update:
    """An accepted message from an opted-out number: the window moves, the opt-out stays."""
    return {
        "Key": contact_key(thing, number),
        "UpdateExpression": "SET last_inbound_at = :now",
        "ExpressionAttributeValues": {":now": {"N": str(now)}},
    }


def consent_update(thing: str, number: str, signal: Consent, now: int) -> Update | None:
    """STOP: opted out until START, never expires. START: opted in, window open. HELP: none."""
    if signal is Consent.STOP:
        return {
            "Key": contact_key(thing, number),
            "UpdateExpression": "SET opted_out = :true REMOVE expires_at",
            "ExpressionAttributeValues": {":true": {"BOOL": True}},
        }
    if signal is Consent.START:
        return {
            "Key": contact_key(thing, number),
            "UpdateExpression": (
                "SET opted_out = :false, last_inbound_at = :now, expires_at = :expires"
            ),
            "ExpressionAttributeValues": {
                ":false": {"BOOL": False},
                ":now": {"N": str(now)},
                ":expires": {"N": str(now + RECORD_SECONDS)},
            },
        }
    return None


class ContactsTable:
    """Writes contacts with single-item UpdateItem calls (the only action it is granted)."""

    def __init__(
        self, dynamodb: Any, table_name: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock())

    def record_inbound(self, thing: str, number: str) -> None:
        """One write; two when the number has opted out (the condition keeps its TTL off)."""
        now = self._now()
        try:
            self._dynamodb.update_item(TableName=self._table, **inbound_update(thing, number, now))
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            self._dynamodb.update_item(
                TableName=self._table, **inbound_update_opted_out(thing, number, now)
            )

    def record_consent(self, thing: str, number: str, signal: Consent) -> None:
        """Records STOP or START (one write); HELP changes nothing."""
        update = consent_update(thing, number, signal, self._now())
        if update is not None:
            self._dynamodb.update_item(TableName=self._table, **update)
