"""The custom resource's settings, read from its environment (stacks/twilio_number.py)."""

from __future__ import annotations

from lambda_shared.config import TwilioSecretConfig


class NumberConfig(TwilioSecretConfig):
    """The Twilio secret whose credentials configure the numbers."""
