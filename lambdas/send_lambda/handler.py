"""Send Lambda entry point: a device's outbound message (via the IoT topic rule) -> Twilio.

Thin: the rules are in `outbound` (pure), the I/O in `sender`. The runtime is built on the
first invocation and kept for the warm ones (secret cache, Twilio client, boto3 clients).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools import Logger

from send_lambda import SERVICE
from send_lambda.sender import SendRuntime

# The same service as sender.py's logger: Powertools loggers of one service share state.
logger = Logger(service=SERVICE)


@functools.cache
def runtime() -> SendRuntime:
    """This container's SendRuntime, built from the environment on first use (tests clear
    it)."""
    return SendRuntime.from_environ(os.environ)


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sends one device message; raises only when Lambda should retry the event."""
    result: dict[str, Any] = runtime().handle(event, context)
    return result
