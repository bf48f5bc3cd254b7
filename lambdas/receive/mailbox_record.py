"""The receive side of the mailbox: every message for a device is recorded before it is
published, and so before Twilio gets its answer.

The mailbox (a DynamoDB table, see stacks/mailbox.py) keeps one item per message still
waiting for its device: key `thing` + `id` (the MessageSid), `arrived` (epoch milliseconds,
the sort key of the `by_arrival` index), the exact `payload` and `topic` published, and
`expires_at` (DynamoDB TTL, a backstop: the mailbox sweeper expires messages first, so
every expiry is counted). The device confirms by Id, which deletes the item.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

TTL_GRACE_SECONDS = 2 * 24 * 3600
"""DynamoDB's TTL only backs the sweeper up, which expires (and counts) messages first."""


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
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    "thing": {"S": thing},
                    "id": {"S": message_id},
                    "arrived": {"N": str(int(now * 1000))},
                    "topic": {"S": topic},
                    "payload": {"S": payload.decode("utf-8")},
                    "expires_at": {"N": str(int(now) + self._retention + TTL_GRACE_SECONDS)},
                },
                ConditionExpression="attribute_not_exists(id)",
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True
