"""`add`, `remove` and `rotate`: one command each, clear errors, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.tool import keys
from device.tool.cli import main
from stacks.device_files import read_bindings, read_csrs, split_csrs

NUMBER = "+15555550142"


def run(devices_dir: Path, keys_dir: Path, *argv: str) -> int:
    return main([*argv, "--devices-dir", str(devices_dir), "--keys-dir", str(keys_dir)])


def add_porch(devices_dir: Path, keys_dir: Path) -> None:
    argv = ("add", "--env", "dev", "--thing", "dev-porch", "--number", NUMBER)
    assert run(devices_dir, keys_dir, *argv) == 0


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_add_makes_the_key_and_csr_binds_the_number_and_prints_the_deploy_command(
    devices_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_dir = tmp_path / "keys"
    before = read_bindings("dev", devices_dir)
    argv = ("add", "--env", "dev", "--thing", "dev-porch", "--number", NUMBER)
    assert run(devices_dir, keys_dir, *argv) == 0
    out = capsys.readouterr().out
    assert "make deploy ENV=dev" in out and "git add devices/dev" in out
    assert "make flash ENV=dev THING=dev-porch" in out
    assert read_bindings("dev", devices_dir) == {**before, "dev-porch": NUMBER}
    (csr,) = read_csrs("dev", ["dev-porch"], devices_dir)["dev-porch"]
    key = keys.load_key(keys_dir / "dev" / "dev-porch" / keys.KEY_FILE)
    assert keys.csr_matches_key(csr, key)
    # The committed file is sorted, one binding a line: small diffs.
    text = (devices_dir / "dev" / "devices.json").read_text()
    assert text == json.dumps(dict(sorted(json.loads(text).items())), indent=2) + "\n"


@pytest.mark.parametrize(
    ("thing", "number", "message"),
    [
        ("dev-reverser", NUMBER, "'dev-reverser' is already a device of dev"),
        ("dev-porch", "+15555550100", "+15555550100 is already bound to 'dev-reverser' in dev"),
        ("bad name!", NUMBER, "'bad name!' is not a valid AWS IoT thing name"),
        ("x" * 129, NUMBER, "is not a valid AWS IoT thing name"),
        ("dev-porch", "555-0142", "'555-0142' is not an E.164 number"),
        ("dev-porch", "+15555550200", "+15555550200 is bound to prod/prod-reverser"),
    ],
    ids=["duplicate-thing", "duplicate-number", "bad-name", "long-name", "bad-number", "elsewhere"],
)
def test_add_refuses_clearly_and_writes_nothing(
    devices_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    thing: str,
    number: str,
    message: str,
) -> None:
    keys_dir = tmp_path / "keys"
    before = snapshot(devices_dir)
    assert (
        run(devices_dir, keys_dir, "add", "--env", "dev", "--thing", thing, "--number", number) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert snapshot(devices_dir) == before
    assert not keys_dir.exists()


def test_add_needs_a_thing_and_a_known_environment(
    devices_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(devices_dir, tmp_path, "add", "--env", "dev", "--number", NUMBER) == 2
    assert "Name the device with THING=" in capsys.readouterr().err
    assert run(devices_dir, tmp_path, "add", "--env", "qa", "--thing", "a", "--number", NUMBER) == 2
    assert "Unknown environment 'qa'" in capsys.readouterr().err


def test_remove_unbinds_deletes_the_csr_and_archives_the_keys(
    devices_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_dir = tmp_path / "keys"
    add_porch(devices_dir, keys_dir)
    key = (keys_dir / "dev" / "dev-porch" / keys.KEY_FILE).read_bytes()
    capsys.readouterr()
    assert run(devices_dir, keys_dir, "remove", "--env", "dev", "--thing", "dev-porch") == 0
    out = capsys.readouterr().out
    assert "make deploy ENV=dev" in out and "Archived its keys" in out
    assert "dev-porch" not in read_bindings("dev", devices_dir)
    assert not (devices_dir / "dev" / "dev-porch.csr.pem").exists()
    assert not (keys_dir / "dev" / "dev-porch").exists()
    (archived,) = (keys_dir / "dev" / ".archive").iterdir()
    assert archived.name.startswith("dev-porch-")
    assert (archived / keys.KEY_FILE).read_bytes() == key
    assert run(devices_dir, keys_dir, "remove", "--env", "dev", "--thing", "dev-porch") == 2
    assert "'dev-porch' is not a device of dev" in capsys.readouterr().err


def test_rotate_lists_two_csrs_until_finish_keeps_the_new_one(
    devices_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_dir = tmp_path / "keys"
    add_porch(devices_dir, keys_dir)
    (old_csr,) = read_csrs("dev", ["dev-porch"], devices_dir)["dev-porch"]
    rotate = ("rotate", "--env", "dev", "--thing", "dev-porch")
    assert (
        run(devices_dir, keys_dir, "rotate", "--env", "dev", "--thing", "dev-porch", "--finish")
        == 2
    )
    assert "is not being rotated" in capsys.readouterr().err

    assert run(devices_dir, keys_dir, *rotate) == 0
    assert "--finish" in capsys.readouterr().out
    csrs = split_csrs((devices_dir / "dev" / "dev-porch.csr.pem").read_text())
    assert len(csrs) == 2 and csrs[0] == old_csr
    new_key = keys.load_key(keys_dir / "dev" / "dev-porch" / keys.KEY_FILE)
    assert keys.csr_matches_key(csrs[1], new_key)
    # Mid-rotation, a second rotation or a new key would strand the board: refused.
    assert run(devices_dir, keys_dir, *rotate) == 2
    assert "already being rotated" in capsys.readouterr().err
    argv = ("keys", "--env", "dev", "--thing", "dev-porch", "--new-key")
    assert run(devices_dir, keys_dir, *argv) == 2
    assert "is being rotated" in capsys.readouterr().err

    assert run(devices_dir, keys_dir, *rotate, "--finish") == 0
    assert split_csrs((devices_dir / "dev" / "dev-porch.csr.pem").read_text()) == [csrs[1]]
    assert not (keys_dir / "dev" / "dev-porch" / keys.PREVIOUS_KEY_FILE).exists()
    (archived,) = (keys_dir / "dev" / ".archive").iterdir()
    assert keys.csr_matches_key(old_csr, keys.load_key(archived))


def test_rotate_refuses_a_key_that_did_not_make_the_committed_csr(
    devices_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys_dir = tmp_path / "keys"
    keys.create(keys_dir / "dev" / "dev-reverser", "dev-reverser")  # not the committed one
    assert run(devices_dir, keys_dir, "rotate", "--env", "dev", "--thing", "dev-reverser") == 2
    assert "did not make the deployed certificate" in capsys.readouterr().err
