"""The receive Lambda's settings, read from its environment (set by stacks/webhook_api.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import contract
from lambda_shared.config import SECRET_NAME_VARIABLE, missing_variables
from receive_lambda.errors import ConfigurationError

REQUIRED = (
    SECRET_NAME_VARIABLE,
    "IDEMPOTENCY_TABLE",
    contract.BINDINGS_TABLE_VARIABLE,
    "MAILBOX_TABLE",
    "MAILBOX_RETENTION_SECONDS",
)


@dataclass(frozen=True, kw_only=True)
class ReceiveConfig:
    """Where messages go, what is forwarded, and the AWS resources used."""

    topic_prefix: str = contract.DEFAULT_TOPIC_PREFIX
    body_limit: int = contract.DEFAULT_BODY_LIMIT
    extra_fields: tuple[str, ...] = ()
    secret_name: str = ""
    """The Twilio secret (its auth token verifies signatures)."""
    idempotency_table: str = ""
    """The DynamoDB table that makes publishing once-only."""
    bindings_table: str = ""
    """The DynamoDB table of which device answers which number (`lambda_shared.bindings`)."""
    mailbox_table: str = ""
    """The DynamoDB table where each message waits until its device confirms it."""
    mailbox_retention_seconds: int = contract.DEFAULT_MAILBOX_RETENTION_DAYS * 86400
    """How long a message waits for its device (its TTL adds the contract's grace)."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ReceiveConfig:
        """Reads TOPIC_PREFIX, BODY_LIMIT, EXTRA_FIELDS, TWILIO_SECRET_NAME, IDEMPOTENCY_TABLE,
        BINDINGS_TABLE, MAILBOX_TABLE and MAILBOX_RETENTION_SECONDS; ConfigurationError names
        what is wrong."""
        missing = missing_variables(environ, REQUIRED)
        if missing:
            raise ConfigurationError(f"environment variable(s) {', '.join(missing)} not set")
        try:
            limit = int(environ.get("BODY_LIMIT", str(contract.DEFAULT_BODY_LIMIT)))
            retention = int(environ["MAILBOX_RETENTION_SECONDS"])
        except ValueError as error:
            raise ConfigurationError(
                "BODY_LIMIT or MAILBOX_RETENTION_SECONDS is malformed"
            ) from error
        extra = tuple(f for f in environ.get("EXTRA_FIELDS", "").split(",") if f)
        unknown = sorted(set(extra) - set(contract.FORWARDABLE_FIELDS))
        if unknown or limit < 1:
            raise ConfigurationError(f"bad receive settings (unknown extra fields: {unknown})")
        return cls(
            topic_prefix=environ.get("TOPIC_PREFIX", contract.DEFAULT_TOPIC_PREFIX),
            body_limit=limit,
            extra_fields=extra,
            secret_name=environ[SECRET_NAME_VARIABLE],
            idempotency_table=environ["IDEMPOTENCY_TABLE"],
            bindings_table=environ[contract.BINDINGS_TABLE_VARIABLE],
            mailbox_table=environ["MAILBOX_TABLE"],
            mailbox_retention_seconds=retention,
        )
