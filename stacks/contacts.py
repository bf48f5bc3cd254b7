"""The Contacts table: who texted which device (the reply window), who opted out, and the
per-device send counters of the outbound policy."""

from __future__ import annotations

from aws_cdk import RemovalPolicy, aws_dynamodb
from constructs import Construct

import contract
from stacks.tables import on_demand_table


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
        self.table = on_demand_table(
            self,
            "Table",
            partition_key=contract.CONTACT_KEY_ATTRIBUTE,
            ttl_attribute=contract.CONTACT_EXPIRY_ATTRIBUTE,
            encryption=aws_dynamodb.TableEncryption.AWS_MANAGED,
            removal_policy=removal_policy,
        )
