"""Who may text a device, and which texts are Twilio's consent keywords, not commands.

Pure logic, no I/O. A message that passes the signature check still reaches the device only
if its sender is on the device's allow-list (when it has one) and it is not a consent
keyword (STOP, START, HELP...), which Twilio answers itself and which the receive Lambda
records for the send side (`contacts`) instead of forwarding.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import contract


class Consent(enum.Enum):
    """Twilio's consent signals: the values of `OptOutType` (`contract.OPT_OUT_TYPES`)."""

    STOP = "STOP"
    START = "START"
    HELP = "HELP"


def consent_signal(body: str, opt_out_type: str | None) -> Consent | None:
    """The consent signal a message carries: `OptOutType` (Advanced Opt-Out, custom
    keywords included) or, without it, a body that is one of Twilio's default keywords."""
    if opt_out_type:
        return Consent(opt_out_type)  # ValueError for a value Twilio does not send
    keyword = contract.CONSENT_KEYWORDS.get(body.strip().rstrip(".!").strip().upper())
    return Consent(keyword) if keyword is not None else None


@dataclass(frozen=True)
class SenderPolicy:
    """Per device, the only senders whose messages are forwarded; a device that is not
    listed accepts anyone."""

    allowed_by_thing: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def allows(self, thing: str, sender: str) -> bool:
        """True if `sender` may text `thing`."""
        allowed = self.allowed_by_thing.get(thing)
        return allowed is None or sender in allowed

    @classmethod
    def from_json(cls, text: str) -> SenderPolicy:
        """From `{"thing": ["+1555...", ...]}` (ValueError when malformed)."""
        raw = json.loads(text or "{}")
        if not isinstance(raw, dict) or not all(
            isinstance(senders, list) and all(isinstance(s, str) for s in senders)
            for senders in raw.values()
        ):
            raise ValueError("expected an object of thing -> list of sender addresses")
        return cls({str(thing): frozenset(senders) for thing, senders in raw.items()})
