"""The mailbox Lambdas' handlers over moto's DynamoDB: ack, redeliver, sweep, notify."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.conftest import ROOT, load_lambda_modules
from tests.receive.conftest import FakeContext
from tests.receive.test_payload_and_mailbox import aws  # noqa: F401 (fixture)

MAILBOX_DIR = ROOT / "lambdas" / "mailbox"
MODULES = ("mailbox_rules", "store", "handler")
RETENTION = 7 * 86400
THING = "dev-reverser"


MAILBOX = load_lambda_modules(MAILBOX_DIR, MODULES)


class FakeIotData:
    def __init__(self) -> None:
        self.published: list[tuple[str, bytes, int]] = []

    def publish(self, *, topic: str, qos: int, payload: bytes) -> None:
        self.published.append((topic, payload, qos))


class FakeLambda:
    def __init__(self) -> None:
        self.invoked: list[dict[str, Any]] = []

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> None:
        assert InvocationType == "Event" and FunctionName == "send"
        self.invoked.append(json.loads(Payload))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def world(aws: Any) -> Iterator[SimpleNamespace]:  # noqa: F811
    iot = FakeIotData()
    notifier = FakeLambda()
    clock = Clock(1_000_000.0)
    sys.path.insert(0, str(ROOT / "lambdas" / "receive"))
    try:
        from mailbox_record import MailboxRecorder
    finally:
        sys.path.remove(str(ROOT / "lambdas" / "receive"))

    def runtime(notify: bool) -> Any:
        return MAILBOX.handler.MailboxRuntime(
            store=MAILBOX.store.MailboxStore(aws, "mailbox"),
            redelivery=MAILBOX.store.Redelivery(iot),
            things=(THING, "other"),
            retention_seconds=RETENTION,
            environment="dev",
            notifier=MAILBOX.store.SenderNotifier(notifier, "send") if notify else None,
            clock=clock,
        )

    recorder = MailboxRecorder(aws, "mailbox", RETENTION, clock=clock)

    def arrive(thing: str, sid: str, body: str) -> bytes:
        payload = json.dumps(
            {"Type": "Incoming", "Id": sid, "From": "+15551234567", "To": "+15555550100",
             "Body": body, "Media": []}, ensure_ascii=False, separators=(",", ":"),
        ).encode()  # fmt: skip
        assert recorder.record(
            thing=thing, message_id=sid, topic=f"sms/{thing}/inbound", payload=payload
        )
        clock.now += 1
        return payload

    yield SimpleNamespace(
        runtime=runtime, arrive=arrive, iot=iot, notifier=notifier, clock=clock, dynamodb=aws
    )


def waiting(world: SimpleNamespace, thing: str = THING) -> list[str]:
    store = MAILBOX.store.MailboxStore(world.dynamodb, "mailbox")
    return [m.message_id for m in store.pending(thing)]


def test_redelivery_publishes_every_waiting_message_oldest_first_as_first_published(
    world: SimpleNamespace,
) -> None:
    # Sids sort in another order than arrival: the index, not the key, gives the order.
    sids = [f"SM{n:02d}" for n in (5, 1, 9, 3)]
    payloads = [world.arrive(THING, sid, f"body {sid}") for sid in sids]
    world.arrive("other", "SMx", "not yours")
    result = world.runtime(False).device_request({"thing": THING, "request": "redeliver"})
    assert result == {"outcome": "redelivered", "messages": 4}
    assert world.iot.published == [(f"sms/{THING}/inbound", p, 1) for p in payloads]
    assert waiting(world) == sids  # redelivery takes nothing: only the device's ack does


def test_an_ack_takes_the_message_out_once(world: SimpleNamespace) -> None:
    world.arrive(THING, "SMa", "a")
    world.arrive(THING, "SMb", "b")
    runtime = world.runtime(False)
    assert runtime.device_request({"thing": THING, "request": "ack", "Id": "SMa"}) == {
        "outcome": "acked"
    }
    assert runtime.device_request({"thing": THING, "request": "ack", "Id": "SMa"}) == {
        "outcome": "not-pending"
    }
    assert runtime.device_request({"thing": "other", "request": "ack", "Id": "SMb"}) == {
        "outcome": "not-pending"  # a device can only take from its own mailbox
    }
    assert waiting(world) == ["SMb"]


@pytest.mark.parametrize(
    "event",
    [
        None,
        {"request": "ack", "Id": "SMa"},
        {"thing": "a/b", "request": "ack", "Id": "SMa"},
        {"thing": THING, "request": "ack"},
        {"thing": THING, "request": "ack", "Id": "x" * 65},
        {"thing": THING, "request": "ack", "Id": "has space"},
        {"thing": THING, "request": "delete-all"},
    ],
)
def test_bad_requests_are_refused_and_take_nothing(world: SimpleNamespace, event: object) -> None:
    world.arrive(THING, "SMa", "a")
    result = world.runtime(False).device_request(event)
    assert result["outcome"] == "refused"
    assert waiting(world) == ["SMa"]


def test_the_sweeper_expires_counts_once_and_reports_the_oldest_age(
    world: SimpleNamespace,
) -> None:
    world.arrive(THING, "SMold", "old")
    world.clock.now += 3600
    world.arrive(THING, "SMnew", "new")
    runtime = world.runtime(False)
    report = runtime.sweep()
    # (each arrival moves the test clock on by a second)
    assert report == {"expired": 0, "oldest_pending_age_seconds": 3602.0}
    world.clock.now += RETENTION - 3600  # SMold is now past the retention, SMnew is not
    assert runtime.sweep() == {"expired": 1, "oldest_pending_age_seconds": RETENTION - 3599.0}
    assert waiting(world) == ["SMnew"]
    assert runtime.sweep()["expired"] == 0
    assert world.notifier.invoked == []  # counted only: the sender is not told


def test_with_notify_sender_the_sender_is_told_through_the_send_lambda(
    world: SimpleNamespace,
) -> None:
    world.arrive(THING, "SMgone", "lost")
    world.clock.now += RETENTION + 1
    assert world.runtime(True).sweep()["expired"] == 1
    [notice] = world.notifier.invoked
    assert notice == {
        "thing": THING,
        "Type": "Outgoing",
        "Id": "SMgone:expired",  # the send Lambda's idempotency texts once
        "To": "+15551234567",
        "Body": MAILBOX.mailbox_rules.EXPIRY_NOTICE.format(days=7),
    }


def test_a_message_confirmed_while_the_sweeper_runs_is_not_counted(
    world: SimpleNamespace,
) -> None:
    world.arrive(THING, "SMrace", "race")
    store = MAILBOX.store.MailboxStore(world.dynamodb, "mailbox")
    [message] = list(store.pending(THING))
    assert store.take(THING, "SMrace")
    assert store.expire(message) is False


def test_the_handlers_emit_the_age_metric_for_the_environment(
    world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.arrive(THING, "SMm", "m")
    world.clock.now += 120
    # What the stack sets in the environment (read when the module is imported).
    monkeypatch.setattr(MAILBOX.handler.metrics, "namespace", "TextDevice")
    monkeypatch.setattr(MAILBOX.handler.metrics, "service", "mailbox")
    monkeypatch.setattr(MAILBOX.handler, "runtime", lambda: world.runtime(False))
    result = MAILBOX.handler.on_schedule({"source": "aws.events"}, FakeContext())
    assert result == {"expired": 0, "oldest_pending_age_seconds": 121.0}
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    [record] = emf
    assert record["environment"] == "dev" and record["service"] == "mailbox"
    assert record["OldestPendingAgeSeconds"] == [121.0]
    assert record["ExpiredMessages"] == [0.0]
    assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TextDevice"


def test_runtime_is_built_from_the_environment(aws_env: None) -> None:
    with mock_aws():
        runtime = MAILBOX.handler.MailboxRuntime.from_environment(
            {
                "MAILBOX_TABLE": "mailbox",
                "MAILBOX_RETENTION_SECONDS": "604800",
                "THINGS": json.dumps([THING]),
                "ENVIRONMENT_NAME": "prod",
                "SEND_FUNCTION_NAME": "send",
            }
        )
    assert runtime.things == (THING,) and runtime.retention_seconds == 604800
    assert runtime.notifier is not None and runtime.environment == "prod"
    assert boto3  # the clients come from boto3's defaults
