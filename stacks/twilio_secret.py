"""The Secrets Manager secret that holds the environment's Twilio credentials."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy, SecretValue, aws_secretsmanager
from constructs import Construct

import contract
from stacks.nag import acknowledge


class TwilioSecret(Construct):
    """A JSON secret `{"account_sid": ..., "auth_token": ...}`, created with empty values.

    The stack never holds a credential: the user runs `aws secretsmanager put-secret-value`
    once (see README), and the Lambdas read the secret at run time.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        secret_name: str,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.secret = aws_secretsmanager.Secret(
            self,
            "Secret",
            secret_name=secret_name,
            description="Twilio account SID and auth token (JSON keys account_sid, auth_token)",
            # Empty values, not credentials: put-secret-value replaces them after deploy.
            secret_string_value=SecretValue.unsafe_plain_text(
                json.dumps(contract.TWILIO_SECRET_PLACEHOLDER)
            ),
            removal_policy=removal_policy,
        )
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "Twilio auth tokens are rotated in Twilio's console (secondary token, then "
            "promote); the new value is put with put-secret-value and the Lambdas re-read it.",
        )
