"""Start and stop `micropython_repl_server.mjs`: a MicroPython REPL on a loopback socket.

    with MicroPythonRepl() as repl:
        subprocess.run(["mpremote", "connect", repl.url, "ls"])

The URL (`socket://127.0.0.1:PORT`) goes wherever a serial port does: mpremote and pyserial
open it with `serial_for_url`. The board's filesystem lives as long as the server.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Self

from loop.processes import child_command, child_options, stop_process
from loop.service import Service

ROOT = Path(__file__).resolve().parents[2]
SERVER = Path(__file__).resolve().parent / "micropython_repl_server.mjs"
PORT_PACKAGE = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"


class ReplServerError(RuntimeError):
    """The REPL server could not be started."""


def available() -> bool:
    """True when Node and the MicroPython WebAssembly port are installed."""
    return shutil.which("node") is not None and (PORT_PACKAGE / "micropython.mjs").exists()


class MicroPythonRepl(Service):
    """A running REPL server; use as a context manager or call `start` and `stop`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 20) -> None:
        self.host = host
        self.requested_port = port
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self._process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The pyserial URL of the REPL, for `mpremote connect` or `--port`."""
        if self.port is None:
            raise ReplServerError("the REPL server is not running")
        return f"socket://{self.host}:{self.port}"

    def start(self) -> Self:
        """Starts the server and waits until it listens. Returns self."""
        if not available():
            raise ReplServerError("node or the MicroPython WebAssembly port is missing (npm ci)")
        process = subprocess.Popen(
            child_command(
                ["node", str(SERVER), "--host", self.host, "--port", str(self.requested_port)]
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **child_options(),
        )
        self._process = process
        line: list[str] = []
        # readline() blocks; a thread lets the wait have a deadline.
        reader = threading.Thread(target=lambda: line.append(process.stdout.readline()))  # type: ignore[union-attr]
        reader.daemon = True
        reader.start()
        reader.join(self.startup_timeout)
        first = line[0].strip() if line else ""
        if not first.startswith("listening "):
            self.stop()
            raise ReplServerError(f"REPL server did not start: {first or 'no output'}")
        self.port = int(first.split()[1])
        return self

    def stop(self) -> None:
        """Stops the server (the board's files are lost)."""
        process, self._process = self._process, None
        self.port = None
        if process is None:
            return
        stop_process(process)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
