"""The same device cases under CPython (the host will run the loop there too)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from tests.device.conftest import BOARD, case_names


@pytest.mark.parametrize("case", case_names())
def test_case(board_cpython: dict[str, ModuleType], case: str, tmp_path: Path) -> None:
    cases = board_cpython["cases"]
    cases.TMP = str(tmp_path)  # type: ignore[attr-defined]
    cases.BOARD = str(BOARD)  # type: ignore[attr-defined]
    getattr(cases, case)()
