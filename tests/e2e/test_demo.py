"""`make demo` as a user runs it: the classic text comes back, and nothing is left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def children_of(pid: int) -> set[int]:
    """PIDs whose parent is `pid` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def demo_output(*args: str) -> str:
    """What `python -m loop.demo ARGS` prints; it must exit 0."""
    result = subprocess.run(
        [sys.executable, "-m", "loop.demo", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_demo_texts_the_device_and_prints_the_reply() -> None:
    out = demo_output()
    for hop in ("phone → Twilio", "receive → IoT", "device dev-reverser", "send → Twilio"):
        assert hop in out
    assert "Twilio (mock) received" in out
    assert "Body '.ooz yratinas a ni tar yzoO'" in out
    assert "+15551234567" not in out  # numbers are masked, as in the logs


def test_demo_ota_updates_the_board_and_shows_two_rollbacks() -> None:
    out = demo_output("--ota")
    assert "Body 'OOZY RAT IN A SANITARY ZOO.'" in out  # the new app answered
    for outcome in (
        "SUCCEEDED",
        "FAILED       import ModuleNotFoundError",
        "FAILED       app KeyError",
    ):
        assert f"dev-reverser             {outcome}" in out
    assert "ota: new app fails to import, rolling back" in out
    assert "ota: new app fails on its first message, rolling back" in out
    assert "+15551234567" not in out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_demo_stops_everything_it_started_when_terminated() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "loop.demo", "--interactive"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    try:
        output = ""
        deadline = time.monotonic() + 120
        while "Ready in" not in output and time.monotonic() < deadline:
            output += demo.stdout.readline()
        assert "Ready in" in output, output
        started = children_of(demo.pid)
        assert len(started) >= 4  # mosquitto, Prism, the Lambdas' workers
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=60) == 130
    finally:
        if demo.poll() is None:
            demo.kill()
    time.sleep(0.5)
    assert [pid for pid in started if alive(pid)] == []
    assert os.getpid() not in started
