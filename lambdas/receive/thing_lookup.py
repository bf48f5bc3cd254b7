"""Which device a Twilio number reaches: the bindings table, read item by item and cached.

The table is written on deploy by each fleet shard (`Custom::DeviceBindings`); a number's
item is `{"id": "+15555550100", "value": "thing-name"}`. Read through Powertools'
`DynamoDBProvider`, so a warm container reads each number once per `max_age`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters import DynamoDBProvider

BINDING_MAX_AGE_SECONDS = 60
"""How long a warm container trusts what it read: a new or moved binding applies within it."""


class _BindingTable(DynamoDBProvider):
    """A key with no item reads as "" instead of failing, so it is cached like a binding
    (an unbound number costs one read per max_age) and a DynamoDB error stays an error."""

    def _get(self, name: str, **sdk_options: Any) -> str:
        item = self.table.get_item(Key={self.key_attr: name}, **sdk_options).get("Item")
        return str(item[self.value_attr]) if item else ""


class ThingsByNumber:
    """Number -> the thing bound to it (None: bound to nothing)."""

    def __init__(
        self, table_name: str, dynamodb: Any, *, max_age: int = BINDING_MAX_AGE_SECONDS
    ) -> None:
        self._table = _BindingTable(table_name, boto3_client=dynamodb)
        self._max_age = max_age

    def get(self, number: str, /) -> str | None:
        """The thing bound to `number`. Raises GetParameterError if the table cannot be read."""
        if not number.startswith("+"):
            return None  # the table also maps things to numbers: look numbers up only
        thing = self._table.get(number, max_age=self._max_age)
        return thing if isinstance(thing, str) and thing else None
