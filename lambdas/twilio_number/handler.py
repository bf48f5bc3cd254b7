"""Custom resource: point a Twilio number's "A message comes in" webhook at the stack.

CloudFormation calls this Lambda on create, update and delete of each
`Custom::TwilioNumberWebhook`; crhelper answers CloudFormation (also on errors and
before the Lambda times out). The work is in number_webhook.py.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

from crhelper import CfnResource
from number_webhook import Desired, configure, reconfigure, restore
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

TWILIO_TIMEOUT = 10.0
logger = logging.getLogger("twilio_number")
logger.setLevel(logging.INFO)
logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
# INFO, not crhelper's default DEBUG, which logs the whole event.
helper = CfnResource(json_logging=True, log_level="INFO", boto_level="WARNING", sleep_on_delete=0)

HttpClientFactory = Callable[[float], HttpClient]
_http_client_factory: HttpClientFactory = lambda timeout: TwilioHttpClient(timeout=timeout)  # noqa: E731


def use_http_client(factory: HttpClientFactory) -> None:
    """Replaces the transport (tests and the offline demo send to Prism)."""
    global _http_client_factory
    _http_client_factory = factory


def twilio_client() -> Client:
    """A Twilio client with the credentials of the stack's secret."""
    import boto3  # the runtime's; imported here so tests can mock AWS first

    secret = boto3.client("secretsmanager").get_secret_value(
        SecretId=os.environ["TWILIO_SECRET_NAME"]
    )
    credentials = json.loads(secret["SecretString"])
    sid, token = credentials.get("account_sid"), credentials.get("auth_token")
    if not sid or not token:
        raise ValueError(
            "the Twilio secret has no account_sid/auth_token yet: put them with "
            "`aws secretsmanager put-secret-value`, then deploy again"
        )
    return Client(sid, token, http_client=_http_client_factory(TWILIO_TIMEOUT))


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


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    """Entry point: crhelper dispatches on RequestType and answers CloudFormation."""
    helper(event, context)
