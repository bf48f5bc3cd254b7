#!/usr/bin/env python3
"""The CDK app: one stack per environment, from `cdk.json` context and `devices/ENV/`.

    cdk synth -c env=dev      (default: dev)
    cdk deploy -c env=prod

Configuration is read here and only here; constructs get typed settings. Everything read
is committed (the devices' CSRs included), so every clone synthesizes the same template.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aws_cdk import App, Environment, Validations
from cdk_nag import AwsSolutionsChecks

from stacks.device_files import DEVICES_ROOT, load_settings, read_csrs
from stacks.settings import SettingsError
from stacks.text_device_stack import TextDeviceStack


def build(app: App) -> TextDeviceStack:
    """Adds the stack of the environment named by context `env` (default dev) to `app`.

    Raises SystemExit with a readable message when the environment or a setting is wrong.
    """
    env_name = app.node.try_get_context("env") or "dev"
    environments = app.node.try_get_context("environments") or {}
    # The fleet's committed files (devices/ENV/); another folder only for tests and benchmarks.
    devices_root = Path(app.node.try_get_context("devices_dir") or DEVICES_ROOT)
    try:
        settings = load_settings(env_name, environments, devices_root)
        csrs = read_csrs(settings.name, sorted(settings.devices), devices_root)
    except SettingsError as error:
        sys.exit(str(error))

    stack = TextDeviceStack(
        app,
        settings.stack_name,
        settings=settings,
        device_csrs=csrs,
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
