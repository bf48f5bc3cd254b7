"""`make redrive ENV=dev [DRY_RUN=1]`: what the dead-letter queues hold, and a safe redrive.

    python -m tools.redrive --env dev [--dry-run]

Three queues, three record formats:

- the send dead-letter queue: Lambda's on-failure destination record after its retries
  (`RetriesExhausted`, `EventAgeExceeded`: worth retrying), and the handler's own record
  of a permanent Twilio error (`PermanentTwilioError`: left, except a 401, which a fixed
  secret cures);
- the rule's error queue: the topic rule's error-action record (`base64OriginalPayload`):
  retried when the payload is a JSON object, left when it is not;
- the refused queue: the outbound policy's refusals (`OutboundPolicyRefused`): left,
  never retried.

A message is redriven by publishing the device's original payload to its outbound topic
again, so it takes the whole path again (topic rule, send Lambda, its retries and queues)
and the send Lambda's idempotency decides. That idempotency lasts as long as the mailbox
keeps a message (days, not forever): past it, a message Twilio did accept would be sent
again. So before publishing, this tool writes the
send Lambda's "attempted" marker for the message, dated as early as its first attempt can
have been: the Lambda then asks Twilio's Messages list whether it already has the message
and records its SID instead of texting again (lambdas/send_lambda/sender.py,
`_mark_attempt`). The record formats, the marker and the output names are the contract's
(`contract.py`).
Permanent failures stay in their queue; DRY_RUN changes nothing.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import contract
from device.tool.environment import load_environment
from device.tool.errors import ToolError

# A dead-lettered event's first attempt is at most this much older than its record.
MAX_EVENT_AGE = timedelta(seconds=contract.SEND_EVENT_MAX_AGE_SECONDS)
# Long enough to list, decide and publish before a message becomes visible again.
VISIBILITY_TIMEOUT = 300
QUEUE_OUTPUTS = {
    "SendDeadLetterQueue": contract.SEND_DEAD_LETTER_QUEUE_OUTPUT,
    "RuleErrorQueue": contract.RULE_ERROR_QUEUE_OUTPUT,
    "RefusedQueue": contract.REFUSED_QUEUE_OUTPUT,
}
RETRIED_CONDITIONS = frozenset({contract.RETRIES_EXHAUSTED, contract.EVENT_AGE_EXCEEDED})
UNAUTHORIZED = 401


@dataclass(frozen=True)
class Letter:
    """One dead-lettered message, classified."""

    queue: str
    reason: str
    retry: bool
    """Worth publishing again (the failure may be gone); else left with its reason."""
    topic: str | None = None
    payload: dict[str, Any] | None = None
    """The device's message as it published it (without the rule's `thing`)."""
    thing: str | None = None
    message_id: str | None = None

    @property
    def idempotency_key(self) -> str | None:
        """The send Lambda's key of this message (None when the record names no Id)."""
        if self.thing is None or not isinstance(self.message_id, str):
            return None
        return contract.message_key(self.thing, self.message_id)


def _device_message(queue: str, reason: str, retry: bool, topic_prefix: str, event: Any) -> Letter:
    """A letter holding the send Lambda's event (the device's fields plus `thing`)."""
    thing = event.get(contract.THING_FIELD) if isinstance(event, Mapping) else None
    if not isinstance(event, Mapping) or not isinstance(thing, str):
        return Letter(queue, f"{reason} (no device message in the record)", retry=False)
    payload = {k: v for k, v in event.items() if k != contract.THING_FIELD}
    return Letter(
        queue,
        reason,
        retry,
        topic=contract.outbound_topic(topic_prefix, thing),
        payload=payload,
        thing=thing,
        message_id=payload.get("Id") if isinstance(payload.get("Id"), str) else None,
    )


def classify(queue: str, body: str, topic_prefix: str) -> Letter:
    """What a dead-letter record is, why it is there, and whether to retry it."""
    try:
        record = json.loads(body)
    except ValueError:
        return Letter(queue, "unreadable record (not JSON)", retry=False)
    if not isinstance(record, dict):
        return Letter(queue, "unreadable record (not a JSON object)", retry=False)
    if contract.RULE_ERROR_PAYLOAD_FIELD in record:  # the topic rule's error action
        failures = record.get("failures") or [{}]
        error = str(failures[0].get("errorMessage", "the rule's action failed"))[:200]
        topic = record.get("topic")
        try:
            encoded = record[contract.RULE_ERROR_PAYLOAD_FIELD]
            payload = json.loads(base64.b64decode(encoded, validate=True))
        except (ValueError, binascii.Error):
            payload = None
        levels = topic.split("/") if isinstance(topic, str) else []
        if not isinstance(payload, dict) or len(levels) != 3:
            return Letter(queue, f"rule error: {error}; the payload is not a JSON object", False)
        return Letter(
            queue,
            f"rule error: {error}",
            retry=True,
            topic=topic,
            payload=payload,
            thing=levels[1],
            message_id=payload.get("Id") if isinstance(payload.get("Id"), str) else None,
        )
    context = record.get("requestContext")
    response = record.get("responsePayload")
    if not isinstance(context, dict) or not isinstance(response, dict):
        return Letter(queue, "unrecognised record", retry=False)
    condition = str(context.get("condition", ""))
    event = record.get("requestPayload")
    if condition in RETRIED_CONDITIONS:
        error = f"{response.get('errorType', '?')}: {response.get('errorMessage', '')}"[:200]
        return _device_message(queue, f"{condition} ({error})", True, topic_prefix, event)
    if condition == contract.PERMANENT_TWILIO_ERROR:
        status, code = response.get("twilioStatus"), response.get("twilioCode")
        if status == UNAUTHORIZED:
            reason = f"Twilio {status} (code {code}): retry once the secret holds the token"
            return _device_message(queue, reason, True, topic_prefix, event)
        reason = f"Twilio refused it for good: {status} (code {code})"
        return _device_message(queue, reason, False, topic_prefix, event)
    if condition == contract.OUTBOUND_POLICY_REFUSED:
        reason = f"refused by the outbound policy: {response.get('reason')}"
        return _device_message(queue, reason, False, topic_prefix, event)
    return Letter(queue, f"unrecognised condition {condition!r}", retry=False)


@dataclass(frozen=True)
class Outcome:
    """What the redrive did with one letter."""

    letter: Letter
    action: str
    """`redriven`, `would redrive` (dry run) or `left`."""


class Redrive:
    """Lists the queues and redrives what is worth retrying (see the module's docstring)."""

    def __init__(
        self,
        *,
        sqs: Any,
        dynamodb: Any,
        iot_data: Any,
        queue_urls: Mapping[str, str],
        idempotency_table: str,
        topic_prefix: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sqs = sqs
        self._dynamodb = dynamodb
        self._iot_data = iot_data
        self._queue_urls = queue_urls
        self._table = idempotency_table
        self._prefix = topic_prefix
        self._clock = clock

    def run(self, *, dry_run: bool) -> list[Outcome]:
        """Every letter of every queue, redriven (unless `dry_run`) or left."""
        outcomes = []
        for queue, url in self._queue_urls.items():
            kept: list[str] = []
            for message in self._receive_all(url):
                letter = classify(queue, message["Body"], self._prefix)
                if not letter.retry or dry_run:
                    kept.append(message["ReceiptHandle"])
                    outcomes.append(Outcome(letter, "would redrive" if letter.retry else "left"))
                    continue
                sent_at = int(message.get("Attributes", {}).get("SentTimestamp", "0")) / 1000
                self._redrive(letter, datetime.fromtimestamp(sent_at, UTC) - MAX_EVENT_AGE)
                self._sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                outcomes.append(Outcome(letter, "redriven"))
            for handle in kept:  # visible again at once: left where they were
                self._sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0
                )
        return outcomes

    def _receive_all(self, url: str) -> Iterator[dict[str, Any]]:
        while True:
            batch = self._sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=VISIBILITY_TIMEOUT,
                AttributeNames=["SentTimestamp"],
            ).get("Messages", [])
            if not batch:
                return
            yield from batch

    def _redrive(self, letter: Letter, first_attempt: datetime) -> None:
        """Marks the message as possibly sent, then publishes it to its topic again."""
        assert letter.topic is not None and letter.payload is not None
        key = letter.idempotency_key
        if key is not None:
            now = self._clock().timestamp()
            # A live marker is kept: it already makes the Lambda ask Twilio first.
            with contextlib.suppress(self._dynamodb.exceptions.ConditionalCheckFailedException):
                self._dynamodb.put_item(
                    TableName=self._table,
                    # Outlives the redriven event's retries (at most a few hours).
                    Item=contract.attempt_marker_item(
                        key,
                        first_attempt=first_attempt.timestamp(),
                        expires_at=int(now) + contract.DEFAULT_SEND_IDEMPOTENCY_SECONDS,
                    ),
                    ConditionExpression=contract.ATTEMPT_MARKER_ABSENT_OR_EXPIRED,
                    ExpressionAttributeValues={":now": {"N": str(int(now))}},
                )
        self._iot_data.publish(
            topic=letter.topic,
            qos=1,
            payload=contract.encode_message(letter.payload),
        )


def table(outcomes: list[Outcome]) -> str:
    """The outcomes as a table (no phone number or body: thing, Id, reason, action)."""
    rows = [("queue", "thing", "Id", "action", "reason")] + [
        (
            o.letter.queue,
            o.letter.thing or "-",
            (o.letter.message_id or "-")[:40],
            o.action,
            o.letter.reason,
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True))
        + "  "
        + row[4]
        for row in rows
    )


def stack_outputs(cloudformation: Any, stack_name: str) -> dict[str, str]:
    """The deployed stack's outputs (SystemExit naming the fix when it is not deployed)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    except (ClientError, BotoCoreError) as error:
        raise SystemExit(f"Cannot read stack {stack_name}: {error}") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    missing = sorted(
        {*QUEUE_OUTPUTS.values(), contract.SEND_IDEMPOTENCY_TABLE_OUTPUT} - set(outputs)
    )
    if missing:
        raise SystemExit(
            f"Stack {stack_name} has no output(s) {', '.join(missing)}: deploy this version "
            "first (make deploy ENV=...)."
        )
    return outputs


def main(argv: list[str] | None = None) -> int:
    """Lists the dead-letter queues of `--env` and redrives (unless `--dry-run`)."""
    import boto3

    parser = argparse.ArgumentParser(prog="python -m tools.redrive", description=__doc__)
    parser.add_argument("--env", default="dev", help="environment of cdk.json (default: dev)")
    parser.add_argument("--dry-run", action="store_true", help="list only, change nothing")
    args = parser.parse_args(argv)
    try:
        settings = load_environment(args.env)
    except ToolError as error:
        raise SystemExit(str(error)) from None
    session = boto3.Session(region_name=settings.region)
    outputs = stack_outputs(session.client("cloudformation"), settings.stack_name)
    redrive = Redrive(
        sqs=session.client("sqs"),
        dynamodb=session.client("dynamodb"),
        iot_data=session.client("iot-data"),
        queue_urls={queue: outputs[output] for queue, output in QUEUE_OUTPUTS.items()},
        idempotency_table=outputs[contract.SEND_IDEMPOTENCY_TABLE_OUTPUT],
        topic_prefix=outputs.get(contract.TOPIC_PREFIX_OUTPUT, settings.topic_prefix),
    )
    outcomes = redrive.run(dry_run=args.dry_run)
    print(table(outcomes) if outcomes else "The dead-letter queues are empty.")
    redriven = sum(o.action == "redriven" for o in outcomes)
    would = sum(o.action == "would redrive" for o in outcomes)
    left = sum(o.action == "left" for o in outcomes)
    print(
        f"\n{redriven} redriven, {would} would be redriven (dry run), {left} left "
        "with their reason."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
