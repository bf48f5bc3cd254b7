"""End to end: the mailbox outlives MQTT sessions, and messages are sized for the board.

The broker forgets a session as AWS IoT does after its expiry (`LocalLoop.expire_session`:
mosquitto's own `persistent_client_expiration` counts in hours); the device then connects
without a session, asks for its mailbox, and gets every waiting message once, in order.
The sweeper runs with a 2-second retention here (7 days by default).
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract import MAX_DEVICE_PAYLOAD_BYTES
from loop.certs import tls_context
from loop.local_loop import LOAD_CAPS, LocalLoop
from loop.twilio_webhook import SENDER_PHONE
from loop.umqtt_host import MQTTClient
from tests.e2e.test_local_loop import replies_to, tag

pytestmark = pytest.mark.e2e
THING = "dev-reverser"
RETENTION_SECONDS = 2


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLoop]:
    with LocalLoop(
        Path(tmp_path_factory.mktemp("mailbox-loop")),
        retry_delay_s=0.05,
        mailbox_environment={"MAILBOX_RETENTION_SECONDS": str(RETENTION_SECONDS)},
        settings=LOAD_CAPS,  # 100 replies in a minute
    ) as running:
        yield running


def connected_without_session(loop: LocalLoop) -> bool:
    """Whether the device's latest connection found no session at the broker."""
    lines = [h.what for h in loop.trace.hops if "mqtt: connected" in h.what]
    return bool(lines) and lines[-1].endswith("session new")


def assert_each_delivered_once_in_order(loop: LocalLoop, bodies: list[str]) -> None:
    assert loop.wait_for(lambda: len(replies_to(loop, set(bodies))) >= len(bodies), timeout=90)
    seen = [m["Body"] for m in loop.received[THING] if m["Body"] in set(bodies)]
    assert seen == bodies  # all, in arrival order, none twice
    sent = Counter(m["Body"] for m in replies_to(loop, set(bodies)))
    assert len(sent) == len(bodies) and set(sent.values()) == {1}  # one SMS each
    # Each was confirmed: nothing of theirs waits any more.
    assert loop.wait_for(lambda: not any(m["Body"] in bodies for m in loop.pending(THING)))


def test_offline_past_the_session_expiry_100_messages_arrive_in_order_once(
    loop: LocalLoop,
) -> None:
    bodies = [f"mailbox {tag()} {n:03d}" for n in range(100)]
    loop.stop_device(THING)
    try:
        for body in bodies:
            assert loop.text(body).status == 200
        # The broker had them queued in the session; then the session expired.
        loop.expire_session(THING)
        assert [m["Body"] for m in loop.pending(THING)][-100:] == bodies
    finally:
        started = time.monotonic()
        device = loop.start_device(THING)
    assert device.connections == 1
    assert connected_without_session(loop)  # so nothing came from the broker's queue
    assert_each_delivered_once_in_order(loop, bodies)
    print(f"redelivery of 100 waiting messages: {time.monotonic() - started:.2f} s")


def test_a_reflashed_device_gets_what_arrived_before_and_after_its_session_ended(
    loop: LocalLoop,
) -> None:
    batch = tag()
    before = [f"reflash {batch} before {n:02d}" for n in range(50)]
    after = [f"reflash {batch} after {n:02d}" for n in range(50)]
    loop.stop_device(THING)
    try:
        for body in before:
            assert loop.text(body).status == 200
        loop.expire_session(THING)
        # No session, no subscription: the broker drops these; only the mailbox has them.
        for body in after:
            assert loop.text(body).status == 200
    finally:
        # A fresh firmware instance with a new certificate, as after flashing the board.
        device = loop.start_device(THING)
    assert device.connections == 1
    assert connected_without_session(loop)
    assert_each_delivered_once_in_order(loop, before + after)


def _media_sized_to(loop: LocalLoop, body: str, sid: str, size: int) -> list[tuple[str, str]]:
    """Ten media whose URLs make the published payload exactly `size` bytes."""
    media = [(f"https://api.twilio.com/media/{n}/", "image/jpeg") for n in range(10)]
    message = {
        "Type": "Incoming",
        "Id": sid,
        "From": SENDER_PHONE,
        "To": loop.number_of(THING),
        "Body": body,
        "Media": [{"Url": u, "ContentType": t} for u, t in media],
    }
    base = len(json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode())
    pad = size - base
    assert pad > 0
    media = [
        (url + "x" * (pad // 10 + (n < pad % 10)), kind) for n, (url, kind) in enumerate(media)
    ]
    return media


def test_a_message_at_the_size_limit_is_delivered_one_byte_over_is_refused(
    loop: LocalLoop,
) -> None:
    body = f"big 😀 {tag()}"
    sid = "SM" + uuid.uuid4().hex
    media = _media_sized_to(loop, body, sid, MAX_DEVICE_PAYLOAD_BYTES)
    published = len(loop.published)
    assert loop.text(body, media=media, message_sid=sid).status == 200
    assert loop.wait_for(lambda: any(m["Body"] == body for m in loop.received[THING]))
    assert len(loop.published[published][1]) == MAX_DEVICE_PAYLOAD_BYTES
    assert loop.wait_for(lambda: replies_to(loop, {body}))

    over = f"big 😀 {tag()}"
    over_sid = "SM" + uuid.uuid4().hex
    media = _media_sized_to(loop, over, over_sid, MAX_DEVICE_PAYLOAD_BYTES + 1)
    published = len(loop.published)
    response = loop.text(over, media=media, message_sid=over_sid)
    assert response.status == 200
    assert "too large for the device" in response.body
    assert f"{MAX_DEVICE_PAYLOAD_BYTES + 1} bytes" in response.body  # the sender is told
    time.sleep(0.5)
    assert len(loop.published) == published  # nothing published, nothing waits
    assert not any(m["Body"] == over for m in loop.pending(THING))
    assert not any(m["Body"] == over for m in loop.received[THING])


def test_a_device_that_never_comes_back_has_its_message_expire_and_counted(
    loop: LocalLoop,
) -> None:
    body = f"never read {tag()}"
    loop.stop_device(THING)
    try:
        assert loop.text(body).status == 200
        loop.expire_session(THING)
        waiting = loop.mailbox.sweep()
        assert waiting["expired"] == 0
        assert 0 < waiting["oldest_pending_age_seconds"] < RETENTION_SECONDS
        time.sleep(RETENTION_SECONDS + 0.5)
        swept = loop.mailbox.sweep()
        assert swept["expired"] == 1  # counted (metric ExpiredMessages), logged by Id
        assert swept["oldest_pending_age_seconds"] == 0
        assert not any(m["Body"] == body for m in loop.pending(THING))
        assert loop.mailbox.sweep()["expired"] == 0  # counted once
    finally:
        loop.start_device(THING)
    # Back after all: the expired message is not redelivered.
    probe = f"after expiry {tag()}"
    assert loop.text(probe).status == 200
    assert loop.wait_for(lambda: replies_to(loop, {probe}))
    assert not any(m["Body"] == body for m in loop.received[THING])


def test_the_host_board_loses_its_connection_on_a_packet_over_its_tls_record(
    loop: LocalLoop,
) -> None:
    # What the receive Lambda never publishes, published directly: the host stand-in for
    # the board drops its connection as axTLS does (RECORD_OVERFLOW), before the firmware
    # sees the message. A thing of its own, so the running device is not disturbed.
    probe = "size-probe"
    context = tls_context(str(loop.broker.ca.cert_path), loop.broker.identity(probe))
    client = MQTTClient(probe, "127.0.0.1", loop.broker.port, keepalive=30, ssl=context)
    got: list[bytes] = []
    client.set_callback(lambda _topic, message: got.append(message))
    client.connect(True)
    topic = f"sms/{probe}/inbound"
    client.subscribe(topic.encode(), 1)

    def next_message() -> None:
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            client.check_msg()
            time.sleep(0.01)

    try:
        loop.cloud.publish(topic, b"x" * MAX_DEVICE_PAYLOAD_BYTES, 1)
        next_message()
        assert got == [b"x" * MAX_DEVICE_PAYLOAD_BYTES]
        got.clear()
        loop.cloud.publish(topic, b"x" * 6000, 1)  # measured on the board: kills the link
        with pytest.raises(OSError) as error:
            next_message()
        assert error.value.args == (-257, "RECORD_OVERFLOW")
        assert got == []
    finally:
        client.disconnect()
