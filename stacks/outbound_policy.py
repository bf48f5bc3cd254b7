"""The send Lambda's outbound policy: its settings, the queue of refused messages and the
alarm on repeated refusals (the rules themselves are in
lambdas/send_lambda/outbound_policy.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from aws_cdk import (
    Duration,
    RemovalPolicy,
    aws_cloudwatch,
    aws_dynamodb,
    aws_lambda,
    aws_sns,
    aws_sqs,
)
from constructs import Construct

import contract
from stacks.alarms import AT_LEAST, topic_alarm
from stacks.nag import acknowledge

# "Repeatedly": this many refusals within one period pages the operator. One stray reply
# to a stranger does not; a device (or a stolen key) trying numbers does.
REFUSAL_ALARM_THRESHOLD = 5
REFUSAL_ALARM_PERIOD = Duration.minutes(15)
REFUSED_RETENTION = Duration.days(14)
# What the send Lambda calls on the Contacts table: read a contact, count a send, record a
# 21610 opt-out. No Scan, Query or batch operations.
SEND_CONTACTS_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")


class OutboundPolicy(Construct):
    """Configures the send Lambda's policy and keeps what it refuses.

    Refused messages go to `refused_queue`, not the send dead-letter queue: that queue's
    alarm fires on a single message, while a refusal is the policy working; the alarm here
    fires when refusals repeat.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: aws_lambda.Function,
        contacts_table: aws_dynamodb.ITable,
        reply_window_days: int,
        allow_list_by_device: Mapping[str, Sequence[str]],
        prefixes: Sequence[str],
        limit_per_minute: int,
        limit_per_day: int,
        metrics_namespace: str,
        alarm_topic: aws_sns.ITopic,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.refused_queue = aws_sqs.Queue(
            self,
            "RefusedQueue",
            encryption=aws_sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=REFUSED_RETENTION,
            removal_policy=removal_policy,
        )
        acknowledge(
            self.refused_queue,
            "AwsSolutions-SQS3",
            "This queue keeps messages the outbound policy refused, with their reason, for "
            "the operator (make redrive lists them); they are never retried.",
        )
        self.refused_queue.grant_send_messages(function)
        contacts_table.grant(function, *SEND_CONTACTS_ACTIONS)
        environment = {
            contract.CONTACTS_TABLE_VARIABLE: contacts_table.table_name,
            "REFUSED_QUEUE_URL": self.refused_queue.queue_url,
            "REPLY_WINDOW_SECONDS": str(int(Duration.days(reply_window_days).to_seconds())),
            "DESTINATION_ALLOW_LIST_BY_THING": json.dumps(
                {thing: list(numbers) for thing, numbers in allow_list_by_device.items()},
                sort_keys=True,
            ),
            "DESTINATION_PREFIXES": ",".join(prefixes),
            "SEND_LIMIT_PER_MINUTE": str(limit_per_minute),
            "SEND_LIMIT_PER_DAY": str(limit_per_day),
            "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace,
        }
        for name, value in environment.items():
            function.add_environment(name, value)

        self.refusals = aws_cloudwatch.Metric(
            namespace=metrics_namespace,
            metric_name=contract.OUTBOUND_REFUSED_METRIC,
            dimensions_map=contract.SEND_METRIC_DIMENSIONS,
            period=REFUSAL_ALARM_PERIOD,
            statistic="Sum",
        )
        self.alarm = topic_alarm(
            self,
            "RepeatedRefusals",
            metric=self.refusals,
            threshold=REFUSAL_ALARM_THRESHOLD,
            comparison=AT_LEAST,
            description=(
                f"The outbound policy refused {REFUSAL_ALARM_THRESHOLD}+ device messages in "
                f"{REFUSAL_ALARM_PERIOD.to_minutes()} minutes (strangers, fleet numbers, caps): "
                "a misbehaving or compromised device? `make redrive` lists them with reasons."
            ),
            topic=alarm_topic,
        )
