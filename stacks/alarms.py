"""The one way this project raises an alarm: a metric over a threshold, sent to the topic."""

from __future__ import annotations

from aws_cdk import aws_cloudwatch, aws_cloudwatch_actions, aws_sns
from constructs import Construct

GREATER = aws_cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
AT_LEAST = aws_cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD


def topic_alarm(
    scope: Construct,
    construct_id: str,
    *,
    metric: aws_cloudwatch.IMetric,
    threshold: float,
    description: str,
    topic: aws_sns.ITopic,
    comparison: aws_cloudwatch.ComparisonOperator = GREATER,
) -> aws_cloudwatch.Alarm:
    """An alarm on one evaluation period of `metric` that notifies `topic`.

    No data is not breaching: these metrics are counts and ages that are simply absent
    while all is well.
    """
    alarm = aws_cloudwatch.Alarm(
        scope,
        construct_id,
        metric=metric,
        threshold=threshold,
        evaluation_periods=1,
        comparison_operator=comparison,
        treat_missing_data=aws_cloudwatch.TreatMissingData.NOT_BREACHING,
        alarm_description=description,
    )
    alarm.add_alarm_action(aws_cloudwatch_actions.SnsAction(topic))
    return alarm
