"""Mailbox Lambdas: a device's ack / redeliver requests (topic rules) and the sweeper
(scheduled), which expires messages past the retention and reports the oldest one's age.

Thin: the rules are in mailbox_rules.py, the I/O in store.py. Logs carry thing names and
message Ids, never a number or a body.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from mailbox_rules import (
    Ack,
    BadRequest,
    Redeliver,
    age_seconds,
    expiry_cutoff_ms,
    expiry_notice,
    parse_request,
)
from store import MailboxStore, Redelivery, SenderNotifier

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "mailbox"))
metrics = Metrics()


@dataclass(frozen=True, kw_only=True)
class MailboxRuntime:
    """One container's settings and clients, built once and reused while warm."""

    store: MailboxStore
    redelivery: Redelivery
    things: Sequence[str]
    retention_seconds: int
    environment: str
    notifier: SenderNotifier | None = None
    clock: Callable[[], float] = time.time

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> MailboxRuntime:
        """MAILBOX_TABLE, MAILBOX_RETENTION_SECONDS, THINGS (JSON list), ENVIRONMENT_NAME
        and, when the sender is told of an expiry, SEND_FUNCTION_NAME."""
        send_function = environ.get("SEND_FUNCTION_NAME")
        return cls(
            store=MailboxStore(boto3.client("dynamodb"), environ["MAILBOX_TABLE"]),
            redelivery=Redelivery(boto3.client("iot-data")),
            things=tuple(json.loads(environ.get("THINGS", "[]"))),
            retention_seconds=int(environ["MAILBOX_RETENTION_SECONDS"]),
            environment=environ.get("ENVIRONMENT_NAME", "dev"),
            notifier=SenderNotifier(boto3.client("lambda"), send_function)
            if send_function
            else None,
        )

    def device_request(self, event: Any) -> dict[str, Any]:
        """Serves one ack or redeliver request."""
        try:
            request = parse_request(event)
        except BadRequest as error:
            logger.warning("Device request refused", reason=str(error))
            return {"outcome": "refused", "reason": str(error)}
        if isinstance(request, Ack):
            taken = self.store.take(request.thing, request.message_id)
            logger.info(
                "Confirmed by the device" if taken else "Ack for a message no longer waiting",
                thing=request.thing,
                message_id=request.message_id,
            )
            return {"outcome": "acked" if taken else "not-pending"}
        assert isinstance(request, Redeliver)
        started = time.monotonic()
        count = 0
        for message in self.store.pending(request.thing):
            self.redelivery.publish(message)  # an error fails the invocation: retried
            count += 1
        logger.info(
            "Redelivered the waiting messages",
            thing=request.thing,
            messages=count,
            seconds=round(time.monotonic() - started, 3),
        )
        return {"outcome": "redelivered", "messages": count}

    def sweep(self) -> dict[str, Any]:
        """Expires what waited longer than the retention; measures the oldest that waits."""
        now = self.clock()
        cutoff = expiry_cutoff_ms(now, self.retention_seconds)
        expired = 0
        oldest = 0.0
        for thing in self.things:
            for message in self.store.pending(thing, before_ms=cutoff):
                if not self.store.expire(message):
                    continue  # confirmed meanwhile
                expired += 1
                logger.warning(
                    "Expired: the device did not take the message within the retention",
                    thing=thing,
                    message_id=message.message_id,
                    waited_seconds=int(age_seconds(now, message.arrived_ms)),
                )
                notice = expiry_notice(message, self.retention_seconds)
                if self.notifier is not None and notice is not None:
                    self.notifier.notify(notice)
            first = self.store.oldest(thing)
            if first is not None:
                oldest = max(oldest, age_seconds(now, first.arrived_ms))
        return {"expired": expired, "oldest_pending_age_seconds": oldest}


@functools.cache
def runtime() -> MailboxRuntime:
    """This container's runtime, built from the environment on first use."""
    return MailboxRuntime.from_environment(os.environ)


@logger.inject_lambda_context(clear_state=True)
def on_device_request(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Topic rules on `{prefix}/+/ack` and `{prefix}/+/redeliver`."""
    return runtime().device_request(event)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def on_schedule(event: Any, context: LambdaContext) -> dict[str, Any]:
    """EventBridge schedule: the sweeper; its report becomes the environment's metrics."""
    current = runtime()
    report = current.sweep()
    metrics.add_dimension(name="environment", value=current.environment)
    metrics.add_metric(
        name="OldestPendingAgeSeconds",
        unit=MetricUnit.Seconds,
        value=report["oldest_pending_age_seconds"],
    )
    metrics.add_metric(name="ExpiredMessages", unit=MetricUnit.Count, value=report["expired"])
    return report
