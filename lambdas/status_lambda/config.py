"""The status-callback Lambda's settings, read from its environment (stacks/status_callback.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class StatusConfig:
    """The Twilio secret whose auth token verifies each callback's signature."""

    secret_name: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> StatusConfig:
        """Reads TWILIO_SECRET_NAME; ValueError when it is not set."""
        name = environ.get("TWILIO_SECRET_NAME")
        if not name:
            raise ValueError("environment variable TWILIO_SECRET_NAME not set")
        return cls(secret_name=name)
