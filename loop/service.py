"""What `with` means for the local loop's stand-ins: start on entry, stop on exit."""

from __future__ import annotations

import abc
from typing import Self


class Service(abc.ABC):
    """A stand-in started by `start()` and stopped by `stop()`; `with` does both."""

    @abc.abstractmethod
    def start(self) -> Self:
        """Starts serving; returns the running service."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stops serving and frees what `start` took."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
