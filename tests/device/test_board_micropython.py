"""The device cases (mp/cases.py) under real MicroPython: the official WebAssembly port.

One Node process runs every case against the .mpy-compiled board modules and
prints a JSON line per case; each pytest test reads its case's line.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.device import mpnode
from tests.device.conftest import case_names


@pytest.fixture(scope="module")
def apps_mpy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The apps the update cases deliver, compiled like the board's (/t/apps/NAME.mpy)."""
    return mpnode.compile_apps(tmp_path_factory.mktemp("apps"))


@pytest.fixture(scope="module")
def results(
    wasm: None, board_mpy: dict[str, bytes], apps_mpy: dict[str, bytes]
) -> dict[str, dict[str, Any]]:
    files = {**board_mpy, **mpnode.tree(mpnode.BOARD, "/board"), **mpnode.tree(mpnode.MPDIR, "/t")}
    files.update(apps_mpy)
    # the .py copies of the modules would shadow nothing: .py wins over .mpy in
    # MicroPython's import, so drop them and keep main.py (the cases exec it)
    files = {k: v for k, v in files.items() if not k.endswith(".py") or not k.startswith(
        "/board/") or k == "/board/main.py"}  # fmt: skip
    proc = mpnode.run(files, "/t/runner.py", ["/t", "/board"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = mpnode.json_lines(proc.stdout)
    assert rows and rows[-1] == {"done": True}, proc.stdout[-4000:]
    return {str(r["case"]): r for r in rows[:-1]}


def test_runs_on_micropython_1_27(wasm: None) -> None:
    files = {"/t/v.py": b"import sys\nprint(sys.implementation.name, sys.implementation.version)"}
    proc = mpnode.run(files, "/t/v.py", ["/t"])
    assert proc.stdout.startswith("micropython (1, 27"), proc.stdout + proc.stderr


def test_modules_came_from_mpy(wasm: None, board_mpy: dict[str, bytes]) -> None:
    prog = b"import smslink, app\nprint(smslink.__file__, app.__file__)"
    proc = mpnode.run({**board_mpy, "/t/f.py": prog}, "/t/f.py", ["/t", "/board"])
    assert proc.stdout.split() == ["/board/smslink.mpy", "/board/app.mpy"], proc.stderr


@pytest.mark.parametrize("case", case_names())
def test_case(results: dict[str, dict[str, Any]], case: str) -> None:
    row = results.get(case)
    assert row is not None, f"{case} did not run"
    assert row["ok"], row.get("error")
