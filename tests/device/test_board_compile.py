"""Every board file compiles for the ESP8266 and imports only what its firmware has."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.device.conftest import BOARD, BOARD_FILES, MPY_OPT, mpy_cross

# What ESP8266_GENERIC offers (built in or frozen) plus the firmware's own modules.
ALLOWED_IMPORTS = {
    "gc", "json", "sys", "time", "random", "micropython", "machine", "network", "ntptime",
    "ssl", "tls", "umqtt.simple", "os", "hashlib", "binascii",
    "app", "smsboot", "smsconn", "smscore", "smslink", "smsota", "smstext", "smstrial",
}  # fmt: skip


@pytest.mark.parametrize("name", BOARD_FILES)
def test_compiles_for_xtensa(name: str, tmp_path: Path) -> None:
    out = tmp_path / (Path(name).stem + ".mpy")
    res = mpy_cross(BOARD / name, out, "-march=xtensa", *MPY_OPT)
    assert res.returncode == 0, res.stderr
    assert out.read_bytes()[:2] == b"M\x06"  # .mpy version 6: MicroPython 1.22 and later


@pytest.mark.parametrize("name", BOARD_FILES)
def test_compiles_with_line_numbers(name: str, tmp_path: Path) -> None:
    # the debugging build (tracebacks with line numbers) must compile too
    res = mpy_cross(BOARD / name, tmp_path / "x.mpy", "-march=xtensa")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", BOARD_FILES)
def test_imports_only_what_the_board_has(name: str) -> None:
    tree = ast.parse((BOARD / name).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module or "")
    assert found <= ALLOWED_IMPORTS, found - ALLOWED_IMPORTS


def test_main_py_is_tiny() -> None:
    # main.py is compiled on the board at every boot; the work lives in .mpy files
    assert len((BOARD / "main.py").read_bytes()) < 512


def test_no_account_specific_values_in_code() -> None:
    for name in BOARD_FILES:
        text = (BOARD / name).read_text(encoding="utf-8")
        assert "amazonaws.com" not in text and "arn:aws" not in text, name
