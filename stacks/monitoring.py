"""Alarms that tell the operator when a message is stuck or a component fails."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import (
    Duration,
    aws_apigateway,
    aws_cloudwatch,
    aws_kms,
    aws_sns,
    aws_sns_subscriptions,
    aws_sqs,
)
from constructs import Construct

from stacks.alarms import topic_alarm

WEBHOOK_4XX_PER_5_MINUTES = 10
"""Twilio's own requests are never answered 4xx, so a few are a scanner; more are a flood
of forged requests (403), throttled texts (429, not retried: lost) or a token rotation
gone wrong (every webhook 403)."""


class Monitoring(Construct):
    """An SNS topic and alarms: any message in a dead-letter queue, any webhook 5xx, a burst
    of webhook 4xx.

    Lambda error counts are not alarmed on: the receive Lambda rejects forged webhooks by
    raising (mapped to 403), and the send Lambda raises to get retried; what matters is a
    message that ends undelivered, and that lands in a dead-letter queue.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dead_letter_queues: Mapping[str, aws_sqs.IQueue],
        api: aws_apigateway.RestApi,
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = aws_sns.Topic(
            self,
            "AlarmTopic",
            display_name="Text-a-device alarms",
            enforce_ssl=True,
            master_key=aws_kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns"),
        )
        if alarm_email:
            self.topic.add_subscription(aws_sns_subscriptions.EmailSubscription(alarm_email))
        self.alarms: dict[str, aws_cloudwatch.Alarm] = {}

        def alarm(
            name: str, metric: aws_cloudwatch.IMetric, description: str, threshold: float = 0
        ) -> None:
            self.alarms[name] = topic_alarm(
                self,
                name,
                metric=metric,
                threshold=threshold,
                description=description,
                topic=self.topic,
            )

        for name, queue in dead_letter_queues.items():
            alarm(
                f"{name}NotEmpty",
                queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic="Maximum"
                ),
                f"A message is waiting in {name}: it was not delivered. Inspect and redrive.",
            )
        alarm(
            "Api5xx",
            api.metric_server_error(period=Duration.minutes(5), statistic="Sum"),
            "The webhook answered Twilio with a 5xx: Twilio tries the fallback URL, if any.",
        )
        alarm(
            "Api4xx",
            api.metric_client_error(period=Duration.minutes(5), statistic="Sum"),
            f"The webhook answered more than {WEBHOOK_4XX_PER_5_MINUTES} requests with a 4xx in "
            "5 minutes: 403 (forged requests, or an auth token rotated without updating the "
            "secret) or 429 (throttled: Twilio does not retry, the texts are lost).",
            threshold=WEBHOOK_4XX_PER_5_MINUTES,
        )
