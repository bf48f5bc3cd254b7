"""Whom a device may text, and how much: the outbound policy as pure logic (no I/O).

Safe by default. A device may text a number only when all of these hold:

- the number is not bound to a device of the fleet (two devices answering each other would
  text forever);
- it starts with one of the allowed prefixes, when the environment lists any;
- it has not opted out (Twilio's STOP) of this device's messages;
- it texted this device within the reply window, or it is on the environment's or the
  device's allow-list;

and only while the device stays under its per-minute and per-day caps. The contact state
(`last_inbound_at`, `opted_out`) comes from the Contacts table, written by the receive
Lambda; the caps are counters in the same table (contacts_store.py does that I/O). The settings are
read from the environment by config.py; whether a number belongs to the fleet is asked of a
lookup (`is_fleet_number`), so the fleet's size never reaches the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import contract

# A counter item outlives its day by this much, so a late retry still reads its count;
# DynamoDB's TTL then deletes it (within days: the key names its day, so an expired
# counter is never read for a later day).
COUNTER_TTL_MARGIN_SECONDS = 3600
DAY_SECONDS = 86_400

FleetLookup = Callable[[str], bool]
"""`is_fleet_number(number)`: True when `number` is bound to a device of the environment."""


class Refusal(StrEnum):
    """Why the policy refused a message: one metric property and one log line each."""

    FLEET_NUMBER = "fleet-number"
    PREFIX_NOT_ALLOWED = "prefix-not-allowed"
    OPTED_OUT = "opted-out"
    NOT_A_RECENT_CONTACT = "not-a-recent-contact"
    PER_MINUTE_CAP = "per-minute-cap"
    PER_DAY_CAP = "per-day-cap"

    @property
    def expected(self) -> bool:
        """True for the outcome a person chose (STOP): logged and counted, not alarmed."""
        return self is Refusal.OPTED_OUT


class Refused(Exception):
    """The policy refused the message: never sent, never retried."""

    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, kw_only=True)
class Contact:
    """What the Contacts table knows about one number, for one device."""

    last_inbound_at: int | None = None
    """When the number last texted the device (epoch seconds), if ever."""
    opted_out: bool = False


@dataclass(frozen=True, kw_only=True)
class SendCounter:
    """Where a device's sends are counted: one table item per device and UTC day, holding
    the day's count and one count per minute, so one conditional write checks both caps.

    The item grows by one small attribute per minute the device sent in (about 8 bytes):
    with the default day cap of 200 it stays under 2 KB (2 write units at most).
    """

    key: str
    minute_attribute: str
    per_minute: int
    per_day: int
    expires_at: int

    def refusal(self, counts: Mapping[str, int]) -> Refusal:
        """Which cap refused a send, given the item's counts when it was refused."""
        if counts.get(contract.SEND_COUNTER_DAY_ATTRIBUTE, 0) >= self.per_day:
            return Refusal.PER_DAY_CAP
        return Refusal.PER_MINUTE_CAP


@dataclass(frozen=True, kw_only=True)
class OutboundPolicy:
    """The environment's outbound rules (read from the send Lambda's variables by
    config.py)."""

    reply_window_seconds: int = contract.DEFAULT_REPLY_WINDOW_DAYS * DAY_SECONDS
    allow_list: frozenset[str] = frozenset()
    """Numbers every device may text without having been texted first."""
    allow_list_by_thing: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Per device, numbers it may text without having been texted first."""
    allowed_prefixes: tuple[str, ...] = ()
    """If not empty, every destination must start with one of these (`+1`, `+44`...)."""
    per_minute: int = contract.DEFAULT_SEND_LIMIT_PER_MINUTE
    per_day: int = contract.DEFAULT_SEND_LIMIT_PER_DAY

    def allow_listed(self, thing: str, to: str) -> bool:
        """True when `to` is on the environment's or `thing`'s allow-list."""
        return to in self.allow_list or to in self.allow_list_by_thing.get(thing, frozenset())

    def check(
        self,
        *,
        thing: str,
        to: str,
        contact: Contact,
        now: float,
        is_fleet_number: FleetLookup,
    ) -> None:
        """Raises Refused unless `thing` may text `to` at `now` (the caps are apart:
        they are counted, see counter())."""
        if is_fleet_number(to):
            raise Refused(Refusal.FLEET_NUMBER, "To is bound to a device of this fleet")
        if self.allowed_prefixes and not to.startswith(self.allowed_prefixes):
            raise Refused(Refusal.PREFIX_NOT_ALLOWED, "To is outside the allowed prefixes")
        if contact.opted_out:
            raise Refused(Refusal.OPTED_OUT, "the recipient opted out (STOP)")
        if self.allow_listed(thing, to):
            return
        last = contact.last_inbound_at
        if last is None or now - last > self.reply_window_seconds:
            days = self.reply_window_seconds / DAY_SECONDS
            raise Refused(
                Refusal.NOT_A_RECENT_CONTACT,
                f"To has not texted this device within {days:g} days and is not allow-listed",
            )

    def counter(self, thing: str, now: float) -> SendCounter:
        """Where a send by `thing` at `now` is counted, and the caps it must fit in."""
        day_end = int(now) // DAY_SECONDS * DAY_SECONDS + DAY_SECONDS
        return SendCounter(
            key=contract.send_counter_key(thing, now),
            minute_attribute=f"m{datetime.fromtimestamp(now, UTC):%H%M}",
            per_minute=self.per_minute,
            per_day=self.per_day,
            expires_at=day_end + COUNTER_TTL_MARGIN_SECONDS,
        )
