"""The receive Lambda's settings, read from its environment (set by stacks/webhook_api.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import contract
from lambda_shared.config import SECRET_NAME_VARIABLE, missing_variables
from receive_lambda.errors import ConfigurationError

REQUIRED = (SECRET_NAME_VARIABLE, "IDEMPOTENCY_TABLE", contract.BINDINGS_TABLE_VARIABLE)


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

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ReceiveConfig:
        """Reads TOPIC_PREFIX, BODY_LIMIT, EXTRA_FIELDS, TWILIO_SECRET_NAME, IDEMPOTENCY_TABLE
        and BINDINGS_TABLE; ConfigurationError names what is wrong."""
        try:
            limit = int(environ.get("BODY_LIMIT", str(contract.DEFAULT_BODY_LIMIT)))
        except ValueError as error:
            raise ConfigurationError("BODY_LIMIT is malformed") from error
        missing = missing_variables(environ, REQUIRED)
        if missing:
            raise ConfigurationError(f"environment variable(s) {', '.join(missing)} not set")
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
        )
