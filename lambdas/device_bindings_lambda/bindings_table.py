"""Writes one shard's number <-> thing bindings to the bindings table (pure of CloudFormation).

The table holds both directions (`contract.binding_items`) as items `{"id": key, "value":
value}`, the shape Powertools' `DynamoDBProvider` reads (`lambda_shared.bindings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import contract


def parse_bindings(properties: Mapping[str, Any]) -> dict[str, str]:
    """The custom resource's `Bindings` property (thing -> number), checked."""
    bindings = properties.get("Bindings", {})
    if not isinstance(bindings, dict) or not all(
        isinstance(k, str) and contract.THING_NAME.match(k) and contract.is_e164(v)
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
    wanted = contract.binding_items(new)
    for key, value in sorted(wanted.items()):
        table.put_item(Item={contract.BINDING_KEY: key, contract.BINDING_VALUE: value})
    removed = 0
    client = table.meta.client
    for key, value in sorted(contract.binding_items(old).items()):
        if key in wanted:
            continue
        try:
            table.delete_item(
                Key={contract.BINDING_KEY: key},
                ConditionExpression="#value = :old",
                ExpressionAttributeNames={"#value": contract.BINDING_VALUE},
                ExpressionAttributeValues={":old": value},
            )
            removed += 1
        except client.exceptions.ConditionalCheckFailedException:
            continue  # rebound elsewhere: not ours to delete
    return len(wanted), removed
