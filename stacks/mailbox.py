"""The mailbox: every message for a device waits in DynamoDB until the device confirms it.

AWS IoT keeps a persistent session's QoS 1 messages only for a while (1 hour by default)
and `Publish` succeeds whether or not a device will ever receive the message. So the
receive Lambda records each message here before publishing it; the device confirms it by
Id on `{prefix}/{thing}/ack`, and after a connection without a session it asks on
`{prefix}/{thing}/redeliver` for everything still waiting. A scheduled sweeper expires
what waited longer than the retention (counted, and optionally the sender is told) and
publishes the oldest waiting message's age, which an alarm watches.

Why the device asks rather than a rule on `$aws/events/presence/connected/{clientId}`: the
lifecycle event fires on every connect and does not say whether the session was resumed,
and it fires before the device has subscribed, so a redelivery it triggered could reach a
device with no subscription and be dropped. The device knows both (CONNACK's session
present flag, its own SUBACK) and asks only when it has no session, once subscribed.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import (
    Duration,
    RemovalPolicy,
    Stack,
    aws_cloudwatch,
    aws_dynamodb,
    aws_events,
    aws_events_targets,
    aws_iam,
    aws_iot,
    aws_lambda,
    aws_logs,
    aws_sns,
    aws_sqs,
)
from constructs import Construct

import contract
from stacks.alarms import topic_alarm
from stacks.python_function import LAMBDAS_DIR, BundledPythonFunction
from stacks.tables import on_demand_table

SWEEP_EVERY = Duration.minutes(5)
REDELIVERY_TIMEOUT = Duration.seconds(60)
"""Room for a long backlog: one IoT Publish per waiting message, a few ms each."""


class Mailbox(Construct):
    """The mailbox table, the device-request Lambda and its two rules, the sweeper."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment_name: str,
        topic_prefix: str,
        inbound_topic_arns: Sequence[str],
        retention_days: int,
        alarm_age_minutes: int,
        alarm_topic: aws_sns.ITopic,
        rule_error_queue: aws_sqs.IQueue,
        send_function: aws_lambda.IFunction | None,
        log_retention: aws_logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        """`send_function`: set to tell the sender when a message expires (else counted);
        `alarm_topic`: where the age and expiry alarms go."""
        super().__init__(scope, construct_id)
        self.retention_seconds = retention_days * 24 * 3600
        self.table = on_demand_table(
            self,
            "Table",
            partition_key=contract.MAILBOX_THING,
            sort_key=contract.MAILBOX_ID,
            ttl_attribute=contract.MAILBOX_EXPIRES_AT,
            removal_policy=removal_policy,
        )
        self.table.add_local_secondary_index(
            index_name=contract.MAILBOX_BY_ARRIVAL,
            sort_key=aws_dynamodb.Attribute(
                name=contract.MAILBOX_ARRIVED, type=aws_dynamodb.AttributeType.NUMBER
            ),
        )
        environment = {
            "MAILBOX_TABLE": self.table.table_name,
            "MAILBOX_RETENTION_SECONDS": str(self.retention_seconds),
            "ENVIRONMENT_NAME": environment_name,
            "POWERTOOLS_METRICS_NAMESPACE": contract.MAILBOX_METRICS_NAMESPACE,
        }
        if send_function is not None:
            environment["SEND_FUNCTION_NAME"] = send_function.function_name

        built = {
            name: BundledPythonFunction(
                self,
                name,
                package_dir=LAMBDAS_DIR / "mailbox_lambda",
                entry_point=entry_point,
                description=description,
                environment=environment,
                log_retention=log_retention,
                removal_policy=removal_policy,
                timeout=REDELIVERY_TIMEOUT,
            )
            for name, entry_point, description in (
                (
                    "DeviceRequests",
                    "lambda_handler",
                    "A device's mailbox requests: confirm a message, redeliver the waiting",
                ),
                (
                    "Sweeper",
                    "sweeper_handler",
                    "Expires mailbox messages past the retention; reports the oldest age",
                ),
            )
        }
        self.requests, self.sweeper = built["DeviceRequests"], built["Sweeper"]
        requests, sweeper = self.requests.function, self.sweeper.function
        index_arn = f"{self.table.table_arn}/index/{contract.MAILBOX_BY_ARRIVAL}"
        # The requests read one device's messages through the index; the sweeper reads the
        # whole table (only unconfirmed messages, so no list of devices is needed).
        for function, actions, arns in (
            (
                requests,
                ["dynamodb:DeleteItem", "dynamodb:Query"],
                [self.table.table_arn, index_arn],
            ),
            (sweeper, ["dynamodb:DeleteItem", "dynamodb:Scan"], [self.table.table_arn]),
        ):
            function.add_to_role_policy(aws_iam.PolicyStatement(actions=actions, resources=arns))
        if inbound_topic_arns:
            requests.add_to_role_policy(
                aws_iam.PolicyStatement(actions=["iot:Publish"], resources=list(inbound_topic_arns))
            )
        if send_function is not None:
            # The unqualified function only (grant_invoke would add every version, `:*`).
            sweeper.add_to_role_policy(
                aws_iam.PolicyStatement(
                    actions=["lambda:InvokeFunction"], resources=[send_function.function_arn]
                )
            )

        error_role = aws_iam.Role(
            self,
            "RuleErrorRole",
            assumed_by=aws_iam.ServicePrincipal("iot.amazonaws.com"),
            description="Lets the mailbox rules put undeliverable requests in the error queue",
        )
        rule_error_queue.grant_send_messages(error_role)
        self.rules: dict[str, aws_iot.CfnTopicRule] = {}
        for name, request in (("AckRule", "ack"), ("RedeliverRule", "redeliver")):
            sql = contract.mailbox_request_sql(topic_prefix, request)
            rule = aws_iot.CfnTopicRule(
                self,
                name,
                topic_rule_payload=aws_iot.CfnTopicRule.TopicRulePayloadProperty(
                    sql=sql,
                    aws_iot_sql_version="2016-03-23",
                    rule_disabled=False,
                    description=f"Device mailbox requests: {request}",
                    actions=[
                        aws_iot.CfnTopicRule.ActionProperty(
                            lambda_=aws_iot.CfnTopicRule.LambdaActionProperty(
                                function_arn=requests.function_arn
                            )
                        )
                    ],
                    error_action=aws_iot.CfnTopicRule.ActionProperty(
                        sqs=aws_iot.CfnTopicRule.SqsActionProperty(
                            queue_url=rule_error_queue.queue_url,
                            role_arn=error_role.role_arn,
                            use_base64=False,
                        )
                    ),
                ),
            )
            requests.add_permission(
                f"InvokeBy{name}",
                principal=aws_iam.ServicePrincipal("iot.amazonaws.com"),
                source_arn=rule.attr_arn,
                source_account=Stack.of(self).account,
            )
            self.rules[name] = rule

        self.schedule = aws_events.Rule(
            self,
            "SweepSchedule",
            schedule=aws_events.Schedule.rate(SWEEP_EVERY),
            targets=[aws_events_targets.LambdaFunction(sweeper, retry_attempts=2)],
        )

        def metric(name: str, statistic: str) -> aws_cloudwatch.Metric:
            return aws_cloudwatch.Metric(
                namespace=contract.MAILBOX_METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={
                    "environment": environment_name,
                    "service": contract.MAILBOX_METRICS_SERVICE,
                },
                period=SWEEP_EVERY,
                statistic=statistic,
            )

        self.oldest_pending_age = metric(contract.OLDEST_PENDING_AGE_METRIC, "Maximum")
        self.expired_messages = metric(contract.EXPIRED_MESSAGES_METRIC, "Sum")
        self.age_alarm = topic_alarm(
            self,
            "OldestPendingAlarm",
            metric=self.oldest_pending_age,
            threshold=alarm_age_minutes * 60,
            topic=alarm_topic,
            description=(
                f"A message has waited more than {alarm_age_minutes} minutes for its device: "
                "the device is offline or does not confirm what it takes."
            ),
        )
        self.expired_alarm = topic_alarm(
            self,
            "ExpiredAlarm",
            metric=self.expired_messages,
            threshold=0,
            topic=alarm_topic,
            description="A message expired in the mailbox: its device never took it.",
        )

    def grant_record(self, function: aws_lambda.IFunction) -> None:
        """Lets the receive Lambda record messages: PutItem on the table, not its index."""
        function.add_to_role_policy(
            aws_iam.PolicyStatement(actions=["dynamodb:PutItem"], resources=[self.table.table_arn])
        )
