"""Memory budgets of the firmware, measured in real MicroPython (see mp/memory.py)."""

from __future__ import annotations

import json

import pytest

from tests.device import mpnode

KIB = 1024


@pytest.fixture(scope="module")
def mem(wasm: None, board_mpy: dict[str, bytes]) -> dict[str, int]:
    files = {**board_mpy, **mpnode.tree(mpnode.MPDIR, "/t")}
    proc = mpnode.run(files, "/t/memory.py", ["/t", "/board"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    row: dict[str, int] = json.loads(proc.stdout.strip().splitlines()[-1])
    return row


def test_import_budget(mem: dict[str, int]) -> None:
    # what stays loaded while serving, after main.py dropped the boot-only module
    assert mem["import_resident"] <= 8 * KIB, mem


def test_boot_peak_regression_guard(mem: dict[str, int]) -> None:
    # smsboot is loaded only until the device is built, before any TLS handshake
    assert mem["import_boot_peak"] <= 11 * KIB, mem


@pytest.mark.parametrize(
    "key", ["msg160_ascii_callback", "msg160_ascii_step", "msg160_unicode_step", "bad_input_step"]
)
def test_one_message_budget(mem: dict[str, int], key: str) -> None:
    assert 0 < mem[key] <= 2 * KIB, mem


def test_no_growth_over_messages(mem: dict[str, int]) -> None:
    n = mem["loop_messages"]
    assert n == 20000
    assert mem["loop_replies"] == 90 + n * 9 // 10  # warm-up plus nine in ten answered
    assert mem["loop_acks"] >= mem["loop_replies"]  # each one taken is also confirmed
    # The heap allocates in 16-byte blocks, so keeping anything per message
    # would show as 160,000 bytes or more over 10,000 messages. What remains is
    # the port's conservative stack scan: up to about a kilobyte either way.
    assert abs(mem["growth_first_10000"]) <= 4 * KIB, mem
    assert abs(mem["growth_next_10000"]) <= 4 * KIB, mem


def test_largest_message_is_measured(mem: dict[str, int]) -> None:
    # The largest payload the cloud may publish, answered by the default app: what the
    # heap must have free for it (reported by bench/device_memory.py; no fixed budget, as
    # it depends on the app: the default one copies the body a few times to reverse it).
    assert mem["msg_max_bytes"] == 4910
    assert mem["msg_max_step"] > mem["msg_max_bytes"]
