"""Optional status callback: Twilio reports each sent message's delivery to `POST /status`.

Off by default (`status_callback` per environment). When on, the send Lambda passes the
URL as StatusCallback and a small Lambda logs every report, failures at ERROR level, so
an undelivered SMS shows up in the logs (without numbers or bodies).
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, aws_apigateway, aws_logs
from constructs import Construct

from stacks.python_function import LAMBDAS_DIR, BundledPythonFunction

PATH_PART = "status"


class StatusCallback(Construct):
    """The `status` resource of the webhook API and the Lambda behind it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        api: aws_apigateway.RestApi,
        secret_name: str,
        log_retention: aws_logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.handler = BundledPythonFunction(
            self,
            "Handler",
            package_dir=LAMBDAS_DIR / "status_lambda",
            description="Logs Twilio's delivery status callbacks (failures at ERROR)",
            environment={"TWILIO_SECRET_NAME": secret_name},
            log_retention=log_retention,
            removal_policy=removal_policy,
            timeout=Duration.seconds(10),
        )
        self.function = self.handler.function
        # A proxy integration: the Lambda needs the raw form, the host and the signature.
        self.resource = api.root.add_resource(PATH_PART)
        self.method = self.resource.add_method(
            "POST", aws_apigateway.LambdaIntegration(self.function, proxy=True)
        )
        self.url = api.url_for_path(self.resource.path)
