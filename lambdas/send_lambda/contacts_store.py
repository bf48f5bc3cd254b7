"""The send Lambda's side of the Contacts table: read a contact, count a send, record STOP.

The table's items (names in `contract`): a contact `{thing}#{number}` (written by the receive
Lambda: when the number last texted, whether it opted out) and a device's send counter of
the day `{thing}#sent#YYYYMMDD`, written here. Items expire by TTL.
"""

from __future__ import annotations

from typing import Any

import contract
from send_lambda.outbound_policy import Contact, Refusal, SendCounter

KEY = contract.CONTACT_KEY_ATTRIBUTE
LAST_INBOUND = contract.LAST_INBOUND_ATTRIBUTE
OPTED_OUT = contract.OPTED_OUT_ATTRIBUTE


class ContactsStore:
    """Single-item reads and writes on the Contacts table (GetItem, UpdateItem)."""

    def __init__(self, dynamodb_client: Any, table_name: str) -> None:
        self._dynamodb = dynamodb_client
        self._table = table_name

    def contact(self, thing: str, number: str) -> Contact:
        """What the table knows of `number` for `thing`; an unknown number is a stranger.

        Strongly consistent: a STOP recorded a moment ago must already count.
        """
        item = self._dynamodb.get_item(
            TableName=self._table,
            Key={KEY: {"S": contract.contact_key(thing, number)}},
            ConsistentRead=True,
            ProjectionExpression="#last, #opted_out",
            ExpressionAttributeNames={"#last": LAST_INBOUND, "#opted_out": OPTED_OUT},
        ).get("Item", {})
        last = item.get(LAST_INBOUND, {}).get("N")
        return Contact(
            last_inbound_at=int(float(last)) if last is not None else None,
            opted_out=bool(item.get(OPTED_OUT, {}).get("BOOL", False)),
        )

    def count(self, counter: SendCounter) -> Refusal | None:
        """Adds one send to the device's day and minute unless either reached its cap;
        returns the cap that refused it, or None when counted.

        One conditional UpdateItem: atomic for both caps, however many sends run at once,
        and a refused send is not counted.
        """
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={KEY: {"S": counter.key}},
                UpdateExpression="ADD #day :one, #minute :one "
                "SET #expires = if_not_exists(#expires, :exp)",
                ConditionExpression="(attribute_not_exists(#day) OR #day < :per_day) AND "
                "(attribute_not_exists(#minute) OR #minute < :per_minute)",
                ExpressionAttributeNames={
                    "#day": contract.SEND_COUNTER_DAY_ATTRIBUTE,
                    "#minute": counter.minute_attribute,
                    "#expires": contract.CONTACT_EXPIRY_ATTRIBUTE,
                },
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":per_day": {"N": str(counter.per_day)},
                    ":per_minute": {"N": str(counter.per_minute)},
                    ":exp": {"N": str(counter.expires_at)},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException as refused:
            old = refused.response.get("Item", {})
            counts = {name: int(value["N"]) for name, value in old.items() if "N" in value}
            return counter.refusal(counts)
        return None

    def record_opt_out(self, thing: str, number: str) -> None:
        """Marks `number` opted out for `thing` (Twilio answered 21610), so the next
        reply is refused without calling Twilio; a START clears it on the receive side."""
        self._dynamodb.update_item(
            TableName=self._table,
            Key={KEY: {"S": contract.contact_key(thing, number)}},
            UpdateExpression="SET #opted_out = :true",
            ExpressionAttributeNames={"#opted_out": OPTED_OUT},
            ExpressionAttributeValues={":true": {"BOOL": True}},
        )
