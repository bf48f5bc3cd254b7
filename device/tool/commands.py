"""The subcommands: `keys`, `flash` and `monitor`, each from parsed arguments to exit status.

Each hands typed values to `keys`, `cloud`, `plan`, `flash_steps` and `board`; every failure
the user can fix is a `ToolError` (printed by `cli.main`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import contract
from device.tool import board, flash_steps, keys
from device.tool.environment import load_environment, resolve_thing
from device.tool.errors import NoCertificate, ToolError, UsageError
from device.tool.external_tools import tool_path
from device.tool.flash_steps import FlashJob
from device.tool.plan import (
    CA_DER,
    CERT_DER,
    CONFIG,
    KEY_DER,
    ROOT_CA_PEM,
    board_file_set,
    build_plan,
    config_json,
    device_config,
    render,
)
from device.tool.wifi import WIFI_SSID_VARIABLE, has_wifi_settings, wifi_settings


def boot_message(to: str | None, body: str) -> dict[str, str] | None:
    """The optional text the board sends once connected (`--boot-to`)."""
    if to is None:
        return None
    if not contract.is_e164(to):
        raise UsageError("--boot-to must be an E.164 number, for example +15551234567.")
    return {"To": to, "Body": body}


def keys_command(args: argparse.Namespace) -> int:
    """`keys`: the device's private key and CSR, made locally."""
    settings = load_environment(args.env)
    thing = resolve_thing(settings, args.thing)
    directory = keys.device_directory(args.keys_dir, settings.name, thing)
    made = keys.create(directory, thing, new_key=args.new_key)
    print(("Created" if made.new_key else "Kept the existing") + f" private key {made.key}")
    print(f"Wrote the certificate signing request {made.csr}")
    print(
        f"Next: `make deploy ENV={settings.name}` registers the certificate, then "
        f"`make flash ENV={settings.name} THING={thing} PORT=/dev/ttyUSB0`."
    )
    if args.new_key:
        print("A new key needs a new certificate: deploy before flashing.")
    return 0


def flash_command(args: argparse.Namespace) -> int:
    """`flash`: everything the board needs, from the deployed stack to a reset."""
    from device.tool import cloud  # boto3 is only needed here

    settings = load_environment(args.env)
    thing = resolve_thing(settings, args.thing)
    directory = keys.device_directory(args.keys_dir, settings.name, thing)
    run_keys = f"`.venv/bin/python -m device.tool keys --env {settings.name} --thing {thing}`"
    if not (directory / keys.KEY_FILE).exists():
        raise NoCertificate(
            f"Device {thing!r} has no key yet: run {run_keys}, then `make deploy "
            f"ENV={settings.name}`."
        )
    key = keys.load_key(directory / keys.KEY_FILE)
    if args.firmware is not None and not args.firmware.is_file():
        raise UsageError(f"Firmware image {args.firmware} not found.")
    environ = dict(os.environ)
    if args.dry_run and not has_wifi_settings(environ):
        ssid, password = f"<{WIFI_SSID_VARIABLE} or prompt>", "<prompt>"
    else:
        ssid, password = wifi_settings(environ, interactive=sys.stdin.isatty())
    found = cloud.fetch_device(
        env=settings.name, stack_name=settings.stack_name, region=settings.region, thing=thing
    )
    if not keys.certificate_matches_key(found.certificate_pem, key):
        raise NoCertificate(
            f"The certificate registered for {thing!r} is not for the key in {directory}: the "
            f"key was replaced after the last deploy. Run `make deploy ENV={settings.name}`."
        )
    config = device_config(
        wifi_ssid=ssid,
        wifi_password=password,
        endpoint=found.endpoint,
        thing=thing,
        topic_prefix=found.topic_prefix,
        boot_message=boot_message(args.boot_to, args.boot_body),
        shadow_interval_s=args.shadow_interval,
    )
    try:
        port = board.find_port(args.port)
    except ToolError:
        if not args.dry_run:
            raise
        port = "PORT"
    stage = directory / "board"
    files = board_file_set(stage, args.board_sources)
    steps = build_plan(
        port=port,
        stage=stage,
        files=files,
        chip=args.chip,
        firmware=args.firmware,
        baud=args.baud,
        mip_index=args.mip_index,
        reset=not args.no_reset,
    )
    print(f"Flash {thing} ({settings.name}, endpoint {found.endpoint}) on {port}:")
    print(render(steps, config=config))
    if args.dry_run:
        print("Dry run: nothing was written and no board was touched.")
        return 0
    generated = {
        CONFIG: config_json(config),
        KEY_DER: keys.key_der(key),
        CERT_DER: keys.certificate_der(found.certificate_pem),
        CA_DER: keys.certificate_der(ROOT_CA_PEM.read_text()),
    }
    job = FlashJob(
        files=files,
        generated=generated,
        port=port,
        chip=args.chip,
        firmware=args.firmware,
        platform=args.platform,
    )
    flash_steps.execute(steps, job)
    flash_steps.print_file_set(files)
    print(f"Done. Watch it connect: `make monitor PORT={port}`, then text the number of {thing}.")
    return 0


def monitor_command(args: argparse.Namespace) -> int:
    """`monitor`: the board's console (its log lines); Ctrl-] quits, Ctrl-D soft-resets."""
    port = board.find_port(args.port)
    board.open_port(port).close()  # clear errors first; mpremote's are less specific
    print(f"Console of {port}: Ctrl-] to quit, Ctrl-D to restart the firmware.", flush=True)
    command = [tool_path("mpremote"), "connect", port, "resume", "repl"]
    return subprocess.call(command)
