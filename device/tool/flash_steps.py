"""What each step of the flash plan does, and running the plan.

`plan.build_plan` names, for every step, the function here that carries it out; `execute`
calls them in order. Each takes the step (its exact commands) and the `FlashJob` (what is
being flashed where); the first failure stops the flash with a `ToolError`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from device.tool import board, keys
from device.tool.errors import StepFailed, UsageError, WrongChip
from device.tool.external_tools import run, run_board

if TYPE_CHECKING:
    from device.tool.plan import BoardFile, Step

SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass
class FlashJob:
    """One flash: the file set, the generated files' bytes, the board and what it expects."""

    files: Sequence[BoardFile]
    generated: Mapping[str, bytes]
    """Bytes of the files the tool makes (config, key, certificates), by remote name."""
    port: str
    chip: str = "esp8266"
    firmware: Path | None = None
    platform: str = "esp8266"
    """The `sys.platform` the board must report, or "any"."""
    has_umqtt: bool = False
    """Found by the probe step: the board's firmware already has umqtt.simple."""


def execute(steps: Sequence[Step], job: FlashJob) -> None:
    """Runs the steps in order, numbered as the plan prints them."""
    for n, step in enumerate(steps, 1):
        print(f"[{n}/{len(steps)}] {step.name}: {step.title}", flush=True)
        step.action(step, job)


def check_image(step: Step, job: FlashJob) -> None:
    """The firmware image is a MicroPython image for the targeted chip."""
    code, output = run(step.commands[0], stream=False)
    chip = board.image_chip(output)
    if code != 0 or chip is None:
        raise UsageError(f"{job.firmware} is not a firmware image: {output.strip()[-200:]}")
    if chip.lower() != job.chip.lower():
        raise WrongChip(f"{job.firmware} is an {chip} image, not {job.chip.upper()}.")


def stage(step: Step, job: FlashJob) -> None:
    """Writes the generated files; empties the stage first so it holds exactly the file set."""
    folder = job.files[0].staged.parent
    keys.make_private_directory(folder)
    for old in folder.iterdir():
        if old.is_file():
            old.unlink()
    for f in job.files:
        if f.source is None:
            data = job.generated[f.remote]
            if f.private:
                keys.write_private(f.staged, data)
            else:
                f.staged.write_bytes(data)


def compile_firmware(step: Step, job: FlashJob) -> None:
    """mpy-cross compiles the modules; the files MicroPython runs as source are copied."""
    for command in step.commands:
        code, output = run(command, stream=False)
        if code != 0:
            raise StepFailed(f"mpy-cross rejected {command[-1]}:\n{output.strip()}")
    for f in job.files:
        if f.source is not None and not f.remote.endswith(".mpy"):
            shutil.copyfile(f.source, f.staged)


def check_port(step: Step, job: FlashJob) -> None:
    """The port exists and nobody else holds it."""
    board.open_port(job.port).close()


def run_esptool(step: Step, job: FlashJob) -> None:
    """Erases or writes the flash, showing esptool's progress."""
    code, output = run(step.commands[0], stream=True)
    if code != 0:
        raise board.classify_esptool_failure(job.port, job.chip, output)


def check_board(step: Step, job: FlashJob) -> None:
    """A MicroPython prompt answers (a freshly written image takes longer to boot)."""
    board.check_board(job.port, wait=10.0 if job.firmware else 3.0)


def probe(step: Step, job: FlashJob) -> None:
    """Reads the board's platform and whether its firmware has umqtt.simple."""
    output = run_board(step.commands[0], job.port)
    job.has_umqtt = board.parse_probe(output, expected_platform=job.platform)


def install_umqtt(step: Step, job: FlashJob) -> None:
    """Installs umqtt.simple with mip, unless the firmware has it."""
    if job.has_umqtt:
        print("      skipped: the firmware has umqtt.simple")
        return
    run_board(step.commands[0], job.port, stream=True)


def run_mpremote(step: Step, job: FlashJob) -> None:
    """Runs the step's mpremote command quietly (clean, reset)."""
    run_board(step.commands[0], job.port)


def copy_files(step: Step, job: FlashJob) -> None:
    """Copies the file set, showing mpremote's progress."""
    run_board(step.commands[0], job.port, stream=True)


def verify(step: Step, job: FlashJob) -> None:
    """Every file on the board has the SHA-256 of its staged copy."""
    on_board = parse_hashes(run_board(step.commands[0], job.port))
    for f in job.files:
        local = hashlib.sha256(f.staged.read_bytes()).hexdigest()
        if on_board.get(f.remote) != local:
            raise StepFailed(f"{f.remote} on the board differs from {f.staged}: flash again.")


def parse_hashes(output: str) -> dict[str, str]:
    """`mpremote fs sha256sum :a :b` output -> {"a": hex, "b": hex}."""
    hashes: dict[str, str] = {}
    name = None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("sha256sum :"):
            name = line[len("sha256sum :") :]
        elif name is not None and SHA256_HEX.fullmatch(line):
            hashes[name], name = line, None
    return hashes


def print_file_set(files: Sequence[BoardFile]) -> None:
    """The file set on the board and its size."""
    total = 0
    print(f"{'file on the board':<24}{'bytes':>8}")
    for f in files:
        size = f.staged.stat().st_size
        total += size
        print(f"{f.remote:<24}{size:>8}")
    print(f"{'total (' + str(len(files)) + ' files)':<24}{total:>8}")
