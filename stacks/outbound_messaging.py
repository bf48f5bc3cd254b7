"""Device replies to SMS: IoT topic rule -> send Lambda -> Twilio, with dead-letter queues."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import (
    Duration,
    RemovalPolicy,
    Stack,
    aws_iam,
    aws_iot,
    aws_lambda,
    aws_lambda_destinations,
    aws_logs,
    aws_sqs,
)
from constructs import Construct

import contract
from stacks.idempotency import idempotency_table
from stacks.nag import acknowledge
from stacks.python_function import LAMBDAS_DIR, BundledPythonFunction

RETRY_ATTEMPTS = 2
LAMBDA_TIMEOUT = Duration.seconds(30)
DLQ_RETENTION = Duration.days(14)


class OutboundMessaging(Construct):
    """Topic rule, send Lambda, its idempotency table and the dead-letter queues.

    The rule invokes the Lambda asynchronously: Lambda retries a failed send twice, then
    the event goes to `dead_letter_queue`; what the rule itself cannot deliver goes to
    `rule_error_queue`. Nothing is dropped without a trace.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topic_prefix: str,
        bindings_table_name: str,
        destination_allow_list: Sequence[str],
        secret_name: str,
        log_retention: aws_logs.RetentionDays,
        removal_policy: RemovalPolicy,
        status_callback_url: str | None = None,
        reserved_concurrency: int | None = None,
        idempotency_seconds: int | None = None,
    ) -> None:
        """`idempotency_seconds`: how long a sent thing + Id is remembered (the send
        Lambda's default if None)."""
        super().__init__(scope, construct_id)

        def queue(queue_id: str) -> aws_sqs.Queue:
            return aws_sqs.Queue(
                self,
                queue_id,
                encryption=aws_sqs.QueueEncryption.SQS_MANAGED,
                enforce_ssl=True,
                retention_period=DLQ_RETENTION,
                removal_policy=removal_policy,
            )

        self.dead_letter_queue = queue("SendDeadLetterQueue")
        self.rule_error_queue = queue("RuleErrorQueue")
        for dead_letters in (self.dead_letter_queue, self.rule_error_queue):
            acknowledge(
                dead_letters,
                "AwsSolutions-SQS3",
                "This queue is itself a dead-letter queue (Lambda on-failure destination "
                "or the rule's error action); a dead-letter queue of it would only move the "
                "problem. An alarm fires when it holds a message.",
            )
        self.idempotency_table = idempotency_table(
            self, "IdempotencyTable", removal_policy=removal_policy
        )
        environment = {
            # Thing -> number, read item by item (stacks/device_bindings.py).
            contract.BINDINGS_TABLE_VARIABLE: bindings_table_name,
            "DESTINATION_ALLOW_LIST": ",".join(destination_allow_list),
            "TWILIO_SECRET_NAME": secret_name,
            "IDEMPOTENCY_TABLE": self.idempotency_table.table_name,
            # A permanent Twilio error is dead-lettered by the handler itself (no retry).
            "DEAD_LETTER_QUEUE_URL": self.dead_letter_queue.queue_url,
        }
        if status_callback_url:
            environment["STATUS_CALLBACK_URL"] = status_callback_url
        if idempotency_seconds is not None:
            environment["IDEMPOTENCY_SECONDS"] = str(idempotency_seconds)
        self.send = BundledPythonFunction(
            self,
            "Send",
            package_dir=LAMBDAS_DIR / "send_lambda",
            description="Sends a device's outbound message as SMS/MMS through Twilio",
            environment=environment,
            log_retention=log_retention,
            removal_policy=removal_policy,
            # A reconciling retry makes two Twilio calls (list, then create), each bounded by
            # the client's timeout for connect and again for read (sender.py): 4 x 6 s < 30 s.
            timeout=LAMBDA_TIMEOUT,
            # Bounds what a flood of device messages can cost at once (Twilio, DynamoDB).
            reserved_concurrency=reserved_concurrency,
        )
        self.function = self.send.function
        self.dead_letter_queue.grant_send_messages(self.function)
        self.invoke_config = aws_lambda.EventInvokeConfig(
            self,
            "AsyncRetries",
            function=self.function,
            retry_attempts=RETRY_ATTEMPTS,
            max_event_age=Duration.seconds(contract.SEND_EVENT_MAX_AGE_SECONDS),
            on_failure=aws_lambda_destinations.SqsDestination(self.dead_letter_queue),
        )

        self.rule_error_role = aws_iam.Role(
            self,
            "RuleErrorRole",
            assumed_by=aws_iam.ServicePrincipal("iot.amazonaws.com"),
            description="Lets the outbound topic rule put undeliverable messages in its queue",
        )
        self.rule_error_queue.grant_send_messages(self.rule_error_role)
        # The contract's field list: the send Lambda reads exactly these (and `thing`).
        self.sql = contract.outbound_rule_sql(topic_prefix)
        self.rule = aws_iot.CfnTopicRule(
            self,
            "OutboundRule",
            topic_rule_payload=aws_iot.CfnTopicRule.TopicRulePayloadProperty(
                sql=self.sql,
                aws_iot_sql_version="2016-03-23",
                rule_disabled=False,
                description="Device replies -> send Lambda",
                actions=[
                    aws_iot.CfnTopicRule.ActionProperty(
                        lambda_=aws_iot.CfnTopicRule.LambdaActionProperty(
                            function_arn=self.function.function_arn
                        )
                    )
                ],
                error_action=aws_iot.CfnTopicRule.ActionProperty(
                    sqs=aws_iot.CfnTopicRule.SqsActionProperty(
                        queue_url=self.rule_error_queue.queue_url,
                        role_arn=self.rule_error_role.role_arn,
                        use_base64=False,
                    )
                ),
            ),
        )
        # Only this rule, in this account, may invoke the send Lambda.
        self.function.add_permission(
            "InvokeByOutboundRule",
            principal=aws_iam.ServicePrincipal("iot.amazonaws.com"),
            source_arn=self.rule.attr_arn,
            source_account=Stack.of(self).account,
        )
