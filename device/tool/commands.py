"""The subcommands: `add`, `remove`, `rotate`, `keys`, `flash`, `monitor` and `ota`, each from
parsed arguments to exit status.

Each hands typed values to `fleet`, `keys`, `cloud`, `plan`, `flash_steps`, `board` and `ota`;
every failure the user can fix is a `ToolError` (printed by `cli.main`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence

import contract
from device.tool import board, flash_steps, fleet, keys
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


def the_fleet(args: argparse.Namespace) -> fleet.Fleet:
    """The environment's device files and local keys, as the arguments name them."""
    load_environment(args.env, devices_root=args.devices_dir)  # a known, valid environment
    if not args.thing:
        raise UsageError("Name the device with THING=... (--thing).")
    return fleet.Fleet(env=args.env, devices_root=args.devices_dir, keys_root=args.keys_dir)


def print_steps(steps: Sequence[str]) -> None:
    """The numbered next steps of a fleet change."""
    print("Next:")
    for n, step in enumerate(steps, 1):
        print(f"  {n}. {step}")


def keys_command(args: argparse.Namespace) -> int:
    """`keys`: the device's private key (kept locally) and its CSR (committed)."""
    settings = load_environment(args.env, devices_root=args.devices_dir)
    thing = resolve_thing(settings, args.thing)
    devices = fleet.Fleet(env=settings.name, devices_root=args.devices_dir, keys_root=args.keys_dir)
    if len(devices.csrs(thing)) > 1:
        raise UsageError(f"{thing!r} is being rotated: finish that with `rotate --finish` first.")
    made = keys.create(devices.key_directory(thing), thing, new_key=args.new_key)
    csr = devices.write_csrs(thing, [made.csr_pem])
    print(("Created" if made.new_key else "Kept the existing") + f" private key {made.key}")
    print(f"Wrote the certificate signing request {csr}")
    if args.new_key:
        print(
            "A new key replaces the certificate: the board is offline until it is flashed "
            "again (`rotate` keeps it online)."
        )
    print_steps(devices.next_steps(flash=thing))
    return 0


def add_command(args: argparse.Namespace) -> int:
    """`add`: a new device: its key and CSR, and its number's binding."""
    devices = the_fleet(args)
    steps = fleet.add(devices, args.thing, args.number)
    print(
        f"Added {args.thing} to {args.env}: {devices.csr_file(args.thing)} (commit it), key "
        f"in {devices.key_directory(args.thing)} (never commit it)."
    )
    print_steps(steps)
    return 0


def remove_command(args: argparse.Namespace) -> int:
    """`remove`: the device's binding and CSR go; its keys are archived."""
    devices = the_fleet(args)
    steps, archived = fleet.remove(devices, args.thing)
    print(f"Removed {args.thing} from {args.env}; its certificate is deleted on deploy.")
    if archived is not None:
        print(f"Archived its keys in {archived}.")
    print_steps(steps)
    return 0


def rotate_command(args: argparse.Namespace) -> int:
    """`rotate`: a new certificate beside the old one; `--finish` drops the old one."""
    devices = the_fleet(args)
    if args.finish:
        steps = fleet.finish_rotation(devices, args.thing)
        print(f"{args.thing} keeps only its new CSR; the old certificate is deleted on deploy.")
    else:
        steps = fleet.rotate(devices, args.thing)
        print(
            f"{args.thing} has a new key and a second CSR: after the deploy both certificates "
            "are active. Flash the board, then run this command again with --finish."
        )
    print_steps(steps)
    return 0


def flash_command(args: argparse.Namespace) -> int:
    """`flash`: everything the board needs, from the deployed stack to a reset."""
    from device.tool import cloud  # boto3 is only needed here

    settings = load_environment(args.env, devices_root=args.devices_dir)
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
        env=settings.name,
        stack_name=settings.stack_name,
        region=settings.region,
        thing=thing,
        is_for_key=lambda pem: keys.certificate_matches_key(pem, key),
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


def ota_command(args: argparse.Namespace) -> int:
    """`ota`: update the app of one device (`--thing`) or all (`--all`) of an environment."""
    import boto3  # only needed here and in `flash`
    from botocore.exceptions import BotoCoreError, ClientError

    from device.tool import cloud, ota

    settings = load_environment(args.env)
    if args.all and args.thing:
        raise UsageError("Give --thing or --all, not both.")
    things = sorted(settings.devices) if args.all else [resolve_thing(settings, args.thing)]
    if not things:
        raise UsageError(f"{settings.name} has no devices in cdk.json.")
    session = boto3.Session(region_name=settings.region)
    try:
        outputs = cloud.read_stack_outputs(
            session.client("cloudformation", region_name=settings.region),
            env=settings.name,
            stack_name=settings.stack_name,
            region=settings.region,
        )
    except ClientError as error:
        raise ToolError(f"AWS refused a read of {settings.stack_name}: {error}") from None
    except BotoCoreError as error:
        raise ToolError(f"Could not reach AWS in {settings.region}: {error}") from None
    return ota.update_devices(
        env=settings.name,
        things=things,
        outputs=outputs,
        api=ota.AwsJobsApi(settings.region, session),
        dry_run=args.dry_run,
        timeout_s=args.timeout,
        poll_s=args.poll,
        sources=args.board_sources,
        ship_source=args.source,
    )
