"""The send Lambda's settings, read from its environment (set by stacks/outbound_messaging.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import contract
from lambda_shared.config import SECRET_NAME_VARIABLE, missing_variables

REQUIRED = (
    SECRET_NAME_VARIABLE,
    "IDEMPOTENCY_TABLE",
    "DEAD_LETTER_QUEUE_URL",
    contract.BINDINGS_TABLE_VARIABLE,
)
DEFAULT_IDEMPOTENCY_SECONDS = 24 * 3600
"""Longer than the async event's maximum age (6 h), so every retry of an event finds it."""


@dataclass(frozen=True, kw_only=True)
class SendConfig:
    """The environment's rules for outbound messages and the AWS resources used."""

    destination_allow_list: frozenset[str] = frozenset()
    """If not empty, the only numbers a device may text."""
    status_callback_url: str | None = None
    secret_name: str = ""
    """The Twilio secret."""
    idempotency_table: str = ""
    """The DynamoDB table of sent messages and attempt markers."""
    dead_letter_queue_url: str = ""
    """Where a message Twilio refuses for good is put."""
    bindings_table: str = ""
    """The DynamoDB table of which number each thing sends from (`lambda_shared.bindings`)."""
    idempotency_seconds: int = DEFAULT_IDEMPOTENCY_SECONDS
    """How long a sent thing + Id is remembered: at least as long as a message can wait in
    the mailbox, whose redelivery brings the same reply Id back."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SendConfig:
        """Reads DESTINATION_ALLOW_LIST (comma-separated), STATUS_CALLBACK_URL (optional),
        TWILIO_SECRET_NAME, IDEMPOTENCY_TABLE, DEAD_LETTER_QUEUE_URL, BINDINGS_TABLE and
        IDEMPOTENCY_SECONDS (optional); ValueError names what is wrong."""
        missing = missing_variables(environ, REQUIRED)
        if missing:
            raise ValueError(f"environment variable(s) {', '.join(missing)} not set")
        allow = environ.get("DESTINATION_ALLOW_LIST", "")
        return cls(
            destination_allow_list=frozenset(n.strip() for n in allow.split(",") if n.strip()),
            status_callback_url=environ.get("STATUS_CALLBACK_URL") or None,
            secret_name=environ[SECRET_NAME_VARIABLE],
            idempotency_table=environ["IDEMPOTENCY_TABLE"],
            dead_letter_queue_url=environ["DEAD_LETTER_QUEUE_URL"],
            bindings_table=environ[contract.BINDINGS_TABLE_VARIABLE],
            idempotency_seconds=int(
                environ.get("IDEMPOTENCY_SECONDS") or DEFAULT_IDEMPOTENCY_SECONDS
            ),
        )
