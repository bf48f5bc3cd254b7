"""The one way this app builds its DynamoDB tables: on demand, with point-in-time recovery."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, aws_dynamodb
from constructs import Construct


def string_attribute(name: str) -> aws_dynamodb.Attribute:
    """A string key attribute: every key in this app's tables is a string."""
    return aws_dynamodb.Attribute(name=name, type=aws_dynamodb.AttributeType.STRING)


def on_demand_table(
    scope: Construct,
    construct_id: str,
    *,
    partition_key: str,
    sort_key: str | None = None,
    ttl_attribute: str | None = None,
    encryption: aws_dynamodb.TableEncryption | None = None,
    removal_policy: RemovalPolicy,
) -> aws_dynamodb.Table:
    """A pay-per-request table with string keys and point-in-time recovery; items expire
    by `ttl_attribute` when it is set."""
    return aws_dynamodb.Table(
        scope,
        construct_id,
        partition_key=string_attribute(partition_key),
        sort_key=string_attribute(sort_key) if sort_key is not None else None,
        billing_mode=aws_dynamodb.BillingMode.PAY_PER_REQUEST,
        encryption=encryption,
        time_to_live_attribute=ttl_attribute,
        point_in_time_recovery_specification=aws_dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        removal_policy=removal_policy,
    )
