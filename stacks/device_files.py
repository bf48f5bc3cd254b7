"""The fleet as committed files: who is bound to which number, and each device's CSR.

    devices/{env}/devices.json        {"thing-name": "+15555550100", ...}
    devices/{env}/{thing}.csr.pem     the device's certificate signing request(s)

Both are public (a CSR holds only the public key), so every clone synthesizes the same
template; private keys stay in the git-ignored `.device-keys/`. During a certificate
rotation a CSR file holds two requests, the current one first. `app.py`, the device tool
and the local loop read the fleet here and nowhere else. Standard library only: the device
tool imports it without the CDK.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import contract
from stacks.settings import EnvironmentSettings, SettingsError, parse_environment

DEVICES_ROOT = Path(__file__).resolve().parent.parent / contract.DEVICES_DIR
_CSR_BLOCK = re.compile(
    r"-----BEGIN CERTIFICATE REQUEST-----\r?\n[A-Za-z0-9+/=\r\n]+-----END CERTIFICATE REQUEST-----"
)


class MissingCsr(SettingsError):
    """A device is listed but its CSR is not in the repository."""


def bindings_path(env: str, root: Path = DEVICES_ROOT) -> Path:
    """`devices/{env}/devices.json`: thing name -> the Twilio number bound to it."""
    return root / env / contract.DEVICES_FILE


def csr_path(env: str, thing: str, root: Path = DEVICES_ROOT) -> Path:
    """`devices/{env}/{thing}.csr.pem`: the device's committed CSR(s)."""
    return root / env / f"{thing}{contract.CSR_SUFFIX}"


def read_bindings(env: str, root: Path = DEVICES_ROOT) -> dict[str, str]:
    """The environment's bindings as written in its file ({} when it has no file yet)."""
    path = bindings_path(env, root)
    if not path.is_file():
        return {}
    try:
        bindings = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SettingsError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(bindings, dict):
        raise SettingsError(f"{path} must map thing names to E.164 numbers")
    return bindings


def write_bindings(env: str, bindings: Mapping[str, str], root: Path = DEVICES_ROOT) -> Path:
    """Writes the bindings sorted by thing name, one a line (small, reviewable diffs)."""
    path = bindings_path(env, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(bindings.items())), indent=2) + "\n")
    return path


def split_csrs(text: str) -> list[str]:
    """The PEM certificate requests in `text`, in order, each normalised to end with `\\n`."""
    return [block.replace("\r\n", "\n") + "\n" for block in _CSR_BLOCK.findall(text)]


def csr_fingerprint(csr_pem: str) -> str:
    """A short, stable id of one CSR (its base64 body hashed): names the certificate made
    from it, so adding a second CSR during a rotation never touches the first one's."""
    body = "".join(csr_pem.split("\n")[1:-2]) if csr_pem.count("\n") > 2 else csr_pem
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def keys_command(env: str, thing: str) -> str:
    """The command that makes `thing`'s key and writes its CSR to the repository."""
    return f".venv/bin/python -m device.tool keys --env {env} --thing {thing}"


def read_csrs(env: str, things: list[str], root: Path = DEVICES_ROOT) -> dict[str, list[str]]:
    """Every listed device's CSR(s). A device without one fails with the command to run:
    synthesizing without it would delete its certificate and cut the board off."""
    csrs: dict[str, list[str]] = {}
    for thing in things:
        path = csr_path(env, thing, root)
        blocks = split_csrs(path.read_text()) if path.is_file() else []
        if not blocks:
            raise MissingCsr(
                f"Device {thing!r} of {env} has no certificate signing request at "
                f"{path.relative_to(root.parent) if path.is_relative_to(root.parent) else path}: "
                f"run `{keys_command(env, thing)}` and commit the CSR."
            )
        csrs[thing] = blocks
    return csrs


def load_settings(
    env: str, environments: Mapping[str, Any], root: Path = DEVICES_ROOT
) -> EnvironmentSettings:
    """`env`'s settings: cdk.json's `environments.{env}` plus its devices file, validated."""
    if env not in environments:
        known = ", ".join(sorted(environments)) or "none"
        raise SettingsError(f"Unknown environment {env!r} (-c env=... / ENV=...). Known: {known}.")
    raw = environments[env]
    if "devices" in raw:
        raise SettingsError(
            f"cdk.json context environments.{env}.devices: devices are listed in "
            f"{bindings_path(env, root).relative_to(root.parent)}; move them there."
        )
    parse_environment(env, raw)  # cdk.json's part, so that an error below is the file's
    devices = read_bindings(env, root)
    try:
        return parse_environment(env, {**raw, "devices": devices})
    except SettingsError as error:
        where = bindings_path(env, root)
        problem = str(error).split(": ", 1)[-1]
        raise SettingsError(f"{where}: {problem}") from None
