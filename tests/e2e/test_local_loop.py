"""End to end through the local loop: webhook -> broker -> firmware -> rule -> Twilio mock.

One loop (mosquitto, moto server, Prism, the Lambdas' real handlers in their own processes,
the board's firmware on the host) serves every test of this module. Each test uses bodies
of its own, so what it checks cannot be confused with another test's messages.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from loop.certs import tls_context
from loop.device_host import board_app
from loop.local_loop import LOAD_CAPS, LocalLoop
from loop.twilio_webhook import SENDER_PHONE
from loop.umqtt_host import MQTTClient
from tests.doubles.twilio_faults import FaultProxy

pytestmark = pytest.mark.e2e
THING = "dev-reverser"


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLoop]:
    work = Path(tmp_path_factory.mktemp("loop"))
    with LocalLoop(
        work, retry_delay_s=0.05, twilio_proxy=FaultProxy, settings=LOAD_CAPS
    ) as running:
        yield running


def faults(loop: LocalLoop) -> FaultProxy:
    """The loop's mock Twilio, which injects failures in these tests."""
    assert isinstance(loop.twilio, FaultProxy)
    return loop.twilio


def reverse(text: str) -> str:
    """What the default app answers (the board's own function, run on the host)."""
    reply = board_app().handle({"Body": text, "Media": []})
    assert isinstance(reply, str)
    return reply


def replies_to(loop: LocalLoop, bodies: set[str]) -> list[dict[str, str]]:
    """Messages Twilio accepted whose body answers one of `bodies`."""
    wanted = {reverse(body) for body in bodies}
    return [m for m in loop.twilio.sent_messages() if m.get("Body") in wanted]


def tag() -> str:
    return uuid.uuid4().hex[:8]


def test_sms_comes_back_reversed_from_the_bound_number(loop: LocalLoop) -> None:
    body = f"Oozy rat in a sanitary zoo. {tag()}"
    response = loop.text(body)
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/xml"
    assert response.body == '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
    assert loop.wait_for(lambda: replies_to(loop, {body}))
    [reply] = replies_to(loop, {body})
    assert reply["From"] == loop.number_of(THING)
    assert reply["To"] == SENDER_PHONE
    assert reply["Body"] == reverse(body)
    assert "MediaUrl" not in reply


def test_classic_sentence_reverses_exactly(loop: LocalLoop) -> None:
    sent_before = len(loop.twilio.sent_messages())
    assert (
        loop.text("Oozy rat in a sanitary zoo.", message_sid="SM" + uuid.uuid4().hex).status == 200
    )
    assert loop.wait_for(lambda: len(loop.twilio.sent_messages()) > sent_before)
    bodies = [m["Body"] for m in loop.twilio.sent_messages()[sent_before:]]
    assert ".ooz yratinas a ni tar yzoO" in bodies


def test_mms_is_answered_with_its_first_picture(loop: LocalLoop) -> None:
    body = f"look at this {tag()}"
    media = [
        ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1", "image/jpeg"),
        ("https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME2", "image/png"),
    ]
    assert loop.text(body, media=media).status == 200
    assert loop.wait_for(lambda: replies_to(loop, {body}))
    [reply] = replies_to(loop, {body})
    assert reply["MediaUrl"] == media[0][0]
    [seen] = [m for m in loop.received[THING] if m["Body"] == body]
    assert seen["Media"] == [{"Url": u, "ContentType": t} for u, t in media]


@pytest.mark.parametrize(
    "text",
    [
        "Grüße aus Köln, ça va? ñ",
        "東京からこんにちは",
        "emoji 👋🏽 family 👨‍👩‍👧 flag 🇫🇷 end",
        "quotes ' \" \\ & = + % # ; newline\nsecond line",
    ],
)
def test_unicode_and_emoji_arrive_byte_exact_and_come_back(loop: LocalLoop, text: str) -> None:
    body = f"{text} {tag()}"
    assert loop.text(body).status == 200
    assert loop.wait_for(lambda: replies_to(loop, {body}))
    assert [m["Body"] for m in loop.received[THING] if m["Body"] == body] == [body]
    [reply] = replies_to(loop, {body})
    assert reply["Body"] == reverse(body)


def test_forged_webhook_is_refused_and_delivers_nothing(loop: LocalLoop) -> None:
    body = f"forged {tag()}"
    form = loop.twilio_webhook.form(body, to=loop.number_of())
    published = len(loop.published)
    response = loop.twilio_webhook.post(form, signature="bm90IGEgc2lnbmF0dXJl")
    assert response.status == 403
    unsigned = loop.twilio_webhook.post(form, signature="")
    assert unsigned.status == 403
    tampered = loop.twilio_webhook.post(
        [(k, "+15559999999" if k == "From" else v) for k, v in form],
        signature=loop.twilio_webhook.signature(form),
    )
    assert tampered.status == 403
    # A genuine message afterwards proves the pipe was open while the forgeries were refused.
    genuine = f"genuine {tag()}"
    assert loop.text(genuine).status == 200
    assert loop.wait_for(lambda: replies_to(loop, {genuine}))
    assert len(loop.published) == published + 1
    assert not any(m["Body"] == body for m in loop.received[THING])
    assert not replies_to(loop, {body})


def test_the_same_webhook_twice_reaches_the_device_once(loop: LocalLoop) -> None:
    body = f"twice {tag()}"
    form = loop.twilio_webhook.form(body, to=loop.number_of())
    assert loop.twilio_webhook.post(form).status == 200
    assert loop.twilio_webhook.post(form).status == 200
    assert loop.wait_for(lambda: replies_to(loop, {body}))
    assert [m["Body"] for m in loop.received[THING]].count(body) == 1
    assert len(replies_to(loop, {body})) == 1


def test_offline_device_gets_all_100_messages_in_order_once(loop: LocalLoop) -> None:
    batch = tag()
    bodies = [f"offline {batch} {n:03d}" for n in range(100)]
    loop.stop_device(THING)
    try:
        for body in bodies:
            assert loop.text(body).status == 200
        assert not any(m["Body"] in bodies for m in loop.received[THING][-100:])
    finally:
        device = loop.start_device(THING)
    assert device.connections == 1
    assert loop.wait_for(lambda: len(replies_to(loop, set(bodies))) >= 100, timeout=60)
    seen = [m["Body"] for m in loop.received[THING] if m["Body"] in set(bodies)]
    assert seen == bodies  # all, in order, none twice
    sent = Counter(m["Body"] for m in replies_to(loop, set(bodies)))
    assert len(sent) == 100
    assert set(sent.values()) == {1}


def test_twilio_failing_lands_the_reply_in_the_dead_letter_queue(loop: LocalLoop) -> None:
    body = f"twilio down {tag()}"
    attempts = 1 + loop.router.retry_attempts
    faults(loop).plan(*["500"] * attempts)
    dead_before = len(loop.dead_letters())
    assert loop.text(body).status == 200
    assert loop.wait_for(lambda: len(loop.dead_letters()) > dead_before, timeout=30)
    [record] = [
        r for r in loop.dead_letters() if r.get("requestPayload", {}).get("Body") == reverse(body)
    ]
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == attempts
    assert record["requestPayload"]["thing"] == THING
    assert record["requestPayload"]["To"] == SENDER_PHONE
    assert not replies_to(loop, {body})  # nothing sent, nothing lost: it waits in the queue
    failed = [r for r in loop.twilio.message_requests() if r.fault == "500"]
    assert len(failed) == attempts


def test_a_transient_twilio_error_is_retried_and_sent_once(loop: LocalLoop) -> None:
    body = f"retry {tag()}"
    faults(loop).plan("429")
    assert loop.text(body).status == 200
    assert loop.wait_for(lambda: replies_to(loop, {body}), timeout=30)
    assert len(replies_to(loop, {body})) == 1


def test_a_device_message_that_is_not_json_goes_to_the_rule_error_queue(loop: LocalLoop) -> None:
    before = len(loop.rule_errors())
    # A second connection with the device's certificate (the device's own client belongs
    # to the firmware's thread; paho clients are not shared between threads).
    identity = loop.broker.identity(THING)
    context = tls_context(str(loop.broker.ca.cert_path), identity)
    rogue = MQTTClient(f"{THING}-test", "127.0.0.1", loop.broker.port, keepalive=30, ssl=context)
    rogue.connect()
    try:
        rogue.publish(b"sms/dev-reverser/outbound", b"not json {", False, 1)
    finally:
        rogue.disconnect()
    assert loop.wait_for(lambda: len(loop.rule_errors()) > before)
    record = loop.rule_errors()[-1]
    assert record["topic"] == "sms/dev-reverser/outbound"
    assert json.dumps(record["failures"])


def test_200_concurrent_webhooks_give_200_replies_none_lost_none_doubled(
    loop: LocalLoop,
) -> None:
    batch = tag()
    bodies = [f"burst {batch} {n:03d}" for n in range(200)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda body: loop.text(body).status, bodies))
    assert statuses == [200] * 200
    assert loop.wait_for(lambda: len(replies_to(loop, set(bodies))) >= 200, timeout=90)
    sent = Counter(m["Body"] for m in replies_to(loop, set(bodies)))
    assert len(sent) == 200
    assert set(sent.values()) == {1}
    received = Counter(m["Body"] for m in loop.received[THING] if m["Body"] in set(bodies))
    assert set(received.values()) == {1}


def test_the_broker_grants_devices_what_the_iot_policy_grants(loop: LocalLoop) -> None:
    from loop.broker import THING_VARIABLE, acl_from_iot_policy
    from stacks.ota_updates import device_jobs_statements

    jobs = device_jobs_statements(lambda resource: f"arn:aws:iot:r:a:{resource}", THING_VARIABLE)
    assert sorted(loop.device_acl) == sorted(
        [
            "pattern read sms/%u/inbound",
            "pattern write $aws/things/%u/shadow/update",
            "pattern write sms/%u/ack",
            "pattern write sms/%u/outbound",
            "pattern write sms/%u/redeliver",
            *acl_from_iot_policy({"Statement": jobs}, str),
        ]
    )
    assert "pattern write $aws/things/%u/streams/+/get/json" in loop.device_acl


def test_a_device_cannot_publish_to_an_inbound_topic(loop: LocalLoop) -> None:
    body = f"injected {tag()}"
    payload = json.dumps(
        {"Type": "Incoming", "Id": "SMforged", "From": SENDER_PHONE, "To": "+1", "Body": body,
         "Media": []}
    ).encode()  # fmt: skip
    context = tls_context(str(loop.broker.ca.cert_path), loop.broker.identity(THING))
    rogue = MQTTClient(f"{THING}-rogue", "127.0.0.1", loop.broker.port, keepalive=30, ssl=context)
    rogue.connect()
    try:
        rogue.publish(f"sms/{THING}/inbound".encode(), payload, False, 1)
    finally:
        rogue.disconnect()
    genuine = f"after injection {tag()}"
    assert loop.text(genuine).status == 200
    assert loop.wait_for(lambda: replies_to(loop, {genuine}))
    assert not any(m["Body"] == body for m in loop.received[THING])
