"""The stack of one environment: composes the constructs and wires grants and outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import (
    CfnOutput,
    RemovalPolicy,
    Stack,
    Token,
    aws_iam,
    aws_logs,
)
from constructs import Construct

import contract
from contract import inbound_topic, outbound_topic
from stacks.contacts import Contacts
from stacks.device_bindings import DeviceBindings
from stacks.device_fleet import DeviceFleet
from stacks.device_shard import NumberWebhookSettings
from stacks.mailbox import Mailbox
from stacks.monitoring import Monitoring
from stacks.nag import acknowledge
from stacks.ota_updates import OtaUpdates
from stacks.outbound_messaging import OutboundMessaging
from stacks.outbound_policy import OutboundPolicy
from stacks.settings import EnvironmentSettings
from stacks.status_callback import StatusCallback
from stacks.twilio_number import TwilioNumberWebhook
from stacks.twilio_secret import TwilioSecret
from stacks.webhook_api import WebhookApi

RETENTION_BY_DAYS = {
    1: aws_logs.RetentionDays.ONE_DAY,
    3: aws_logs.RetentionDays.THREE_DAYS,
    5: aws_logs.RetentionDays.FIVE_DAYS,
    7: aws_logs.RetentionDays.ONE_WEEK,
    14: aws_logs.RetentionDays.TWO_WEEKS,
    30: aws_logs.RetentionDays.ONE_MONTH,
    60: aws_logs.RetentionDays.TWO_MONTHS,
    90: aws_logs.RetentionDays.THREE_MONTHS,
    120: aws_logs.RetentionDays.FOUR_MONTHS,
    150: aws_logs.RetentionDays.FIVE_MONTHS,
    180: aws_logs.RetentionDays.SIX_MONTHS,
    365: aws_logs.RetentionDays.ONE_YEAR,
    400: aws_logs.RetentionDays.THIRTEEN_MONTHS,
    545: aws_logs.RetentionDays.EIGHTEEN_MONTHS,
    731: aws_logs.RetentionDays.TWO_YEARS,
    1096: aws_logs.RetentionDays.THREE_YEARS,
    1827: aws_logs.RetentionDays.FIVE_YEARS,
    2192: aws_logs.RetentionDays.SIX_YEARS,
    2557: aws_logs.RetentionDays.SEVEN_YEARS,
}


# What Powertools' DynamoDB persistence layer (and the send Lambda's attempt marker) call:
# single-item reads and writes, no Scan, Query or batch operations.
IDEMPOTENCY_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
)


class TextDeviceStack(Stack):
    """Twilio webhook -> IoT -> devices -> IoT rule -> Twilio, for one environment."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: EnvironmentSettings,
        device_csrs: Mapping[str, Sequence[str]],
        **kwargs: Any,
    ) -> None:
        """`device_csrs`: thing name -> its committed PEM CSR(s) (read by app.py)."""
        super().__init__(scope, construct_id, **kwargs)
        removal = RemovalPolicy.RETAIN if settings.retain_data else RemovalPolicy.DESTROY
        retention = RETENTION_BY_DAYS[settings.log_retention_days]
        secret_name = contract.twilio_secret_name(settings.name)

        self.twilio_secret = TwilioSecret(
            self, "TwilioSecret", secret_name=secret_name, removal_policy=removal
        )
        self.bindings = DeviceBindings(
            self, "Bindings", log_retention=retention, removal_policy=removal
        )
        self.webhook = WebhookApi(
            self,
            "Webhook",
            topic_prefix=settings.topic_prefix,
            bindings_table_name=self.bindings.table.table_name,
            body_limit=settings.body_limit,
            extra_fields=settings.extra_fields,
            secret_name=secret_name,
            log_retention=retention,
            removal_policy=removal,
            throttle_rate_limit=settings.throttle_rate_limit,
            throttle_burst_limit=settings.throttle_burst_limit,
            allowed_senders=settings.allowed_senders,
            replay_window_days=settings.replay_window_days,
        )
        # Optional: Twilio reports delivery to POST /status on the webhook's API.
        self.status_callback = (
            StatusCallback(
                self,
                "StatusCallback",
                api=self.webhook.api,
                secret_name=secret_name,
                log_retention=retention,
                removal_policy=removal,
            )
            if settings.status_callback
            else None
        )
        self.outbound = OutboundMessaging(
            self,
            "Outbound",
            topic_prefix=settings.topic_prefix,
            bindings_table_name=self.bindings.table.table_name,
            destination_allow_list=settings.destination_allow_list,
            secret_name=secret_name,
            log_retention=retention,
            removal_policy=removal,
            status_callback_url=self.status_callback.url if self.status_callback else None,
            reserved_concurrency=settings.send_reserved_concurrency,
            # A redelivered message brings its reply Id back as long as it can wait (days:
            # longer than the send Lambda's own default and an async event's 6 h).
            idempotency_seconds=contract.mailbox_lifetime_seconds(settings.mailbox_retention_days),
        )
        # Optional: point the bound numbers' SMS webhook at this stack on deploy.
        self.number_webhook = (
            TwilioNumberWebhook(
                self,
                "TwilioNumberWebhook",
                secret_name=secret_name,
                log_retention=retention,
                removal_policy=removal,
            )
            if settings.configure_twilio_number
            else None
        )
        self.fleet = DeviceFleet(
            self,
            "Devices",
            environment_name=settings.name,
            topic_prefix=settings.topic_prefix,
            devices=settings.devices,
            csrs=device_csrs,
            shard_count=settings.device_shards,
            bindings=self.bindings,
            number_webhook=NumberWebhookSettings(
                service_token=self.number_webhook.function.function_arn,
                webhook_url=self.webhook.webhook_url,
                fallback_url=settings.fallback_url,
            )
            if self.number_webhook is not None
            else None,
        )
        self.ota = OtaUpdates(self, "OtaUpdates", removal_policy=removal)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            dead_letter_queues={
                "SendDeadLetterQueue": self.outbound.dead_letter_queue,
                "RuleErrorQueue": self.outbound.rule_error_queue,
            },
            api=self.webhook.api,
            alarm_email=settings.alarm_email,
        )

        # Every message waits in its device's mailbox until the device confirms it.
        self.mailbox = Mailbox(
            self,
            "Mailbox",
            environment_name=settings.name,
            topic_prefix=settings.topic_prefix,
            inbound_topic_arns=[self.fleet.inbound_topic_arn()],
            retention_days=settings.mailbox_retention_days,
            alarm_age_minutes=settings.mailbox_alarm_age_minutes,
            alarm_topic=self.monitoring.topic,
            rule_error_queue=self.outbound.rule_error_queue,
            send_function=self.outbound.function
            if settings.mailbox_expiry_action == "notify_sender"
            else None,
            log_retention=retention,
            removal_policy=removal,
        )
        self.webhook.function.add_environment("MAILBOX_TABLE", self.mailbox.table.table_name)
        self.webhook.function.add_environment(
            "MAILBOX_RETENTION_SECONDS", str(self.mailbox.retention_seconds)
        )
        self.mailbox.grant_record(self.webhook.function)

        # Whom a device may text, and how much: the reply window and opt-outs come from the
        # Contacts table, which the receive Lambda writes.
        self.contacts = Contacts(self, "Contacts", removal_policy=removal)
        self.outbound_policy = OutboundPolicy(
            self,
            "OutboundPolicy",
            function=self.outbound.function,
            contacts_table=self.contacts.table,
            reply_window_days=settings.reply_window_days,
            allow_list_by_device=settings.destination_allow_list_by_device,
            prefixes=settings.destination_prefixes,
            limit_per_minute=settings.send_limit_per_minute,
            limit_per_day=settings.send_limit_per_day,
            metrics_namespace=contract.metrics_namespace(settings.name),
            alarm_topic=self.monitoring.topic,
            removal_policy=removal,
        )
        self.webhook.function.add_environment(
            contract.CONTACTS_TABLE_VARIABLE, self.contacts.table.table_name
        )
        self.contacts.table.grant(self.webhook.function, "dynamodb:UpdateItem")

        # Grants: each function gets exactly what its code calls.
        receive = self.webhook.function
        self.twilio_secret.secret.grant_read(receive)
        self.webhook.idempotency_table.grant(receive, *IDEMPOTENCY_ACTIONS)
        self.bindings.grant_lookup(receive)
        receive.add_to_role_policy(
            aws_iam.PolicyStatement(
                actions=["iot:Publish"], resources=[self.fleet.inbound_topic_arn()]
            )
        )
        # cdk-nag names the resource as rendered: pseudo parameters as <AWS::...>.
        account = "<AWS::AccountId>" if Token.is_unresolved(self.account) else self.account
        for publisher, who in (
            (self.webhook.receive, "The receive Lambda"),
            (self.mailbox.requests, "The mailbox's redelivery Lambda"),
        ):
            acknowledge(
                publisher.role,
                f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:iot:{self.region}:{account}:"
                f"topic/{inbound_topic(settings.topic_prefix, '*')}]",
                f"{who} publishes to any bound device's inbound topic, "
                f"{inbound_topic(settings.topic_prefix, '{thing}')}: the wildcard stands for the "
                "thing level only, so the policy stays the same size for 1 or 1,000 devices.",
            )
        send = self.outbound.function
        self.twilio_secret.secret.grant_read(send)
        self.outbound.idempotency_table.grant(send, *IDEMPOTENCY_ACTIONS)
        self.bindings.grant_lookup(send)
        if self.status_callback is not None:
            self.twilio_secret.secret.grant_read(self.status_callback.function)
        if self.number_webhook is not None:
            self.twilio_secret.secret.grant_read(self.number_webhook.function)

        prefix = settings.topic_prefix
        CfnOutput(
            self,
            contract.WEBHOOK_URL_OUTPUT,
            value=self.webhook.webhook_url,
            description="Set as the Twilio number's 'A message comes in' webhook (POST)",
        )
        # Counts and patterns, not lists: outputs must not grow with the fleet (200 at most,
        # each value bounded). The tool finds a thing's certificate with ListThingPrincipals.
        CfnOutput(
            self,
            contract.DEVICE_COUNT_OUTPUT,
            value=str(len(settings.devices)),
            description=f"Devices of this environment (devices/{settings.name}/devices.json)",
        )
        CfnOutput(self, contract.INBOUND_TOPIC_OUTPUT, value=inbound_topic(prefix, "{thing}"))
        CfnOutput(self, contract.OUTBOUND_TOPIC_OUTPUT, value=outbound_topic(prefix, "{thing}"))
        CfnOutput(
            self,
            contract.TWILIO_SECRET_NAME_OUTPUT,
            value=secret_name,
            description='Put {"account_sid", "auth_token"} here after the first deploy',
        )
        CfnOutput(self, contract.DEVICE_POLICY_NAME_OUTPUT, value=self.fleet.policy.ref)
        CfnOutput(self, contract.BINDINGS_TABLE_OUTPUT, value=self.bindings.table.table_name)
        # What `make redrive` reads and writes.
        outputs = {
            contract.SEND_DEAD_LETTER_QUEUE_OUTPUT: self.outbound.dead_letter_queue.queue_url,
            contract.RULE_ERROR_QUEUE_OUTPUT: self.outbound.rule_error_queue.queue_url,
            contract.REFUSED_QUEUE_OUTPUT: self.outbound_policy.refused_queue.queue_url,
            contract.SEND_IDEMPOTENCY_TABLE_OUTPUT: self.outbound.idempotency_table.table_name,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
        CfnOutput(self, contract.TOPIC_PREFIX_OUTPUT, value=prefix)
        CfnOutput(self, contract.OTA_BUCKET_OUTPUT, value=self.ota.bucket.bucket_name)
        CfnOutput(self, contract.OTA_STREAM_ROLE_OUTPUT, value=self.ota.stream_role.role_arn)
