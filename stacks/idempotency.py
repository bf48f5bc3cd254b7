"""The DynamoDB table Powertools' idempotency utility keeps its records in."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, aws_dynamodb
from constructs import Construct

from stacks.tables import on_demand_table

# Powertools' DynamoDBPersistenceLayer defaults: key attribute `id`, expiry `expiration`.
KEY_ATTRIBUTE = "id"
EXPIRY_ATTRIBUTE = "expiration"


def idempotency_table(
    scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy
) -> aws_dynamodb.Table:
    """An on-demand table whose records expire by TTL, with point-in-time recovery."""
    return on_demand_table(
        scope,
        construct_id,
        partition_key=KEY_ATTRIBUTE,
        ttl_attribute=EXPIRY_ATTRIBUTE,
        removal_policy=removal_policy,
    )
