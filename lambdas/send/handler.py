"""Send Lambda: a device's outbound message (via the IoT topic rule) -> Twilio Messages API.

Thin: the rules are in outbound.py (pure), the I/O in sender.py. The runtime is built on
the first invocation and kept for the warm ones (secret cache, Twilio client, boto3).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger
from sender import SendRuntime

# Same service name as sender.py's logger: Powertools loggers of one service share state.
logger = Logger(service="send")

_runtime: SendRuntime | None = None


def runtime() -> SendRuntime:
    """This container's SendRuntime, built from the environment on first use."""
    global _runtime  # one runtime per container, on purpose
    if _runtime is None:
        _runtime = SendRuntime.from_environment(os.environ)
    return _runtime


def use_runtime(replacement: SendRuntime | None) -> None:
    """Installs another runtime (the offline demo's Prism transport); None rebuilds."""
    global _runtime
    _runtime = replacement


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Sends one device message; raises only when Lambda should retry the event."""
    result: dict[str, Any] = runtime().handle(event, context)
    return result
