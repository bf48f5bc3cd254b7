"""Optional custom resource: point the bound Twilio numbers' SMS webhook at this stack.

Off by default (`configure_twilio_number` per environment). On deploy it sets each bound
number's `SmsUrl` (and `SmsFallbackUrl` when configured) through the twilio library; on
delete it puts back what the number had before. It needs the Twilio credentials in the
secret, so turn it on after the first deploy has created the secret and you filled it.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, aws_logs
from constructs import Construct

from stacks.python_function import LAMBDAS_DIR, BundledPythonFunction

RESOURCE_TYPE = "Custom::TwilioNumberWebhook"


class TwilioNumberWebhook(Construct):
    """The Python Lambda (crhelper) behind one `Custom::TwilioNumberWebhook` per bound
    number; those live beside their device, in its shard (`stacks/device_shard.py`)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        secret_name: str,
        log_retention: aws_logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = BundledPythonFunction(
            self,
            "Handler",
            package_dir=LAMBDAS_DIR / "twilio_number_lambda",
            description="Points the bound Twilio numbers' SMS webhook at this stack",
            environment={"TWILIO_SECRET_NAME": secret_name},
            log_retention=log_retention,
            removal_policy=removal_policy,
            # Two Twilio calls of at most 10 s each, plus the answer to CloudFormation.
            timeout=Duration.seconds(60),
        )
        self.function = self.handler.function
