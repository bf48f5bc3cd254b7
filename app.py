#!/usr/bin/env python3
"""The CDK app: one stack per environment, from `cdk.json` context.

    cdk synth -c env=dev      (default: dev)
    cdk deploy -c env=prod

Configuration is read here and only here; constructs get typed settings.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

import contract
from stacks.settings import SettingsError, parse_environment
from stacks.text_device_stack import TextDeviceStack

# Made by `python -m device.tool keys`: .device-keys/{env}/{thing}/{CSR_FILE} (git-ignored).
DEVICE_KEYS = Path(__file__).resolve().parent / ".device-keys"
CSR_HEADER = "-----BEGIN CERTIFICATE REQUEST-----"


def read_device_csrs(keys_dir: Path, env: str, things: list[str]) -> dict[str, str]:
    """The PEM CSR of each device that has one. Only the CSR is read: the private key
    beside it is never part of the template."""
    csrs: dict[str, str] = {}
    for thing in things:
        path = keys_dir / env / thing / contract.CSR_FILE
        if not path.is_file():
            continue
        pem = path.read_text()
        if CSR_HEADER not in pem:
            sys.exit(f"{path} is not a PEM certificate signing request: run device.tool keys.")
        csrs[thing] = pem
    return csrs


def build(app: App) -> TextDeviceStack:
    """Adds the stack of the environment named by context `env` (default dev) to `app`.

    Raises SystemExit with a readable message when the environment or a setting is wrong.
    """
    env_name = app.node.try_get_context("env") or "dev"
    environments = app.node.try_get_context("environments") or {}
    if env_name not in environments:
        known = ", ".join(sorted(environments)) or "none"
        sys.exit(f"Unknown environment {env_name!r} (-c env=...). Known: {known}.")
    try:
        settings = parse_environment(env_name, environments[env_name])
    except SettingsError as error:
        sys.exit(str(error))

    keys_dir = Path(app.node.try_get_context("device_keys_dir") or DEVICE_KEYS)
    stack = TextDeviceStack(
        app,
        settings.stack_name,
        settings=settings,
        device_csrs=read_device_csrs(keys_dir, settings.name, sorted(settings.devices)),
        description=f"Text a device over SMS ({settings.name})",
        # The account is optional: synth never needs one; deploy takes it from credentials.
        env=Environment(
            account=settings.account or os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=settings.region,
        ),
    )
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return stack


def main() -> None:
    """Synthesizes the stack of the environment named by `-c env=NAME`."""
    app = App()
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
