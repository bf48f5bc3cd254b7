"""The mailbox Lambdas' I/O: the DynamoDB table, IoT data Publish, the send Lambda.

The table is written by the receive Lambda (lambdas/receive_lambda/mailbox_record.py); its
items are `contract.MailboxEntry`, read per device in arrival order through the local
secondary index `contract.MAILBOX_BY_ARRIVAL`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import contract


class MailboxStore:
    """One table's pending messages."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name

    def take(self, thing: str, message_id: str) -> bool:
        """Removes a message the device confirmed; False if it was not (or no longer) there."""
        result = self._dynamodb.delete_item(
            TableName=self._table,
            Key=contract.mailbox_key(thing, message_id),
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in result

    def expire(self, message: contract.MailboxEntry) -> bool:
        """Removes an expired message; False if the device confirmed it meanwhile."""
        try:
            self._dynamodb.delete_item(
                TableName=self._table,
                Key=contract.mailbox_key(message.thing, message.message_id),
                ConditionExpression=f"attribute_exists({contract.MAILBOX_ID})",
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def pending(self, thing: str) -> Iterator[contract.MailboxEntry]:
        """The device's waiting messages, oldest first."""
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": contract.MAILBOX_BY_ARRIVAL,
            "KeyConditionExpression": f"{contract.MAILBOX_THING} = :thing",
            "ExpressionAttributeValues": {":thing": {"S": thing}},
            "ScanIndexForward": True,
            # Strongly consistent: a message recorded just before the device asked is found.
            "ConsistentRead": True,
        }
        yield from self._pages("query", query)

    def everything(self) -> Iterator[contract.MailboxEntry]:
        """Every waiting message of every device, in no order (the sweeper's read).

        A scan, so the sweeper needs no list of devices: the table holds only messages
        not yet confirmed, normally a handful, so the read stays small as the fleet grows.
        """
        yield from self._pages("scan", {"TableName": self._table, "ConsistentRead": True})

    def _pages(self, operation: str, request: dict[str, Any]) -> Iterator[contract.MailboxEntry]:
        call = getattr(self._dynamodb, operation)
        while True:
            page = call(**request)
            for item in page.get("Items", []):
                yield contract.MailboxEntry.from_item(item)
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class Redelivery:
    """Publishes waiting messages to their device again, exactly as first published."""

    def __init__(self, iot_data: Any) -> None:
        self._iot_data = iot_data

    def publish(self, message: contract.MailboxEntry) -> None:
        """QoS 1, the same topic and bytes: the device cannot tell it from the first try."""
        self._iot_data.publish(topic=message.topic, qos=1, payload=message.payload.encode("utf-8"))


class SenderNotifier:
    """Hands an expiry notice to the send Lambda (asynchronously: its retries and
    dead-letter queue apply, and its idempotency texts once)."""

    def __init__(self, lambda_client: Any, send_function: str) -> None:
        self._lambda = lambda_client
        self._function = send_function

    def notify(self, event: dict[str, Any]) -> None:
        """Invokes the send Lambda with `event` (InvocationType Event)."""
        self._lambda.invoke(
            FunctionName=self._function,
            InvocationType="Event",
            Payload=json.dumps(event, ensure_ascii=False).encode("utf-8"),
        )
