"""One local Lambda execution environment: imports a handler, serves invocations.

Started by `loop.lambda_runtime.LocalFunction` as
`python lambda_worker.py SOURCE_DIR MODULE FUNCTION NAME [SETUP]`, where SETUP, if given, is
`package.module:function`, called with the imported handler module before the first
invocation (the local loop uses it to point the send Lambda's Twilio client at the mock).
Requests and replies are JSON
lines on the original stdout/stdin; the handler's own prints and logs go to stderr, as
they would go to CloudWatch Logs.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
import uuid
from pathlib import Path
from typing import Any


class LocalContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, name: str, timeout_ms: int) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"))
        region = os.environ.get("AWS_REGION", "eu-west-1")
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    """Imports the handler named on the command line and serves invocations until EOF."""
    source_dir, module_name, function_name, name = sys.argv[1:5]
    protocol_out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # the handler's stdout (its logs) goes where stderr goes
    sys.stdout = os.fdopen(1, "w", buffering=1)
    # The function's packages, then the repository root: `contract` sits there, as it sits
    # at the root of every bundle.
    sys.path[:0] = [source_dir, str(Path(__file__).resolve().parent.parent)]
    module = importlib.import_module(module_name)
    handler = getattr(module, function_name)
    if len(sys.argv) > 5:
        setup_module, setup_function = sys.argv[5].split(":")
        getattr(importlib.import_module(setup_module), setup_function)(module)
    for line in sys.stdin:
        request: dict[str, Any] = json.loads(line)
        reply: dict[str, Any] = {"id": request["id"]}
        event = request["event"]
        if isinstance(event, dict) and event.get("__ping__"):
            reply["result"] = None
        else:
            try:
                reply["result"] = handler(event, LocalContext(name, request["timeout_ms"]))
            except Exception as error:  # reported to the caller as Lambda does
                traceback.print_exc()
                reply["error"] = {"errorType": type(error).__name__, "errorMessage": str(error)}
        protocol_out.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
