"""Who may text a device, and which texts are Twilio's consent keywords, not commands.

Pure logic, no I/O. A message that passes the signature check still reaches the device only
if its sender is on the device's allow-list (when it has one) and it is not a consent
keyword (STOP, START, HELP...), which Twilio answers itself and which the receive Lambda
records for the send side (contacts.py) instead of forwarding.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

SENDER_ADDRESS = re.compile(
    r"(?:whatsapp:|rcs:)?\+[1-9][0-9]{6,14}"  # E.164, or a channel address around it
    r"|messenger:[0-9]{1,32}"  # a Messenger page-scoped id
    r"|[0-9]{3,8}"  # a short code (digits only)
)
"""`From`/`To` of an incoming message: E.164, `whatsapp:+...`, `rcs:+...`, `messenger:...`
or a short code. No letters after the number, so a field whose name and value were re-split
(`From=+15551234567FromCountryUS`) cannot pass."""


class Consent(enum.Enum):
    """Twilio's consent signals: the three `OptOutType` values."""

    STOP = "STOP"
    START = "START"
    HELP = "HELP"


KEYWORDS: Mapping[str, Consent] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"),
        Consent.STOP,
    ),
    **dict.fromkeys(("START", "YES", "UNSTOP"), Consent.START),
    **dict.fromkeys(("HELP", "INFO"), Consent.HELP),
}
"""Twilio's default keywords on long codes: a body that is only one of them (any case,
surrounding spaces and end punctuation ignored) is handled by Twilio, not by the app."""


def is_sender_address(value: str) -> bool:
    """True if `value` is a number or channel address Twilio puts in `From`/`To`."""
    return SENDER_ADDRESS.fullmatch(value) is not None


def consent_signal(body: str, opt_out_type: str | None) -> Consent | None:
    """The consent signal a message carries: `OptOutType` (Advanced Opt-Out, custom
    keywords included) or, without it, a body that is one of Twilio's default keywords."""
    if opt_out_type:
        return Consent(opt_out_type)  # ValueError for a value Twilio does not send
    return KEYWORDS.get(body.strip().rstrip(".!").strip().upper())


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
