"""Prism: a mock of Twilio's REST API, validated against Twilio's own OpenAPI contract.

    with PrismServer() as prism:
        client = twilio_client(prism.url)  # loop.twilio_loopback
        client.messages.create(to="+15551234567", from_="+15557654321", body="hi")

Every request is checked by Prism against Twilio's API v2010 spec (paths, parameters,
types, basic auth), so a request Twilio would refuse gets a 4xx here too. The spec comes
from the pinned npm package `@twilio-alpha/mcp` (package.json), installed by `npm ci`.
Prism is started from its own binary (`node_modules/.bin/prism`), never through `npx`:
stopping `npx` leaves the server running.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Self

from loop.processes import child_command, child_options, free_port, stop_process
from loop.service import Service

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
PRISM_BIN = NODE_MODULES / ".bin" / "prism"
TWILIO_SPEC = (
    NODE_MODULES
    / "@twilio-alpha"
    / "mcp"
    / "twilio-oai"
    / "spec"
    / "json"
    / "twilio_api_v2010.json"
)
DEFAULT_STARTUP_TIMEOUT = 60.0


class PrismError(RuntimeError):
    """Prism could not be started (missing binary or spec, exited early, never listened)."""


class PrismServer(Service):
    """One `prism mock` process on loopback; a context manager that always stops it."""

    def __init__(
        self,
        spec: Path = TWILIO_SPEC,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    ) -> None:
        self.spec = spec
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL to send Twilio API requests to, e.g. `http://127.0.0.1:41234`."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Starts Prism and returns once it accepts connections (raises PrismError if not)."""
        if self._process is not None:
            return self
        if not PRISM_BIN.exists():
            raise PrismError(f"{PRISM_BIN} is missing: run `npm ci` (or `make deps`)")
        if not self.spec.exists():
            raise PrismError(
                f"Twilio's OpenAPI spec is missing: {self.spec} (it comes with the npm package "
                "@twilio-alpha/mcp: run `npm ci` or `make deps`)"
            )
        # Prism logs every request; a file never fills up like an unread pipe would.
        self._log = tempfile.TemporaryFile(prefix="prism-")  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
        command = [str(PRISM_BIN), "mock", str(self.spec), "--host", self.host]
        self._process = subprocess.Popen(
            child_command([*command, "--port", str(self.port)]),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=env,
            # Own session (Ctrl-C reaches only its owner, which stops it) and dies with it.
            **child_options(),
        )
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_listening(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise PrismError(
                    f"prism exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return
            time.sleep(0.1)
        raise PrismError(
            f"prism did not listen within {self.startup_timeout} s:\n{self.log_tail()}"
        )

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of Prism's log, to explain a failure."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - max_bytes))
        return self._log.read().decode("utf-8", errors="replace")

    def stop(self) -> None:
        """Stops Prism (terminate, then kill after 5 s); safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)
        if self._log is not None:
            self._log.close()
            self._log = None
