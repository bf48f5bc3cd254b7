"""Receive Lambda: Twilio's webhook (through API Gateway's request template) -> the device.

Thin: decoding, signature, validation and the decision live in `webhook` (pure logic); the
token cache and the once-only publish in `adapters`. Errors reach API Gateway as the
exception message: `Forbidden: ...` -> 403, `BadRequest: ...` -> 400, anything else
(`InternalError: ...`, timeouts) -> 500, so Twilio tries the fallback URL and the 5xx alarm
fires. Logs are JSON with the request ids; phone numbers are masked, bodies never logged.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import boto3
from adapters import InboundPublisher, SecretTokenSource
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailbox_record import MailboxRecorder
from webhook import (
    BadRequest,
    ConfigurationError,
    Publish,
    ReceiveConfig,
    TooLong,
    Unbound,
    WebhookError,
    authenticate,
    decide,
    mask_number,
    parse_event,
)

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "receive"))


class InternalError(Exception):
    """Anything that is not the caller's fault; its message never carries message data."""


@dataclass(frozen=True)
class Receiver:
    """One container's configuration and clients, built once and reused while warm."""

    config: ReceiveConfig
    tokens: SecretTokenSource
    publisher: InboundPublisher

    def handle(self, event: Any, context: LambdaContext) -> str:
        """Returns the TwiML to answer; raises WebhookError for a 403/400."""
        request = parse_event(event)
        logger.append_keys(api_request_id=request.api_request_id)
        authenticate(request, self.tokens)
        decision = decide(request.form, self.config)
        if isinstance(decision, Unbound):
            logger.info("No device is bound to the number texted", to=mask_number(decision.to))
        elif isinstance(decision, TooLong):
            logger.info(
                "Body over the limit: the sender is told, nothing published",
                thing=decision.thing,
                message_sid=decision.message_sid,
                body_length=decision.length,
                body_limit=decision.limit,
                payload_bytes=decision.payload_bytes,
            )
        elif isinstance(decision, Publish):
            published = self.publisher.publish(decision, context)
            message = decision.message
            logger.info(
                "Published" if published else "Repeated delivery: already published",
                thing=decision.thing,
                topic=decision.topic,
                message_sid=message["Id"],
                sender=mask_number(message["From"]),
                body_length=len(message["Body"]),
                media=len(message["Media"]),
            )
        twiml: str = decision.twiml
        return twiml


@functools.cache
def receiver() -> Receiver:
    """Builds the Receiver from the environment on first use (cleared by tests)."""
    environ = os.environ
    dynamodb = boto3.client("dynamodb")
    return Receiver(
        config=ReceiveConfig.from_environ(environ),
        tokens=SecretTokenSource(
            SecretsProvider(boto3_client=boto3.client("secretsmanager")),
            environ["TWILIO_SECRET_NAME"],
        ),
        publisher=InboundPublisher(
            boto3.client("iot-data"),
            DynamoDBPersistenceLayer(
                table_name=environ["IDEMPOTENCY_TABLE"], boto3_client=dynamodb
            ),
            mailbox=MailboxRecorder(
                dynamodb, environ["MAILBOX_TABLE"], int(environ["MAILBOX_RETENTION_SECONDS"])
            ),
        ),
    )


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> str:
    """API Gateway (non-proxy) entry point: returns TwiML or raises a prefixed error."""
    try:
        return receiver().handle(event, context)
    except WebhookError as error:
        status = 400 if isinstance(error, BadRequest) else 403
        logger.warning("Request rejected", status=status, reason=error.reason)
        raise
    except ConfigurationError as error:
        logger.error(str(error))
        raise InternalError("InternalError: the receiver is misconfigured; see its logs") from None
    except Exception:
        logger.exception("Unexpected failure: the message was not delivered")
        raise InternalError("InternalError: the message could not be delivered") from None
