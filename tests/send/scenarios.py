"""The send Lambda against Prism, with Lambda's asynchronous-invoke semantics simulated.

Shared by the tests (tests/send) and the benchmark (bench/send_bench.py), which prints the
fault table. AWS is moto's in-process mock; Twilio is Prism behind a FaultProxy.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities import parameters

import contract
from loop.aws_local import atomic_dynamodb_writes
from loop.twilio_loopback import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, LoopbackHttpClient
from send_lambda.config import SendConfig
from send_lambda.outbound_policy import OutboundPolicy
from send_lambda.sender import SendRuntime
from tests.doubles.twilio_faults import FaultProxy

# Lambda's retries of a failed asynchronous invocation, as the stack configures them.
RETRY_ATTEMPTS = 2
THING = "dev-reverser"
SENDER = "+15555550100"
SECRET_NAME = "text-device/test/twilio"
TABLE_NAME = "send-idempotency"
QUEUE_NAME = "send-dead-letters"
CONTACTS_TABLE = "contacts"
REFUSED_QUEUE_NAME = "send-refused"
RECIPIENT = "+15551234567"
"""The person who texted the device, so the device may answer (the reply window)."""
NUMBERS_BY_THING = {THING: SENDER, "dev-doorbell": "+15555550101"}
CLIENT_TIMEOUT = 0.3  # seconds; the proxy's hang lasts longer


@dataclass
class FakeContext:
    """The parts of Lambda's context object the handler and Powertools read."""

    aws_request_id: str = "req-1"
    function_name: str = "send"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:eu-west-1:123456789012:function:send"
    log_group_name: str = "/aws/lambda/send"
    log_stream_name: str = "stream"

    def get_remaining_time_in_millis(self) -> int:
        return 20_000


@dataclass
class Delivery:
    """What happened to one event delivered asynchronously to the send Lambda."""

    invocations: int
    result: dict[str, Any] | None
    errors: list[str] = field(default_factory=list)
    dead_lettered_by_lambda: bool = False


def event(message_id: str = "m-1", **fields: Any) -> dict[str, Any]:
    """A topic-rule event: the device's payload plus `thing` from the topic."""
    payload = {"Type": "Outgoing", "Id": message_id, "To": RECIPIENT, "Body": "hello"}
    return {**payload, **fields, "thing": fields.get("thing", THING)}


@dataclass
class AwsStandIns:
    """moto resources the send Lambda uses."""

    secrets: Any
    dynamodb: Any
    sqs: Any
    queue_url: str
    refused_queue_url: str

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every message in the dead-letter queue (received, then deleted)."""
        return self._drain(self.queue_url)

    def refused(self) -> list[dict[str, Any]]:
        """Every message the outbound policy refused (received, then deleted)."""
        return self._drain(self.refused_queue_url)

    def remember_contact(
        self, number: str, *, thing: str = THING, at: float | None = None, opted_out: bool = False
    ) -> None:
        """The Contacts item the receive Lambda writes when `number` texts `thing`."""
        moment = datetime.now(UTC).timestamp() if at is None else at
        item = {
            contract.CONTACT_KEY_ATTRIBUTE: {"S": contract.contact_key(thing, number)},
            contract.LAST_INBOUND_ATTRIBUTE: {"N": str(int(moment))},
            contract.OPTED_OUT_ATTRIBUTE: {"BOOL": opted_out},
        }
        self.dynamodb.put_item(TableName=CONTACTS_TABLE, Item=item)

    def _drain(self, queue_url: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
            messages = batch.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


@contextmanager
def aws_stand_ins() -> Iterator[AwsStandIns]:
    """moto's in-process AWS: the Twilio secret, the idempotency and Contacts tables, the
    queues (and no secret cached from another test); RECIPIENT has just texted every device
    (so they may answer)."""
    import boto3
    from moto import mock_aws

    atomic_dynamodb_writes()  # the caps' concurrent counting relies on it, as on DynamoDB
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    with mock_aws():
        region = "eu-west-1"
        secrets = boto3.client("secretsmanager", region_name=region)
        secrets.create_secret(
            Name=SECRET_NAME,
            SecretString=json.dumps(
                {"account_sid": TEST_ACCOUNT_SID, "auth_token": TEST_AUTH_TOKEN}
            ),
        )
        dynamodb = boto3.client("dynamodb", region_name=region)
        dynamodb.create_table(
            TableName=TABLE_NAME,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.create_table(
            TableName=CONTACTS_TABLE,
            KeySchema=[{"AttributeName": contract.CONTACT_KEY_ATTRIBUTE, "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": contract.CONTACT_KEY_ATTRIBUTE, "AttributeType": "S"}
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        sqs = boto3.client("sqs", region_name=region)
        stand_ins = AwsStandIns(
            secrets=secrets,
            dynamodb=dynamodb,
            sqs=sqs,
            queue_url=sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"],
            refused_queue_url=sqs.create_queue(QueueName=REFUSED_QUEUE_NAME)["QueueUrl"],
        )
        for thing in NUMBERS_BY_THING:
            stand_ins.remember_contact(RECIPIENT, thing=thing)
        yield stand_ins


def build_runtime(
    aws: AwsStandIns,
    twilio_url: str,
    *,
    policy: OutboundPolicy | None = None,
    status_callback_url: str | None = None,
    timeout: float = CLIENT_TIMEOUT,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> SendRuntime:
    """A SendRuntime on the stand-ins, its Twilio requests sent to `twilio_url`."""
    return SendRuntime(
        config=SendConfig(
            policy=policy or OutboundPolicy(),
            status_callback_url=status_callback_url,
            secret_name=SECRET_NAME,
            idempotency_table=TABLE_NAME,
            dead_letter_queue_url=aws.queue_url,
            contacts_table=CONTACTS_TABLE,
            refused_queue_url=aws.refused_queue_url,
        ),
        numbers_by_thing=NUMBERS_BY_THING,
        is_fleet_number=lambda number: number in NUMBERS_BY_THING.values(),
        dynamodb_client=aws.dynamodb,
        sqs_client=aws.sqs,
        http_client_factory=lambda t: LoopbackHttpClient(twilio_url, timeout=t),
        twilio_timeout=timeout,
        clock=clock,
    )


def deliver_async(runtime: SendRuntime, aws: AwsStandIns, payload: Any) -> Delivery:
    """Lambda's asynchronous invocation: up to 1 + RETRY_ATTEMPTS tries while the handler
    raises, then the on-failure destination (the dead-letter queue) gets the event."""
    errors: list[str] = []
    for attempt in range(1 + RETRY_ATTEMPTS):
        context = FakeContext(aws_request_id=f"req-{attempt}")
        try:
            result = runtime.handle(payload, context)
        except Exception as error:
            errors.append(type(error).__name__)
            continue
        return Delivery(invocations=attempt + 1, result=result, errors=errors)
    aws.sqs.send_message(
        QueueUrl=aws.queue_url,
        MessageBody=json.dumps(
            {
                "version": "1.0",
                "requestContext": {"condition": contract.RETRIES_EXHAUSTED},
                "requestPayload": payload,
                "responsePayload": {"errorType": errors[-1]},
            }
        ),
    )
    return Delivery(
        invocations=1 + RETRY_ATTEMPTS, result=None, errors=errors, dead_lettered_by_lambda=True
    )


@dataclass(frozen=True)
class FaultCase:
    """One row of the fault table."""

    name: str
    faults: tuple[str | None, ...]
    """Faults of the Messages creates, in order (see FaultProxy.plan)."""
    deliveries: int = 1
    """How many times the same event is delivered (a duplicate delivery is 2)."""
    lookups: tuple[str | None, ...] = ()
    """Faults of the Messages list requests that reconciliation makes."""


FAULT_CASES = (
    FaultCase("no fault", ()),
    FaultCase("500 once", ("500",)),
    FaultCase("503 once", ("503",)),
    FaultCase("429 once", ("429",)),
    FaultCase("timeout, Twilio never got it", ("hang",)),
    FaultCase("500 every time", ("500", "500", "500")),
    FaultCase("timeout every time", ("hang", "hang", "hang")),
    FaultCase("400 code 21211", ("21211",)),
    FaultCase("same Id delivered twice", (), deliveries=2),
    FaultCase("same Id twice, 500 on the first", ("500", "500", "500"), deliveries=2),
    FaultCase("timeout after Twilio accepted", ("lost-reply",)),
    FaultCase("reset after Twilio accepted", ("reset",)),
    FaultCase("502 after Twilio accepted", ("502-after-accept",)),
    FaultCase("timeout, then 500 on the re-send", ("hang", "500")),
    FaultCase("timeout after accept, list fails once", ("lost-reply",), lookups=("500",)),
    FaultCase(
        "timeout after accept, list always fails",
        ("lost-reply",),
        lookups=("503", "hang"),
    ),
)


@dataclass
class FaultRow:
    """What happened in one fault case."""

    case: FaultCase
    deliveries: list[Delivery]
    dead_letters: list[dict[str, Any]]
    sms_sent: int


def slug(text: str) -> str:
    """A valid device message Id made of `text`."""
    return "".join(c if "!" <= c <= "~" else "-" for c in text)[:128]


def run_fault_case(
    case: FaultCase, runtime: SendRuntime, aws: AwsStandIns, proxy: FaultProxy, message_id: str
) -> FaultRow:
    """Plans the faults, delivers the event (once or more), and counts what Twilio sent."""
    proxy.plan(*case.faults, lookups=case.lookups)
    payload = event(slug(message_id))
    deliveries = [deliver_async(runtime, aws, payload) for _ in range(case.deliveries)]
    return FaultRow(case, deliveries, aws.dead_letters(), proxy.messages_accepted())


def describe(row: FaultRow) -> str:
    """A short account of a row, for the fault table."""
    parts = []
    for delivery in row.deliveries:
        result = delivery.result or {}
        outcome = (
            "Lambda's DLQ after retries"
            if delivery.dead_lettered_by_lambda
            else str(result.get("outcome", "?"))
            + (" (reconciled)" if result.get("reconciled") else "")
        )
        parts.append(f"{delivery.invocations} invocation(s) -> {outcome}")
    codes = [
        d.get("responsePayload", {}).get("twilioCode")
        for d in row.dead_letters
        if d.get("responsePayload", {}).get("twilioCode")
    ]
    suffix = f"; DLQ: {len(row.dead_letters)}" + (f" (Twilio code {codes[0]})" if codes else "")
    return "; ".join(parts) + suffix
