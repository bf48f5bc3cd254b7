"""The receive Lambda's I/O: the cached Twilio auth token and the once-only publish."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer

import contract
from lambda_shared.twilio_credentials import TwilioCredentials, read_twilio_credentials
from receive_lambda.decision import Publish
from receive_lambda.mailbox_record import MailboxRecorder

MIN_REFRESH_INTERVAL_SECONDS = 30.0
"""A failed signature forces a fresh read at most this often (forged requests are cheap)."""
IDEMPOTENCY_SECONDS = 24 * 3600
"""A MessageSid delivered again within this time is not published again."""


class CredentialsReader(Protocol):
    """How the Twilio secret is read (`lambda_shared.twilio_credentials`)."""

    def __call__(self, secret_name: str, *, force: bool) -> TwilioCredentials:
        """The secret's credentials, fresh if `force`d."""
        ...


class SecretTokenSource:
    """Twilio's auth token, from the environment's secret (cached by Powertools)."""

    def __init__(
        self,
        secret_name: str,
        *,
        read: CredentialsReader = read_twilio_credentials,
        min_refresh_interval: float = MIN_REFRESH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = secret_name
        self._read = read
        self._min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._last_refresh: float | None = None

    def current(self) -> str:
        """The cached token (read again after the cache's maximum age)."""
        return self._read(self._name, force=False).auth_token

    def refreshed(self) -> str | None:
        """A fresh read of the secret, or None if one was made less than the interval ago."""
        now = self._clock()
        if self._last_refresh is not None and now - self._last_refresh < self._min_refresh_interval:
            return None
        self._last_refresh = now
        return self._read(self._name, force=True).auth_token


class InboundPublisher:
    """Records a `Publish` decision in the device's mailbox, then publishes it with QoS 1,
    at most once per MessageSid (DynamoDB)."""

    def __init__(
        self,
        iot_data: Any,
        persistence: BasePersistenceLayer,
        *,
        mailbox: MailboxRecorder,
        expires_after_seconds: int = IDEMPOTENCY_SECONDS,
    ) -> None:
        self._iot_data = iot_data
        self._mailbox = mailbox
        self._config = IdempotencyConfig(
            event_key_jmespath="Id",
            raise_on_no_idempotency_key=True,
            expires_after_seconds=expires_after_seconds,
            # Called only when the stored result is returned, i.e. for a repeated delivery.
            response_hook=lambda response, _record: {**response, "published": False},
        )
        self._publish_once = idempotent_function(
            data_keyword_argument="message",
            persistence_store=persistence,
            config=self._config,
            key_prefix="inbound",
        )(self._publish)

    def _publish(self, *, thing: str, topic: str, message: dict[str, Any]) -> dict[str, Any]:
        payload = contract.encode_message(message)
        # First durably, so a device that misses the publish still gets it later.
        self._mailbox.record(thing=thing, message_id=message["Id"], topic=topic, payload=payload)
        self._iot_data.publish(topic=topic, qos=1, payload=payload)
        return {"published": True}

    def publish(self, decision: Publish, lambda_context: Any) -> bool:
        """True if published now; False if this MessageSid was (or is being) published.

        A failed publish raises and leaves no record, so Twilio's fallback or a retry can
        still deliver the message: at most once, never silently dropped.
        """
        self._config.register_lambda_context(lambda_context)
        try:
            result = self._publish_once(
                thing=decision.thing, topic=decision.topic, message=decision.message
            )
        except IdempotencyAlreadyInProgressError:
            return False
        return bool(result.get("published")) if isinstance(result, dict) else False
