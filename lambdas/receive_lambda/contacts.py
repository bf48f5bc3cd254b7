"""The Contacts table: who texted which device when, and who opted out (read by the send side).

One item per device and sender, keyed `contract.contact_key(thing, number)`:

- `last_inbound_at` (epoch seconds): the last accepted message from that number; the send
  Lambda answers only numbers that texted the device within its reply window;
- `opted_out` (bool): set by STOP, cleared by START, so the send Lambda never texts a number
  Twilio would refuse (error 21610);
- `expires_at` (DynamoDB TTL): the item is forgotten `contract.CONTACT_RECORD_DAYS` after
  the last message, except while opted out (an opt-out holds until START).

`*_update` build the UpdateItem arguments (pure); `ContactsTable` sends them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import contract
from receive_lambda.inbound_policy import Consent

RECORD_SECONDS = contract.CONTACT_RECORD_DAYS * 86400

Update = dict[str, Any]

_NAMES = {
    "#last": contract.LAST_INBOUND_ATTRIBUTE,
    "#opted_out": contract.OPTED_OUT_ATTRIBUTE,
    "#expires": contract.CONTACT_EXPIRY_ATTRIBUTE,
}
"""The contract's attribute names, as the update expressions write them."""


def _update(thing: str, number: str, expression: str, values: dict[str, Any]) -> Update:
    names = {name: value for name, value in _NAMES.items() if name in expression}
    update: Update = {
        "Key": item_key(thing, number),
        "UpdateExpression": expression,
        "ExpressionAttributeNames": names,
    }
    if values:
        update["ExpressionAttributeValues"] = values
    return update


def item_key(thing: str, number: str) -> dict[str, dict[str, str]]:
    """The item's key (DynamoDB JSON)."""
    return {contract.CONTACT_KEY_ATTRIBUTE: {"S": contract.contact_key(thing, number)}}


def inbound_update(thing: str, number: str, now: int) -> Update:
    """An accepted message: opens the reply window; the TTL moves unless opted out."""
    update = _update(
        thing,
        number,
        "SET #last = :now, #expires = :expires",
        {
            ":now": {"N": str(now)},
            ":expires": {"N": str(now + RECORD_SECONDS)},
            ":false": {"BOOL": False},
        },
    )
    update["ExpressionAttributeNames"]["#opted_out"] = contract.OPTED_OUT_ATTRIBUTE
    update["ConditionExpression"] = "attribute_not_exists(#opted_out) OR #opted_out = :false"
    return update


def inbound_update_opted_out(thing: str, number: str, now: int) -> Update:
    """An accepted message from an opted-out number: the window moves, the opt-out stays."""
    return _update(thing, number, "SET #last = :now", {":now": {"N": str(now)}})


def consent_update(thing: str, number: str, signal: Consent, now: int) -> Update | None:
    """STOP: opted out until START, never expires. START: opted in, window open. HELP: none."""
    if signal is Consent.STOP:
        return _update(
            thing, number, "SET #opted_out = :true REMOVE #expires", {":true": {"BOOL": True}}
        )
    if signal is Consent.START:
        return _update(
            thing,
            number,
            "SET #opted_out = :false, #last = :now, #expires = :expires",
            {
                ":false": {"BOOL": False},
                ":now": {"N": str(now)},
                ":expires": {"N": str(now + RECORD_SECONDS)},
            },
        )
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
