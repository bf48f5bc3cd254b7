"""The records AWS writes to a queue when a message cannot be delivered.

Lambda's on-failure destination (the send Lambda's retries exhausted) and the IoT rule's
SQS error action (the rule could not hand a message to the Lambda) each write their own
JSON record; the local loop writes the same ones.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime
from typing import Any


def dead_letter_record(
    event: dict[str, Any],
    *,
    function_arn: str,
    attempts: int,
    error_type: str,
    error_message: str,
) -> dict[str, Any]:
    """Lambda's on-failure destination record for `event` after `attempts` invocations."""
    return {
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(),
        "requestContext": {
            "requestId": secrets.token_hex(8),
            "functionArn": function_arn,
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorMessage": error_message, "errorType": error_type},
    }


def rule_error_record(rule_name: str, topic: str, payload: bytes, reason: str) -> dict[str, Any]:
    """The IoT rule's error-action record: the message it could not hand to its Lambda."""
    return {
        "ruleName": rule_name,
        "topic": topic,
        "base64OriginalPayload": base64.b64encode(payload).decode(),
        "failures": [{"failedAction": "LambdaAction", "errorMessage": reason}],
    }
