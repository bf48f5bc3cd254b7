"""The receive side of issue 12: the payload limit and the mailbox record before publish."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from moto import mock_aws

from contract import (
    MAX_DEVICE_PAYLOAD_BYTES,
    TLS_RECORD_PLAINTEXT_BYTES,
    largest_body_limit,
    worst_case_payload_bytes,
)
from loop.umqtt_host import publish_packet_bytes
from receive_lambda.adapters import InboundPublisher
from receive_lambda.config import ReceiveConfig
from receive_lambda.decision import Publish, TooLong, decide
from receive_lambda.form import FormParams
from receive_lambda.mailbox_record import MailboxRecorder
from stacks.settings import SettingsError, parse_environment
from tests.conftest import ROOT, Synthesized, mailbox_table_definition
from tests.receive.conftest import MAILBOX_TABLE, REGION, Call, FakeContext, ReceiveWorld, sms

THING = "dev-reverser"
NUMBER = "+15555550100"


THINGS = {NUMBER: THING}


def config(**kwargs: Any) -> ReceiveConfig:
    return ReceiveConfig(topic_prefix="sms", **kwargs)


def form_with_media(body: str, url_lengths: list[int]) -> FormParams:
    pairs = [(k, v) for k, v in sms(body=body) if k != "NumMedia"]
    pairs.append(("NumMedia", str(len(url_lengths))))
    for n, length in enumerate(url_lengths):
        url = "https://api.twilio.com/m/"
        pairs += [
            (f"MediaUrl{n}", url + "x" * (length - len(url))),
            (f"MediaContentType{n}", "image/png"),
        ]
    form = FormParams()
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


def test_the_limit_is_the_tls_record_minus_the_largest_publish_framing() -> None:
    assert TLS_RECORD_PLAINTEXT_BYTES == 5120  # axTLS RT_MAX_PLAIN_LENGTH + RT_EXTRA
    assert MAX_DEVICE_PAYLOAD_BYTES == 4910
    longest_topic = "p" * 64 + "/" + "t" * 128 + "/inbound"
    assert publish_packet_bytes(longest_topic, MAX_DEVICE_PAYLOAD_BYTES) <= 5120


def test_the_firmware_drops_what_the_cloud_may_not_publish() -> None:
    core = (ROOT / "device" / "board" / "smscore.py").read_text()
    assert f"MAX_RAW = const({MAX_DEVICE_PAYLOAD_BYTES})" in core


def test_a_payload_at_the_limit_is_published_one_byte_over_tells_the_sender() -> None:
    settings = config()
    lengths = [200] * 10
    probe = decide(form_with_media("hi 😀", lengths), settings, THINGS)
    assert isinstance(probe, Publish)
    spare = MAX_DEVICE_PAYLOAD_BYTES - len(probe.payload)
    lengths[0] += spare
    at_limit = decide(form_with_media("hi 😀", lengths), settings, THINGS)
    assert isinstance(at_limit, Publish)
    assert len(at_limit.payload) == MAX_DEVICE_PAYLOAD_BYTES
    lengths[0] += 1
    over = decide(form_with_media("hi 😀", lengths), settings, THINGS)
    assert isinstance(over, TooLong)
    assert over.payload_bytes == MAX_DEVICE_PAYLOAD_BYTES + 1
    assert "too large for the device" in over.twiml
    assert f"({MAX_DEVICE_PAYLOAD_BYTES + 1} bytes" in over.twiml


def test_the_worst_case_of_the_default_body_limit_fits() -> None:
    assert worst_case_payload_bytes(160) <= MAX_DEVICE_PAYLOAD_BYTES
    assert worst_case_payload_bytes(largest_body_limit()) <= MAX_DEVICE_PAYLOAD_BYTES
    assert worst_case_payload_bytes(largest_body_limit() + 1) > MAX_DEVICE_PAYLOAD_BYTES
    # Free-text extra fields leave less room for the body.
    assert largest_body_limit(("FromCity", "ToCity")) < largest_body_limit(("FromCountry",))


@pytest.mark.parametrize(
    ("raw", "fits"),
    [
        ({"body_limit": 160}, True),
        ({"body_limit": 160, "extra_fields": ["FromCountry", "NumSegments"]}, True),
        ({"body_limit": 1600}, False),
        ({"body_limit": 300, "extra_fields": ["FromCity", "ToCity", "ProfileName"]}, False),
    ],
)
def test_synth_refuses_a_body_limit_that_cannot_fit_naming_the_key(
    raw: dict[str, Any], fits: bool
) -> None:
    if fits:
        parse_environment("dev", {"region": REGION, **raw})
        return
    with pytest.raises(SettingsError, match="'body_limit'") as error:
        parse_environment("dev", {"region": REGION, **raw})
    assert str(MAX_DEVICE_PAYLOAD_BYTES) in str(error.value)
    assert "environments.dev" in str(error.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("mailbox_retention_days", 0),
        ("mailbox_retention_days", 15),
        ("mailbox_expiry_action", "drop"),
        ("mailbox_alarm_age_minutes", 1),
    ],
)
def test_mailbox_settings_are_validated(key: str, value: object) -> None:
    with pytest.raises(SettingsError, match=f"'{key}'"):
        parse_environment("dev", {"region": REGION, key: value})


# -- the mailbox record ---------------------------------------------------------------------


class Recorder:
    """IoT data's `publish`, recording what was in the mailbox at the time."""

    def __init__(self, dynamodb: Any) -> None:
        self.dynamodb = dynamodb
        self.calls: list[tuple[str, bytes, int]] = []
        self.fail = False

    def publish(self, *, topic: str, qos: int, payload: bytes) -> None:
        items = self.dynamodb.scan(TableName="mailbox")["Items"]
        assert items, "published before the message was recorded"
        if self.fail:
            self.fail = False
            raise OSError("IoT is unreachable")
        self.calls.append((topic, payload, qos))


@pytest.fixture
def aws(aws_env: None, synthesized: dict[str, Synthesized]) -> Iterator[Any]:
    """moto's DynamoDB with the dev stack's mailbox table (`mailbox`) and a Powertools
    idempotency table (`idempotency`)."""
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(
            TableName="mailbox", **mailbox_table_definition(synthesized["dev"].template_json)
        )
        dynamodb.create_table(
            TableName="idempotency",
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield dynamodb


def test_a_message_is_recorded_before_it_is_published_and_once_per_sid(aws: Any) -> None:
    iot = Recorder(aws)
    clock = iter([1000.0, 1001.0, 1002.0])
    publisher = InboundPublisher(
        iot,
        DynamoDBPersistenceLayer(table_name="idempotency", boto3_client=aws),
        mailbox=MailboxRecorder(aws, "mailbox", 7 * 86400, clock=lambda: next(clock)),
    )
    decision = decide(form_with_media("hello", []), config(), THINGS)
    assert isinstance(decision, Publish)
    iot.fail = True  # the first attempt records, then fails to publish: Twilio retries
    with pytest.raises(OSError):
        publisher.publish(decision, FakeContext())
    assert publisher.publish(decision, FakeContext()) is True
    assert publisher.publish(decision, FakeContext()) is False  # a repeated webhook
    [item] = aws.scan(TableName="mailbox")["Items"]
    assert item["thing"]["S"] == THING
    assert item["id"]["S"] == decision.message["Id"]
    assert item["arrived"]["N"] == "1000000"  # the first arrival is kept
    assert item["topic"]["S"] == f"sms/{THING}/inbound"
    assert item["payload"]["S"].encode() == decision.payload  # exactly what was published
    assert int(item["expires_at"]["N"]) > 1000 + 7 * 86400  # TTL only backs the sweeper up
    assert iot.calls == [(f"sms/{THING}/inbound", decision.payload, 1)]
    assert json.loads(iot.calls[0][1])["Body"] == "hello"


def test_the_handler_records_each_published_message_in_the_mailbox(world: ReceiveWorld) -> None:
    response = world.send(Call(sms(body="keep me", sid="SM" + "c" * 32)))
    assert response.status == 200
    [(topic, payload)] = world.published_raw()
    [item] = boto3.client("dynamodb", region_name=REGION).scan(TableName=MAILBOX_TABLE)["Items"]
    assert (item["thing"]["S"], item["id"]["S"]) == (THING, "SM" + "c" * 32)
    assert (item["topic"]["S"], item["payload"]["S"].encode()) == (topic, payload)
    # An over-long body is answered, never recorded: nothing waits for the device.
    too_long = world.send(Call(sms(body="x" * 161, sid="SM" + "d" * 32)))
    assert too_long.status == 200 and "limited to 160 characters" in too_long.body
    assert (
        len(boto3.client("dynamodb", region_name=REGION).scan(TableName=MAILBOX_TABLE)["Items"])
        == 1
    )
