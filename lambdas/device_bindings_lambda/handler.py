"""Custom resource entry point: `Custom::DeviceBindings`, one per shard of the device fleet.

CloudFormation calls it when a shard's bindings change; crhelper answers CloudFormation
(also on errors). The Lambdas then read the table, so adding a device redeploys no Lambda.
Logs hold counts only, never a number.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from crhelper import CfnResource

from device_bindings_lambda import SERVICE
from device_bindings_lambda.bindings_table import apply, parse_bindings

logger = Logger(service=SERVICE)
# INFO, not crhelper's default DEBUG, which logs the whole event (numbers included).
helper = CfnResource(json_logging=True, log_level="INFO", boto_level="WARNING", sleep_on_delete=0)


@functools.cache
def dynamodb() -> Any:
    """This container's DynamoDB resource, made on first use (tests mock AWS before)."""
    return boto3.resource("dynamodb")


def _table(properties: dict[str, Any]) -> Any:
    return dynamodb().Table(properties["TableName"])


def _physical_id(properties: dict[str, Any]) -> str:
    """Names the table and the shard."""
    return f"{properties['TableName']}/{properties.get('Shard', '')}"


@helper.create
def create(event: dict[str, Any], _context: Any) -> str:
    """Writes the shard's bindings; returns the physical id."""
    properties = event["ResourceProperties"]
    written, _ = apply(_table(properties), {}, parse_bindings(properties))
    logger.info("bindings written", extra={"items": written, "shard": properties.get("Shard")})
    return _physical_id(properties)


@helper.update
def update(event: dict[str, Any], _context: Any) -> str:
    """Writes the new bindings and removes the ones that are gone (from the same table; a
    new table name gets everything written afresh and the old table's items are left)."""
    properties, old_properties = event["ResourceProperties"], event["OldResourceProperties"]
    same_table = old_properties.get("TableName") == properties["TableName"]
    old = parse_bindings(old_properties) if same_table else {}
    written, removed = apply(_table(properties), old, parse_bindings(properties))
    logger.info("bindings updated", extra={"items": written, "removed": removed})
    return _physical_id(properties)


@helper.delete
def delete(event: dict[str, Any], _context: Any) -> None:
    """Removes the shard's bindings (those no other shard has taken over)."""
    properties = event["ResourceProperties"]
    try:
        old = parse_bindings(properties)
    except ValueError:
        return  # a create that failed validation wrote nothing
    _, removed = apply(_table(properties), old, {})
    logger.info("bindings removed", extra={"removed": removed})


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> None:
    """Entry point: crhelper dispatches on RequestType and answers CloudFormation."""
    helper(event, context)
