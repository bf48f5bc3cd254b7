"""Issue 11, inbound: who may text a device, consent keywords, re-split and replayed requests,
token rotation, and what each costs in DynamoDB calls.

Requests go through the synthesized API method and the real handler against moto, signed
with twilio's own RequestValidator, as in test_handler.py.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from twilio.request_validator import RequestValidator

import contract
from receive_lambda import contacts, handler
from receive_lambda.decision import check_parameter_names
from receive_lambda.errors import BadRequest
from receive_lambda.form import FormParams
from receive_lambda.inbound_policy import Consent, SenderPolicy, consent_signal
from tests.conftest import Synthesized
from tests.receive.conftest import (
    REGION,
    SECRET_NAME,
    TABLE,
    TOKEN,
    Call,
    ReceiveWorld,
    make_world,
    reset_receiver,
    sms,
)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
OWNER = "+15551234567"  # sms()'s default sender
STRANGER = "+15559876543"
THING = "dev-reverser"
CONTACTS = "contacts"


def sid(n: int) -> str:
    return f"SM{n:032x}"


class DynamoCalls:
    """Counts the DynamoDB operations the handler makes (botocore's before-call event)."""

    def __init__(self, client: Any) -> None:
        self.counts: Counter[str] = Counter()
        client.meta.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.counts[model.name] += 1

    def take(self) -> Counter[str]:
        counts, self.counts = self.counts, Counter()
        return counts


@pytest.fixture
def safe_world(
    synthesized: dict[str, Synthesized], monkeypatch: pytest.MonkeyPatch
) -> Iterator[ReceiveWorld]:
    """The dev stack's receive Lambda with an allow-list and the Contacts table (created as
    the send side's stack will create it: `pk` string key)."""
    with mock_aws():
        world = make_world(
            synthesized["dev"],
            monkeypatch,
            ALLOWED_SENDERS=json.dumps({THING: [OWNER, "whatsapp:+15550001111"]}),
            **{contract.CONTACTS_TABLE_VARIABLE: CONTACTS},
        )
        key = contract.CONTACT_KEY_ATTRIBUTE
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=CONTACTS,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield world
    reset_receiver()


def contact(number: str) -> dict[str, Any] | None:
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=CONTACTS, Key=contacts.item_key(THING, number)
    )
    return item.get("Item")


# -- Pure policy ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "opt_out_type", "expected"),
    [
        ("STOP", None, "STOP"),
        ("  stop. ", None, "STOP"),
        ("Unsubscribe", None, "STOP"),
        ("optout", None, "STOP"),
        ("START", None, "START"),
        ("unstop", None, "START"),
        ("yes!", None, "START"),
        ("info", None, "HELP"),
        ("arrêt", "STOP", "STOP"),  # a custom Advanced Opt-Out keyword: Twilio says so
        ("stop the pump", None, None),  # not only the keyword: a command
        ("OPEN GARAGE", None, None),
    ],
)
def test_consent_signals(body: str, opt_out_type: str | None, expected: str | None) -> None:
    signal = consent_signal(body, opt_out_type)
    assert (signal.value if signal else None) == expected


def test_consent_signals_are_the_contracts_opt_out_types() -> None:
    assert tuple(signal.value for signal in Consent) == contract.OPT_OUT_TYPES
    assert set(contract.CONSENT_KEYWORDS.values()) == set(contract.OPT_OUT_TYPES)
    with pytest.raises(ValueError):
        consent_signal("hello", "MAYBE")


@pytest.mark.parametrize(
    "value",
    ["+15551234567", "whatsapp:+15551234567", "rcs:+447700900123", "messenger:1234567", "22395"],
)
def test_sender_addresses_twilio_sends(value: str) -> None:
    assert contract.is_sender_address(value)


@pytest.mark.parametrize(
    "value",
    [
        "+15551234567FromCountryUS",
        "+15551234567FromCityBOSTON",
        "whatsapp:15551234567",
        "+0123456789",
        "sms:+15551234567",
        "",
        "+1555 123 4567",
    ],
)
def test_re_split_or_foreign_senders_are_not_addresses(value: str) -> None:
    assert not contract.is_sender_address(value)


def test_sender_policy_only_restricts_listed_devices() -> None:
    senders = SenderPolicy.from_json(json.dumps({"a": [OWNER]}))
    assert senders.allows("a", OWNER) and not senders.allows("a", STRANGER)
    assert senders.allows("b", STRANGER)
    with pytest.raises(ValueError):
        SenderPolicy.from_json('{"a": "+15551234567"}')


# -- Strangers and consent keywords -----------------------------------------------------------


def test_a_stranger_is_answered_empty_twiml_and_reaches_nothing(safe_world: ReceiveWorld) -> None:
    response = safe_world.send(Call(sms(body="OPEN GARAGE", sender=STRANGER, sid=sid(1))))
    assert (response.status, response.body) == (200, EMPTY_TWIML)
    assert safe_world.published() == []
    assert contact(STRANGER) is None  # no reply window opened for a stranger
    [line] = [x for x in safe_world.logs() if "allow-list" in x["message"]]
    assert line["sender"] == "+15*******43"
    assert STRANGER not in json.dumps(safe_world.logs())
    # The owner and the owner's WhatsApp address are let through.
    assert safe_world.send(Call(sms(sid=sid(2)))).status == 200
    whatsapp = sms(sender="whatsapp:+15550001111", sid=sid(3))
    assert safe_world.send(Call(whatsapp)).status == 200
    assert [m["From"] for _, m in safe_world.published()] == [OWNER, "whatsapp:+15550001111"]


def test_stop_is_recorded_not_forwarded_and_start_clears_it(safe_world: ReceiveWorld) -> None:
    before = time.time()
    assert safe_world.send(Call(sms(body="hello", sid=sid(10)))).status == 200
    opened = contact(OWNER)
    assert opened is not None and "opted_out" not in opened
    assert int(opened["last_inbound_at"]["N"]) >= int(before)
    assert int(opened["expires_at"]["N"]) >= int(before) + contacts.RECORD_SECONDS

    stop = safe_world.send(Call(sms(body="Stop", sid=sid(11))))
    assert (stop.status, stop.body) == (200, EMPTY_TWIML)
    stopped = contact(OWNER)
    assert stopped is not None and stopped["opted_out"] == {"BOOL": True}
    assert "expires_at" not in stopped  # an opt-out holds until START

    # A message while opted out still reaches the device; the opt-out and its no-expiry stay.
    assert safe_world.send(Call(sms(body="status?", sid=sid(12)))).status == 200
    still = contact(OWNER)
    assert still is not None and still["opted_out"] == {"BOOL": True} and "expires_at" not in still

    start = sms(body="anything", sid=sid(13), extra=[("OptOutType", "START")])
    assert safe_world.send(Call(start)).status == 200
    started = contact(OWNER)
    assert started is not None and started["opted_out"] == {"BOOL": False}
    assert "expires_at" in started
    help_ = safe_world.send(Call(sms(body="HELP", sid=sid(14))))
    assert help_.status == 200
    assert [m["Body"] for _, m in safe_world.published()] == ["hello", "status?"]


def test_a_strangers_stop_is_recorded_too(safe_world: ReceiveWorld) -> None:
    assert safe_world.send(Call(sms(body="STOP", sender=STRANGER, sid=sid(20)))).status == 200
    recorded = contact(STRANGER)
    assert recorded is not None and recorded["opted_out"] == {"BOOL": True}
    assert safe_world.published() == []


def test_an_unknown_opt_out_type_is_a_400(safe_world: ReceiveWorld) -> None:
    pairs = sms(body="STOP", sid=sid(21), extra=[("OptOutType", "MAYBE")])
    response = safe_world.send(Call(pairs))
    assert response.status == 400 and "OptOutType" in response.body
    assert safe_world.published() == []


# -- Re-split requests, signed with the real algorithm ------------------------------------------


def forgeries() -> dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]]:
    """(original, re-split) pairs: each re-split concatenates to the text Twilio signed."""
    plain = sms(sid=sid(30), extra=[("FromCountry", "US")])
    smuggler = sms(body="hiFrom+15550001111FromA", sender=STRANGER, sid=sid(31))
    command = sms(body="DO NOT OPEN", sid=sid(32))

    def edit(
        pairs: list[tuple[str, str]], drop: tuple[str, ...], add: list[tuple[str, str]]
    ) -> list[tuple[str, str]]:
        return [(k, v) for k, v in pairs if k not in drop] + add

    return {
        "From absorbs FromCountry": (
            plain,
            edit(plain, ("From", "FromCountry"), [("From", OWNER + "FromCountryUS")]),
        ),
        "a stranger's Body smuggles the owner's From": (
            smuggler,
            edit(
                smuggler,
                ("Body", "From"),
                [("Body", "hi"), ("From", "+15550001111"), ("FromA", "From" + STRANGER)],
            ),
        ),
        "Body cut short into a new parameter": (
            command,
            edit(command, ("Body",), [("Body", ""), ("DO", " NOT OPEN")]),
        ),
    }


@pytest.mark.parametrize("label", sorted(forgeries()))
def test_re_split_requests_verify_but_are_refused(world: ReceiveWorld, label: str) -> None:
    original, forged = forgeries()[label]
    signature = Call(original).request().header("X-Twilio-Signature")
    assert signature
    params = FormParams()
    for key, value in forged:
        params.setdefault(key, []).append(value)
    # The forgery carries a signature twilio's validator accepts...
    assert RequestValidator(TOKEN).validate(Call(forged).url, params, signature)
    # ...and is refused all the same.
    response = world.send(Call(forged, signature=signature))
    assert response.status == 400, response
    assert world.published() == []
    # The genuine request still goes through (dev has no allow-list).
    assert world.send(Call(original, signature=signature)).status == 200
    [(_, message)] = world.published()
    assert message["Body"] == dict(original)["Body"]


@pytest.mark.parametrize(
    ("names", "refused"),
    [
        (["Body", "From", "FromA"], "FromA"),
        (["Body", "DO", "From"], "DO"),
        (["Body", "To", "ToZ"], "ToZ"),
        (["Body", "From", "From+15551234567"], "From+15551234567"),
        (["Body", "lower"], "lower"),
    ],
)
def test_names_a_re_split_leaves_are_refused(names: list[str], refused: str) -> None:
    form = FormParams({name: ["x"] for name in names})
    with pytest.raises(BadRequest, match=re.escape(refused)):
        check_parameter_names(form)


def test_new_twilio_parameters_are_accepted_away_from_trusted_fields() -> None:
    form = FormParams(
        {name: ["1"] for name in ("Body", "ButtonText", "From", "FromCity", "SmsFutureField", "To")}
    )
    check_parameter_names(form)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("FromCity", "BOSTONFromCountryUS"),
        ("FromZip", "02134FromStateMA"),
        ("ProfileName", "x" * 33),
        ("ProfileName", "a\x00b"),
        ("WaId", "15551234567ReferralNumMedia0"),
    ],
)
def test_forwarded_fields_reject_absorbed_names(field: str, value: str) -> None:
    assert not contract.FORWARDABLE_FIELDS[field](value)


def test_body_is_required(world: ReceiveWorld) -> None:
    pairs = [(k, v) for k, v in sms(sid=sid(31)) if k != "Body"]
    response = world.send(Call(pairs))
    assert response.status == 400 and "Body" in response.body


# -- Replay -------------------------------------------------------------------------------------


def shift_idempotency_records(seconds: int) -> None:
    """The time seam: every stored record looks `seconds` older (its expiry moves back)."""
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for item in dynamodb.scan(TableName=TABLE)["Items"]:
        item["expiration"] = {"N": str(int(item["expiration"]["N"]) - seconds)}
        dynamodb.put_item(TableName=TABLE, Item=item)


def test_a_replay_24_1_hours_later_is_not_published_again(world: ReceiveWorld) -> None:
    call = Call(sms(sid=sid(40)))
    assert world.send(call).status == 200
    [record] = boto3.client("dynamodb", region_name=REGION).scan(TableName=TABLE)["Items"]
    lifetime = int(record["expiration"]["N"]) - time.time()
    assert lifetime > 399 * 86400  # the dev default: 400 days
    shift_idempotency_records(int(24.1 * 3600))
    assert world.send(call).status == 200
    assert len(world.published()) == 1
    assert any("already published" in line["message"] for line in world.logs())


def test_with_a_24_hour_window_the_same_replay_would_be_published(
    world: ReceiveWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The seam itself is sound: with the old 24 h window the replay goes through.
    monkeypatch.setenv("REPLAY_WINDOW_SECONDS", str(24 * 3600))
    reset_receiver()
    call = Call(sms(sid=sid(41)))
    assert world.send(call).status == 200
    shift_idempotency_records(int(24.1 * 3600))
    assert world.send(call).status == 200
    assert len(world.published()) == 2


# -- Token rotation -----------------------------------------------------------------------------


def put_secret(**values: str) -> None:
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=SECRET_NAME, SecretString=json.dumps({"account_sid": "AC1", **values})
    )


def test_during_a_rotation_both_tokens_verify(world: ReceiveWorld) -> None:
    put_secret(auth_token=TOKEN, secondary_auth_token="new-token")
    reset_receiver()
    assert world.send(Call(sms(sid=sid(50)))).status == 200
    assert world.send(Call(sms(sid=sid(51)), token="new-token")).status == 200
    assert world.send(Call(sms(sid=sid(52)), token="other-token")).status == 403
    assert len(world.published()) == 2


def test_a_promoted_secondary_verifies_without_waiting_for_the_cache(world: ReceiveWorld) -> None:
    assert world.send(Call(sms(sid=sid(53)))).status == 200  # caches the old token alone
    put_secret(auth_token=TOKEN, secondary_auth_token="new-token")  # rotation step 1
    # Twilio now signs with the new token: the first failure re-reads the secret.
    assert world.send(Call(sms(sid=sid(54)), token="new-token")).status == 200
    assert handler.runtime().tokens.current() == (TOKEN, "new-token")


# -- Cost: DynamoDB calls per inbound message ----------------------------------------------------


def test_dynamodb_calls_per_message(safe_world: ReceiveWorld) -> None:
    """What the issue asks to measure: the inbound policies cost one UpdateItem per
    accepted message (two when the sender opted out); strangers cost nothing."""
    receiver_contacts = handler.runtime().contacts
    assert receiver_contacts is not None
    dynamo = DynamoCalls(receiver_contacts._dynamodb)
    assert safe_world.send(Call(sms(sid=sid(60)))).status == 200
    # Powertools: PutItem (in progress) + UpdateItem (completed); the mailbox: one PutItem;
    # contacts: one UpdateItem (the policies' whole cost).
    assert dynamo.take() == Counter({"PutItem": 2, "UpdateItem": 2})
    assert safe_world.send(Call(sms(sid=sid(60)))).status == 200  # a repeat: no contact write
    assert dynamo.take() == Counter({"PutItem": 1})  # the failed condition returns the record
    assert safe_world.send(Call(sms(body="STOP", sid=sid(61)))).status == 200
    assert dynamo.take() == Counter({"UpdateItem": 1})
    assert safe_world.send(Call(sms(sid=sid(62)))).status == 200
    assert dynamo.take() == Counter({"PutItem": 2, "UpdateItem": 3})  # opted out: 2 writes
    assert safe_world.send(Call(sms(sender=STRANGER, sid=sid(63)))).status == 200
    assert dynamo.take() == Counter()
