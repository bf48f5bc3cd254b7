"""Mailbox Lambdas' entry points: a device's ack / redeliver requests (topic rules,
`lambda_handler`) and the sweeper (scheduled, `sweeper_handler`), which expires messages
past the retention and reports the oldest one's age.

Thin: the rules are in `rules`, the I/O in `store`. The runtime is built on the first
invocation and kept for the warm ones. Logs carry thing names and message Ids, never a
number or a body.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

import contract
from mailbox_lambda import SERVICE
from mailbox_lambda.config import MailboxConfig
from mailbox_lambda.rules import (
    Ack,
    BadRequest,
    Redeliver,
    age_seconds,
    expiry_cutoff_ms,
    expiry_notice,
    parse_request,
)
from mailbox_lambda.store import MailboxStore, Redelivery, SenderNotifier

logger = Logger(service=SERVICE)
metrics = Metrics(service=contract.MAILBOX_METRICS_SERVICE)


@dataclass(frozen=True, kw_only=True)
class MailboxRuntime:
    """One container's settings and clients, built once and reused while warm."""

    store: MailboxStore
    redelivery: Redelivery
    retention_seconds: int
    environment: str
    notifier: SenderNotifier | None = None
    clock: Callable[[], float] = time.time

    @classmethod
    def from_config(cls, config: MailboxConfig) -> MailboxRuntime:
        """The runtime of `config`, with boto3's default clients."""
        return cls(
            store=MailboxStore(boto3.client("dynamodb"), config.table),
            redelivery=Redelivery(boto3.client("iot-data")),
            retention_seconds=config.retention_seconds,
            environment=config.environment,
            notifier=SenderNotifier(boto3.client("lambda"), config.send_function)
            if config.send_function
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
        for message in self.store.everything():
            if message.arrived_ms >= cutoff:
                oldest = max(oldest, age_seconds(now, message.arrived_ms))
                continue
            if not self.store.expire(message):
                continue  # confirmed meanwhile
            expired += 1
            logger.warning(
                "Expired: the device did not take the message within the retention",
                thing=message.thing,
                message_id=message.message_id,
                waited_seconds=int(age_seconds(now, message.arrived_ms)),
            )
            notice = expiry_notice(message, self.retention_seconds)
            if self.notifier is not None and notice is not None:
                self.notifier.notify(notice)
        return {"expired": expired, "oldest_pending_age_seconds": oldest}


@functools.cache
def runtime() -> MailboxRuntime:
    """This container's runtime, built from the environment on first use (tests clear it)."""
    return MailboxRuntime.from_config(MailboxConfig.from_environ(os.environ))


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Topic rules on `{prefix}/+/ack` and `{prefix}/+/redeliver`."""
    return runtime().device_request(event)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def sweeper_handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """EventBridge schedule: the sweeper; its report becomes the environment's metrics."""
    current = runtime()
    report = current.sweep()
    metrics.add_dimension(name="environment", value=current.environment)
    metrics.add_metric(
        name=contract.OLDEST_PENDING_AGE_METRIC,
        unit=MetricUnit.Seconds,
        value=report["oldest_pending_age_seconds"],
    )
    metrics.add_metric(
        name=contract.EXPIRED_MESSAGES_METRIC, unit=MetricUnit.Count, value=report["expired"]
    )
    return report
