"""The mailbox Lambdas' I/O: the DynamoDB table, IoT data Publish, the send Lambda.

The table is written by the receive Lambda (lambdas/receive/mailbox_record.py): key
`thing` + `id`, `arrived` (epoch ms) sorted by the local secondary index `by_arrival`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from mailbox_rules import Pending

BY_ARRIVAL = "by_arrival"


class MailboxStore:
    """One table's pending messages, read per device in arrival order."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self._dynamodb = dynamodb
        self._table = table_name

    def take(self, thing: str, message_id: str) -> bool:
        """Removes a message the device confirmed; False if it was not (or no longer) there."""
        result = self._dynamodb.delete_item(
            TableName=self._table,
            Key={"thing": {"S": thing}, "id": {"S": message_id}},
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in result

    def expire(self, message: Pending) -> bool:
        """Removes an expired message; False if the device confirmed it meanwhile."""
        try:
            self._dynamodb.delete_item(
                TableName=self._table,
                Key={"thing": {"S": message.thing}, "id": {"S": message.message_id}},
                ConditionExpression="attribute_exists(id)",
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def pending(self, thing: str, *, before_ms: int | None = None) -> Iterator[Pending]:
        """The device's waiting messages, oldest first (only those older than `before_ms`)."""
        condition = "thing = :thing"
        values: dict[str, Any] = {":thing": {"S": thing}}
        if before_ms is not None:
            condition += " AND arrived < :before"
            values[":before"] = {"N": str(before_ms)}
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": BY_ARRIVAL,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": True,
            # Strongly consistent: a message recorded just before the device asked is found.
            "ConsistentRead": True,
        }
        while True:
            page = self._dynamodb.query(**query)
            for item in page.get("Items", []):
                yield _pending(item)
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def oldest(self, thing: str) -> Pending | None:
        """The device's oldest waiting message, or None (one small read)."""
        page = self._dynamodb.query(
            TableName=self._table,
            IndexName=BY_ARRIVAL,
            KeyConditionExpression="thing = :thing",
            ExpressionAttributeValues={":thing": {"S": thing}},
            ScanIndexForward=True,
            Limit=1,
        )
        items = page.get("Items", [])
        return _pending(items[0]) if items else None


def _pending(item: dict[str, Any]) -> Pending:
    return Pending(
        thing=item["thing"]["S"],
        message_id=item["id"]["S"],
        arrived_ms=int(item["arrived"]["N"]),
        topic=item["topic"]["S"],
        payload=item["payload"]["S"],
    )


class Redelivery:
    """Publishes waiting messages to their device again, exactly as first published."""

    def __init__(self, iot_data: Any) -> None:
        self._iot_data = iot_data

    def publish(self, message: Pending) -> None:
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
