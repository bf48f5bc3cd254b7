"""The send Lambda's I/O: Twilio credentials, the Twilio client, idempotency and dead letters.

Built once per container (see handler.py) and reused by warm invocations: the secret is
cached for SECRET_MAX_AGE seconds, the Twilio client as long as the credentials do not
change. Failures follow the issue's contract:

- the message breaks the rules: one specific log line, no SMS, no retry;
- Twilio 5xx/429, timeout, connection error: raise, so Lambda retries the event and, after
  its retries, puts it in the dead-letter queue (its on-failure destination);
- any other Twilio 4xx (21211 invalid number...): logged with Twilio's code, written to the
  dead-letter queue by this code, and the invocation succeeds so Lambda does not retry;
- the same device message (thing + Id) delivered again: at most one SMS (DynamoDB record
  of Twilio's message SID).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import requests
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyValidationError
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from outbound import (
    Failure,
    OutboundMessage,
    Reason,
    Rejected,
    SendSettings,
    classify_status,
    credentials_from_secret,
    dead_letter_record,
    parse_message,
)
from twilio.base import values
from twilio.base.exceptions import TwilioRestException
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

# Shorter than the Lambda timeout (20 s) even for connect + read: a hung Twilio becomes a
# retried invocation, not a Lambda timeout.
TWILIO_TIMEOUT = 6.0
SECRET_MAX_AGE = 300
# Longer than the async event's maximum age (6 h), so every retry of an event finds it.
IDEMPOTENCY_TTL = 24 * 3600
PERMANENT_CONDITION = "PermanentTwilioError"

logger = Logger(service="send")
# twilio's client logs each request at INFO; keep it quiet (URLs carry the account SID).
_twilio_logger = logging.getLogger("twilio.http_client")
_twilio_logger.setLevel(logging.WARNING)

HttpClientFactory = Callable[[float], HttpClient]


def default_http_client(timeout: float) -> HttpClient:
    """The production transport: twilio's own client with a finite timeout."""
    return TwilioHttpClient(timeout=timeout, logger=_twilio_logger)


class TransientTwilioError(RuntimeError):
    """Twilio may accept the same request later: the invocation fails and is retried."""


class PermanentTwilioError(RuntimeError):
    """Twilio refused the message for good (4xx other than 429)."""

    def __init__(self, status: int, code: int | None) -> None:
        super().__init__(f"Twilio answered {status} with code {code}")
        self.status = status
        self.code = code


class SendRuntime:
    """Sends validated device messages through Twilio, at most once per thing + Id."""

    def __init__(
        self,
        *,
        settings: SendSettings,
        secret_name: str,
        table_name: str,
        dead_letter_queue_url: str,
        secrets_client: Any,
        dynamodb_client: Any,
        sqs_client: Any,
        http_client_factory: HttpClientFactory = default_http_client,
        twilio_timeout: float = TWILIO_TIMEOUT,
    ) -> None:
        self.settings = settings
        self._secret_name = secret_name
        self._dead_letter_queue_url = dead_letter_queue_url
        self._secrets = SecretsProvider(boto3_client=secrets_client)
        self._sqs = sqs_client
        self._http_client_factory = http_client_factory
        self._twilio_timeout = twilio_timeout
        self._client: tuple[tuple[str, str], Client] | None = None
        self._idempotency = IdempotencyConfig(
            event_key_jmespath="key",
            # The same thing + Id with another recipient or text is a device bug: refuse it.
            payload_validation_jmespath="[from, to, body, media]",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=IDEMPOTENCY_TTL,
        )
        persistence = DynamoDBPersistenceLayer(table_name=table_name, boto3_client=dynamodb_client)
        self._send_once = idempotent_function(
            data_keyword_argument="record",
            persistence_store=persistence,
            config=self._idempotency,
            key_prefix="send",
        )(self._send)

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str],
        *,
        http_client_factory: HttpClientFactory = default_http_client,
        twilio_timeout: float = TWILIO_TIMEOUT,
    ) -> SendRuntime:
        """Built from the Lambda's environment variables, with boto3's default clients."""
        import boto3  # here, not at import: tests and the demo build clients after mocking

        return cls(
            settings=SendSettings.from_environment(environ),
            secret_name=environ["TWILIO_SECRET_NAME"],
            table_name=environ["IDEMPOTENCY_TABLE"],
            dead_letter_queue_url=environ["DEAD_LETTER_QUEUE_URL"],
            secrets_client=boto3.client("secretsmanager"),
            dynamodb_client=boto3.client("dynamodb"),
            sqs_client=boto3.client("sqs"),
            http_client_factory=http_client_factory,
            twilio_timeout=twilio_timeout,
        )

    def twilio(self) -> Client:
        """The Twilio client for the current credentials (rebuilt only when they change)."""
        secret = self._secrets.get(self._secret_name, transform="json", max_age=SECRET_MAX_AGE)
        credentials = credentials_from_secret(secret)
        if self._client is None or self._client[0] != credentials:
            http_client = self._http_client_factory(self._twilio_timeout)
            self._client = (credentials, Client(*credentials, http_client=http_client))
        return self._client[1]

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        """Processes one topic-rule event; raises only when Lambda should retry it."""
        self._idempotency.register_lambda_context(context)
        where = _log_keys(event)
        try:
            message = parse_message(event, self.settings)
            result: dict[str, Any] = self._send_once(record=message.as_record())
        except Rejected as rejected:
            return self._rejected(rejected, where)
        except IdempotencyValidationError:
            reused = Rejected(Reason.ID_REUSED, "this Id was already sent with other content")
            return self._rejected(reused, where)
        except PermanentTwilioError as error:
            logger.error(
                "Twilio refused the message: dead-lettered, not retried",
                extra={**where, "twilio_status": error.status, "twilio_code": error.code},
            )
            self._dead_letter(event, context, error)
            return {"outcome": "dead-lettered", "twilio_code": error.code}
        except TransientTwilioError as error:
            logger.warning("Twilio failed for now: retrying", extra={**where, "error": str(error)})
            raise
        logger.info("sent", extra={**where, "sid": result["sid"]})
        return {"outcome": "sent", **result}

    def _send(self, record: dict[str, Any]) -> dict[str, str]:
        """Calls Twilio's Messages API once (wrapped by the idempotency utility)."""
        media = record["media"]
        try:
            sent = self.twilio().messages.create(
                to=record["to"],
                from_=record["from"],
                body=record["body"] or values.unset,
                media_url=media or values.unset,
                status_callback=self.settings.status_callback_url or values.unset,
            )
        except TwilioRestException as error:
            if classify_status(error.status) is Failure.TRANSIENT:
                raise TransientTwilioError(f"Twilio answered {error.status}") from error
            code = error.code if isinstance(error.code, int) else None
            raise PermanentTwilioError(error.status, code) from error
        except requests.RequestException as error:
            # Timeout or connection error: Twilio may not have the message; try again.
            raise TransientTwilioError(type(error).__name__) from error
        return {"sid": str(sent.sid), "status": str(sent.status)}

    def _dead_letter(self, event: Any, context: Any, error: PermanentTwilioError) -> None:
        record = dead_letter_record(
            event,
            condition=PERMANENT_CONDITION,
            request_id=str(getattr(context, "aws_request_id", "")),
            function_arn=str(getattr(context, "invoked_function_arn", "")),
            error={
                "errorType": PERMANENT_CONDITION,
                "twilioStatus": error.status,
                "twilioCode": error.code,
            },
        )
        # If this fails, the exception fails the invocation and Lambda retries: not lost.
        self._sqs.send_message(
            QueueUrl=self._dead_letter_queue_url,
            MessageBody=json.dumps(record, ensure_ascii=False),
        )

    @staticmethod
    def _rejected(rejected: Rejected, where: dict[str, Any]) -> dict[str, Any]:
        logger.warning(
            f"rejected: {rejected.reason}",
            extra={**where, "reason": str(rejected.reason), "detail": rejected.detail},
        )
        return {"outcome": "rejected", "reason": str(rejected.reason)}


def _log_keys(event: Any) -> dict[str, Any]:
    """What may be logged about a message: the thing and the device's Id, never a number
    or a body."""
    if not isinstance(event, Mapping):
        return {}
    keys = {"thing": event.get("thing"), "message_id": event.get("Id")}
    return {k: v[:128] for k, v in keys.items() if isinstance(v, str)}


__all__ = ["OutboundMessage", "PermanentTwilioError", "SendRuntime", "TransientTwilioError"]
