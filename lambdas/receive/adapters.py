"""The receive Lambda's AWS side: the cached Twilio auth token and the once-only publish."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from mailbox_record import MailboxRecorder
from webhook import ConfigurationError, Publish, encode_message

SECRET_MAX_AGE_SECONDS = 300
"""How long a warm container trusts its cached token before reading the secret again."""
MIN_REFRESH_INTERVAL_SECONDS = 30.0
"""A failed signature forces a fresh read at most this often (forged requests are cheap)."""
IDEMPOTENCY_SECONDS = 24 * 3600
"""A MessageSid delivered again within this time is not published again."""


class SecretTokenSource:
    """Twilio's auth token from the Secrets Manager secret `{"account_sid", "auth_token"}`."""

    def __init__(
        self,
        provider: SecretsProvider,
        secret_name: str,
        *,
        max_age: int = SECRET_MAX_AGE_SECONDS,
        min_refresh_interval: float = MIN_REFRESH_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._provider = provider
        self._name = secret_name
        self._max_age = max_age
        self._min_refresh_interval = min_refresh_interval
        self._clock = clock
        self._last_refresh: float | None = None

    def _fetch(self, *, force: bool) -> str:
        value = self._provider.get(
            self._name, max_age=self._max_age, transform="json", force_fetch=force
        )
        token = value.get("auth_token") if isinstance(value, dict) else None
        if not isinstance(token, str) or not token:
            example = json.dumps({"account_sid": "ACxxxxxxxx", "auth_token": "your-auth-token"})
            raise ConfigurationError(
                f"The Twilio auth token in secret {self._name} is empty, so no webhook can be "
                "verified. Put the credentials once per environment: aws secretsmanager "
                f"put-secret-value --secret-id {self._name} --secret-string '{example}'"
            )
        return token

    def current(self) -> str:
        """The cached token (read again after `max_age` seconds)."""
        return self._fetch(force=False)

    def refreshed(self) -> str | None:
        """A fresh read of the secret, or None if one was made less than the interval ago."""
        now = self._clock()
        if self._last_refresh is not None and now - self._last_refresh < self._min_refresh_interval:
            return None
        self._last_refresh = now
        return self._fetch(force=True)


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

    def _publish(self, *, topic: str, message: dict[str, Any]) -> dict[str, Any]:
        payload = encode_message(message)
        # First durably, so a device that misses the publish still gets it later.
        thing = topic.split("/")[1]
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
            result = self._publish_once(topic=decision.topic, message=decision.message)
        except IdempotencyAlreadyInProgressError:
            return False
        return bool(result.get("published")) if isinstance(result, dict) else False
