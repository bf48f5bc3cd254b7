"""Custom resource entry point: point a Twilio number's "A message comes in" webhook at
the stack.

CloudFormation calls this Lambda on create, update and delete of each
`Custom::TwilioNumberWebhook`; crhelper answers CloudFormation (also on errors and
before the Lambda times out). The work is in `number_webhook`.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools import Logger
from crhelper import CfnResource
from twilio.rest import Client

from lambda_shared.twilio_rest import TwilioClients
from twilio_number_lambda import SERVICE
from twilio_number_lambda.config import NumberConfig
from twilio_number_lambda.number_webhook import Desired, configure, reconfigure, restore

TWILIO_TIMEOUT = 10.0
logger = Logger(service=SERVICE)
# INFO, not crhelper's default DEBUG, which logs the whole event.
helper = CfnResource(json_logging=True, log_level="INFO", boto_level="WARNING", sleep_on_delete=0)


@functools.cache
def twilio_clients() -> TwilioClients:
    """This container's Twilio client cache, built from the environment on first use."""
    config = NumberConfig.from_environ(os.environ)
    return TwilioClients(config.secret_name, timeout=TWILIO_TIMEOUT)


def twilio_client() -> Client:
    """A Twilio client with the credentials of the stack's secret."""
    return twilio_clients().client()


@helper.create
def create(event: dict[str, Any], _context: Any) -> str:
    """Remembers the number's webhook and sets the stack's; returns the physical ID."""
    desired = Desired.from_properties(event["ResourceProperties"])
    resource_id = configure(twilio_client(), desired)
    logger.info("webhook set", extra={"logical_id": event.get("LogicalResourceId")})
    return str(resource_id)


@helper.update
def update(event: dict[str, Any], _context: Any) -> str:
    """Sets the new URLs (a new number is configured afresh, the old one restored)."""
    desired = Desired.from_properties(event["ResourceProperties"])
    try:
        old: Desired | None = Desired.from_properties(event.get("OldResourceProperties", {}))
    except ValueError:
        old = None
    return str(reconfigure(twilio_client(), event["PhysicalResourceId"], old, desired))


@helper.delete
def delete(event: dict[str, Any], _context: Any) -> None:
    """Puts back the webhook the number had before this stack configured it."""
    try:
        desired: Desired | None = Desired.from_properties(event["ResourceProperties"])
    except (KeyError, ValueError):
        desired = None
    outcome = restore(twilio_client(), event["PhysicalResourceId"], desired)
    logger.info(f"delete: {outcome}", extra={"logical_id": event.get("LogicalResourceId")})


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> None:
    """Entry point: crhelper dispatches on RequestType and answers CloudFormation."""
    helper(event, context)
