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
Lambda; the caps are counters in the same table (contacts_store.py does that I/O).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

DEFAULT_REPLY_WINDOW_DAYS = 30
DEFAULT_PER_MINUTE = 10
DEFAULT_PER_DAY = 200
# A counter item outlives its day by this much, so a late retry still reads its count;
# DynamoDB's TTL then deletes it (within days: the key names its day, so an expired
# counter is never read for a later day).
COUNTER_TTL_MARGIN_SECONDS = 3600
DAY_ATTRIBUTE = "day"
DAY_SECONDS = 86_400


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
        if counts.get(DAY_ATTRIBUTE, 0) >= self.per_day:
            return Refusal.PER_DAY_CAP
        return Refusal.PER_MINUTE_CAP


def contact_key(thing: str, number: str) -> str:
    """The Contacts table's key of `number` for `thing` (numbers start with `+`)."""
    return f"{thing}#{number}"


def counter_key(thing: str, now: float) -> str:
    """The key of `thing`'s counter item for the UTC day of `now`.

    `#sent#` never occurs in a contact key (an E.164 number follows the first `#` there).
    """
    return f"{thing}#sent#{datetime.fromtimestamp(now, UTC):%Y%m%d}"


def _numbers(text: str) -> frozenset[str]:
    return frozenset(n.strip() for n in text.split(",") if n.strip())


@dataclass(frozen=True, kw_only=True)
class OutboundPolicy:
    """The environment's outbound rules (from the send Lambda's variables)."""

    fleet_numbers: frozenset[str]
    """Every number bound to a device of the environment."""
    reply_window_seconds: int = DEFAULT_REPLY_WINDOW_DAYS * DAY_SECONDS
    allow_list: frozenset[str] = frozenset()
    """Numbers every device may text without having been texted first."""
    allow_list_by_thing: Mapping[str, frozenset[str]] = field(default_factory=dict)
    """Per device, numbers it may text without having been texted first."""
    allowed_prefixes: tuple[str, ...] = ()
    """If not empty, every destination must start with one of these (`+1`, `+44`...)."""
    per_minute: int = DEFAULT_PER_MINUTE
    per_day: int = DEFAULT_PER_DAY

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str], *, fleet_numbers: Iterable[str]
    ) -> OutboundPolicy:
        """Reads REPLY_WINDOW_SECONDS, DESTINATION_ALLOW_LIST (comma-separated),
        DESTINATION_ALLOW_LIST_BY_THING (JSON: thing -> list), DESTINATION_PREFIXES
        (comma-separated), SEND_LIMIT_PER_MINUTE and SEND_LIMIT_PER_DAY; a variable left
        out keeps its safe default."""
        by_thing = json.loads(environ.get("DESTINATION_ALLOW_LIST_BY_THING") or "{}")
        if not isinstance(by_thing, dict) or not all(
            isinstance(v, list) for v in by_thing.values()
        ):
            raise ValueError("DESTINATION_ALLOW_LIST_BY_THING must map things to lists")
        return cls(
            fleet_numbers=frozenset(fleet_numbers),
            reply_window_seconds=int(
                environ.get("REPLY_WINDOW_SECONDS") or DEFAULT_REPLY_WINDOW_DAYS * DAY_SECONDS
            ),
            allow_list=_numbers(environ.get("DESTINATION_ALLOW_LIST", "")),
            allow_list_by_thing={
                str(thing): frozenset(str(n) for n in numbers)
                for thing, numbers in by_thing.items()
            },
            allowed_prefixes=tuple(sorted(_numbers(environ.get("DESTINATION_PREFIXES", "")))),
            per_minute=int(environ.get("SEND_LIMIT_PER_MINUTE") or DEFAULT_PER_MINUTE),
            per_day=int(environ.get("SEND_LIMIT_PER_DAY") or DEFAULT_PER_DAY),
        )

    def allow_listed(self, thing: str, to: str) -> bool:
        """True when `to` is on the environment's or `thing`'s allow-list."""
        return to in self.allow_list or to in self.allow_list_by_thing.get(thing, frozenset())

    def check(self, *, thing: str, to: str, contact: Contact, now: float) -> None:
        """Raises Refused unless `thing` may text `to` at `now` (the caps are apart:
        they are counted, see counter())."""
        if to in self.fleet_numbers:
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
            key=counter_key(thing, now),
            minute_attribute=f"m{datetime.fromtimestamp(now, UTC):%H%M}",
            per_minute=self.per_minute,
            per_day=self.per_day,
            expires_at=day_end + COUNTER_TTL_MARGIN_SECONDS,
        )
