"""The Contacts table: who texted which device (the reply window), who opted out, and the
per-device send counters of the outbound policy."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, aws_dynamodb
from constructs import Construct

import contract


class Contacts(Construct):
    """An on-demand, encrypted table with point-in-time recovery; items expire by TTL.

    Keyed `contract.contact_key` for a contact and `contract.send_counter_key` for a send
    counter. The receive Lambda writes when a number last texted a device on every accepted
    message and whether it opted out on STOP/START; the send Lambda reads them and counts
    its sends per device in the same table.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, removal_policy: RemovalPolicy
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = aws_dynamodb.Table(
            self,
            "Table",
            partition_key=aws_dynamodb.Attribute(
                name=contract.CONTACT_KEY_ATTRIBUTE, type=aws_dynamodb.AttributeType.STRING
            ),
            billing_mode=aws_dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=aws_dynamodb.TableEncryption.AWS_MANAGED,
            time_to_live_attribute=contract.CONTACT_EXPIRY_ATTRIBUTE,
            point_in_time_recovery_specification=aws_dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            removal_policy=removal_policy,
        )
