"""The receive side of the mailbox: every message for a device is recorded before it is
published, and so before Twilio gets its answer.

The item's shape is the contract's (`contract.MailboxEntry`): key thing + Id (the
MessageSid), the arrival time that orders a device's messages, the exact topic and payload
published, and a DynamoDB TTL that only backs up the mailbox sweeper. The device confirms
by Id, which deletes the item (lambdas/mailbox_lambda).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import contract


class MailboxRecorder:
    """Writes a message to the mailbox once: a retried webhook keeps its first arrival."""

    def __init__(
        self,
        dynamodb: Any,
        table_name: str,
        retention_seconds: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dynamodb = dynamodb
        self._table = table_name
        self._retention = retention_seconds
        self._clock = clock

    def record(self, *, thing: str, message_id: str, topic: str, payload: bytes) -> bool:
        """Records the message; False if it was already recorded (a retried delivery)."""
        now = self._clock()
        entry = contract.MailboxEntry(
            thing=thing,
            message_id=message_id,
            arrived_ms=int(now * 1000),
            topic=topic,
            payload=payload.decode("utf-8"),
        )
        expires_at = int(now) + self._retention + contract.MAILBOX_TTL_GRACE_SECONDS
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item=entry.item(expires_at),
                ConditionExpression=f"attribute_not_exists({contract.MAILBOX_ID})",
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True
