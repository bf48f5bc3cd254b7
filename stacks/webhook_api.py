"""The webhook Twilio calls: API Gateway REST `POST /message` -> the receive Lambda."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, aws_apigateway, aws_logs
from constructs import Construct

import contract
from stacks.idempotency import idempotency_table
from stacks.nag import acknowledge
from stacks.python_function import LAMBDAS_DIR, BundledPythonFunction

REQUEST_TEMPLATE = Path(__file__).resolve().parent / "templates" / "receive_request.vtl"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
STAGE_NAME = "v1"
# The receive Lambda signals a client error by raising with one of these prefixes; the
# integration responses turn them into HTTP statuses instead of a 502.
ERROR_STATUSES = {"Forbidden": "403", "BadRequest": "400"}
# Any other function error (InternalError, a timeout, a crash) must not fall through to the
# default response, which is the 200: it is a 500, so Twilio tries the fallback URL and the
# 5xx alarm fires. Anchored and disjoint from the prefixes above (no ambiguous match).
SERVER_ERROR_PATTERN = r"^(?!Forbidden:|BadRequest:)[\s\S]+"
XML = "'application/xml'"
TEXT = "'text/plain'"
# API Gateway picks a response template by the request's Accept header (Twilio sends */*):
# the same template under both types makes the choice irrelevant.
RESPONSE_TYPES = ("application/xml", "application/json")


class WebhookApi(Construct):
    """REST API, receive Lambda and its idempotency table.

    Non-proxy integration: the VTL request template hands the Lambda the raw form body and
    the URL parts Twilio signed; the Lambda answers TwiML, which is returned as XML.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        topic_prefix: str,
        bindings_table_name: str,
        body_limit: int,
        extra_fields: Sequence[str],
        secret_name: str,
        log_retention: aws_logs.RetentionDays,
        removal_policy: RemovalPolicy,
        throttle_rate_limit: float,
        throttle_burst_limit: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.idempotency_table = idempotency_table(
            self, "IdempotencyTable", removal_policy=removal_policy
        )
        self.receive = BundledPythonFunction(
            self,
            "Receive",
            package_dir=LAMBDAS_DIR / "receive_lambda",
            description="Verifies Twilio's webhook and publishes the SMS to the device's topic",
            environment={
                "TOPIC_PREFIX": topic_prefix,
                # Number -> thing, read item by item (stacks/device_bindings.py).
                contract.BINDINGS_TABLE_VARIABLE: bindings_table_name,
                "BODY_LIMIT": str(body_limit),
                "EXTRA_FIELDS": ",".join(extra_fields),
                "TWILIO_SECRET_NAME": secret_name,
                "IDEMPOTENCY_TABLE": self.idempotency_table.table_name,
            },
            log_retention=log_retention,
            removal_policy=removal_policy,
            # Twilio waits 15 s for a webhook, then calls the fallback URL.
            timeout=Duration.seconds(10),
        )
        self.function = self.receive.function

        self.access_logs = aws_logs.LogGroup(
            self, "AccessLogs", retention=log_retention, removal_policy=removal_policy
        )
        self.api = aws_apigateway.RestApi(
            self,
            "Api",
            description="Twilio messaging webhook",
            endpoint_types=[aws_apigateway.EndpointType.REGIONAL],
            cloud_watch_role=False,
            deploy_options=aws_apigateway.StageOptions(
                stage_name=STAGE_NAME,
                access_log_destination=aws_apigateway.LogGroupLogDestination(self.access_logs),
                # No caller identity or query string: they could carry phone numbers.
                access_log_format=aws_apigateway.AccessLogFormat.custom(
                    json.dumps(
                        {
                            "requestId": "$context.requestId",
                            "requestTime": "$context.requestTime",
                            "httpMethod": "$context.httpMethod",
                            "resourcePath": "$context.resourcePath",
                            "status": "$context.status",
                            "responseLength": "$context.responseLength",
                            "integrationLatency": "$context.integrationLatency",
                            "integrationError": "$context.integration.error",
                        }
                    )
                ),
                throttling_rate_limit=throttle_rate_limit,
                throttling_burst_limit=throttle_burst_limit,
            ),
        )
        # API Gateway answers 415 for a content type without a template; Twilio's contract
        # is a form post, so anything else is the client's error: 400, said plainly.
        self.api.add_gateway_response(
            "UnsupportedMediaType",
            type=aws_apigateway.ResponseType.UNSUPPORTED_MEDIA_TYPE,
            status_code="400",
            response_headers={"Content-Type": TEXT},
            templates={"application/json": f"Expected Content-Type: {FORM_CONTENT_TYPE}"},
        )
        integration = aws_apigateway.LambdaIntegration(
            self.function,
            proxy=False,
            passthrough_behavior=aws_apigateway.PassthroughBehavior.NEVER,
            request_templates={FORM_CONTENT_TYPE: REQUEST_TEMPLATE.read_text()},
            timeout=Duration.seconds(14),
            integration_responses=[
                aws_apigateway.IntegrationResponse(
                    status_code="200",
                    response_parameters={"method.response.header.Content-Type": XML},
                    response_templates=dict.fromkeys(RESPONSE_TYPES, "$input.path('$')"),
                ),
                *(
                    aws_apigateway.IntegrationResponse(
                        status_code=status,
                        selection_pattern=f"{prefix}:.*",
                        response_parameters={"method.response.header.Content-Type": TEXT},
                        response_templates=dict.fromkeys(
                            RESPONSE_TYPES, "$input.path('$.errorMessage')"
                        ),
                    )
                    for prefix, status in ERROR_STATUSES.items()
                ),
                aws_apigateway.IntegrationResponse(
                    status_code="500",
                    selection_pattern=SERVER_ERROR_PATTERN,
                    response_parameters={"method.response.header.Content-Type": TEXT},
                    # Never the function's message: it could name internals.
                    response_templates=dict.fromkeys(
                        RESPONSE_TYPES, "Internal error (request $context.requestId)"
                    ),
                ),
            ],
        )
        self.message_resource = self.api.root.add_resource("message")
        self.message_resource.add_method(
            "POST",
            integration,
            request_parameters={"method.request.header.X-Twilio-Signature": False},
            method_responses=[
                aws_apigateway.MethodResponse(
                    status_code=status,
                    response_parameters={"method.response.header.Content-Type": True},
                )
                for status in ("200", *ERROR_STATUSES.values(), "500")
            ],
        )

        self._acknowledge_nag_findings()

    def _acknowledge_nag_findings(self) -> None:
        twilio_auth = (
            "Twilio cannot present IAM or Cognito credentials; every request is authenticated "
            "by its X-Twilio-Signature HMAC in the receive Lambda, which answers 403 otherwise."
        )
        for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
            acknowledge(self.api, rule, twilio_auth)
        acknowledge(
            self.api,
            "AwsSolutions-APIG2",
            "Twilio posts a form, which API Gateway's JSON-schema validation cannot "
            "check; other content types get 400 and the Lambda validates every field.",
        )
        acknowledge(
            self.api,
            "AwsSolutions-APIG6",
            "Access logging is on. Execution logging would write message bodies and "
            "phone numbers to logs and needs an account-wide role shared by every stack.",
        )
        acknowledge(
            self.api,
            "AwsSolutions-APIG3",
            "A web ACL costs more than this webhook's traffic; forged requests fail the "
            "signature check and stage throttling bounds floods.",
        )

    @property
    def webhook_url(self) -> str:
        """The URL to set as the Twilio number's "A message comes in" webhook."""
        return self.api.url_for_path(self.message_resource.path)
