"""The status-callback Lambda's settings, read from its environment (stacks/status_callback.py)."""

from __future__ import annotations

from lambda_shared.config import TwilioSecretConfig


class StatusConfig(TwilioSecretConfig):
    """The Twilio secret whose auth token verifies each callback's signature."""
