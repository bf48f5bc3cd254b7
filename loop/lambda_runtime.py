"""Runs a Lambda function's real handler locally, in its own processes, like Lambda does.

Each function gets worker processes with the function's own environment variables (the
ones the stack sets, plus `AWS_ENDPOINT_URL_*` pointing boto3 at loopback stand-ins), the
Lambdas' folder and the repository root on `sys.path` (as a bundle has the function's
package and `contract.py`), and a Lambda-like context object. A worker imports the handler
once (a cold start) and then serves invocations (warm), one at a time, as a Lambda
execution environment does; `concurrency` workers run side by side.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from loop.processes import child_command, child_options

WORKER = Path(__file__).resolve().parent / "lambda_worker.py"


class LambdaError(Exception):
    """The handler raised: `error_message` is what Lambda reports as errorMessage."""

    def __init__(self, error_type: str, error_message: str) -> None:
        super().__init__(f"{error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message


class _Worker:
    def __init__(self, command: list[str], env: dict[str, str], log: IO[bytes]) -> None:
        self.process = subprocess.Popen(
            child_command(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            **child_options(),
        )
        self.next_id = 0

    def call(self, event: Any, timeout: float) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.next_id += 1
        request = {"id": self.next_id, "event": event, "timeout_ms": int(timeout * 1000)}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise LambdaError("Runtime.ExitError", "the function's process exited")
        reply = json.loads(line)
        if "error" in reply:
            raise LambdaError(reply["error"]["errorType"], reply["error"]["errorMessage"])
        return reply["result"]

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LocalFunction:
    """A pool of worker processes running one handler; `invoke` is a synchronous invoke."""

    def __init__(
        self,
        name: str,
        source_dir: Path,
        handler: str,
        environment: Mapping[str, str],
        *,
        log_path: Path,
        concurrency: int = 2,
        timeout: float = 10.0,
        setup: str | None = None,
    ) -> None:
        self.name = name
        self.timeout = timeout
        module, function = handler.rsplit(".", 1)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AWS_", "POWERTOOLS_", "TWILIO_"))
        }
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
                "AWS_REGION": environment.get("AWS_REGION", "eu-west-1"),
                "PYTHONDONTWRITEBYTECODE": "1",
                **environment,
            }
        )
        command = [sys.executable, str(WORKER), str(source_dir), module, function, name]
        if setup is not None:
            command.append(setup)
        self._log = log_path.open("ab")
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers = [_Worker(command, env, self._log) for _ in range(concurrency)]
        for worker in self._workers:
            self._idle.put(worker)

    def invoke(self, event: Any) -> Any:
        """Runs the handler on `event`; raises LambdaError when it raises."""
        worker = self._idle.get()
        try:
            return worker.call(event, self.timeout)
        finally:
            self._idle.put(worker)

    def warm_up(self) -> None:
        """Waits for every worker's cold start (the handler's import)."""
        for worker in self._workers:
            worker.call({"__ping__": True}, self.timeout)

    def close(self) -> None:
        """Stops every worker process."""
        for worker in self._workers:
            worker.close()
        self._log.close()
