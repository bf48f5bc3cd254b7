"""`flash --dry-run`: every step and exact command, against a stack in moto, no board."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from device.tool.cli import main
from device.tool.external_tools import tool_path
from device.tool.plan import BOARD_SOURCES, board_file_set, build_plan
from tests.flash.conftest import ENV, THING, Deployed, firmware_image

PORT = "/dev/ttyUSB7"


def dry_run(deployed: Deployed, capsys: pytest.CaptureFixture[str], *extra: str) -> list[str]:
    argv = ["flash", "--env", ENV, "--thing", THING, "--port", PORT, "--dry-run"]
    argv += ["--keys-dir", str(deployed.keys_dir), *extra]
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def steps(lines: list[str]) -> list[str]:
    return [
        line.split("] ", 1)[1].split(":", 1)[0]
        for line in lines
        if line[:4].strip().rstrip(".").isdigit()
    ]


def commands(lines: list[str]) -> list[list[str]]:
    return [shlex.split(line.strip()[2:]) for line in lines if line.strip().startswith("$ ")]


@pytest.mark.usefixtures("wifi")
def test_dry_run_lists_host_steps_before_board_steps_with_exact_commands(
    deployed: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = dry_run(deployed, capsys)
    assert steps(lines) == [
        "stage", "compile", "check-port", "check-board", "probe", "install-umqtt", "clean",
        "copy", "verify", "reset",
    ]  # fmt: skip
    stage = deployed.keys_dir / ENV / THING / "board"
    mpremote = tool_path("mpremote")
    cmds = commands(lines)
    modules = sorted(p for p in BOARD_SOURCES.glob("*.py") if p.name not in {"main.py", "boot.py"})
    compile_cmds = [c for c in cmds if c[0].endswith("mpy-cross")]
    assert compile_cmds == [
        [tool_path("mpy-cross"), "-o", str(stage / f"{p.stem}.mpy"), str(p)] for p in modules
    ]
    board = [c for c in cmds if c[0] == mpremote]
    assert all(c[1:3] == ["connect", PORT] for c in board)
    probe, mip, clean, copy, verify, reset = board
    assert probe[3] == "exec" and "umqtt.simple" in probe[4]
    assert mip[3:] == ["mip", "install", "umqtt.simple"]
    assert clean[3] == "exec" and all(f"'{p.stem}.py'" in clean[4] for p in modules)
    files = board_file_set(stage)
    expected_copy: list[str] = []
    for i, f in enumerate(files):
        expected_copy += [*(["+"] if i else []), "fs", "cp", str(f.staged), f":{f.remote}"]
    assert copy[3:] == expected_copy
    assert verify[3:] == ["fs", "sha256sum", *(f":{f.remote}" for f in files)]
    assert reset[3:] == ["reset"]
    assert "(only if the board's firmware lacks umqtt.simple)" in "\n".join(lines)
    assert lines[-1] == "Dry run: nothing was written and no board was touched."
    assert not stage.exists()  # nothing staged, nothing written


@pytest.mark.usefixtures("wifi")
def test_dry_run_shows_the_config_with_the_secrets_masked(
    deployed: Deployed, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = dry_run(deployed, capsys, "--boot-to", "+15551234567")
    text = "\n".join(lines)
    config = json.loads(next(line for line in lines if "config.json: {" in line).split(": ", 1)[1])
    # moto makes up a new ATS endpoint on every DescribeEndpoint call
    assert config.pop("endpoint").endswith("-ats.iot.eu-west-1.amazonaws.com")
    assert config == {
        "boot_message": {"Body": "Hello, I'm online.", "To": "********"},
        "ca_file": "AmazonRootCA1.der",
        "cert_file": "device.crt.der",
        "key_file": "device.key.der",
        "port": 8883,
        "shadow_interval_s": 300,
        "thing": THING,
        "topic_prefix": "sms",
        "wifi_password": "********",
        "wifi_ssid": "home-network",
    }
    assert "correct horse battery" not in text and "+15551234567" not in text


def test_dry_run_with_firmware_checks_the_image_then_erases_and_writes(
    deployed: Deployed, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    image = firmware_image(tmp_path / "ESP8266_GENERIC.bin", "esp8266")
    lines = dry_run(deployed, capsys, "--firmware", str(image), "--mip-index", "http://x/pi")
    assert steps(lines)[:5] == ["check-image", "stage", "compile", "check-port", "erase"]
    assert steps(lines)[5:7] == ["write-firmware", "check-board"]
    esptool = tool_path("esptool")
    cmds = commands(lines)
    esp = [esptool, "--chip", "esp8266", "--port", PORT, "--baud", "460800"]
    assert [c for c in cmds if c[0] == esptool] == [
        [esptool, "image-info", str(image)],
        [*esp, "erase-flash"],
        [*esp, "write-flash", "--flash-size=detect", "0x0", str(image)],
    ]
    mip = next(c for c in cmds if "mip" in c)
    assert mip[3:] == ["mip", "install", "--index", "http://x/pi", "umqtt.simple"]
    # Without Wi-Fi settings a dry run still plans, with placeholders (it never prompts).
    assert '"wifi_ssid": "<WIFI_SSID or prompt>"' in "\n".join(lines)


def test_the_plan_never_touches_the_board_before_every_host_step_is_done(tmp_path: Path) -> None:
    files = board_file_set(tmp_path)
    plan = build_plan(port="P", stage=tmp_path, files=files, firmware=tmp_path / "fw.bin")
    hosts = [s.host for s in plan]
    assert hosts == sorted(hosts, reverse=True)  # all host steps, then all board steps
    # Modules are copied before main.py: a reset mid-copy never runs a main.py without them.
    remotes = [f.remote for f in files]
    assert remotes[-1] == "main.py"
    assert remotes[:4] == ["config.json", "device.key.der", "device.crt.der", "AmazonRootCA1.der"]
