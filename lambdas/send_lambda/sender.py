"""The send Lambda's I/O: Twilio credentials, the Twilio client, idempotency and dead letters.

Built once per container (see handler.py) and reused by warm invocations: the secret is
cached by Powertools, the Twilio client kept as long as the credentials do not change
(`lambda_shared`). Failures follow the issue's contract:

- the message breaks the rules: one specific log line, no SMS, no retry;
- Twilio 5xx/429, timeout, connection error: raise, so Lambda retries the event and, after
  its retries, puts it in the dead-letter queue (its on-failure destination);
- any other Twilio 4xx (21211 invalid number...): logged with Twilio's code, written to the
  dead-letter queue by this code, and the invocation succeeds so Lambda does not retry;
- the same device message (thing + Id) delivered again: at most one SMS (DynamoDB record
  of Twilio's message SID);
- the outbound policy refuses it (outbound_policy.py: not a recent contact, a fleet number,
  a cap...): put in the refused queue with its reason, counted in the `OutboundRefused`
  metric, never retried; an opted-out recipient (or Twilio's 21610) is an expected
  outcome: logged at INFO, counted in `RecipientOptedOut`, nothing queued;
- Twilio answers 401: the secret is read again (bypassing the cache) and the send is
  retried once, with the new token or the rotation's secondary one;
- a retry after an ambiguous failure (timeout, connection reset, 5xx: Twilio may have
  accepted the request) sends nothing if Twilio already has the message (see _send).

Why reconciliation: Powertools deletes its in-progress record when the function raises, so
on its own a retry cannot know that the failed attempt may have reached Twilio. Before
calling Twilio, an "attempted" marker is written to the same table; a retry that finds it
asks Twilio's Messages list for our message first and records its SID instead of texting
again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyValidationError
from botocore.exceptions import BotoCoreError, ClientError
from twilio.base import values
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.rest import Client

import contract
from lambda_shared.bindings import NumbersByThing, ThingsByNumber
from lambda_shared.twilio_rest import HttpClientFactory, TwilioClients
from send_lambda import SERVICE
from send_lambda.config import SendConfig
from send_lambda.contacts_store import ContactsStore
from send_lambda.outbound import (
    Failure,
    ListedMessage,
    NumberLookup,
    OutboundMessage,
    Reason,
    Rejected,
    classify_status,
    find_earlier_send,
    parse_message,
    twilio_refused,
)
from send_lambda.outbound_policy import FleetLookup, Refusal, Refused

# Connect + read of two calls stay within the Lambda timeout (30 s): a hung Twilio becomes
# a retried invocation, not a Lambda timeout.
TWILIO_TIMEOUT = 6.0
# Twilio's "the recipient opted out" (STOP): expected, not an error.
TWILIO_OPTED_OUT = 21610
UNAUTHORIZED = 401
# Messages between one number and one recipient that reconciliation reads (one page,
# newest first): the device would have to text that person more often within the few
# minutes of Lambda's retries for ours to fall off it.
RECONCILE_PAGE_SIZE = 50

logger = Logger(service=SERVICE)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The production clock."""
    return datetime.now(UTC)


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
        config: SendConfig,
        numbers_by_thing: NumberLookup,
        is_fleet_number: FleetLookup,
        dynamodb_client: Any,
        sqs_client: Any,
        http_client_factory: HttpClientFactory | None = None,
        twilio_timeout: float = TWILIO_TIMEOUT,
        clock: Clock = utc_now,
    ) -> None:
        """`numbers_by_thing`: the number each thing sends from; `is_fleet_number`: whether a
        number is bound to a device of the fleet (both read from the bindings table in
        Lambda); `http_client_factory`: Twilio's transport (None: the container's, see
        `lambda_shared.twilio_rest.use_transport`)."""
        self.config = config
        self._numbers_by_thing = numbers_by_thing
        self._is_fleet_number = is_fleet_number
        self._contacts = ContactsStore(dynamodb_client, config.contacts_table)
        self._twilio = TwilioClients(
            config.secret_name, timeout=twilio_timeout, http_client_factory=http_client_factory
        )
        self._sqs = sqs_client
        self._clock = clock
        self._dynamodb = dynamodb_client
        self._idempotency = IdempotencyConfig(
            event_key_jmespath="key",
            # The same thing + Id with another recipient or text is a device bug: refuse it.
            payload_validation_jmespath="[from, to, body, media]",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=config.idempotency_seconds,
        )
        persistence = DynamoDBPersistenceLayer(
            table_name=config.idempotency_table, boto3_client=dynamodb_client
        )
        self._send_once = idempotent_function(
            data_keyword_argument="record",
            persistence_store=persistence,
            config=self._idempotency,
            key_prefix="send",
        )(self._send)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SendRuntime:
        """Built from the Lambda's environment variables, with boto3's default clients."""
        import boto3  # here, not at import: tests and the demo build clients after mocking

        config = SendConfig.from_environ(environ)
        bindings = boto3.resource("dynamodb")
        things_by_number = ThingsByNumber(config.bindings_table, bindings)
        return cls(
            config=config,
            numbers_by_thing=NumbersByThing(config.bindings_table, bindings),
            is_fleet_number=lambda number: things_by_number.get(number) is not None,
            dynamodb_client=boto3.client("dynamodb"),
            sqs_client=boto3.client("sqs"),
        )

    def twilio(self) -> Client:
        """The Twilio client for the current credentials (rebuilt only when they change)."""
        return self._twilio.client()

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        """Processes one topic-rule event; raises only when Lambda should retry it."""
        self._idempotency.register_lambda_context(context)
        where = _log_keys(event)
        try:
            message = parse_message(event, self.config, self._numbers_by_thing)
            result: dict[str, Any] = self._send_once(record=message.as_record())
        except Rejected as rejected:
            return self._rejected(rejected, where)
        except Refused as refused:
            return self._refused(refused, event, context, where)
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
        reconciled = bool(result.get("reconciled"))
        logger.info("sent", extra={**where, "sid": result["sid"], "reconciled": reconciled})
        return {"outcome": "sent", **result}

    def _send(self, record: dict[str, Any]) -> dict[str, Any]:
        """Sends the message through Twilio once (wrapped by the idempotency utility).

        Powertools already keeps concurrent deliveries of one message out of here. The
        marker is written before Twilio is called, so it survives anything that can end
        the attempt (timeout, reset, 5xx, even a crash or Lambda's own timeout). It is
        deleted only when Twilio refused the request (4xx, 429 included), which proves
        Twilio did not take the message; after a success it is left to its TTL, so a retry
        still finds it should saving Powertools' record fail.
        """
        self._apply_policy(record)  # inside: a repeated delivery of a sent message is not counted
        twilio = self.twilio()  # credentials first: no marker for an attempt never made
        first_attempt = self._mark_attempt(record["key"])
        if first_attempt is not None:
            earlier = self._earlier_send(twilio, record, first_attempt)
            if earlier is not None:
                logger.info(
                    "reconciled: Twilio already has this message, not sent again",
                    extra={**_key_fields(record["key"]), "sid": earlier.sid},
                )
                return {"sid": earlier.sid, "status": earlier.status, "reconciled": True}
            logger.info(
                "an earlier attempt reached no message at Twilio: sending",
                extra=_key_fields(record["key"]),
            )
        try:
            sent = self._create_retrying_401(twilio, record)
        except (TwilioRestException, TwilioServiceException) as error:
            # Both error formats (legacy and RFC 9457 problem details) carry status and code.
            # A 4xx proves Twilio did not take the message: no retry needs to look for it
            # (unless an earlier attempt's marker says otherwise). A 5xx proves nothing (an
            # edge's 502 can follow an accepted create): the marker stays, so the retry asks
            # Twilio's Messages list before sending again.
            if first_attempt is None and twilio_refused(error.status):
                self._forget_attempt(record["key"])
            if error.code == TWILIO_OPTED_OUT:
                thing, _, _ = record["key"].partition("#")
                self._contacts.record_opt_out(thing, record["to"])
                raise Refused(Refusal.OPTED_OUT, "Twilio answered 21610") from error
            if classify_status(error.status) is Failure.TRANSIENT:
                raise TransientTwilioError(f"Twilio answered {error.status}") from error
            code = error.code if isinstance(error.code, int) else None
            raise PermanentTwilioError(error.status, code) from error
        except requests.RequestException as error:
            # Timeout or connection error: Twilio may or may not have the message. The marker
            # stays, so the retry asks Twilio before sending again.
            raise TransientTwilioError(
                f"{type(error).__name__}; Twilio may have accepted it"
            ) from error
        return {"sid": str(sent.sid), "status": str(sent.status)}

    def _create_retrying_401(self, twilio: Client, record: dict[str, Any]) -> Any:
        """Twilio's Messages create; on a 401, once more with re-read credentials.

        A 401 proves Twilio took nothing, so the retry cannot send twice. Between Twilio
        promoting a new token and the secret being updated, the cached token fails: the
        fresh read (or the secondary token) saves the message instead of dead-lettering it.
        """
        try:
            return self._create(twilio, record)
        except (TwilioRestException, TwilioServiceException) as error:
            if error.status != UNAUTHORIZED:
                raise
            retry = self._twilio.client_after_unauthorized(twilio)
            if retry is None:
                raise
            logger.info(
                "Twilio answered 401: secret re-read, retrying once",
                extra=_key_fields(record["key"]),
            )
            return self._create(retry, record)

    def _create(self, twilio: Client, record: dict[str, Any]) -> Any:
        media = record["media"]
        return twilio.messages.create(
            to=record["to"],
            from_=record["from"],
            body=record["body"] or values.unset,
            media_url=media or values.unset,
            status_callback=self.config.status_callback_url or values.unset,
        )

    def _apply_policy(self, record: dict[str, Any]) -> None:
        """Raises Refused unless the outbound policy lets this device text `to` now.

        One GetItem (the contact) and, when allowed, one conditional UpdateItem counting
        the send against both caps. A retried attempt counts again: caps err on the side
        of refusing.
        """
        thing, _, _ = record["key"].partition("#")
        now = self._clock().timestamp()
        contact = self._contacts.contact(thing, record["to"])
        policy = self.config.policy
        policy.check(
            thing=thing,
            to=record["to"],
            contact=contact,
            now=now,
            is_fleet_number=self._is_fleet_number,
        )
        counter = policy.counter(thing, now)
        refusal = self._contacts.count(counter)
        if refusal is not None:
            limit = counter.per_day if refusal is Refusal.PER_DAY_CAP else counter.per_minute
            raise Refused(refusal, f"this device reached its cap of {limit}")

    def _mark_attempt(self, key: str) -> datetime | None:
        """Records that an attempt is about to call Twilio; returns when the first attempt
        started if an earlier one may have reached Twilio, else None.

        One conditional write does both: it creates the marker unless a live one exists, and
        when one does, DynamoDB hands it back with the refusal. An expired marker (TTL
        deletion lags by up to two days) counts as none.
        """
        now = self._clock()
        try:
            self._dynamodb.put_item(
                TableName=self.config.idempotency_table,
                Item=contract.attempt_marker_item(
                    key,
                    first_attempt=now.timestamp(),
                    expires_at=int(now.timestamp()) + self.config.idempotency_seconds,
                ),
                ConditionExpression=contract.ATTEMPT_MARKER_ABSENT_OR_EXPIRED,
                ExpressionAttributeValues={":now": {"N": str(int(now.timestamp()))}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._dynamodb.exceptions.ConditionalCheckFailedException as refused:
            old = refused.response.get("Item", {})
            started = old.get("first_attempt", {}).get("N")
            # A marker without a readable time (written by hand?): assume the oldest
            # possible attempt, so nothing Twilio lists is excluded by date.
            seconds = (
                float(started) if started else now.timestamp() - self.config.idempotency_seconds
            )
            return datetime.fromtimestamp(seconds, UTC)
        return None

    def _forget_attempt(self, key: str) -> None:
        """Deletes the marker; a failure only costs a retry one Messages list request."""
        try:
            self._dynamodb.delete_item(
                TableName=self.config.idempotency_table,
                Key={"id": {"S": contract.attempt_marker_id(key)}},
            )
        except (BotoCoreError, ClientError) as error:
            logger.warning(
                "could not delete the attempt marker",
                extra={**_key_fields(key), "error": type(error).__name__},
            )

    def _earlier_send(
        self, twilio: Client, record: dict[str, Any], first_attempt: datetime
    ) -> ListedMessage | None:
        """The message an earlier attempt got Twilio to accept, if Twilio lists one.

        Filtered by To and From only: Twilio's date filter is on DateSent, which a message
        still queued does not have yet, so dates are compared here, on DateCreated.
        """
        try:
            listed = twilio.messages.list(
                to=record["to"], from_=record["from"], limit=RECONCILE_PAGE_SIZE
            )
        except (TwilioRestException, TwilioServiceException, requests.RequestException) as error:
            # Never send blind: without Twilio's answer a retry must ask again.
            raise TransientTwilioError(
                f"could not list Twilio's messages: {type(error).__name__}"
            ) from error
        return find_earlier_send(
            (_listed(message) for message in listed),
            to=record["to"],
            from_=record["from"],
            body=record["body"],
            media_count=len(record["media"]),
            first_attempt=first_attempt,
        )

    def _dead_letter(self, event: Any, context: Any, error: PermanentTwilioError) -> None:
        error_fields = {"twilioStatus": error.status, "twilioCode": error.code}
        self._enqueue(
            self.config.dead_letter_queue_url,
            event,
            context,
            contract.PERMANENT_TWILIO_ERROR,
            error_fields,
        )

    def _enqueue(
        self, queue_url: str, event: Any, context: Any, condition: str, error: dict[str, Any]
    ) -> None:
        """Puts `event` in a queue as a record shaped like Lambda's on-failure record."""
        record = contract.dead_letter_record(
            event,
            condition=condition,
            request_id=str(getattr(context, "aws_request_id", "")),
            function_arn=str(getattr(context, "invoked_function_arn", "")),
            error={"errorType": condition, **error},
        )
        # If this fails, the exception fails the invocation and Lambda retries: not lost.
        self._sqs.send_message(
            QueueUrl=queue_url, MessageBody=json.dumps(record, ensure_ascii=False)
        )

    def _refused(
        self, refused: Refused, event: Any, context: Any, where: dict[str, Any]
    ) -> dict[str, Any]:
        """A policy refusal: counted; put in the refused queue with its reason unless
        expected (STOP)."""
        fields = {**where, "reason": str(refused.reason), "detail": refused.detail}
        if refused.reason.expected:
            logger.info("not sent: the recipient opted out", extra=fields)
            self._count(contract.RECIPIENT_OPTED_OUT_METRIC, refused)
            return {"outcome": "opted-out"}
        logger.warning(f"refused by the outbound policy: {refused.reason}", extra=fields)
        reason = {"reason": str(refused.reason), "detail": refused.detail}
        self._enqueue(
            self.config.refused_queue_url,
            event,
            context,
            contract.OUTBOUND_POLICY_REFUSED,
            reason,
        )
        self._count(contract.OUTBOUND_REFUSED_METRIC, refused)
        return {"outcome": "refused", "reason": str(refused.reason)}

    def _count(self, name: str, refused: Refused) -> None:
        """One EMF metric data point (written to the log at once; no flush needed)."""
        with single_metric(
            name=name,
            unit=MetricUnit.Count,
            value=1,
            namespace=self.config.metrics_namespace,
            default_dimensions=contract.SEND_METRIC_DIMENSIONS,
        ) as metric:
            metric.add_metadata(key="reason", value=str(refused.reason))

    @staticmethod
    def _rejected(rejected: Rejected, where: dict[str, Any]) -> dict[str, Any]:
        logger.warning(
            f"rejected: {rejected.reason}",
            extra={**where, "reason": str(rejected.reason), "detail": rejected.detail},
        )
        return {"outcome": "rejected", "reason": str(rejected.reason)}


def _listed(message: Any) -> ListedMessage:
    """A twilio MessageInstance as the pure matcher reads it."""
    try:
        num_media: int | None = int(message.num_media)
    except (TypeError, ValueError):
        num_media = None
    created = message.date_created
    return ListedMessage(
        sid=str(message.sid),
        to=str(message.to or ""),
        from_=str(message.from_ or ""),
        body=str(message.body or ""),
        num_media=num_media,
        date_created=created if isinstance(created, datetime) else None,
        status=str(message.status),
    )


def _key_fields(key: str) -> dict[str, str]:
    """The thing and the device's Id of an idempotency key (thing names have no `#`)."""
    thing, _, message_id = key.partition("#")
    return {"thing": thing, "message_id": message_id[:128]}


def _log_keys(event: Any) -> dict[str, Any]:
    """What may be logged about a message: the thing and the device's Id, never a number
    or a body."""
    if not isinstance(event, Mapping):
        return {}
    keys = {"thing": event.get("thing"), "message_id": event.get("Id")}
    return {k: v[:128] for k, v in keys.items() if isinstance(v, str)}


__all__ = ["OutboundMessage", "PermanentTwilioError", "SendRuntime", "TransientTwilioError"]
