"""Writes one shard's number <-> thing bindings to the bindings table (pure of CloudFormation).

The table holds both directions as items `{"id": key, "value": value}`, the shape
Powertools' `DynamoDBProvider` reads: the number's item names its thing (the receive
Lambda's lookup) and the thing's item names its number (the send Lambda's). The two kinds
of key cannot collide: an E.164 number starts with `+`, which no thing name contains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

KEY_ATTRIBUTE = "id"
VALUE_ATTRIBUTE = "value"


def table_items(bindings: Mapping[str, str]) -> dict[str, str]:
    """Every item of these bindings: number -> thing and thing -> number."""
    items: dict[str, str] = {}
    for thing, number in bindings.items():
        items[number] = thing
        items[thing] = number
    return items


def parse_bindings(properties: Mapping[str, Any]) -> dict[str, str]:
    """The custom resource's `Bindings` property (thing -> number), checked."""
    bindings = properties.get("Bindings", {})
    if not isinstance(bindings, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.startswith("+") and "+" not in k
        for k, v in bindings.items()
    ):
        raise ValueError("Bindings must map thing names to E.164 numbers")
    return dict(bindings)


def apply(table: Any, old: Mapping[str, str], new: Mapping[str, str]) -> tuple[int, int]:
    """Makes the table hold `new` instead of `old`; returns (items written, items removed).

    Every item of `new` is written (idempotent, and it repairs a table that lost items).
    An item of `old` that `new` lacks is deleted only if it still holds the old value:
    another shard may already have bound that number to its own device in the same deploy.
    """
    wanted = table_items(new)
    for key, value in sorted(wanted.items()):
        table.put_item(Item={KEY_ATTRIBUTE: key, VALUE_ATTRIBUTE: value})
    removed = 0
    client = table.meta.client
    for key, value in sorted(table_items(old).items()):
        if key in wanted:
            continue
        try:
            table.delete_item(
                Key={KEY_ATTRIBUTE: key},
                ConditionExpression="#value = :old",
                ExpressionAttributeNames={"#value": VALUE_ATTRIBUTE},
                ExpressionAttributeValues={":old": value},
            )
            removed += 1
        except client.exceptions.ConditionalCheckFailedException:
            continue  # rebound elsewhere: not ours to delete
    return len(wanted), removed
