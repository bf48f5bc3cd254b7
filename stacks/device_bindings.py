"""The bindings table: which device answers which Twilio number, read by the Lambdas.

Each shard of the fleet writes its devices' bindings here through a custom resource, so
the Lambdas' configuration and policies stay the same size whatever the fleet's size, and
adding a device redeploys no Lambda (warm containers see it within their cache's age).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, aws_iam, aws_logs
from constructs import Construct

import contract
from stacks.python_function import LAMBDAS_DIR, BundledPythonFunction
from stacks.tables import on_demand_table


class DeviceBindings(Construct):
    """The table and the custom resource Lambda that writes to it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_retention: aws_logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.table = on_demand_table(
            self,
            "Table",
            partition_key=contract.BINDING_KEY,
            # Derived data: every deploy writes it again from devices/{env}/devices.json.
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.writer = BundledPythonFunction(
            self,
            "Writer",
            package_dir=LAMBDAS_DIR / "device_bindings_lambda",
            description="Writes a fleet shard's number <-> thing bindings to the bindings table",
            environment={},
            log_retention=log_retention,
            removal_policy=removal_policy,
            # About 2 x 70 single-item writes for the largest shard of 1,000 devices.
            timeout=Duration.seconds(120),
        )
        self.table.grant(self.writer.function, "dynamodb:PutItem", "dynamodb:DeleteItem")

    @property
    def service_token(self) -> str:
        """What the shards' `Custom::DeviceBindings` resources call."""
        return self.writer.function.function_arn

    def grant_lookup(self, grantee: aws_iam.IGrantable) -> None:
        """Single-item reads only: the Lambdas look one number or thing up at a time."""
        self.table.grant(grantee, "dynamodb:GetItem")
