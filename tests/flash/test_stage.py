"""The host steps (stage, compile) produce exactly the board's file set, compiled by mpy-cross."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from device.tool import flash_steps, keys
from device.tool.plan import (
    BOARD_SOURCES,
    ROOT_CA_PEM,
    board_file_set,
    build_plan,
    config_json,
    device_config,
)
from tests.flash.conftest import THING


def test_stage_and_compile_produce_the_file_set(tmp_path: Path) -> None:
    made = keys.create(tmp_path / "keys", THING)
    key = keys.load_key(made.key)
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "leftover.mpy").write_bytes(b"old")  # from an older firmware: must go
    files = board_file_set(stage)
    config = device_config(
        wifi_ssid="home",
        wifi_password="",
        endpoint="abc-ats.iot.eu-west-1.amazonaws.com",
        thing=THING,
        topic_prefix="sms",
        boot_message={"To": "+15551234567", "Body": "Olá 👋"},
        shadow_interval_s=300,
    )
    generated = {
        "config.json": config_json(config),
        "device.key.der": keys.key_der(key),
        "device.crt.der": keys.certificate_der(ROOT_CA_PEM.read_text()),  # any certificate
        "AmazonRootCA1.der": keys.certificate_der(ROOT_CA_PEM.read_text()),
    }
    host_steps = [s for s in build_plan(port="P", stage=stage, files=files) if s.host]
    flash_steps.execute(
        host_steps, flash_steps.FlashJob(files=files, generated=generated, port="P")
    )

    assert sorted(p.name for p in stage.iterdir()) == sorted(f.remote for f in files)
    sources = sorted(p.stem for p in BOARD_SOURCES.glob("*.py") if p.name != "main.py")
    assert sorted(f.remote[:-4] for f in files if f.remote.endswith(".mpy")) == sources
    for f in files:
        data = f.staged.read_bytes()
        if f.remote.endswith(".mpy"):
            assert data[:2] == b"M\x06", f.remote  # mpy-cross output, .mpy version 6
        if f.private:
            assert stat.S_IMODE(f.staged.stat().st_mode) == 0o600, f.remote
    assert (stage / "main.py").read_bytes() == (BOARD_SOURCES / "main.py").read_bytes()
    text = (stage / "config.json").read_text(encoding="utf-8")
    assert "Olá 👋" in text  # raw UTF-8, never \\u escapes (see docs/contract.md)
    assert json.loads(text) == config
