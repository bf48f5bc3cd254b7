"""Runs the board's firmware (`device/board/`) on the host, against the local broker.

The very modules that go on the ESP8266 run here under CPython: `smslink.Device` with the
board's `app.handle`, wired to `loop.umqtt_host.MQTTClient` (umqtt.simple's API over paho)
instead of the frozen umqtt.simple, a CPython TLS context instead of the board's, and small
stand-ins for MicroPython's `time` and `network.WLAN`.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import contract
from loop.certs import Identity, tls_context
from loop.umqtt_host import MQTTClient

BOARD_DIR = Path(__file__).resolve().parent.parent / "device" / "board"


def _board_module(name: str) -> ModuleType:
    """Imports a firmware module from device/board (on sys.path, as on the board)."""
    if str(BOARD_DIR) not in sys.path:
        sys.path.append(str(BOARD_DIR))
    return importlib.import_module(name)


def board_app() -> ModuleType:
    """The board's `app.py`, loaded under another name: the CDK app is `app` on the host."""
    module = sys.modules.get("board_app")
    if module is None:
        _board_module("smstext")
        spec = importlib.util.spec_from_file_location("board_app", BOARD_DIR / "app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["board_app"] = module
    return module


class HostClock:
    """MicroPython's `time.ticks_ms`, `ticks_add`, `ticks_diff` and `sleep_ms` on CPython."""

    @staticmethod
    def ticks_ms() -> int:
        """Milliseconds from a monotonic clock."""
        return int(time.monotonic() * 1000)

    @staticmethod
    def ticks_add(ticks: int, delta: int) -> int:
        """ticks + delta (CPython's ints do not wrap)."""
        return ticks + delta

    @staticmethod
    def ticks_diff(a: int, b: int) -> int:
        """a - b (CPython's ints do not wrap like MicroPython's ticks)."""
        return a - b

    @staticmethod
    def sleep_ms(ms: int) -> None:
        """Sleeps `ms` milliseconds."""
        time.sleep(ms / 1000)


class HostWlan:
    """`network.WLAN(STA_IF)`: the host's network is always up unless `up` is cleared."""

    def __init__(self) -> None:
        self.up = True

    def active(self, *args: Any) -> bool:
        """The interface is always active."""
        return True

    def connect(self, ssid: str, password: str) -> None:
        """Nothing to join: the host is on the network."""
        return None

    def isconnected(self) -> bool:
        """Whether the simulated link is up (tests clear `up` to flap it)."""
        return self.up

    def status(self, what: str | None = None) -> int:
        """A fixed RSSI for `status("rssi")`, else STAT_GOT_IP."""
        return -42 if what == "rssi" else 1010  # 1010: STAT_GOT_IP


class HostDevice:
    """One board's firmware running in a background thread until `stop()`."""

    def __init__(
        self,
        *,
        thing: str,
        port: int,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        topic_prefix: str = contract.DEFAULT_TOPIC_PREFIX,
        boot_message: dict[str, str] | None = None,
        handle: Callable[[dict[str, Any]], Any] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        smslink = _board_module("smslink")
        context = tls_context(str(ca_file), Identity(cert=cert_file, key=key_file))
        config = {
            "wifi_ssid": "host",
            "wifi_password": "",
            "endpoint": "127.0.0.1",
            "port": port,
            "thing": thing,
            "topic_prefix": topic_prefix,
            "boot_message": boot_message,
            "shadow_interval_s": 300,
        }
        self.wlan = HostWlan()
        self.connections = 0
        self._connected = threading.Event()

        def log_line(line: str) -> None:
            if line.startswith("mqtt: connected"):
                self.connections += 1
                self._connected.set()
            log(f"[{thing}] {line}")

        self.device = smslink.Device(
            config=config,
            handle=handle or board_app().handle,
            mqtt=MQTTClient,
            wlan=self.wlan,
            clock=HostClock(),
            ntp=None,  # the host's clock is already right: no NTP
            ssl=context,
            wdt=None,  # no hardware watchdog on the host
            uid=thing.encode(),
            keepalive=30,
            poll_ms=5,
            log=log_line,
        )
        self._thread: threading.Thread | None = None

    def start(self) -> HostDevice:
        """Boots the firmware's loop in a thread."""
        self._thread = threading.Thread(target=self.device.run, daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Blocks until the firmware has connected and subscribed."""
        if not self._connected.wait(timeout):
            raise TimeoutError("the device did not connect to the local broker")

    def stop(self) -> None:
        """Stops the loop and disconnects cleanly (the broker keeps the session)."""
        self.device.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
