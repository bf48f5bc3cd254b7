"""The record the IoT rule's SQS error action writes when it cannot hand a message on.

(Lambda's on-failure destination record is part of the contract: `contract.dead_letter_record`.)
"""

from __future__ import annotations

import base64
from typing import Any

import contract


def rule_error_record(rule_name: str, topic: str, payload: bytes, reason: str) -> dict[str, Any]:
    """The IoT rule's error-action record: the message it could not hand to its Lambda."""
    return {
        "ruleName": rule_name,
        "topic": topic,
        contract.RULE_ERROR_PAYLOAD_FIELD: base64.b64encode(payload).decode(),
        "failures": [{"failedAction": "LambdaAction", "errorMessage": reason}],
    }
