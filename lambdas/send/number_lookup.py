"""Which number a device sends from: the bindings table, read item by item and cached.

The table is written on deploy by each fleet shard (`Custom::DeviceBindings`); a thing's
item is `{"id": "thing-name", "value": "+15555550100"}`. Read through Powertools'
`DynamoDBProvider`, so a warm container reads each thing once per `max_age`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters import DynamoDBProvider

BINDING_MAX_AGE_SECONDS = 60
"""How long a warm container trusts what it read: a new or moved binding applies within it."""


class _BindingTable(DynamoDBProvider):
    """A key with no item reads as "" instead of failing, so it is cached like a binding
    and a DynamoDB error stays an error (the invocation is retried)."""

    def _get(self, name: str, **sdk_options: Any) -> str:
        item = self.table.get_item(Key={self.key_attr: name}, **sdk_options).get("Item")
        return str(item[self.value_attr]) if item else ""


class NumbersByThing:
    """Thing -> the number bound to it (None: the thing is bound to nothing)."""

    def __init__(
        self, table_name: str, dynamodb: Any, *, max_age: int = BINDING_MAX_AGE_SECONDS
    ) -> None:
        self._table = _BindingTable(table_name, boto3_client=dynamodb)
        self._max_age = max_age

    def get(self, thing: str, /) -> str | None:
        """The number bound to `thing`. Raises GetParameterError if the table cannot be read."""
        if not thing or thing.startswith("+"):
            return None  # the table also maps numbers to things: look things up only
        number = self._table.get(thing, max_age=self._max_age)
        return number if isinstance(number, str) and number.startswith("+") else None
