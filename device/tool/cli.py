"""Command line: `python -m device.tool {add,remove,rotate,keys,flash,monitor,ota} --help`.

Parses the arguments and calls the subcommand's function (`commands`); a `ToolError` is
printed as one line that names the fix, with exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from device.tool.commands import (
    add_command,
    flash_command,
    keys_command,
    monitor_command,
    ota_command,
    remove_command,
    rotate_command,
)
from device.tool.environment import KEYS_ROOT
from device.tool.errors import ToolError
from device.tool.plan import BOARD_SOURCES
from device.tool.wifi import WIFI_PASSWORD_VARIABLE, WIFI_SSID_VARIABLE
from stacks.device_files import DEVICES_ROOT


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one subparser per subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m device.tool",
        description="Provision and flash a board for a deployed text-a-device environment.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    def device_arguments(p: argparse.ArgumentParser) -> None:
        p.add_argument("--env", default="dev", help="environment in cdk.json (default: dev)")
        p.add_argument(
            "--thing", default=None, help="thing name (default: the environment's only device)"
        )
        p.add_argument(
            "--keys-dir",
            type=Path,
            default=KEYS_ROOT,
            help="where device keys live (default: .device-keys, git-ignored)",
        )
        p.add_argument("--devices-dir", type=Path, default=DEVICES_ROOT, help=argparse.SUPPRESS)

    add = sub.add_parser(
        "add",
        help="add a device: its key and CSR, and its number's binding",
        description="Make the device's key (in .device-keys/, never committed) and its CSR "
        "(devices/ENV/THING.csr.pem) and bind NUMBER to it in devices/ENV/devices.json. "
        "Commit devices/ENV, then deploy and flash.",
    )
    device_arguments(add)
    add.add_argument("--number", required=True, help="the Twilio number (E.164) it answers")
    add.set_defaults(handler=add_command)

    remove = sub.add_parser(
        "remove",
        help="remove a device: its binding and CSR go, its keys are archived",
        description="Delete the device's binding and CSR from devices/ENV/ and move its "
        "keys to .device-keys/ENV/.archive/. The next deploy deletes its thing and certificate.",
    )
    device_arguments(remove)
    remove.set_defaults(handler=remove_command)

    rotate = sub.add_parser(
        "rotate",
        help="rotate a device's certificate without taking it offline",
        description="Make a new key and list its CSR beside the current one: after the "
        "deploy both certificates are active. Flash the board, then run with --finish to "
        "drop the old CSR (the next deploy deletes the old certificate).",
    )
    device_arguments(rotate)
    rotate.add_argument("--finish", action="store_true", help="end the rotation")
    rotate.set_defaults(handler=rotate_command)

    keys_parser = sub.add_parser(
        "keys",
        help="create the device's private key and CSR locally",
        description="Create the device's RSA-2048 private key in .device-keys/ENV/THING/ "
        "(mode 0600) and write its CSR to devices/ENV/THING.csr.pem (commit it). The key "
        "never goes to AWS: `make deploy` registers a certificate from the CSR. An existing "
        "key is kept unless --new-key.",
    )
    device_arguments(keys_parser)
    keys_parser.add_argument(
        "--new-key", action="store_true", help="replace an existing key (then deploy again)"
    )
    keys_parser.set_defaults(handler=keys_command)

    flash = sub.add_parser(
        "flash",
        help="configure, compile and copy the firmware to the board",
        description="Read the deployed stack (endpoint, certificate), write config.json "
        "and DER files, optionally write a MicroPython image with esptool, compile the "
        "firmware with mpy-cross, copy everything with mpremote, and reset the board. "
        f"Wi-Fi settings come from {WIFI_SSID_VARIABLE}/{WIFI_PASSWORD_VARIABLE} or a prompt.",
    )
    device_arguments(flash)
    flash.add_argument("--port", default=None, help="serial port (default: the only USB one)")
    flash.add_argument(
        "--firmware",
        type=Path,
        default=None,
        help="MicroPython .bin to write first (erases the board), e.g. ESP8266_GENERIC-*.bin",
    )
    flash.add_argument("--chip", default="esp8266", help="esptool chip (default: esp8266)")
    flash.add_argument("--baud", type=int, default=460800, help="esptool baud rate")
    flash.add_argument(
        "--platform",
        default="esp8266",
        help="sys.platform the board must report, or 'any' (default: esp8266)",
    )
    flash.add_argument("--mip-index", default=None, help="mip package index (default: mip's)")
    flash.add_argument("--boot-to", default=None, help="number the board texts when it starts")
    flash.add_argument("--boot-body", default="Hello, I'm online.", help="that text's body")
    flash.add_argument(
        "--shadow-interval", type=int, default=300, help="seconds between shadow reports"
    )
    flash.add_argument("--no-reset", action="store_true", help="leave the board at its REPL")
    flash.add_argument("--board-sources", type=Path, default=BOARD_SOURCES, help=argparse.SUPPRESS)
    flash.add_argument(
        "--dry-run", action="store_true", help="print every step and command; touch no board"
    )
    flash.set_defaults(handler=flash_command)

    monitor = sub.add_parser(
        "monitor",
        help="open the board's console to watch it connect",
        description="Open the board's console with mpremote (Ctrl-] quits, Ctrl-D restarts "
        "the firmware without a reset).",
    )
    monitor.add_argument("--port", default=None, help="serial port (default: the only USB one)")
    monitor.set_defaults(handler=monitor_command)

    ota = sub.add_parser(
        "ota",
        help="update the app of deployed boards over the air (AWS IoT Jobs)",
        description="Compile device/board/app.py (and the modules only it imports) with "
        "mpy-cross, upload them, create an AWS IoT stream and job for the devices, and "
        "follow each device to the end: SUCCEEDED, or FAILED/REJECTED with the board's "
        "reason (a board that cannot run the new app rolls back by itself). Exit status 1 "
        "if any device did not update.",
    )
    ota.add_argument("--env", default="dev", help="environment in cdk.json (default: dev)")
    target = ota.add_mutually_exclusive_group()
    target.add_argument(
        "--thing", default=None, help="thing name (default: the environment's only device)"
    )
    target.add_argument("--all", action="store_true", help="every device of the environment")
    ota.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to follow the job (default: 600)"
    )
    ota.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    ota.add_argument("--board-sources", type=Path, default=BOARD_SOURCES, help=argparse.SUPPRESS)
    ota.add_argument(
        "--source",
        action="store_true",
        help="ship MicroPython source (.py) instead of mpy-cross output (.mpy): the board "
        "compiles it at import, which costs RAM (README, 'Update over the air')",
    )
    ota.add_argument(
        "--dry-run",
        action="store_true",
        help="print every step and API call; upload nothing, create no job",
    )
    ota.set_defaults(handler=ota_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand; returns the exit status."""
    args = build_parser().parse_args(argv)
    if getattr(args, "port", None) == "":
        args.port = None  # `make flash PORT=` passes an empty value
    if getattr(args, "thing", None) == "":
        args.thing = None
    try:
        status: int = args.handler(args)
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return status
