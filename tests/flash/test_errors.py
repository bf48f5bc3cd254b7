"""Every failure the issue lists gives a specific error that names the fix, never a trace."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from device.tool import board, keys
from device.tool.cli import main
from device.tool.errors import (
    MissingWifi,
    NoBoardAnswering,
    NoSerialPort,
    PortBusy,
    StackNotDeployed,
    WrongChip,
)
from device.tool.wifi import wifi_settings
from tests.flash.conftest import ENV, THING, Deployed, deploy, firmware_image, register


def flash(keys_dir: Path, *extra: str) -> list[str]:
    return ["flash", "--env", ENV, "--thing", THING, "--keys-dir", str(keys_dir), *extra]


def error_of(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


@pytest.fixture
def pty_port() -> Iterator[tuple[str, int]]:
    """A serial port with nothing behind it: a pseudo-terminal whose other end stays silent."""
    controller, device = os.openpty()
    yield os.ttyname(device), device
    os.close(controller)
    os.close(device)


# -- Serial port and board -----------------------------------------------------------------


def test_a_port_that_does_not_exist() -> None:
    with pytest.raises(NoSerialPort, match="does not exist"):
        board.open_port("/dev/ttyUSB-nothing-here")


def test_a_socket_port_where_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(NoSerialPort):
        board.open_port(f"socket://127.0.0.1:{port}")


def test_no_port_found_when_none_is_plugged_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: [])
    with pytest.raises(NoSerialPort, match="data USB cable"):
        board.find_port(None)


def test_a_busy_port(pty_port: tuple[str, int]) -> None:
    path, _ = pty_port
    holder = os.open(path, os.O_RDWR | os.O_NOCTTY)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what pyserial's exclusive open takes
    try:
        with pytest.raises(PortBusy, match="busy"):
            board.open_port(path)
    finally:
        os.close(holder)


def test_no_board_answering(pty_port: tuple[str, int]) -> None:
    path, _ = pty_port
    with pytest.raises(NoBoardAnswering, match="No board answers"):
        board.check_board(path, wait=0.6)


def test_a_board_running_micropython_for_another_chip() -> None:
    with pytest.raises(WrongChip, match="'esp32', not 'esp8266'"):
        board.parse_probe("probe esp32 1\n", expected_platform="esp8266")
    assert board.parse_probe("probe esp8266 0\n", expected_platform="esp8266") is False


def test_esptool_reporting_another_chip_is_a_wrong_chip() -> None:
    # esptool's own message (esptool/loader.py) when --chip does not match the board.
    output = "A fatal error occurred: This chip is ESP32, not ESP8266. Wrong chip argument?"
    assert isinstance(board.classify_esptool_failure("/dev/x", "esp8266", output), WrongChip)
    silent = "A fatal error occurred: Failed to connect to ESP8266: No serial data received."
    error = board.classify_esptool_failure("/dev/x", "esp8266", silent)
    assert isinstance(error, NoBoardAnswering) and "FLASH (BOOT)" in str(error)


def test_esptool_on_a_port_that_does_not_exist_is_a_missing_port() -> None:
    from device.tool.external_tools import run, tool_path

    port = "socket://127.0.0.1:9"
    code, output = run([tool_path("esptool"), "--chip", "esp8266", "--port", port, "chip-id"],
                       stream=False)  # fmt: skip
    assert code != 0
    assert isinstance(board.classify_esptool_failure(port, "esp8266", output), NoSerialPort)


@pytest.mark.usefixtures("wifi")
def test_a_firmware_image_for_another_chip_is_refused_before_the_board_is_touched(
    deployed: Deployed,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pty_port: tuple[str, int],
) -> None:
    image = firmware_image(tmp_path / "ESP32_GENERIC.bin", "esp32")
    path, _ = pty_port
    err = error_of(capsys, flash(deployed.keys_dir, "--port", path, "--firmware", str(image)))
    assert "is an ESP32 image, not ESP8266" in err


# -- AWS, keys, Wi-Fi -----------------------------------------------------------------------


@pytest.mark.usefixtures("aws", "wifi")
def test_stack_not_deployed_names_make_deploy(
    keys_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = error_of(capsys, flash(keys_dir, "--port", "/dev/null", "--dry-run"))
    assert "TextDevice-dev is not deployed in eu-west-1: run `make deploy ENV=dev`" in err


@pytest.mark.usefixtures("aws", "wifi")
def test_no_certificate_in_the_stack_names_keys_then_deploy(
    keys_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(keys_dir, with_certificate=False)
    err = error_of(capsys, flash(keys_dir, "--dry-run"))
    assert "has no certificate in TextDevice-dev" in err and "make deploy ENV=dev" in err


@pytest.mark.usefixtures("aws", "wifi")
def test_no_local_key_names_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = error_of(capsys, flash(tmp_path, "--dry-run"))
    assert "has no key yet" in err and "device.tool keys" in err


@pytest.mark.usefixtures("wifi")
def test_a_key_replaced_after_deploy_is_caught(
    deployed: Deployed, devices_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["keys", "--keys-dir", str(deployed.keys_dir), "--devices-dir", str(devices_dir)]
    assert main([*argv, "--new-key"]) == 0
    capsys.readouterr()
    err = error_of(capsys, flash(deployed.keys_dir, "--dry-run"))
    assert "is for the key on this machine" in err and "make deploy ENV=dev" in err


def test_missing_wifi_settings_without_a_terminal() -> None:
    with pytest.raises(MissingWifi, match="WIFI_SSID and WIFI_PASSWORD"):
        wifi_settings({"WIFI_SSID": "home"}, interactive=False)


def test_wifi_settings_are_asked_in_a_terminal_and_checked() -> None:
    asked = wifi_settings({}, interactive=True, ask=lambda _: "home", ask_secret=lambda _: "")
    assert asked == ("home", "")  # an open network
    with pytest.raises(MissingWifi, match="8 to 63"):
        wifi_settings({"WIFI_SSID": "home", "WIFI_PASSWORD": "short"}, interactive=False)


def test_missing_wifi_stops_flash_before_any_aws_call(
    deployed: Deployed, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WIFI_SSID", raising=False)
    monkeypatch.delenv("WIFI_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    err = error_of(capsys, flash(deployed.keys_dir, "--port", "/dev/null"))
    assert "Wi-Fi settings missing" in err


@pytest.mark.usefixtures("wifi")
def test_no_aws_credentials(
    keys_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    nowhere = str(keys_dir / "no-such-aws-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", nowhere)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", nowhere)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    err = error_of(capsys, flash(keys_dir, "--dry-run"))
    assert "No usable AWS credentials" in err and "aws configure" in err


def test_fetch_device_reads_the_certificate_and_refuses_an_undeployed_thing(
    deployed: Deployed,
) -> None:
    from device.tool.cloud import fetch_device

    def where(thing: str) -> dict[str, Any]:
        return {"env": ENV, "stack_name": "TextDevice-dev", "region": "eu-west-1", "thing": thing}

    found = fetch_device(**where(THING), is_for_key=lambda _: True)
    assert found.certificate_id == deployed.certificate_id
    assert found.certificate_pem.strip() == deployed.certificate_pem.strip()
    with pytest.raises(StackNotDeployed, match="not in the deployed stack"):
        fetch_device(**where("other"), is_for_key=lambda _: True)


def test_during_a_rotation_the_board_gets_the_certificate_of_its_new_key(
    deployed: Deployed,
) -> None:
    """Two certificates are attached while a device is rotated: flash picks the one that
    was issued for the key on this machine, whatever the order IoT lists them in."""
    from device.tool.cloud import fetch_device

    new_key = keys.create(deployed.keys_dir / "next", THING)
    new_id, _ = register(new_key.csr_pem.encode())
    key = keys.load_key(new_key.key)
    found = fetch_device(
        env=ENV,
        stack_name="TextDevice-dev",
        region="eu-west-1",
        thing=THING,
        is_for_key=lambda pem: keys.certificate_matches_key(pem, key),
    )
    assert found.certificate_id == new_id != deployed.certificate_id
