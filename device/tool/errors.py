"""The tool's errors: each says what went wrong and what to do next."""

from __future__ import annotations


class ToolError(Exception):
    """A failure the user can fix; the message names the fix. `exit_code` for the shell."""

    exit_code = 2


class UsageError(ToolError):
    """A wrong argument: unknown environment or thing, missing file."""


class NoSerialPort(ToolError):
    """No serial port to talk to: none found, or the one named does not exist."""


class PortBusy(ToolError):
    """The serial port exists but another program holds it."""


class NoBoardAnswering(ToolError):
    """The port opens but nothing answers like a MicroPython REPL."""


class WrongChip(ToolError):
    """The board or the firmware image is for another chip than the one targeted."""


class StackNotDeployed(ToolError):
    """The environment's stack (or this thing in it) is not deployed."""


class NoCertificate(ToolError):
    """The device has no key, no CSR or no registered certificate yet."""


class MissingWifi(ToolError):
    """Wi-Fi settings are neither in the environment nor typed at a prompt."""


class NoAwsCredentials(ToolError):
    """No AWS credentials, or AWS rejected them."""


class ThingUnknown(ToolError):
    """AWS IoT has no thing by that name (the stack that registers it is not deployed)."""


class JobInProgress(ToolError):
    """A device already has an update job queued or running."""


class StepFailed(ToolError):
    """An external command (esptool, mpy-cross, mpremote) failed."""
