"""Receive Lambda entry point: Twilio's webhook (through API Gateway's request template)
-> the device.

Thin: decoding, signature, validation and the decision are pure logic (`event`, `form`,
`signature`, `decision`); the token cache and the once-only publish are in `adapters`.
Errors reach API Gateway as the exception message: `Forbidden: ...` -> 403,
`BadRequest: ...` -> 400, anything else (`InternalError: ...`, timeouts) -> 500, so Twilio
tries the fallback URL and the 5xx alarm fires. Logs are JSON with the request ids; phone
numbers are masked, bodies never logged.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambda_shared.bindings import ThingsByNumber
from lambda_shared.logs import mask_number
from lambda_shared.twilio_credentials import MissingCredentials
from receive_lambda import SERVICE
from receive_lambda.adapters import InboundPublisher, SecretTokenSource
from receive_lambda.config import ReceiveConfig
from receive_lambda.decision import Publish, ThingLookup, TooLong, Unbound, decide
from receive_lambda.errors import BadRequest, ConfigurationError, WebhookError
from receive_lambda.event import parse_event
from receive_lambda.mailbox_record import MailboxRecorder
from receive_lambda.signature import authenticate

logger = Logger(service=SERVICE)


class InternalError(Exception):
    """Anything that is not the caller's fault; its message never carries message data."""


@dataclass(frozen=True)
class Receiver:
    """One container's configuration and clients, built once and reused while warm."""

    config: ReceiveConfig
    things_by_number: ThingLookup
    tokens: SecretTokenSource
    publisher: InboundPublisher

    def handle(self, event: Any, context: LambdaContext) -> str:
        """Returns the TwiML to answer; raises WebhookError for a 403/400."""
        request = parse_event(event)
        logger.append_keys(api_request_id=request.api_request_id)
        authenticate(request, self.tokens)
        decision = decide(request.form, self.config, self.things_by_number)
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
def runtime() -> Receiver:
    """This container's Receiver, built from the environment on first use (tests clear it)."""
    config = ReceiveConfig.from_environ(os.environ)
    dynamodb = boto3.client("dynamodb")
    return Receiver(
        config=config,
        things_by_number=ThingsByNumber(config.bindings_table, boto3.resource("dynamodb")),
        tokens=SecretTokenSource(config.secret_name),
        publisher=InboundPublisher(
            boto3.client("iot-data"),
            DynamoDBPersistenceLayer(table_name=config.idempotency_table, boto3_client=dynamodb),
            mailbox=MailboxRecorder(
                dynamodb, config.mailbox_table, config.mailbox_retention_seconds
            ),
        ),
    )


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> str:
    """API Gateway (non-proxy) entry point: returns TwiML or raises a prefixed error."""
    try:
        return runtime().handle(event, context)
    except WebhookError as error:
        status = 400 if isinstance(error, BadRequest) else 403
        logger.warning("Request rejected", status=status, reason=error.reason)
        raise
    except (ConfigurationError, MissingCredentials) as error:
        logger.error(str(error))
        raise InternalError("InternalError: the receiver is misconfigured; see its logs") from None
    except Exception:
        logger.exception("Unexpected failure: the message was not delivered")
        raise InternalError("InternalError: the message could not be delivered") from None
