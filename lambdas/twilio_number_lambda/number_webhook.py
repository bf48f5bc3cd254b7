"""Point a Twilio number's messaging webhook at the stack, and put back what was there.

Used by the custom resource (`handler`) on deploy: `configure` records the number's
current SMS URLs and sets the webhook (and fallback) URL; `restore` puts the recorded URLs
back when the resource is deleted. What was there is kept in the resource's physical ID,
the only state CloudFormation hands back on delete.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

import contract

ID_PREFIX = "twilio-number"
# CloudFormation's limit for a physical resource ID is 1 KB.
MAX_PHYSICAL_ID = 1024
NUMBER_SID = re.compile(r"^PN[0-9a-fA-F]{32}$")


class NumberWebhookError(ValueError):
    """The number cannot be configured (not in the account, bad settings, ...)."""


@dataclass(frozen=True)
class SmsWebhook:
    """A number's messaging webhook settings (Twilio's SmsUrl and friends)."""

    sms_url: str = ""
    sms_method: str = "POST"
    sms_fallback_url: str = ""
    sms_fallback_method: str = "POST"

    @classmethod
    def of(cls, number: Any) -> SmsWebhook:
        """Read from a twilio IncomingPhoneNumberInstance."""
        return cls(
            sms_url=number.sms_url or "",
            sms_method=number.sms_method or "POST",
            sms_fallback_url=number.sms_fallback_url or "",
            sms_fallback_method=number.sms_fallback_method or "POST",
        )


@dataclass(frozen=True)
class Desired:
    """What the stack wants: ResourceProperties of the custom resource."""

    phone_number: str
    sms_url: str
    sms_fallback_url: str = ""

    @classmethod
    def from_properties(cls, properties: dict[str, Any]) -> Desired:
        """Validates the custom resource's properties."""
        number = properties.get("PhoneNumber")
        url = properties.get("SmsUrl")
        fallback = properties.get("SmsFallbackUrl") or ""
        if not contract.is_e164(number):
            raise NumberWebhookError("PhoneNumber must be an E.164 number")
        if not isinstance(url, str) or not url.startswith("https://"):
            raise NumberWebhookError("SmsUrl must be an https:// URL")
        if not isinstance(fallback, str) or (fallback and not fallback.startswith("https://")):
            raise NumberWebhookError("SmsFallbackUrl must be an https:// URL")
        return cls(phone_number=number, sms_url=url, sms_fallback_url=fallback)


def physical_id(number_sid: str, previous: SmsWebhook) -> str:
    """`twilio-number:{PN sid}:{previous settings, base64url JSON}`."""
    blob = base64.urlsafe_b64encode(json.dumps(asdict(previous)).encode()).decode()
    value = f"{ID_PREFIX}:{number_sid}:{blob}"
    if len(value) > MAX_PHYSICAL_ID:
        raise NumberWebhookError(
            "the number's current SMS URLs are too long to remember for restoring on delete; "
            "shorten or clear them in the Twilio console first"
        )
    return value


def parse_physical_id(value: str) -> tuple[str, SmsWebhook] | None:
    """(number SID, previous settings), or None for an ID this code did not make
    (e.g. a create that failed before configuring anything)."""
    parts = value.split(":", 2)
    if len(parts) != 3 or parts[0] != ID_PREFIX or not NUMBER_SID.match(parts[1]):
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(parts[2].encode()))
        return parts[1], SmsWebhook(**fields)
    except (ValueError, TypeError):
        return None


def find_number(client: Any, phone_number: str) -> Any:
    """The account's IncomingPhoneNumber for `phone_number` (NumberWebhookError if none)."""
    found = client.incoming_phone_numbers.list(phone_number=phone_number, limit=2)
    if not found:
        raise NumberWebhookError("the number is not in this Twilio account")
    return found[0]


def apply(client: Any, number_sid: str, webhook: SmsWebhook) -> SmsWebhook:
    """Sets the number's messaging webhook; returns what Twilio now has."""
    updated = client.incoming_phone_numbers(number_sid).update(
        sms_url=webhook.sms_url,
        sms_method=webhook.sms_method,
        sms_fallback_url=webhook.sms_fallback_url,
        sms_fallback_method=webhook.sms_fallback_method,
    )
    return SmsWebhook.of(updated)


def configure(client: Any, desired: Desired) -> str:
    """Create: remember the number's current webhook, set ours; returns the physical ID."""
    number = find_number(client, desired.phone_number)
    previous = SmsWebhook.of(number)
    resource_id = physical_id(number.sid, previous)  # fails before changing anything
    apply(client, number.sid, SmsWebhook(desired.sms_url, "POST", desired.sms_fallback_url))
    return resource_id


def reconfigure(client: Any, resource_id: str, old: Desired | None, desired: Desired) -> str:
    """Update: the same number keeps its remembered settings; another number is a new
    configuration (CloudFormation then deletes the old resource, which restores it)."""
    parsed = parse_physical_id(resource_id)
    if parsed is None or old is None or old.phone_number != desired.phone_number:
        return configure(client, desired)
    number_sid, _ = parsed
    apply(client, number_sid, SmsWebhook(desired.sms_url, "POST", desired.sms_fallback_url))
    return resource_id


def restore(client: Any, resource_id: str, desired: Desired | None) -> str:
    """Delete: put the remembered webhook back, unless someone has changed it since.

    Returns what was done, for the log: "restored", "changed-since" or "nothing".
    """
    parsed = parse_physical_id(resource_id)
    if parsed is None:
        return "nothing"
    number_sid, previous = parsed
    current = SmsWebhook.of(client.incoming_phone_numbers(number_sid).fetch())
    if desired is not None and current.sms_url != desired.sms_url:
        return "changed-since"
    apply(client, number_sid, previous)
    return "restored"
