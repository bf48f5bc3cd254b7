"""The board's Wi-Fi settings: from the environment, else asked for."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Mapping

from device.tool.errors import MissingWifi

WIFI_SSID_VARIABLE = "WIFI_SSID"
WIFI_PASSWORD_VARIABLE = "WIFI_PASSWORD"  # noqa: S105 (a variable name, not a secret)


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


def has_wifi_settings(environ: Mapping[str, str]) -> bool:
    """Both Wi-Fi variables are set (a dry run never prompts for missing ones)."""
    return WIFI_SSID_VARIABLE in environ and WIFI_PASSWORD_VARIABLE in environ
