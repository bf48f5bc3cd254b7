"""The bindings table: the shards' writer and the Lambdas' lookups, against moto."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from moto import mock_aws

from lambda_shared.bindings import NumbersByThing, ThingsByNumber
from loop import bindings
from stacks.python_function import LAMBDAS_DIR

REGION = "eu-west-1"
TABLE = "bindings"


@pytest.fixture
def table(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield boto3.resource("dynamodb", region_name=REGION).Table(TABLE)


def items(table: Any) -> dict[str, str]:
    return {i["id"]: i["value"] for i in table.scan()["Items"]}


def test_both_directions_are_written_and_removed_bindings_go(table: Any) -> None:
    writer = bindings.writer()
    assert writer.apply(table, {}, {"a": "+15555550100", "b": "+15555550101"}) == (4, 0)
    assert items(table) == {
        "a": "+15555550100",
        "+15555550100": "a",
        "b": "+15555550101",
        "+15555550101": "b",
    }
    assert writer.apply(
        table, {"a": "+15555550100", "b": "+15555550101"}, {"a": "+15555550100"}
    ) == (2, 2)
    assert items(table) == {"a": "+15555550100", "+15555550100": "a"}


def test_a_number_another_shard_took_over_is_not_deleted(table: Any) -> None:
    """The number moves from `a` (shard 1) to `b` (shard 2) in one deploy; the shards update
    in parallel, in either order: the number must end bound to `b`."""
    writer = bindings.writer()
    writer.apply(table, {}, {"a": "+15555550100"})
    writer.apply(table, {}, {"b": "+15555550100"})  # shard 2 first
    writer.apply(table, {"a": "+15555550100"}, {})  # then shard 1 drops a
    assert items(table) == {"b": "+15555550100", "+15555550100": "b"}


def test_the_custom_resource_writes_updates_and_deletes(table: Any) -> None:
    # Imported here, with a region set: crhelper builds its boto3 clients at import.
    from device_bindings_lambda import handler

    handler.dynamodb.cache_clear()  # a cold container, its DynamoDB resource made in moto
    properties = {"TableName": TABLE, "Shard": "Shard07", "Bindings": {"a": "+15555550100"}}
    physical_id = handler.create({"ResourceProperties": properties}, None)
    assert physical_id == f"{TABLE}/Shard07"
    moved = {**properties, "Bindings": {"c": "+15555550102"}}
    event = {"ResourceProperties": moved, "OldResourceProperties": properties}
    assert handler.update(event, None) == physical_id
    assert items(table) == {"c": "+15555550102", "+15555550102": "c"}
    handler.delete({"ResourceProperties": moved}, None)
    assert items(table) == {}
    with pytest.raises(ValueError, match=r"E\.164"):
        handler.create({"ResourceProperties": {**properties, "Bindings": {"a": "555"}}}, None)


def test_the_lookups_read_their_own_direction_only_and_cache(table: Any) -> None:
    bindings.fill(table, {"a": "+15555550100"})
    resource = boto3.resource("dynamodb", region_name=REGION)
    things = ThingsByNumber(TABLE, resource)
    numbers = NumbersByThing(TABLE, resource)
    assert things.get("+15555550100") == "a"
    assert things.get("a") is None  # a thing name is never a number
    assert things.get("+15555550199") is None  # bound to nothing
    assert numbers.get("a") == "+15555550100"
    assert numbers.get("+15555550100") is None
    assert numbers.get("nobody") is None
    # Cached for max_age: a warm container does not read the table per message.
    table.delete_item(Key={"id": "+15555550100"})
    assert things.get("+15555550100") == "a"


def test_a_table_that_cannot_be_read_is_an_error_not_an_unbound_number(aws_env: None) -> None:
    """A failure must not read as "bound to nothing": that answer drops the message."""
    with mock_aws():
        things = ThingsByNumber("missing", boto3.resource("dynamodb", region_name=REGION))
        with pytest.raises(GetParameterError):
            things.get("+15555550100")


BUNDLE_CHECK = """
import sys
sys.path[:0] = [{bundle!r}]
import aws_lambda_powertools, crhelper, device_bindings_lambda.handler as handler
for module in (aws_lambda_powertools, crhelper, handler):
    assert module.__file__.startswith({bundle!r}), module.__file__
print(handler.helper.__class__.__name__)
"""


def test_the_pruned_bundle_imports_the_handler(tmp_path: Path) -> None:
    """bundle-exclude.txt drops most of Powertools: the handler must still import."""
    from bench.receive_bench import build_bundle

    bundle = build_bundle(LAMBDAS_DIR / "device_bindings_lambda", tmp_path / "bundle")
    result = subprocess.run(
        [sys.executable, "-I", "-B", "-c", BUNDLE_CHECK.format(bundle=str(bundle))],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "eu-west-1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["CfnResource"]
