"""Receive Lambda: Twilio webhook (via API Gateway's request template) -> device's topic.

Minimal first version: verifies the signature and publishes; the inbound issue completes it
(idempotency, body limit, media, structured logs).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from typing import Any

import boto3
from twilio.request_validator import RequestValidator

TOPIC_PREFIX = os.environ.get("TOPIC_PREFIX", "sms")
THINGS_BY_NUMBER: dict[str, str] = json.loads(os.environ.get("THINGS_BY_NUMBER", "{}"))
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'

_secrets = boto3.client("secretsmanager")
_iot_data = boto3.client("iot-data")


def _b64(event: dict[str, Any], key: str) -> str:
    return base64.b64decode(event.get(key, "")).decode("utf-8")


def lambda_handler(event: dict[str, Any], _context: object) -> str:
    """Returns TwiML; raises `Forbidden:`/`BadRequest:` errors that API Gateway maps."""
    try:
        form = urllib.parse.parse_qsl(
            _b64(event, "body"), keep_blank_values=True, strict_parsing=True
        )
    except (ValueError, UnicodeDecodeError) as error:
        raise RuntimeError("BadRequest: the body is not a valid form") from error
    params = dict(form)
    url = "https://" + _b64(event, "domain") + _b64(event, "path")
    token = json.loads(
        _secrets.get_secret_value(SecretId=os.environ["TWILIO_SECRET_NAME"])["SecretString"]
    )["auth_token"]
    if not RequestValidator(token).validate(url, params, _b64(event, "signature")):
        raise RuntimeError("Forbidden: invalid X-Twilio-Signature")
    thing = THINGS_BY_NUMBER.get(params.get("To", ""))
    if thing is None:
        return EMPTY_TWIML
    message = {
        "Type": "Incoming",
        "Id": params.get("MessageSid", ""),
        "From": params.get("From", ""),
        "To": params.get("To", ""),
        "Body": params.get("Body", ""),
        "Media": [],
    }
    _iot_data.publish(
        topic=f"{TOPIC_PREFIX}/{thing}/inbound",
        qos=1,
        payload=json.dumps(message, ensure_ascii=False).encode("utf-8"),
    )
    return EMPTY_TWIML
