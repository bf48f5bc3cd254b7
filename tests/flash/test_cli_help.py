"""`python -m device.tool SUBCOMMAND --help` works for every subcommand (no AWS, no board)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize("subcommand", ["add", "remove", "rotate", "keys", "flash", "monitor"])
def test_every_subcommand_has_help(subcommand: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "device.tool", subcommand, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m device.tool {subcommand}")
    if subcommand == "flash":
        assert "--dry-run" in result.stdout and "WIFI_SSID" in result.stdout
