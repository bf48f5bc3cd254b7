"""Send Lambda: a device's outbound message (via the IoT topic rule) -> Twilio Messages API.

Minimal first version: sends from the number bound to the publishing thing; the outbound
issue completes it (validation, idempotency, retries and dead-lettering, status callback).
"""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
from twilio.rest import Client

NUMBERS_BY_THING: dict[str, str] = json.loads(os.environ.get("NUMBERS_BY_THING", "{}"))

_secrets = boto3.client("secretsmanager")


def lambda_handler(event: dict[str, Any], _context: object) -> dict[str, str]:
    """Sends one message; returns Twilio's message SID."""
    thing = event["thing"]
    credentials = json.loads(
        _secrets.get_secret_value(SecretId=os.environ["TWILIO_SECRET_NAME"])["SecretString"]
    )
    client = Client(credentials["account_sid"], credentials["auth_token"])
    message = client.messages.create(
        from_=NUMBERS_BY_THING[thing], to=event["To"], body=event.get("Body", "")
    )
    return {"sid": str(message.sid)}
