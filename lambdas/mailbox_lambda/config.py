"""The mailbox Lambdas' settings, read from their environment (set by stacks/mailbox.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lambda_shared.config import missing_variables

REQUIRED = ("MAILBOX_TABLE", "MAILBOX_RETENTION_SECONDS", "ENVIRONMENT_NAME")


@dataclass(frozen=True, kw_only=True)
class MailboxConfig:
    """The mailbox table, how long a message may wait, and what an expiry does."""

    table: str
    retention_seconds: int
    environment: str
    """The environment's name: the dimension of the mailbox's metrics."""
    send_function: str | None = None
    """The send Lambda, when the sender is told that their message expired (else counted)."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> MailboxConfig:
        """Reads MAILBOX_TABLE, MAILBOX_RETENTION_SECONDS, ENVIRONMENT_NAME and, when the
        sender is told of an expiry, SEND_FUNCTION_NAME; ValueError names what is wrong."""
        missing = missing_variables(environ, REQUIRED)
        if missing:
            raise ValueError(f"environment variable(s) {', '.join(missing)} not set")
        retention = int(environ["MAILBOX_RETENTION_SECONDS"])
        if retention < 1:
            raise ValueError("MAILBOX_RETENTION_SECONDS must be positive")
        return cls(
            table=environ["MAILBOX_TABLE"],
            retention_seconds=retention,
            environment=environ["ENVIRONMENT_NAME"],
            send_function=environ.get("SEND_FUNCTION_NAME") or None,
        )
