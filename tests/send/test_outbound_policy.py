"""Unit tests of the outbound policy (lambdas/send_lambda/outbound_policy.py): pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract import (
    DEFAULT_SEND_LIMIT_PER_DAY,
    DEFAULT_SEND_LIMIT_PER_MINUTE,
    SEND_COUNTER_DAY_ATTRIBUTE,
    contact_key,
    send_counter_key,
)
from send_lambda.config import policy_from_environ
from send_lambda.outbound_policy import DAY_SECONDS, Contact, OutboundPolicy, Refusal, Refused
from tests.send.scenarios import NUMBERS_BY_THING, THING

NOW = datetime(2026, 12, 1, 21, 30, 15, tzinfo=UTC).timestamp()
FLEET = frozenset(NUMBERS_BY_THING.values())
POLICY = OutboundPolicy()
STRANGER = Contact()
RECENT = Contact(last_inbound_at=int(NOW) - 60)


def refusal(policy: OutboundPolicy, to: str, contact: Contact, thing: str = THING) -> Refusal:
    with pytest.raises(Refused) as caught:
        policy.check(
            thing=thing, to=to, contact=contact, now=NOW, is_fleet_number=FLEET.__contains__
        )
    return caught.value.reason


def test_by_default_a_device_may_answer_only_who_texted_it_within_30_days() -> None:
    POLICY.check(
        thing=THING, to="+15551234567", contact=RECENT, now=NOW, is_fleet_number=FLEET.__contains__
    )
    day_29 = Contact(last_inbound_at=int(NOW) - 29 * DAY_SECONDS)
    POLICY.check(
        thing=THING, to="+15551234567", contact=day_29, now=NOW, is_fleet_number=FLEET.__contains__
    )
    day_31 = Contact(last_inbound_at=int(NOW) - 31 * DAY_SECONDS)
    assert refusal(POLICY, "+15551234567", day_31) is Refusal.NOT_A_RECENT_CONTACT
    assert refusal(POLICY, "+15551234567", STRANGER) is Refusal.NOT_A_RECENT_CONTACT


@pytest.mark.parametrize("to", ["+19005550100", "+882123456789", "+2348012345678"])
def test_toll_fraud_destinations_are_refused_by_default(to: str) -> None:
    assert refusal(POLICY, to, STRANGER) is Refusal.NOT_A_RECENT_CONTACT


def test_a_fleet_number_is_never_texted_even_when_allow_listed_or_recent() -> None:
    other = NUMBERS_BY_THING["dev-doorbell"]
    allowing = OutboundPolicy(allow_list=frozenset({other}))
    assert refusal(allowing, other, RECENT) is Refusal.FLEET_NUMBER
    assert refusal(POLICY, NUMBERS_BY_THING[THING], RECENT) is Refusal.FLEET_NUMBER


def test_allow_lists_for_the_environment_and_per_device() -> None:
    policy = OutboundPolicy(
        allow_list=frozenset({"+15557000001"}),
        allow_list_by_thing={THING: frozenset({"+15557000002"})},
    )
    policy.check(
        thing=THING,
        to="+15557000001",
        contact=STRANGER,
        now=NOW,
        is_fleet_number=FLEET.__contains__,
    )
    policy.check(
        thing="dev-doorbell",
        to="+15557000001",
        contact=STRANGER,
        now=NOW,
        is_fleet_number=FLEET.__contains__,
    )
    policy.check(
        thing=THING,
        to="+15557000002",
        contact=STRANGER,
        now=NOW,
        is_fleet_number=FLEET.__contains__,
    )
    assert (
        refusal(policy, "+15557000002", STRANGER, thing="dev-doorbell")
        is Refusal.NOT_A_RECENT_CONTACT
    )


def test_allowed_prefixes_apply_to_repliers_and_allow_lists_alike() -> None:
    policy = OutboundPolicy(
        allowed_prefixes=("+1555", "+44"),
        allow_list=frozenset({"+3312345678"}),
    )
    policy.check(
        thing=THING, to="+15551234567", contact=RECENT, now=NOW, is_fleet_number=FLEET.__contains__
    )
    policy.check(
        thing=THING, to="+447700900123", contact=RECENT, now=NOW, is_fleet_number=FLEET.__contains__
    )
    assert refusal(policy, "+19005550100", RECENT) is Refusal.PREFIX_NOT_ALLOWED
    assert refusal(policy, "+3312345678", STRANGER) is Refusal.PREFIX_NOT_ALLOWED


def test_an_opted_out_number_is_refused_as_an_expected_outcome() -> None:
    stopped = Contact(last_inbound_at=int(NOW), opted_out=True)
    allowing = OutboundPolicy(allow_list=frozenset({"+15551234567"}))
    reason = refusal(allowing, "+15551234567", stopped)
    assert reason is Refusal.OPTED_OUT and reason.expected
    assert not any(r.expected for r in Refusal if r is not Refusal.OPTED_OUT)


def test_one_counter_item_per_utc_day_holds_the_day_and_each_minute() -> None:
    counter = POLICY.counter(THING, NOW)
    assert counter.key == f"{THING}#sent#20261201" == send_counter_key(THING, NOW)
    assert counter.minute_attribute == "m2130"
    assert (counter.per_minute, counter.per_day) == (
        DEFAULT_SEND_LIMIT_PER_MINUTE,
        DEFAULT_SEND_LIMIT_PER_DAY,
    )
    day_end = datetime(2026, 12, 2, tzinfo=UTC).timestamp()
    assert day_end < counter.expires_at <= day_end + DAY_SECONDS
    assert POLICY.counter(THING, NOW + 60).minute_attribute == "m2131"
    assert POLICY.counter(THING, NOW + DAY_SECONDS).key != counter.key


def test_the_counts_at_refusal_name_the_cap() -> None:
    counter = POLICY.counter(THING, NOW)
    assert (
        counter.refusal({SEND_COUNTER_DAY_ATTRIBUTE: DEFAULT_SEND_LIMIT_PER_DAY, "m2130": 1})
        is Refusal.PER_DAY_CAP
    )
    assert (
        counter.refusal({SEND_COUNTER_DAY_ATTRIBUTE: 50, "m2130": DEFAULT_SEND_LIMIT_PER_MINUTE})
        is Refusal.PER_MINUTE_CAP
    )


def test_counter_keys_never_collide_with_contact_keys() -> None:
    assert "#sent#" not in contact_key(THING, "+15551234567")
    assert contact_key(THING, "+15551234567") == f"{THING}#+15551234567"


def test_policy_from_environment_and_its_safe_defaults() -> None:
    policy = policy_from_environ(
        {
            "REPLY_WINDOW_SECONDS": "3600",
            "DESTINATION_ALLOW_LIST": "+15557000001, +15557000002",
            "DESTINATION_ALLOW_LIST_BY_THING": '{"a": ["+15557000003"]}',
            "DESTINATION_PREFIXES": "+44,+1",
            "SEND_LIMIT_PER_MINUTE": "3",
            "SEND_LIMIT_PER_DAY": "30",
        }
    )
    assert policy.reply_window_seconds == 3600
    assert policy.allow_list == {"+15557000001", "+15557000002"}
    assert policy.allow_list_by_thing == {"a": {"+15557000003"}}
    assert policy.allowed_prefixes == ("+1", "+44")
    assert (policy.per_minute, policy.per_day) == (3, 30)
    default = policy_from_environ({})
    assert default.reply_window_seconds == 30 * DAY_SECONDS
    assert (default.allow_list, default.allowed_prefixes) == (frozenset(), ())
    with pytest.raises(ValueError, match="map things to lists"):
        policy_from_environ({"DESTINATION_ALLOW_LIST_BY_THING": '{"a": "+1"}'})


@given(
    to=st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    last=st.none() | st.integers(min_value=0, max_value=int(NOW)),
    opted_out=st.booleans(),
)
def test_a_stranger_or_a_fleet_number_is_never_allowed(
    to: str, last: int | None, opted_out: bool
) -> None:
    contact = Contact(last_inbound_at=last, opted_out=opted_out)
    allowed = True
    try:
        POLICY.check(
            thing=THING, to=to, contact=contact, now=NOW, is_fleet_number=FLEET.__contains__
        )
    except Refused:
        allowed = False
    if allowed:
        assert last is not None and NOW - last <= POLICY.reply_window_seconds
        assert to not in FLEET and not opted_out
