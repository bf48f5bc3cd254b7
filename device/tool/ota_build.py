"""What an over-the-air update carries: the app's modules compiled with mpy-cross, and the
job document that names them (the format the board checks, see README.md, "Update over the air").

Which modules: `app.py` and every module of `device/board` that only the app imports.
The firmware core is what `main.py` reaches without going through `app` (main, smsboot,
smslink, smscore, and smsota/smstrial, which the firmware loads with `__import__` only
while an update runs): it changes only with `make flash`, so an update can never replace
the code that applies and rolls back updates. The board refuses those names too.

Modules ship compiled (`.mpy`, the default) or as MicroPython source (`.py`, `--source`):
a board imports either, but compiles source at import time, which costs it RAM; the local
loop's board runs under CPython, which can import source only.
"""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.tool.errors import StepFailed, UsageError
from device.tool.plan import BOARD_SOURCES

APP_MODULE = "app"
BOOT_MODULE = "main"
OPERATION = "app-update"
JOB_DOCUMENT_LIMIT = 32_768
"""AWS IoT's limit on a job document, in bytes."""


@dataclass(frozen=True)
class UpdateFile:
    """One compiled module of an update, as the job document and the stream list it."""

    file_id: int
    name: str
    source: Path
    data: bytes

    @property
    def size(self) -> int:
        """Length in bytes, checked by the board after download."""
        return len(self.data)

    @property
    def sha256(self) -> str:
        """SHA-256 (hex), checked by the board after download."""
        return hashlib.sha256(self.data).hexdigest()


def imported_modules(source: Path) -> set[str]:
    """Top-level names of the modules `source` imports, anywhere in the file."""
    try:
        tree = ast.parse(source.read_text(), filename=str(source))
    except SyntaxError:
        return set()  # mpy-cross reports it, with MicroPython's own message
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif (  # __import__("smsota"): how the firmware loads update code only when needed
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.split(".")[0])
    return names


def _reachable(start: str, sources: Path, *, skip: frozenset[str]) -> set[str]:
    """Modules of `sources` reachable from `start` by imports, not entering `skip`."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        path = sources / f"{name}.py"
        if name in seen or name in skip or not path.is_file():
            continue
        seen.add(name)
        todo.extend(imported_modules(path))
    return seen


def app_modules(sources: Path = BOARD_SOURCES) -> list[Path]:
    """The sources an update ships: `app.py` first, then the modules only the app uses."""
    if not (sources / f"{APP_MODULE}.py").is_file():
        raise UsageError(f"No {APP_MODULE}.py in {sources}: nothing to update.")
    own = _reachable(APP_MODULE, sources, skip=frozenset(core_modules(sources))) - {APP_MODULE}
    return [sources / f"{APP_MODULE}.py", *(sources / f"{name}.py" for name in sorted(own))]


def core_modules(sources: Path = BOARD_SOURCES) -> set[str]:
    """The firmware's own modules: what `main.py` reaches without the app."""
    return _reachable(BOOT_MODULE, sources, skip=frozenset({APP_MODULE}))


def source_files(sources: list[Path]) -> list[UpdateFile]:
    """The modules as MicroPython source, for a board (or the host loop) importing `.py`."""
    return [
        UpdateFile(file_id, source.name, source, source.read_bytes())
        for file_id, source in enumerate(sources)
    ]


def compile_command(mpy_cross: str, source: Path, output: Path) -> list[str]:
    """The mpy-cross command line for one module (bytecode only: loads on any ESP8266)."""
    return [mpy_cross, "-o", str(output), str(source)]


def compile_modules(sources: list[Path], out_dir: Path, mpy_cross: str) -> list[UpdateFile]:
    """Compiles each source into `out_dir`; mpy-cross rejecting one is a `StepFailed`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for file_id, source in enumerate(sources):
        output = out_dir / f"{source.stem}.mpy"
        try:
            result = subprocess.run(
                compile_command(mpy_cross, source, output),
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            raise StepFailed(f"{mpy_cross} is not installed: run `make deps`.") from None
        if result.returncode != 0:
            raise StepFailed(f"mpy-cross rejected {source}:\n{result.stderr.strip()}")
        files.append(UpdateFile(file_id, output.name, source, output.read_bytes()))
    return files


def job_document(stream_id: str, files: list[UpdateFile]) -> dict[str, Any]:
    """The job document every target gets: the stream and each file's size and hash."""
    return {
        "operation": OPERATION,
        "streamId": stream_id,
        "files": [
            {"name": f.name, "fileId": f.file_id, "size": f.size, "sha256": f.sha256} for f in files
        ],
    }


def encode_document(document: dict[str, Any]) -> str:
    """The document as CreateJob takes it, checked against AWS IoT's 32 KB limit."""
    text = json.dumps(document, separators=(",", ":"))
    if len(text.encode()) > JOB_DOCUMENT_LIMIT:
        raise UsageError(
            f"The job document is {len(text.encode())} bytes, over AWS IoT's "
            f"{JOB_DOCUMENT_LIMIT}: ship fewer modules."
        )
    return text
