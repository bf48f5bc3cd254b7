"""The classic tutorial's receive handler, kept only as the baseline of bench/receive_bench.py.

It imports `twilio.rest` and boto3 at module level, reads the secret on every call, decodes
the form loosely (first value wins) and signs against a hand-set REQUEST_URL. Do not deploy.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from typing import Any

import boto3
from twilio.request_validator import RequestValidator
from twilio.rest import Client  # noqa: F401 - the tutorial imports it; the cost is the point

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def lambda_handler(event: dict[str, Any], _context: object) -> str:
    """Verifies and publishes, the tutorial's way."""
    body = base64.b64decode(event["body"]).decode()
    params = {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
    secret = boto3.client("secretsmanager").get_secret_value(
        SecretId=os.environ["TWILIO_SECRET_NAME"]
    )
    token = json.loads(secret["SecretString"])["auth_token"]
    signature = base64.b64decode(event["signature"]).decode()
    if not RequestValidator(token).validate(os.environ["REQUEST_URL"], params, signature):
        raise RuntimeError("Forbidden: invalid signature")
    things = json.loads(os.environ["THINGS_BY_NUMBER"])
    thing = things.get(params.get("To"))
    if thing:
        boto3.client("iot-data").publish(
            topic=f"sms/{thing}/inbound",
            qos=1,
            payload=json.dumps({"Type": "Incoming", "Body": params.get("Body")}),
        )
    return EMPTY_TWIML
