"""Runs the board's firmware (`device/board/`) on the host, against the local broker.

The very modules that go on the ESP8266 run here under CPython: `smslink.Device` with the
app its flash holds, wired to `loop.umqtt_host.MQTTClient` (umqtt.simple's API over paho)
instead of the frozen umqtt.simple, a CPython TLS context instead of the board's, and small
stand-ins for MicroPython's `time` and `network.WLAN`.

Each device has a folder for its flash (`root`): the app's modules as source (CPython
cannot import `.mpy`, so over-the-air updates to it ship source: `ota --source`) and,
while an update runs, its journal. It boots as `smsboot.build` does, and a reset
(`machine.reset()`, which an update calls after switching apps and after a rollback) ends
the running firmware and boots it again from that folder, as the board restarts.
"""

from __future__ import annotations

import importlib
import importlib.util
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import contract
from device.tool.ota_build import app_modules
from loop.certs import Identity, tls_context
from loop.umqtt_host import MQTTClient

BOARD_DIR = Path(__file__).resolve().parent.parent / "device" / "board"
# Boots import `app` with the device's flash first on sys.path: one at a time (the CDK app
# is `app` on the host too, so the name is lent to a booting device and taken back).
_BOOT_LOCK = threading.Lock()


class BoardReset(BaseException):
    """`machine.reset()` on the host: unwinds the firmware (nothing it catches), which then
    boots again. Never returns, like the real one."""


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
    """One board's firmware running in a background thread until `stop()`.

    `root` is its flash (see the module docstring); a new folder gets the board's app
    (`device/board/app.py` and the modules only it imports). `observe` sees every message
    handed to the app, whichever app the flash holds.
    """

    def __init__(
        self,
        *,
        thing: str,
        port: int,
        ca_file: Path,
        cert_file: Path,
        key_file: Path,
        root: Path,
        topic_prefix: str = contract.DEFAULT_TOPIC_PREFIX,
        boot_message: dict[str, str] | None = None,
        observe: Callable[[dict[str, Any]], None] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self._smslink = _board_module("smslink")
        self.context = tls_context(str(ca_file), Identity(cert=cert_file, key=key_file))
        self.config = {
            "wifi_ssid": "host",
            "wifi_password": "",
            "endpoint": "127.0.0.1",
            "port": port,
            "thing": thing,
            "topic_prefix": topic_prefix,
            "boot_message": boot_message,
            "shadow_interval_s": 300,
        }
        self.thing = thing
        self.root = root
        if not root.is_dir():
            root.mkdir(parents=True)
            for source in app_modules(BOARD_DIR):
                shutil.copyfile(source, root / source.name)
        self.observe = observe
        self.wlan = HostWlan()
        self.connections = 0
        self.boots = 0
        """Boots so far: 1, then one more per reset."""
        self._connected = threading.Event()
        self._halt = False

        def log_line(line: str) -> None:
            if line.startswith("mqtt: connected"):
                self.connections += 1
                self._connected.set()
            log(f"[{thing}] {line}")

        self.log = log_line
        self.device = self._boot()
        self._thread: threading.Thread | None = None

    def _reset(self) -> None:
        raise BoardReset()

    def _boot(self) -> Any:
        """A `smslink.Device` with the app on the flash, wired as `smsboot.build` wires it."""
        while True:
            self.boots += 1
            try:
                handle = self._app_handle()
                break
            except BoardReset:  # the new app failed to import: rolled back, boot again
                continue

        def handle_observed(message: dict[str, Any]) -> Any:
            if self.observe is not None:
                self.observe(message)
            return handle(message)

        device = self._smslink.Device(
            config=self.config,
            handle=handle_observed,
            mqtt=MQTTClient,
            wlan=self.wlan,
            clock=HostClock(),
            ntp=None,  # the host's clock is already right: no NTP
            ssl=self.context,
            wdt=None,  # no hardware watchdog on the host
            uid=self.thing.encode(),
            keepalive=30,
            poll_ms=5,
            log=self.log,
            reset=self._reset,
            root=f"{self.root}/",
        )
        device.job = b""  # as smsboot: ask AWS IoT Jobs for an update queued while away
        return device

    def _app_handle(self) -> Callable[[dict[str, Any]], Any]:
        """The app's handle, imported from the flash (`smstrial.boot` if an update is under
        way, as `smsboot.build` decides); `BoardReset` if that rolled back and reset."""
        root = f"{self.root}/"
        with _BOOT_LOCK:
            names = {"app"} | {p.stem for p in self.root.glob("*.py")}
            lent = {name: sys.modules.pop(name) for name in names if name in sys.modules}
            sys.path.insert(0, str(self.root))
            importlib.invalidate_caches()  # the flash changed under the same names
            # No __pycache__ on the flash: a restored file can have the mtime and size of
            # the one it replaced, and CPython would run the stale bytecode.
            writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
            try:
                if (self.root / self._smslink.JOURNAL).exists():
                    smstrial = _board_module("smstrial")
                    handle: Callable[[dict[str, Any]], Any] = smstrial.boot(
                        root, self._reset, self.log
                    )
                else:
                    handle = importlib.import_module("app").handle
            finally:
                sys.dont_write_bytecode = writes_bytecode
                sys.path.remove(str(self.root))
                for name in names:
                    sys.modules.pop(name, None)
                sys.modules.update(lent)
        return handle

    def _serve(self) -> None:
        # The board's life: run until stopped; a reset drops the session and boots again.
        while True:
            try:
                self.device.run()
                return
            except BoardReset:
                self.device.close()  # the board restarts: its TCP connection goes away
                if self._halt:
                    return
                self.device = self._boot()

    def start(self) -> HostDevice:
        """Boots the firmware's loop in a thread."""
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def wait_connected(self, timeout: float = 10.0) -> None:
        """Blocks until the firmware has connected and subscribed."""
        if not self._connected.wait(timeout):
            raise TimeoutError("the device did not connect to the local broker")

    def stop(self) -> None:
        """Stops the loop and disconnects cleanly (the broker keeps the session)."""
        self._halt = True
        self.device.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
