"""What a Lambda may log about a message: masked phone numbers, never a body.

Every Lambda logs with a Powertools `Logger(service=SERVICE)`, SERVICE being named once in
its package's `__init__.py`, and JSON lines carry the request ids Powertools adds.
"""

from __future__ import annotations


def mask_number(value: str) -> str:
    """A phone number fit for logs: `+15551234567` -> `+15*******67`."""
    if len(value) <= 6:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 5) + value[-2:]
