"""The environment and device a command works on, read from `cdk.json` as `cdk synth` reads it."""

from __future__ import annotations

import json
from pathlib import Path

from device.tool.errors import UsageError
from stacks.settings import EnvironmentSettings, SettingsError, parse_environment

ROOT = Path(__file__).resolve().parents[2]
KEYS_ROOT = ROOT / ".device-keys"  # git-ignored


def load_environment(env: str, cdk_json: Path = ROOT / "cdk.json") -> EnvironmentSettings:
    """The settings of `env` from `cdk.json`, validated as `cdk synth` validates them."""
    environments = json.loads(cdk_json.read_text())["context"].get("environments", {})
    if env not in environments:
        known = ", ".join(sorted(environments)) or "none"
        raise UsageError(f"Unknown environment {env!r} (ENV=...). Known: {known}.")
    try:
        return parse_environment(env, environments[env])
    except SettingsError as error:
        raise UsageError(str(error)) from None


def resolve_thing(settings: EnvironmentSettings, thing: str | None) -> str:
    """`thing`, checked against the environment; the only device when none is given."""
    devices = sorted(settings.devices)
    if thing:
        if thing not in settings.devices:
            raise UsageError(
                f"{thing!r} is not a device of {settings.name} (cdk.json has: "
                f"{', '.join(devices) or 'none'}); add it under environments.{settings.name}."
                "devices first."
            )
        return thing
    if len(devices) == 1:
        return devices[0]
    raise UsageError(f"Choose a device of {settings.name} with THING=... (--thing): {devices}.")
