"""How the receive Lambda refuses a request: API Gateway maps the message prefixes.

`Forbidden: ...` -> 403 and `BadRequest: ...` -> 400 (see stacks/webhook_api.py); any other
error is a 500, so Twilio tries the fallback URL and the 5xx alarm fires.
"""

from __future__ import annotations


class WebhookError(Exception):
    """A request that must not be processed; `str()` starts with the API Gateway prefix."""

    prefix = "Error"

    def __init__(self, reason: str) -> None:
        super().__init__(f"{self.prefix}: {reason}")
        self.reason = reason


class Forbidden(WebhookError):
    """Missing or wrong signature: API Gateway answers 403."""

    prefix = "Forbidden"


class BadRequest(WebhookError):
    """Malformed event, form body or field: API Gateway answers 400."""

    prefix = "BadRequest"


class ConfigurationError(Exception):
    """The deployment is wrong (a setting); not the caller's fault: answered 5xx."""
