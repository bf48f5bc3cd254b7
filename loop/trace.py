"""The hops of a message through the local loop, timed, printed as they happen."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def mask(number: str) -> str:
    """A phone number as the logs show it: country code and last two digits."""
    return number[:2] + "•" * max(0, len(number) - 4) + number[-2:] if number else number


@dataclass
class Hop:
    """One step of a message through the loop, with its time since the loop's clock start."""

    at: float
    where: str
    what: str


@dataclass
class Trace:
    """Hops recorded by the loop, printed as they happen when `echo` is set."""

    echo: Callable[[str], None] | None = None
    hops: list[Hop] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def restart(self) -> None:
        """Forgets the hops and restarts the clock (a new text)."""
        with self._lock:
            self.started = time.monotonic()
            self.hops.clear()

    def add(self, where: str, what: str) -> None:
        """Records one hop, stamped with the time since the clock's start."""
        with self._lock:
            hop = Hop(time.monotonic() - self.started, where, what)
            self.hops.append(hop)
        if self.echo is not None:
            self.echo(f"{hop.at * 1000:8.1f} ms  {where:<22} {what}")
