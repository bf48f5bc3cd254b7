"""The send Lambda's settings, read from its environment (set by stacks/outbound_messaging.py
and stacks/outbound_policy.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import contract
from lambda_shared.config import SECRET_NAME_VARIABLE, missing_variables
from send_lambda.outbound_policy import DAY_SECONDS, OutboundPolicy

REQUIRED = (
    SECRET_NAME_VARIABLE,
    "IDEMPOTENCY_TABLE",
    "DEAD_LETTER_QUEUE_URL",
    contract.BINDINGS_TABLE_VARIABLE,
    contract.CONTACTS_TABLE_VARIABLE,
    "REFUSED_QUEUE_URL",
)
DEFAULT_IDEMPOTENCY_SECONDS = contract.DEFAULT_SEND_IDEMPOTENCY_SECONDS

# The stack always sets POWERTOOLS_METRICS_NAMESPACE (contract.metrics_namespace).
DEFAULT_METRICS_NAMESPACE = "TextDevice"


@dataclass(frozen=True, kw_only=True)
class SendConfig:
    """The environment's rules for outbound messages and the AWS resources used."""

    policy: OutboundPolicy = field(default_factory=OutboundPolicy)
    """Whom a device may text, and how much."""
    status_callback_url: str | None = None
    secret_name: str = ""
    """The Twilio secret."""
    idempotency_table: str = ""
    """The DynamoDB table of sent messages and attempt markers."""
    dead_letter_queue_url: str = ""
    """Where a message Twilio refuses for good is put."""
    bindings_table: str = ""
    """The DynamoDB table of which number each thing sends from (`lambda_shared.bindings`)."""
    contacts_table: str = ""
    """The Contacts table: contacts (reply window, opt-outs) and the send counters."""
    refused_queue_url: str = ""
    """Where a message the outbound policy refuses is put, with its reason."""
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    """The CloudWatch namespace of the refusal metrics."""
    idempotency_seconds: int = DEFAULT_IDEMPOTENCY_SECONDS
    """How long a sent thing + Id is remembered: at least as long as a message can wait in
    the mailbox, whose redelivery brings the same reply Id back."""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> SendConfig:
        """Reads STATUS_CALLBACK_URL (optional), TWILIO_SECRET_NAME, IDEMPOTENCY_TABLE,
        DEAD_LETTER_QUEUE_URL, BINDINGS_TABLE, CONTACTS_TABLE, REFUSED_QUEUE_URL,
        POWERTOOLS_METRICS_NAMESPACE, IDEMPOTENCY_SECONDS (optional) and the outbound
        policy's variables (see policy_from_environ); ValueError names what is wrong."""
        missing = missing_variables(environ, REQUIRED)
        if missing:
            raise ValueError(f"environment variable(s) {', '.join(missing)} not set")
        return cls(
            policy=policy_from_environ(environ),
            status_callback_url=environ.get("STATUS_CALLBACK_URL") or None,
            secret_name=environ[SECRET_NAME_VARIABLE],
            idempotency_table=environ["IDEMPOTENCY_TABLE"],
            dead_letter_queue_url=environ["DEAD_LETTER_QUEUE_URL"],
            bindings_table=environ[contract.BINDINGS_TABLE_VARIABLE],
            contacts_table=environ[contract.CONTACTS_TABLE_VARIABLE],
            refused_queue_url=environ["REFUSED_QUEUE_URL"],
            metrics_namespace=environ.get("POWERTOOLS_METRICS_NAMESPACE")
            or DEFAULT_METRICS_NAMESPACE,
            idempotency_seconds=int(
                environ.get("IDEMPOTENCY_SECONDS") or DEFAULT_IDEMPOTENCY_SECONDS
            ),
        )


def _numbers(text: str) -> frozenset[str]:
    return frozenset(n.strip() for n in text.split(",") if n.strip())


def policy_from_environ(environ: Mapping[str, str]) -> OutboundPolicy:
    """Reads REPLY_WINDOW_SECONDS, DESTINATION_ALLOW_LIST (comma-separated),
    DESTINATION_ALLOW_LIST_BY_THING (JSON: thing -> list), DESTINATION_PREFIXES
    (comma-separated), SEND_LIMIT_PER_MINUTE and SEND_LIMIT_PER_DAY; a variable left out
    keeps its safe default."""
    by_thing = json.loads(environ.get("DESTINATION_ALLOW_LIST_BY_THING") or "{}")
    if not isinstance(by_thing, dict) or not all(isinstance(v, list) for v in by_thing.values()):
        raise ValueError("DESTINATION_ALLOW_LIST_BY_THING must map things to lists")
    window = environ.get("REPLY_WINDOW_SECONDS")
    per_minute = environ.get("SEND_LIMIT_PER_MINUTE")
    per_day = environ.get("SEND_LIMIT_PER_DAY")
    return OutboundPolicy(
        reply_window_seconds=int(window)
        if window
        else contract.DEFAULT_REPLY_WINDOW_DAYS * DAY_SECONDS,
        allow_list=_numbers(environ.get("DESTINATION_ALLOW_LIST", "")),
        allow_list_by_thing={
            str(thing): frozenset(str(n) for n in numbers) for thing, numbers in by_thing.items()
        },
        allowed_prefixes=tuple(sorted(_numbers(environ.get("DESTINATION_PREFIXES", "")))),
        per_minute=int(per_minute) if per_minute else contract.DEFAULT_SEND_LIMIT_PER_MINUTE,
        per_day=int(per_day) if per_day else contract.DEFAULT_SEND_LIMIT_PER_DAY,
    )
