"""The environment and device a command works on, read from `cdk.json` and `devices/{env}/`
as `cdk synth` reads them."""

from __future__ import annotations

import json
from pathlib import Path

from device.tool.errors import UsageError
from stacks.device_files import DEVICES_ROOT, load_settings
from stacks.settings import EnvironmentSettings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
KEYS_ROOT = ROOT / ".device-keys"  # git-ignored


def load_environment(
    env: str, cdk_json: Path = ROOT / "cdk.json", devices_root: Path = DEVICES_ROOT
) -> EnvironmentSettings:
    """The settings of `env` from `cdk.json` and `devices/`, validated as `cdk synth` does."""
    environments = json.loads(cdk_json.read_text())["context"].get("environments", {})
    try:
        return load_settings(env, environments, devices_root)
    except SettingsError as error:
        raise UsageError(str(error)) from None


def resolve_thing(settings: EnvironmentSettings, thing: str | None) -> str:
    """`thing`, checked against the environment; the only device when none is given."""
    devices = sorted(settings.devices)
    if thing:
        if thing not in settings.devices:
            raise UsageError(
                f"{thing!r} is not a device of {settings.name} (devices/{settings.name}/"
                f"devices.json has: {', '.join(devices) or 'none'}); add it with `make "
                f"device-add ENV={settings.name} THING={thing} NUMBER=+1...` first."
            )
        return thing
    if len(devices) == 1:
        return devices[0]
    raise UsageError(f"Choose a device of {settings.name} with THING=... (--thing): {devices}.")
