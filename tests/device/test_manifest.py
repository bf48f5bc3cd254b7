"""device/board/manifest.py, executed as MicroPython's freezer and mip execute it."""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import Any

import pytest

from tests.device import mpnode


def execute_manifest() -> dict[str, Any]:
    """Run manifest.py from its folder with the manifest API, recording every call.

    tools/manifestfile.py changes into the manifest's folder and executes it with
    metadata(), require(), module() and package() as globals; so does this.
    """
    calls: dict[str, Any] = {"metadata": [], "require": [], "module": [], "package": []}

    def metadata(**kwargs: Any) -> None:
        calls["metadata"].append(kwargs)

    def require(name: str, **kwargs: Any) -> None:
        calls["require"].append(name)

    def module(name: str, base_path: str = ".", **kwargs: Any) -> None:
        calls["module"].append(str(Path(base_path) / name))

    def package(name: str, **kwargs: Any) -> None:
        calls["package"].append(name)

    api = {"metadata": metadata, "require": require, "module": module, "package": package}
    cwd = Path.cwd()
    os.chdir(mpnode.MANIFEST.parent)
    try:
        runpy.run_path(str(mpnode.MANIFEST), init_globals=api)
    finally:
        os.chdir(cwd)
    return calls


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return execute_manifest()


def test_names_every_board_module_and_nothing_else(manifest: dict[str, Any]) -> None:
    assert sorted(manifest["module"]) == [f"board/{name}" for name in mpnode.BOARD_FILES]
    for path in manifest["module"]:
        assert (mpnode.MANIFEST.parent / path).is_file(), path
    assert manifest["package"] == []


def test_requires_umqtt_simple(manifest: dict[str, Any]) -> None:
    assert manifest["require"] == ["umqtt.simple"]


def test_metadata_version_is_the_firmware_version(manifest: dict[str, Any]) -> None:
    (meta,) = manifest["metadata"]
    source = (mpnode.BOARD / "smslink.py").read_text(encoding="utf-8")
    assert f'\nFIRMWARE = "{meta["version"]}"\n' in source
    assert meta["description"]
