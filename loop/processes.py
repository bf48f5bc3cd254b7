"""How the local loop starts its helper processes, so none outlives it.

Each child gets its own session, so the terminal's Ctrl-C reaches only the loop, which then
stops every child in order. On Linux each child also asks the kernel for SIGTERM when the
loop's thread that started it exits (`PR_SET_PDEATHSIG`), so a loop that is killed without
cleaning up leaves nothing behind. That request is made by a tiny launcher, run as
`python loop/processes.py COMMAND...`, which then `exec`s the command: `preexec_fn` would
do it in the forked child, which is unsafe in a process with threads.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1  # prctl option: signal this process when its parent thread exits


def child_command(command: list[str]) -> list[str]:
    """`command`, run through the launcher where the platform supports it."""
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, str(Path(__file__).resolve()), *command]


def child_options() -> dict[str, Any]:
    """Keyword arguments for `subprocess.Popen` of a loop helper process."""
    return {"start_new_session": True}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def no_delay(sock: Any) -> None:
    """Turns Nagle's algorithm off on a TCP socket (paho leaves it on): small MQTT packets
    would otherwise wait ~40 ms for the peer's delayed ACK."""
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def stop_process(process: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    """Terminates `process`, kills it if it has not exited after `timeout`, reaps it."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def main() -> None:
    """The launcher: die with the parent, then become the command."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() == 1:  # the parent already died before prctl took effect
        sys.exit(1)
    os.execvp(sys.argv[1], sys.argv[1:])  # noqa: S606 (an argument list, never a shell)


if __name__ == "__main__":
    main()
