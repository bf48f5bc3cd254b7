"""Issue 11's outbound attacks, end to end through the local loop, each outcome asserted.

A device (or whoever pulled its key out of flash) publishes on its own outbound topic with
its own certificate; the topic rule, the send Lambda (real handler, own process), the
Contacts table (moto) and Twilio's contract (Prism behind the fault proxy) do the rest.
The environment is dev with default caps (10 a minute, 200 a day) and more devices, so two
devices can try to text each other and each cap test counts on a device of its own.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

import contract
from loop.aws_local import CREDENTIALS, REGION, find_by_path
from loop.certs import tls_context
from loop.device_host import board_app
from loop.local_loop import LocalLoop
from loop.twilio_proxy import MessageRequest
from loop.umqtt_host import MQTTClient
from tests.doubles.twilio_faults import FaultProxy
from tests.infra.synthetic_fleet import write_devices
from tools.redrive import Redrive

pytestmark = pytest.mark.e2e
ALICE = "dev-reverser"
BOB = "dev-echo"
CAROL = "dev-chatty"  # the per-minute cap's own device: other tests' sends do not count
DAVE = "dev-redrive"  # the redrive's (its retries count against its caps)
DEVICES = {ALICE: "+15555550100", BOB: "+15555550101", CAROL: "+15555550102", DAVE: "+15555550103"}
PERSON = "+15551234567"


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLoop]:
    work = Path(tmp_path_factory.mktemp("attacks"))
    write_devices(work / "devices", "dev", DEVICES)
    with LocalLoop(
        work, retry_delay_s=0.05, twilio_proxy=FaultProxy, devices_dir=work / "devices"
    ) as running:
        yield running


def faults(loop: LocalLoop) -> FaultProxy:
    """The loop's mock Twilio, which injects failures in these tests."""
    assert isinstance(loop.twilio, FaultProxy)
    return loop.twilio


def twilio_requests(loop: LocalLoop) -> list[MessageRequest]:
    """Every Messages create the mock Twilio answered, in order."""
    return loop.twilio.message_requests()


def tag() -> str:
    return uuid.uuid4().hex[:8]


def publish_as(loop: LocalLoop, thing: str, messages: list[dict[str, Any]]) -> None:
    """Publishes on `thing`'s outbound topic with `thing`'s own certificate (QoS 1)."""
    identity = loop.broker.identity(thing)
    context = tls_context(str(loop.broker.ca.cert_path), identity)
    client = MQTTClient(
        f"{thing}-{tag()}", "127.0.0.1", loop.broker.port, keepalive=30, ssl=context
    )
    client.connect()
    try:
        for message in messages:
            payload = json.dumps({"Type": "Outgoing", **message}).encode()
            client.publish(f"sms/{thing}/outbound".encode(), payload, False, 1)
    finally:
        client.disconnect()


def refused_with(loop: LocalLoop, prefix: str) -> dict[str, str]:
    """Message Id -> refusal reason, for the refused messages whose Id starts with `prefix`."""
    return {
        r["requestPayload"]["Id"]: r["responsePayload"]["reason"]
        for r in loop.refused()
        if str(r.get("requestPayload", {}).get("Id", "")).startswith(prefix)
    }


def metric_points(loop: LocalLoop, name: str) -> list[dict[str, Any]]:
    """The send Lambda's EMF data points of metric `name` (its log, as CloudWatch gets it)."""
    points = []
    for line in (loop.workdir / "send.log").read_text().splitlines():
        if line.startswith("{") and f'"{name}"' in line and '"_aws"' in line:
            points.append(json.loads(line))
    return points


def bodies_sent(loop: LocalLoop, prefix: str) -> list[dict[str, str]]:
    return [m for m in loop.twilio.sent_messages() if m.get("Body", "").startswith(prefix)]


def twilio_requests_for(loop: LocalLoop, prefix: str) -> int:
    return sum(1 for r in twilio_requests(loop) if r.form.get("Body", [""])[0].startswith(prefix))


def test_toll_fraud_100_messages_to_premium_and_fleet_numbers_none_sent(loop: LocalLoop) -> None:
    batch = tag()
    faults(loop).plan()
    destinations = ["+19005550{:03d}", "+88216{:07d}", "+2348012{:06d}"]
    messages = [
        {"Id": f"fraud-{batch}-{n:03d}", "To": destinations[n % 3].format(n), "Body": f"f {batch}"}
        for n in range(99)
    ] + [{"Id": f"fraud-{batch}-099", "To": DEVICES[BOB], "Body": f"f {batch}"}]
    refused_before = len(metric_points(loop, "OutboundRefused"))
    publish_as(loop, ALICE, messages)
    assert loop.wait_for(lambda: len(refused_with(loop, f"fraud-{batch}")) == 100, timeout=60)
    reasons = refused_with(loop, f"fraud-{batch}")
    assert reasons[f"fraud-{batch}-099"] == "fleet-number"
    assert set(reasons.values()) == {"not-a-recent-contact", "fleet-number"}
    assert list(reasons.values()).count("not-a-recent-contact") == 99
    assert twilio_requests_for(loop, f"f {batch}") == 0  # Twilio never asked
    points = metric_points(loop, "OutboundRefused")[refused_before:]
    assert len(points) == 100 and {p["service"] for p in points} == {"send"}
    assert not any(  # refusals are not undelivered messages: the DLQ alarm stays quiet
        str(r.get("requestPayload", {}).get("Id", "")).startswith(f"fraud-{batch}")
        for r in loop.dead_letters()
    )


def test_two_devices_cannot_text_each_other_in_a_loop(loop: LocalLoop) -> None:
    """Bob's number texts Alice (as an SMS from Bob would arrive): Alice's answer to a
    fleet number is refused, so the ping-pong stops at the first reply."""
    body = f"ping {tag()}"
    faults(loop).plan()
    loop.remember_contact(DEVICES[BOB], thing=ALICE)  # Bob did text Alice
    assert loop.text(body, to=DEVICES[ALICE], sender=DEVICES[BOB]).status == 200
    reply = board_app().handle({"Body": body, "Media": []})
    assert loop.wait_for(
        lambda: any(r["requestPayload"].get("Body") == reply for r in loop.refused()), timeout=30
    )
    [record] = [r for r in loop.refused() if r["requestPayload"].get("Body") == reply]
    assert record["responsePayload"]["reason"] == "fleet-number"
    assert twilio_requests(loop) == []
    assert not any(m["Body"] == reply for m in loop.received.get(BOB, []))


def wait_for_fresh_minute() -> None:
    """Starts a burst early in a UTC minute, so it is counted in one minute window."""
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)


def test_per_minute_cap_sends_10_of_12(loop: LocalLoop) -> None:
    batch = tag()
    faults(loop).plan()
    loop.remember_contact(PERSON, thing=CAROL)
    wait_for_fresh_minute()
    publish_as(
        loop,
        CAROL,
        [{"Id": f"minute-{batch}-{n}", "To": PERSON, "Body": f"m {batch} {n}"} for n in range(12)],
    )
    assert loop.wait_for(lambda: len(refused_with(loop, f"minute-{batch}")) == 2, timeout=30)
    assert loop.wait_for(lambda: len(bodies_sent(loop, f"m {batch}")) == 10, timeout=30)
    assert set(refused_with(loop, f"minute-{batch}").values()) == {"per-minute-cap"}


def test_per_day_cap(loop: LocalLoop) -> None:
    batch = tag()
    faults(loop).plan()
    loop.remember_contact(PERSON, thing=BOB)
    # 199 sends already today (the counter item the send Lambda keeps).
    loop.moto.client("dynamodb").put_item(
        TableName=loop.aws.refs[loop.contacts_table],
        Item={
            contract.CONTACT_KEY_ATTRIBUTE: {"S": contract.send_counter_key(BOB, time.time())},
            contract.SEND_COUNTER_DAY_ATTRIBUTE: {"N": "199"},
        },
    )
    publish_as(loop, BOB, [{"Id": f"day-{batch}-0", "To": PERSON, "Body": f"d {batch} 0"}])
    assert loop.wait_for(lambda: len(bodies_sent(loop, f"d {batch}")) == 1, timeout=30)
    publish_as(loop, BOB, [{"Id": f"day-{batch}-1", "To": PERSON, "Body": f"d {batch} 1"}])
    assert loop.wait_for(lambda: refused_with(loop, f"day-{batch}"), timeout=30)
    assert refused_with(loop, f"day-{batch}") == {f"day-{batch}-1": "per-day-cap"}
    assert len(bodies_sent(loop, f"d {batch}")) == 1


def test_stop_then_reply_is_not_sent_and_21610_does_not_alarm(loop: LocalLoop) -> None:
    stopper, late = "+15557000001", "+15557000002"
    faults(loop).plan()
    dead_before = len(loop.dead_letters())
    opted_before = len(metric_points(loop, "RecipientOptedOut"))
    # STOP recorded by the receive side: the device's reply is not even attempted.
    loop.remember_contact(stopper, thing=ALICE, opted_out=True)
    publish_as(loop, ALICE, [{"Id": f"stop-{tag()}", "To": stopper, "Body": "after stop"}])
    # STOP Twilio knows of but the table does not: Twilio answers 21610.
    loop.remember_contact(late, thing=ALICE)
    faults(loop).plan("21610")
    publish_as(loop, ALICE, [{"Id": f"stop-{tag()}", "To": late, "Body": "after stop 2"}])
    assert loop.wait_for(
        lambda: len(metric_points(loop, "RecipientOptedOut")) == opted_before + 2, timeout=30
    )
    requests = twilio_requests(loop)
    assert [r.form["To"][0] for r in requests] == [late]
    assert [r.status for r in requests] == [400]
    assert len(loop.dead_letters()) == dead_before  # no alarm: nothing dead-lettered
    item = loop.moto.client("dynamodb").get_item(
        TableName=loop.aws.refs[loop.contacts_table],
        Key={contract.CONTACT_KEY_ATTRIBUTE: {"S": contract.contact_key(ALICE, late)}},
    )["Item"]
    assert item[contract.OPTED_OUT_ATTRIBUTE] == {"BOOL": True}  # the next reply is not attempted


def test_401_then_success_with_the_rotated_token(loop: LocalLoop) -> None:
    body = f"rotated {tag()}"
    # Rotation under way: Twilio already answers 401 to the token the Lambda has cached.
    loop.put_twilio_secret(
        {**loop.twilio_secret(), contract.SECONDARY_AUTH_TOKEN_KEY: "promoted-token"}
    )
    loop.remember_contact(PERSON, thing=ALICE)
    faults(loop).plan("401")
    publish_as(loop, ALICE, [{"Id": f"rot-{tag()}", "To": PERSON, "Body": body}])
    assert loop.wait_for(lambda: bodies_sent(loop, body), timeout=30)
    assert [r.status for r in twilio_requests(loop)] == [401, 201]
    assert len(bodies_sent(loop, body)) == 1


def redrive_for(loop: LocalLoop) -> Redrive:
    """The redrive tool on the loop's queues and tables (moto) and IoT data stand-in."""
    iot_data = boto3.client(
        "iot-data",
        endpoint_url=loop.iot_data.url,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    table = find_by_path(
        loop.template, "AWS::DynamoDB::Table", "Outbound/IdempotencyTable/Resource"
    )
    return Redrive(
        sqs=loop.moto.client("sqs"),
        dynamodb=loop.moto.client("dynamodb"),
        iot_data=iot_data,
        queue_urls={
            "SendDeadLetterQueue": loop.aws.queue_urls[loop.dead_letter_queue_id],
            "RuleErrorQueue": loop.aws.queue_urls[loop.rule_error_queue_id],
            "RefusedQueue": loop.aws.queue_urls[loop.refused_queue_id],
        },
        idempotency_table=loop.aws.refs[table],
        topic_prefix="sms",
    )


def reconciled(loop: LocalLoop, message_id: str) -> bool:
    """The send Lambda logged that Twilio already had `message_id`, and sent nothing."""
    return any(
        "reconciled: Twilio already has this message" in line and message_id in line
        for line in (loop.workdir / "send.log").read_text().splitlines()
    )


def expire_idempotency_records(loop: LocalLoop) -> None:
    """What 24 h do to the send Lambda's records: DynamoDB's TTL deletes them."""
    dynamodb = loop.moto.client("dynamodb")
    table = loop.aws.refs[
        find_by_path(loop.template, "AWS::DynamoDB::Table", "Outbound/IdempotencyTable/Resource")
    ]
    for item in dynamodb.scan(TableName=table)["Items"]:
        dynamodb.delete_item(TableName=table, Key={"id": item["id"]})


def test_redrive_lists_reasons_retries_what_is_worth_it_and_never_sends_twice(
    loop: LocalLoop,
) -> None:
    batch = tag()
    loop.remember_contact(PERSON, thing=DAVE)
    attempts = 1 + loop.router.retry_attempts
    # 1. Twilio down for all attempts: Lambda's on-failure record (worth retrying).
    faults(loop).plan(*["500"] * attempts)
    publish_as(loop, DAVE, [{"Id": f"down-{batch}", "To": PERSON, "Body": f"r {batch} down"}])
    assert loop.wait_for(lambda: len(loop.dead_letters()) == 1, timeout=30)
    # 2. Twilio accepted, but the answer was lost and the retries could not ask Twilio.
    faults(loop).plan("lost-reply", lookups=("503",) * attempts)
    publish_as(loop, DAVE, [{"Id": f"lost-{batch}", "To": PERSON, "Body": f"r {batch} lost"}])
    assert loop.wait_for(lambda: len(loop.dead_letters()) == 2, timeout=60)
    accepted_lost = len(bodies_sent(loop, f"r {batch} lost"))
    assert accepted_lost == 1  # Twilio has it; the Lambda could not know
    # 3. A refusal and a payload that is not JSON: permanent.
    publish_as(loop, ALICE, [{"Id": f"fraud-{batch}", "To": "+19005550000", "Body": "x"}])
    assert loop.wait_for(lambda: refused_with(loop, f"fraud-{batch}"), timeout=30)
    identity = loop.broker.identity(ALICE)
    rogue = MQTTClient(
        f"{ALICE}-{tag()}",
        "127.0.0.1",
        loop.broker.port,
        keepalive=30,
        ssl=tls_context(str(loop.broker.ca.cert_path), identity),
    )
    rogue.connect()
    rogue.publish(f"sms/{ALICE}/outbound".encode(), b"not json {", False, 1)
    rogue.disconnect()
    assert loop.wait_for(lambda: loop.rule_errors(), timeout=30)

    redrive = redrive_for(loop)
    dry = redrive.run(dry_run=True)
    actions = {(o.letter.message_id, o.action) for o in dry}
    assert (f"down-{batch}", "would redrive") in actions
    assert (f"lost-{batch}", "would redrive") in actions
    left = {o.letter.reason for o in dry if o.action == "left"}
    assert "refused by the outbound policy: not-a-recent-contact" in left
    assert any("not a JSON object" in reason for reason in left)
    assert len(loop.dead_letters()) == 2  # the dry run changed nothing

    expire_idempotency_records(loop)  # the redrive comes 24 h+ later
    twilio_accepted = list(loop.twilio.accepted)
    faults(loop).plan()
    loop.twilio.accepted.extend(twilio_accepted)  # Twilio still lists what it accepted
    done = redrive.run(dry_run=False)
    assert {o.letter.message_id for o in done if o.action == "redriven"} == {
        f"down-{batch}",
        f"lost-{batch}",
    }
    assert loop.wait_for(lambda: bodies_sent(loop, f"r {batch} down"), timeout=30)
    assert loop.wait_for(lambda: reconciled(loop, f"lost-{batch}"), timeout=30)
    assert len(bodies_sent(loop, f"r {batch} down")) == 1
    assert bodies_sent(loop, f"r {batch} lost") == []  # reconciled: not sent a second time
    assert loop.dead_letters() == []
    assert refused_with(loop, f"fraud-{batch}")  # permanent failures stay, with their reason
    assert loop.rule_errors()
