"""Reading a Lambda's settings from its environment: what every function's config shares."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Self

SECRET_NAME_VARIABLE = "TWILIO_SECRET_NAME"  # noqa: S105 (a variable name, not a secret)
"""The environment variable naming the Twilio secret (set by the stack on every function)."""


def missing_variables(environ: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    """The variables of `names` that are unset or empty."""
    return [name for name in names if not environ.get(name)]


@dataclass(frozen=True, kw_only=True)
class TwilioSecretConfig:
    """The settings of a function that needs only the Twilio secret."""

    secret_name: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Self:
        """Reads TWILIO_SECRET_NAME; ValueError when it is not set."""
        if missing_variables(environ, (SECRET_NAME_VARIABLE,)):
            raise ValueError(f"environment variable {SECRET_NAME_VARIABLE} not set")
        return cls(secret_name=environ[SECRET_NAME_VARIABLE])
