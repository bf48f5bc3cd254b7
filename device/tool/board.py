"""Talking to the board before the real work: find the port, check that it opens and that
a MicroPython prompt answers, and read what esptool and mpremote say when they fail.

Everything here turns a low-level symptom (ENOENT, a lock, silence, "Wrong chip argument?")
into a `ToolError` that says what to do.
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Sequence

import serial
from serial.tools import list_ports

from device.tool.errors import (
    NoBoardAnswering,
    NoSerialPort,
    PortBusy,
    StepFailed,
    ToolError,
    UsageError,
    WrongChip,
)

BAUD = 115200  # MicroPython's REPL on the ESP8266
# USB-serial bridges found on ESP8266 boards (NodeMCU, Wemos D1 mini, ...): vendor ids.
USB_SERIAL_VENDORS = {0x10C4: "Silicon Labs CP210x", 0x1A86: "WCH CH340", 0x0403: "FTDI"}
BUSY_ERRNOS = frozenset({errno.EBUSY, errno.EAGAIN, errno.EACCES})
PROMPTS = (b">>> ", b"raw REPL; CTRL-B to exit")


def find_port(requested: str | None) -> str:
    """The port to use: `requested` if given, else the only USB-serial port plugged in."""
    if requested:
        return requested
    ports = list(list_ports.comports())
    likely = [p for p in ports if p.vid in USB_SERIAL_VENDORS] or ports
    if not likely:
        raise NoSerialPort(
            "No serial port found. Plug the board in with a data USB cable (some cables "
            "only charge) and check that `ls /dev/ttyUSB* /dev/ttyACM*` shows it, or pass "
            "PORT=/dev/ttyUSB0."
        )
    if len(likely) > 1:
        names = ", ".join(p.device for p in likely)
        raise UsageError(f"Several serial ports ({names}): choose one with PORT=... (--port).")
    return str(likely[0].device)


def open_port(port: str, *, timeout: float = 0.2) -> serial.SerialBase:
    """Opens `port` exclusively, as mpremote and esptool will; classifies the failure."""
    try:
        return serial.serial_for_url(port, baudrate=BAUD, timeout=timeout, exclusive=True)
    except (serial.SerialException, OSError, ValueError) as error:
        raise classify_open_error(port, error) from None


def classify_open_error(port: str, error: Exception) -> ToolError:
    """The `ToolError` for a port that would not open."""
    code = getattr(error, "errno", None)
    text = str(error)
    if code == errno.ENOENT or "No such file" in text or "Connection refused" in text:
        return NoSerialPort(
            f"Serial port {port} does not exist (is the board plugged in? `ls /dev/ttyUSB*`)."
        )
    if code in BUSY_ERRNOS or re.search(r"busy|exclusively lock|Permission denied", text, re.I):
        hint = (
            "add yourself to the dialout group (`sudo usermod -aG dialout $USER`, then log in "
            "again)"
            if "Permission denied" in text
            else "close the other program using it (a `monitor`, screen, Thonny, an IDE)"
        )
        return PortBusy(f"Serial port {port} is busy or not yours: {hint}. ({text})")
    return NoSerialPort(f"Cannot open serial port {port}: {text}")


def check_board(port: str, *, wait: float = 3.0) -> bytes:
    """Opens `port` and interrupts whatever runs until a MicroPython prompt shows.

    Returns what the board printed. Raises `NoBoardAnswering` after `wait` seconds of
    silence or of output that never contains a prompt.
    """
    link = open_port(port)
    heard = b""
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            link.write(b"\r\x03\x03")  # Ctrl-C twice: stop main.py, get a prompt
            end = time.monotonic() + 0.5
            while time.monotonic() < end:
                chunk = link.read(256)
                heard += bytes(chunk)
                if any(p in heard for p in PROMPTS):
                    return heard
    except serial.SerialException as error:
        if "disconnected" in str(error) or not heard:
            raise PortBusy(
                f"{port} closed the connection at once: another program holds the board."
            ) from None
        raise NoBoardAnswering(f"{port} failed while waiting for a prompt: {error}") from None
    finally:
        link.close()
    if heard:
        raise NoBoardAnswering(
            f"Something on {port} answers, but not with a MicroPython prompt: the board may "
            "not run MicroPython yet (flash it with FIRMWARE=...), or the port is another "
            "device."
        )
    raise NoBoardAnswering(
        f"No board answers on {port} within {wait:g} s. Check the cable, press the board's "
        "RST button, or flash MicroPython with FIRMWARE=...."
    )


def parse_probe(output: str, *, expected_platform: str) -> bool:
    """Reads the probe's `probe PLATFORM HAS_UMQTT` line; returns whether umqtt.simple is
    there. Raises `WrongChip` when the board runs MicroPython for another platform."""
    match = re.search(r"^probe (\S+) ([01])\s*$", output, re.M)
    if match is None:
        raise NoBoardAnswering(f"The board did not run the probe; it printed: {output[-300:]!r}")
    platform = match.group(1)
    if expected_platform != "any" and platform != expected_platform:
        raise WrongChip(
            f"The board runs MicroPython for {platform!r}, not {expected_platform!r}: wrong "
            "board or port? (--platform names the expected sys.platform.)"
        )
    return match.group(2) == "1"


# One line, so the printed command can be pasted into a shell: exec() holds the try block.
PROBE_CODE = (
    "import sys;"
    "exec('try:\\n import umqtt.simple\\n u=1\\nexcept ImportError:\\n u=0');"
    "print('probe',sys.platform,u)"
)


def classify_esptool_failure(port: str, chip: str, output: str) -> ToolError:
    """The `ToolError` for a failed esptool run, from what it printed."""
    wrong = re.search(r"This chip is (\S+), not (\S+)\.", output)
    if wrong:
        return WrongChip(
            f"The board on {port} is an {wrong.group(1)}, not an {chip.upper()}: use a "
            "MicroPython image for that chip, or plug in the ESP8266."
        )
    if "Could not open" in output:
        return classify_open_error(port, OSError(output))
    if re.search(r"Failed to connect|No serial data received|Timed out waiting", output):
        return NoBoardAnswering(
            f"esptool got no answer from the {chip.upper()} bootloader on {port}: hold the "
            "board's FLASH (BOOT) button while plugging it in, then try again."
        )
    return StepFailed(f"esptool failed on {port}: {_tail(output)}")


def classify_mpremote_failure(port: str, output: str) -> ToolError:
    """The `ToolError` for a failed mpremote run, from what it printed."""
    if "failed to access" in output:
        return classify_open_error(port, OSError(output))
    if "could not enter raw repl" in output:
        return NoBoardAnswering(
            f"The board on {port} does not answer mpremote (press RST and try again)."
        )
    return StepFailed(f"mpremote failed on {port}: {_tail(output)}")


def image_chip(image_info_output: str) -> str | None:
    """The chip `esptool image-info` detected in a firmware image (e.g. "ESP8266")."""
    match = re.search(r"Detected image type: (\S+)", image_info_output)
    return match.group(1) if match else None


def _tail(output: str, lines: int = 6) -> str:
    kept: Sequence[str] = [line for line in output.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "no output"
