"""Memory budgets of the firmware, measured in real MicroPython (see mp/memory.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import contract
from tests.device import mpnode

KIB = 1024


@pytest.fixture(scope="module")
def mem(wasm: None, board_mpy: dict[str, bytes]) -> dict[str, Any]:
    files = {**board_mpy, **mpnode.tree(mpnode.MPDIR, "/t")}
    proc = mpnode.run(files, "/t/memory.py", ["/t", "/board"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    row: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return row


def test_import_budget(mem: dict[str, Any]) -> None:
    # what stays loaded while serving, after main.py dropped the boot-only module
    assert mem["import_resident"] <= 8 * KIB, mem


def test_boot_peak_regression_guard(mem: dict[str, Any]) -> None:
    # smsboot is loaded only until the device is built, before any TLS handshake
    assert mem["import_boot_peak"] <= 11 * KIB, mem


@pytest.mark.parametrize(
    "key", ["msg160_ascii_callback", "msg160_ascii_step", "msg160_unicode_step", "bad_input_step"]
)
def test_one_message_budget(mem: dict[str, Any], key: str) -> None:
    assert 0 < mem[key] <= 2 * KIB, mem


def test_no_growth_over_messages(mem: dict[str, Any]) -> None:
    n = mem["loop_messages"]
    assert n == 20000
    assert mem["loop_replies"] == 90 + n * 9 // 10  # warm-up plus nine in ten answered
    assert mem["loop_acks"] >= mem["loop_replies"]  # each one taken is also confirmed
    # The heap allocates in 16-byte blocks, so keeping anything per message
    # would show as 160,000 bytes or more over 10,000 messages. What remains is
    # the port's conservative stack scan: up to about a kilobyte either way.
    assert abs(mem["growth_first_10000"]) <= 4 * KIB, mem
    assert abs(mem["growth_next_10000"]) <= 4 * KIB, mem


def test_largest_message_is_measured(mem: dict[str, Any]) -> None:
    # The largest payload the cloud may publish, answered by the default app: what the
    # heap must have free for it (reported by bench/device_memory.py; no fixed budget, as
    # it depends on the app: the default one copies the body a few times to reverse it).
    assert mem["msg_max_bytes"] == contract.MAX_DEVICE_PAYLOAD_BYTES
    assert mem["msg_max_step"] > mem["msg_max_bytes"]


def test_update_peak_fits_beside_tls(mem: dict[str, Any]) -> None:
    # ~38 KB heap, ~9 KB for axTLS while connected, ~8 KB of firmware: an update
    # may take about 12 KB above steady state, module and one block included.
    assert 0 < mem["ota_peak"] <= 12 * KIB, mem
    assert mem["ota_stages"]["download"] <= 6 * KIB, mem  # one block's work, garbage included


def test_update_traffic_is_the_file_plus_a_little(mem: dict[str, Any]) -> None:
    # base64 is 4/3 of the file; the rest is per-block and per-job envelope
    assert 4000 * 4 // 3 < mem["ota_update_4000_mqtt"] <= 4000 * 4 // 3 + 2 * KIB, mem
