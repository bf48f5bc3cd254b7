"""The DynamoDB table Powertools' idempotency utility keeps its records in."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, aws_dynamodb
from constructs import Construct

# Powertools' DynamoDBPersistenceLayer defaults: key attribute `id`, expiry `expiration`.
KEY_ATTRIBUTE = "id"
EXPIRY_ATTRIBUTE = "expiration"


def idempotency_table(
    scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy
) -> aws_dynamodb.Table:
    """An on-demand table whose records expire by TTL, with point-in-time recovery."""
    return aws_dynamodb.Table(
        scope,
        construct_id,
        partition_key=aws_dynamodb.Attribute(
            name=KEY_ATTRIBUTE, type=aws_dynamodb.AttributeType.STRING
        ),
        billing_mode=aws_dynamodb.BillingMode.PAY_PER_REQUEST,
        time_to_live_attribute=EXPIRY_ATTRIBUTE,
        point_in_time_recovery_specification=aws_dynamodb.PointInTimeRecoverySpecification(
            point_in_time_recovery_enabled=True
        ),
        removal_policy=removal_policy,
    )
