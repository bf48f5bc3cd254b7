"""The same device cases under CPython (the host will run the loop there too)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from importlib.machinery import (
    BYTECODE_SUFFIXES,
    EXTENSION_SUFFIXES,
    SOURCE_SUFFIXES,
    ExtensionFileLoader,
    FileFinder,
    SourceFileLoader,
    SourcelessFileLoader,
)
from pathlib import Path
from types import ModuleType

import pytest

from tests.device.conftest import BOARD, case_names
from tests.device.mpnode import MPDIR


@pytest.fixture
def mpy_as_source(tmp_path: Path) -> Iterator[Path]:
    """Test apps as the update cases deliver them, and CPython able to import them.

    CPython cannot load MicroPython bytecode, so here each "NAME.mpy" holds the
    app's source and an import hook reads .mpy files as source.
    """
    apps = tmp_path / "apps"
    apps.mkdir()
    for src in (*sorted((MPDIR / "apps").glob("*.py")), BOARD / "app.py"):
        shutil.copyfile(src, apps / (src.stem + ".mpy"))
        shutil.copyfile(src, apps / src.name)  # what an update that ships source carries
    hook = FileFinder.path_hook(
        (ExtensionFileLoader, EXTENSION_SUFFIXES),
        (SourceFileLoader, [*SOURCE_SUFFIXES, ".mpy"]),
        (SourcelessFileLoader, BYTECODE_SUFFIXES),
    )
    sys.path_hooks.insert(0, hook)
    sys.path_importer_cache.clear()
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # apps change under one name
    try:
        yield apps
    finally:
        sys.dont_write_bytecode = saved
        sys.path_hooks.remove(hook)
        sys.path_importer_cache.clear()


@pytest.mark.parametrize("case", case_names())
def test_case(
    board_cpython: dict[str, ModuleType], case: str, tmp_path: Path, mpy_as_source: Path
) -> None:
    cases = board_cpython["cases"]
    cases.TMP = str(tmp_path)  # type: ignore[attr-defined]
    cases.BOARD = str(BOARD)  # type: ignore[attr-defined]
    cases.APPS = str(mpy_as_source)  # type: ignore[attr-defined]
    getattr(cases, case)()
