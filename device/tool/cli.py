"""Command line: `python -m device.tool {keys,flash,monitor} --help`.

Thin: parses arguments, reads `cdk.json` and the environment, and hands typed values to
`keys`, `cloud`, `plan` and `board`. Every failure the user can fix is a `ToolError`,
printed as one line that names the fix, with exit status 2.
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from device.tool import board, keys, ota
from device.tool.errors import (
    MissingWifi,
    NoCertificate,
    StepFailed,
    ToolError,
    UsageError,
    WrongChip,
)
from device.tool.plan import (
    BOARD_SOURCES,
    CA_DER,
    CERT_DER,
    CONFIG,
    KEY_DER,
    ROOT,
    ROOT_CA_PEM,
    BoardFile,
    Step,
    board_file_set,
    build_plan,
    config_json,
    device_config,
    render,
    tool_path,
)
from stacks.settings import EnvironmentSettings, SettingsError, parse_environment

KEYS_ROOT = ROOT / ".device-keys"
WIFI_SSID_VARIABLE = "WIFI_SSID"
WIFI_PASSWORD_VARIABLE = "WIFI_PASSWORD"  # noqa: S105 (a variable name, not a secret)
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


# -- Configuration -------------------------------------------------------------------------


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


def wifi_settings(
    environ: Mapping[str, str],
    *,
    interactive: bool,
    ask: Callable[[str], str] = input,
    ask_secret: Callable[[str], str] = getpass.getpass,
) -> tuple[str, str]:
    """Wi-Fi SSID and password from `WIFI_SSID`/`WIFI_PASSWORD`, else from a prompt.

    They go only into the staged `config.json` (mode 0600) and onto the board.
    """
    ssid = environ.get(WIFI_SSID_VARIABLE)
    password = environ.get(WIFI_PASSWORD_VARIABLE)
    if (ssid is None or password is None) and not interactive:
        raise MissingWifi(
            f"Wi-Fi settings missing: set {WIFI_SSID_VARIABLE} and {WIFI_PASSWORD_VARIABLE} "
            "(empty password for an open network) or run in a terminal to be asked."
        )
    if ssid is None:
        ssid = ask("Wi-Fi network name (SSID): ").strip()
    if password is None:
        password = ask_secret(f"Password of {ssid!r} (empty for an open network): ")
    if not 1 <= len(ssid.encode()) <= 32:
        raise MissingWifi("The Wi-Fi SSID must be 1 to 32 bytes long.")
    if password and not 8 <= len(password) <= 63:
        raise MissingWifi("A WPA2 Wi-Fi password has 8 to 63 characters (empty: open network).")
    return ssid, password


def boot_message(to: str | None, body: str) -> dict[str, str] | None:
    """The optional text the board sends once connected (`--boot-to`)."""
    if to is None:
        return None
    if not E164.match(to):
        raise UsageError("--boot-to must be an E.164 number, for example +15551234567.")
    return {"To": to, "Body": body}


# -- Running commands ----------------------------------------------------------------------


def run(command: Sequence[str], *, stream: bool) -> tuple[int, str]:
    """Runs `command`; with `stream`, shows its output live (esptool's progress bars)."""
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise StepFailed(f"{command[0]} is not installed: run `make deps`.") from None
    assert process.stdout is not None
    chunks = []
    while chunk := os.read(process.stdout.fileno(), 4096):
        chunks.append(chunk)
        if stream:  # bytes as they come: esptool redraws its progress bar with \r
            out = getattr(sys.stdout, "buffer", None)
            if out is None:  # stdout replaced by a text stream (tests, benchmarks)
                sys.stdout.write(chunk.decode(errors="replace"))
            else:
                out.write(chunk)
                out.flush()
    process.stdout.close()
    return process.wait(), b"".join(chunks).decode(errors="replace")


def run_board(command: Sequence[str], port: str, *, stream: bool = False) -> str:
    """Runs an mpremote command; a failure becomes the matching `ToolError`."""
    code, output = run(command, stream=stream)
    if code != 0:
        raise board.classify_mpremote_failure(port, output)
    return output


def parse_hashes(output: str) -> dict[str, str]:
    """`mpremote fs sha256sum :a :b` output -> {"a": hex, "b": hex}."""
    hashes: dict[str, str] = {}
    name = None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("sha256sum :"):
            name = line[len("sha256sum :") :]
        elif name is not None and re.fullmatch(r"[0-9a-f]{64}", line):
            hashes[name], name = line, None
    return hashes


# -- Subcommands ---------------------------------------------------------------------------


def command_keys(args: argparse.Namespace) -> int:
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


def command_flash(args: argparse.Namespace) -> int:
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
    if args.dry_run and (
        WIFI_SSID_VARIABLE not in environ or WIFI_PASSWORD_VARIABLE not in environ
    ):
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
    secrets = {
        CONFIG: config_json(config),
        KEY_DER: keys.key_der(key),
        CERT_DER: keys.certificate_der(found.certificate_pem),
        CA_DER: keys.certificate_der(ROOT_CA_PEM.read_text()),
    }
    execute(steps, files, secrets, port=port, args=args)
    print_file_set(files)
    print(f"Done. Watch it connect: `make monitor PORT={port}`, then text the number of {thing}.")
    return 0


def execute(
    steps: Sequence[Step],
    files: Sequence[BoardFile],
    generated: Mapping[str, bytes],
    *,
    port: str,
    args: argparse.Namespace,
) -> None:
    """Runs the plan's steps in order; the first failure stops it with a `ToolError`."""
    has_umqtt = False
    for n, step in enumerate(steps, 1):
        print(f"[{n}/{len(steps)}] {step.name}: {step.title}", flush=True)
        if step.name == "check-image":
            code, output = run(step.commands[0], stream=False)
            chip = board.image_chip(output)
            if code != 0 or chip is None:
                raise UsageError(
                    f"{args.firmware} is not a firmware image: {output.strip()[-200:]}"
                )
            if chip.lower() != args.chip.lower():
                raise WrongChip(f"{args.firmware} is an {chip} image, not {args.chip.upper()}.")
        elif step.name == "stage":
            stage_files(files, generated)
        elif step.name == "compile":
            for command in step.commands:
                code, output = run(command, stream=False)
                if code != 0:
                    raise StepFailed(f"mpy-cross rejected {command[-1]}:\n{output.strip()}")
            for f in files:
                if f.source is not None and not f.remote.endswith(".mpy"):
                    shutil.copyfile(f.source, f.staged)
        elif step.name == "check-port":
            board.open_port(port).close()
        elif step.name in ("erase", "write-firmware"):
            code, output = run(step.commands[0], stream=True)
            if code != 0:
                raise board.classify_esptool_failure(port, args.chip, output)
        elif step.name == "check-board":
            board.check_board(port, wait=10.0 if args.firmware else 3.0)
        elif step.name == "probe":
            output = run_board(step.commands[0], port)
            has_umqtt = board.parse_probe(output, expected_platform=args.platform)
        elif step.name == "install-umqtt":
            if has_umqtt:
                print("      skipped: the firmware has umqtt.simple")
                continue
            run_board(step.commands[0], port, stream=True)
        elif step.name in ("clean", "reset"):
            run_board(step.commands[0], port)
        elif step.name == "copy":
            run_board(step.commands[0], port, stream=True)
        elif step.name == "verify":
            on_board = parse_hashes(run_board(step.commands[0], port))
            for f in files:
                local = hashlib.sha256(f.staged.read_bytes()).hexdigest()
                if on_board.get(f.remote) != local:
                    raise StepFailed(
                        f"{f.remote} on the board differs from {f.staged}: flash again."
                    )
        else:  # a step this version does not know how to run: a bug, not a user error
            raise RuntimeError(f"unknown step {step.name}")


def stage_files(files: Sequence[BoardFile], generated: Mapping[str, bytes]) -> None:
    """Writes the generated files; empties the stage first so it holds exactly the file set."""
    stage = files[0].staged.parent
    keys.make_private_directory(stage)
    for old in stage.iterdir():
        if old.is_file():
            old.unlink()
    for f in files:
        if f.source is None:
            data = generated[f.remote]
            if f.private:
                keys.write_private(f.staged, data)
            else:
                f.staged.write_bytes(data)


def print_file_set(files: Sequence[BoardFile]) -> None:
    """The file set on the board and its size."""
    total = 0
    print(f"{'file on the board':<24}{'bytes':>8}")
    for f in files:
        size = f.staged.stat().st_size
        total += size
        print(f"{f.remote:<24}{size:>8}")
    print(f"{'total (' + str(len(files)) + ' files)':<24}{total:>8}")


def command_monitor(args: argparse.Namespace) -> int:
    """`monitor`: the board's console (its log lines); Ctrl-] quits, Ctrl-D soft-resets."""
    port = board.find_port(args.port)
    board.open_port(port).close()  # clear errors first; mpremote's are less specific
    print(f"Console of {port}: Ctrl-] to quit, Ctrl-D to restart the firmware.", flush=True)
    command = [tool_path("mpremote"), "connect", port, "resume", "repl"]
    return subprocess.call(command)


# -- Parser --------------------------------------------------------------------------------


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

    keys_parser = sub.add_parser(
        "keys",
        help="create the device's private key and CSR locally",
        description="Create the device's RSA-2048 private key and a CSR in "
        ".device-keys/ENV/THING/ (mode 0600). The key never goes to AWS: `make deploy` "
        "registers a certificate from the CSR. An existing key is kept unless --new-key.",
    )
    device_arguments(keys_parser)
    keys_parser.add_argument(
        "--new-key", action="store_true", help="replace an existing key (then deploy again)"
    )
    keys_parser.set_defaults(handler=command_keys)

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
    flash.set_defaults(handler=command_flash)

    monitor = sub.add_parser(
        "monitor",
        help="open the board's console to watch it connect",
        description="Open the board's console with mpremote (Ctrl-] quits, Ctrl-D restarts "
        "the firmware without a reset).",
    )
    monitor.add_argument("--port", default=None, help="serial port (default: the only USB one)")
    monitor.set_defaults(handler=command_monitor)
    ota.add_parser(sub)
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
