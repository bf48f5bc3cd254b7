"""Add, remove and re-key devices: edits `devices/{env}/` (committed) and `.device-keys/`.

Each operation checks everything before it writes anything, then returns the next steps
(commit, deploy, flash). Nothing here calls AWS: the deploy applies the change.

- add: a new key and CSR, and the thing -> number binding.
- remove: the binding and the CSR go; the key folder is archived, not deleted.
- rotate: a second key and CSR; after the deploy both certificates are active, so the board
  stays online until it is flashed with the new one; `finish` then drops the old CSR (its
  certificate goes with the next deploy) and archives the old key.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import contract
from device.tool import keys
from device.tool.errors import UsageError
from stacks.device_files import (
    csr_path,
    read_bindings,
    split_csrs,
    write_bindings,
)

ARCHIVE = ".archive"


@dataclass(frozen=True)
class Fleet:
    """Where an environment's devices live: the repository's files and the local keys."""

    env: str
    devices_root: Path
    keys_root: Path

    def key_directory(self, thing: str) -> Path:
        """`.device-keys/{env}/{thing}`."""
        return keys.device_directory(self.keys_root, self.env, thing)

    def csr_file(self, thing: str) -> Path:
        """`devices/{env}/{thing}.csr.pem`."""
        return csr_path(self.env, thing, self.devices_root)

    def csrs(self, thing: str) -> list[str]:
        """The thing's committed CSRs (two during a rotation, the current one first)."""
        path = self.csr_file(thing)
        return split_csrs(path.read_text()) if path.is_file() else []

    def write_csrs(self, thing: str, csrs: list[str]) -> Path:
        """Writes the thing's CSR file (public: mode 0644, committed)."""
        path = self.csr_file(thing)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(csrs))
        return path

    def next_steps(self, *, flash: str | None = None) -> list[str]:
        """What to run after a change: commit it, let CI synthesize, deploy, maybe flash."""
        steps = [
            f"git add devices/{self.env} && git commit -m '...'   (CSRs are public; keys "
            "stay in .device-keys/)",
            f"make deploy ENV={self.env}",
        ]
        if flash:
            steps.append(f"make flash ENV={self.env} THING={flash} PORT=/dev/ttyUSB0")
        return steps


def check_thing_name(thing: str) -> None:
    """An AWS IoT thing name: letters, digits, `_`, `:` or `-`, at most 128 characters."""
    if not contract.THING_NAME.fullmatch(thing):
        raise UsageError(
            f"{thing!r} is not a valid AWS IoT thing name (1-128 letters, digits, _ : -)."
        )


def check_number(number: str) -> None:
    """An E.164 number, the form Twilio sends in `To`."""
    if not contract.is_e164(number):
        raise UsageError(f"{number!r} is not an E.164 number, for example +15551234567.")


def bound_elsewhere(fleet: Fleet, number: str) -> list[str]:
    """`env/thing` of every other environment's device bound to `number`."""
    found = []
    for env_dir in sorted(p for p in fleet.devices_root.iterdir() if p.is_dir()):
        if env_dir.name == fleet.env:
            continue
        for thing, bound in read_bindings(env_dir.name, fleet.devices_root).items():
            if bound == number:
                found.append(f"{env_dir.name}/{thing}")
    return found


def add(fleet: Fleet, thing: str, number: str) -> list[str]:
    """Makes `thing`'s key and CSR and binds `number` to it; returns the next steps."""
    check_thing_name(thing)
    check_number(number)
    bindings = read_bindings(fleet.env, fleet.devices_root)
    if thing in bindings:
        raise UsageError(f"{thing!r} is already a device of {fleet.env} ({bindings[thing]}).")
    owner = next((t for t, n in bindings.items() if n == number), None)
    if owner is not None:
        raise UsageError(f"{number} is already bound to {owner!r} in {fleet.env}.")
    elsewhere = bound_elsewhere(fleet, number)
    if elsewhere:
        raise UsageError(
            f"{number} is bound to {', '.join(elsewhere)}: a Twilio number has one webhook, "
            "so it can reach one environment only. Remove it there first."
        )
    if fleet.csr_file(thing).exists():
        raise UsageError(f"{fleet.csr_file(thing)} already exists: remove it or choose a name.")
    made = keys.create(fleet.key_directory(thing), thing)
    fleet.write_csrs(thing, [made.csr_pem])
    write_bindings(fleet.env, {**bindings, thing: number}, fleet.devices_root)
    return fleet.next_steps(flash=thing)


def remove(fleet: Fleet, thing: str) -> tuple[list[str], Path | None]:
    """Unbinds `thing`, deletes its CSR and archives its keys; returns (next steps, archive)."""
    bindings = read_bindings(fleet.env, fleet.devices_root)
    if thing not in bindings:
        raise UsageError(
            f"{thing!r} is not a device of {fleet.env} (devices/{fleet.env}/devices.json has: "
            f"{', '.join(sorted(bindings)) or 'none'})."
        )
    del bindings[thing]
    write_bindings(fleet.env, bindings, fleet.devices_root)
    fleet.csr_file(thing).unlink(missing_ok=True)
    archived = archive(fleet, thing)
    return fleet.next_steps(), archived


def archive(fleet: Fleet, thing: str, *, only: str | None = None) -> Path | None:
    """Moves the thing's key folder (or just the file `only`) to `.device-keys/{env}/.archive/`."""
    source = fleet.key_directory(thing)
    if only is not None:
        source = source / only
    if not source.exists():
        return None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target_dir = fleet.keys_root / fleet.env / ARCHIVE
    keys.make_private_directory(target_dir)
    target = target_dir / (f"{thing}-{stamp}" + (f"-{only}" if only else ""))
    shutil.move(str(source), target)
    return target


def rotate(fleet: Fleet, thing: str) -> list[str]:
    """Starts a rotation: a new key, its CSR listed after the current one."""
    _require_device(fleet, thing)
    csrs = fleet.csrs(thing)
    directory = fleet.key_directory(thing)
    if len(csrs) != 1:
        raise UsageError(
            f"{thing!r} is already being rotated ({len(csrs)} CSRs in {fleet.csr_file(thing)}): "
            "deploy and flash it, then run the rotation's --finish step."
        )
    current = keys.load_key(directory / keys.KEY_FILE)
    if not keys.csr_matches_key(csrs[0], current):
        raise UsageError(
            f"The key in {directory} is not the one of {fleet.csr_file(thing)}: this machine "
            "did not make the deployed certificate, so it cannot rotate it."
        )
    (directory / keys.KEY_FILE).replace(directory / keys.PREVIOUS_KEY_FILE)
    made = keys.create(directory, thing, new_key=True)
    fleet.write_csrs(thing, [csrs[0], made.csr_pem])
    return fleet.next_steps(flash=thing)


def finish_rotation(fleet: Fleet, thing: str) -> list[str]:
    """Ends a rotation: only the new key's CSR stays; the old key is archived."""
    _require_device(fleet, thing)
    csrs = fleet.csrs(thing)
    if len(csrs) < 2:
        raise UsageError(f"{thing!r} is not being rotated: start with the rotate command.")
    key = keys.load_key(fleet.key_directory(thing) / keys.KEY_FILE)
    kept = [csr for csr in csrs if keys.csr_matches_key(csr, key)]
    if not kept:
        raise UsageError(f"None of {fleet.csr_file(thing)}'s CSRs is for the key on this machine.")
    fleet.write_csrs(thing, kept[:1])
    archive(fleet, thing, only=keys.PREVIOUS_KEY_FILE)
    return fleet.next_steps()


def _require_device(fleet: Fleet, thing: str) -> None:
    if thing not in read_bindings(fleet.env, fleet.devices_root):
        raise UsageError(f"{thing!r} is not a device of {fleet.env}.")
