"""Over the air, end to end: `python -m device.tool ota`'s code updates the running board's
app through the local loop's AWS IoT Jobs and file delivery (on mosquitto, with the device
policy's ACL), the board restarts into it, and texts show the new behaviour; broken apps
are rolled back by the board and the job ends FAILED with its reason.

The loop is this module's own: updating its board would change the other modules' replies.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from device.tool.plan import BOARD_SOURCES
from loop.device_host import board_app
from loop.local_loop import LocalLoop

pytestmark = pytest.mark.e2e
THING = "dev-reverser"
TEST_APPS = Path(__file__).resolve().parents[1] / "device" / "mp" / "apps"


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLoop]:
    with LocalLoop(Path(tmp_path_factory.mktemp("ota-loop")), retry_delay_s=0.05) as running:
        # The reply window: until the receive Lambda records contacts (issue 11's inbound
        # half), the person's texting is recorded here.
        running.remember_contact(thing=THING)
        yield running


def board_with_app(folder: Path, app: str) -> Path:
    """A copy of device/board whose app.py is the test app `app` (tests/device/mp/apps)."""
    shutil.copytree(BOARD_SOURCES, folder)
    shutil.copyfile(TEST_APPS / f"{app}.py", folder / "app.py")
    return folder


def reply_to(loop: LocalLoop, body: str, answers: dict[str, str]) -> str:
    """Texts `body` and returns which of `answers` (name -> expected reply) came back."""
    assert loop.text(body).status == 200
    found: list[str] = []

    def replied() -> bool:
        bodies = {m.get("Body") for m in loop.twilio.sent_messages()}
        found[:] = [name for name, reply in answers.items() if reply in bodies]
        return bool(found)

    assert loop.wait_for(replied, timeout=30), f"no reply to {body!r}"
    [name] = found
    return name


def answers(body: str) -> dict[str, str]:
    reversed_ = board_app().handle({"Body": body, "Media": []})
    assert isinstance(reversed_, str)
    return {"reversed": reversed_, "upper": body.upper()}


def job_status(loop: LocalLoop) -> tuple[str, dict[str, str]]:
    """The last job execution of THING: its status and details."""
    execution = loop.iot_jobs.executions[THING][-1]
    return execution.status, execution.details


def test_the_board_is_updated_over_the_air_and_rolls_back_broken_apps(
    loop: LocalLoop, tmp_path: Path
) -> None:
    device = loop.devices[THING]
    body = f"Oozy rat in a sanitary zoo. {uuid.uuid4().hex[:8]}"
    assert reply_to(loop, body, answers(body)) == "reversed"

    # A good update: the board downloads the upper-casing app, restarts into it, and the
    # job succeeds once the new app has answered its first message.
    lines: list[str] = []
    boots = device.boots
    update = loop.start_update(board_with_app(tmp_path / "upper", "upper"), echo=lines.append)
    assert loop.wait_for(lambda: device.boots == boots + 1, timeout=30), lines
    assert job_status(loop) == ("IN_PROGRESS", {"step": "restarting"})  # on probation
    body = f"Now in capitals {uuid.uuid4().hex[:8]}"
    assert reply_to(loop, body, answers(body)) == "upper"
    assert update.result(timeout=30) == 0, "\n".join(lines)
    assert job_status(loop)[0] == "SUCCEEDED"
    assert any(line.split()[:2] == [THING, "SUCCEEDED"] for line in lines), lines
    traffic = loop.iot_jobs.traffic[THING]
    assert traffic.to_device_bytes > len((TEST_APPS / "upper.py").read_bytes())
    assert loop.iot_jobs.oversized == []  # every message fits the ESP8266's TLS records

    # An app that fails on import: the board rolls back by itself before serving anything.
    lines = []
    boots = device.boots
    update = loop.start_update(
        board_with_app(tmp_path / "import", "broken_import"), echo=lines.append
    )
    assert update.result(timeout=60) == 1, "\n".join(lines)
    status, details = job_status(loop)
    assert status == "FAILED"
    assert details["reason"] in ("import ImportError", "import ModuleNotFoundError"), details
    assert device.boots == boots + 2  # into the broken app, and back to the good one
    body = f"Still in capitals {uuid.uuid4().hex[:8]}"
    assert reply_to(loop, body, answers(body)) == "upper"

    # An app that fails on its first message: the board restores the previous app and
    # restarts before acknowledging that message, so the previous app answers it.
    lines = []
    update = loop.start_update(
        board_with_app(tmp_path / "message", "broken_message"), echo=lines.append
    )
    assert loop.wait_for(lambda: job_status(loop)[1] == {"step": "restarting"}, timeout=30)
    body = f"Answered by the old app {uuid.uuid4().hex[:8]}"
    assert reply_to(loop, body, answers(body)) == "upper"
    assert update.result(timeout=30) == 1, "\n".join(lines)
    assert job_status(loop) == ("FAILED", {"reason": "app KeyError"})
    assert any("app KeyError" in line for line in lines if line.startswith(f"      {THING}"))
    assert sorted(p.name for p in (loop.workdir / "flash" / THING).iterdir()) == [
        "app.py",
        "smstext.py",
    ]
