"""Which device answers which Twilio number: the bindings table, read item by item, cached.

Each fleet shard's `Custom::DeviceBindings` (`device_bindings_lambda`) writes the table on
deploy, both directions (`contract.binding_items`): the receive Lambda looks a number up
(`ThingsByNumber`), the send Lambda a thing (`NumbersByThing`). Reads go through Powertools'
`DynamoDBProvider`, so a warm container reads each key once per `max_age`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters import DynamoDBProvider

import contract

BINDING_MAX_AGE_SECONDS = 60
"""How long a warm container trusts what it read: a new or moved binding applies within it."""


class _BindingTable(DynamoDBProvider):
    """A key with no item reads as "" instead of failing, so it is cached like a binding
    (an unbound key costs one read per max_age), and a DynamoDB error stays an error: the
    caller answers 500 or is retried, never "bound to nothing", which would drop a message."""

    def _get(self, name: str, **sdk_options: Any) -> str:
        item = self.table.get_item(Key={self.key_attr: name}, **sdk_options).get("Item")
        return str(item[self.value_attr]) if item else ""


class _BindingLookup:
    def __init__(
        self, table_name: str, dynamodb: Any, *, max_age: int = BINDING_MAX_AGE_SECONDS
    ) -> None:
        """`dynamodb`: a boto3 DynamoDB service resource, made once per container."""
        self._table = _BindingTable(
            table_name,
            key_attr=contract.BINDING_KEY,
            value_attr=contract.BINDING_VALUE,
            boto3_client=dynamodb,
        )
        self._max_age = max_age

    def _read(self, key: str) -> str:
        value = self._table.get(key, max_age=self._max_age)
        return value if isinstance(value, str) else ""


class ThingsByNumber(_BindingLookup):
    """Number -> the thing bound to it (None: bound to nothing)."""

    def get(self, number: str, /) -> str | None:
        """The thing bound to `number`. Raises GetParameterError if the table cannot be read."""
        if not number.startswith("+"):
            return None  # the table also maps things to numbers: look numbers up only
        return self._read(number) or None


class NumbersByThing(_BindingLookup):
    """Thing -> the number bound to it (None: the thing is bound to nothing)."""

    def get(self, thing: str, /) -> str | None:
        """The number bound to `thing`. Raises GetParameterError if the table cannot be read."""
        if not thing or thing.startswith("+"):
            return None  # the table also maps numbers to things: look things up only
        number = self._read(thing)
        return number if number.startswith("+") else None
