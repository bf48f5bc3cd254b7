"""The mailbox Lambdas' handlers over moto's DynamoDB: ack, redeliver, sweep, notify."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from moto import mock_aws

from mailbox_lambda import handler
from mailbox_lambda.config import MailboxConfig
from mailbox_lambda.handler import MailboxRuntime
from mailbox_lambda.rules import EXPIRY_NOTICE
from mailbox_lambda.store import MailboxStore, Redelivery, SenderNotifier
from receive_lambda.mailbox_record import MailboxRecorder
from tests.receive.conftest import FakeContext
from tests.receive.test_payload_and_mailbox import aws  # noqa: F401 (fixture)

RETENTION = 7 * 86400
THING = "dev-reverser"


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

    def runtime(notify: bool) -> MailboxRuntime:
        return MailboxRuntime(
            store=MailboxStore(aws, "mailbox"),
            redelivery=Redelivery(iot),
            retention_seconds=RETENTION,
            environment="dev",
            notifier=SenderNotifier(notifier, "send") if notify else None,
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
    store = MailboxStore(world.dynamodb, "mailbox")
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
        {"thing": THING, "request": "ack", "Id": "x" * 129},
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
        "Body": EXPIRY_NOTICE.format(days=7),
    }


def test_a_message_confirmed_while_the_sweeper_runs_is_not_counted(
    world: SimpleNamespace,
) -> None:
    world.arrive(THING, "SMrace", "race")
    store = MailboxStore(world.dynamodb, "mailbox")
    [message] = list(store.pending(THING))
    assert store.take(THING, "SMrace")
    assert store.expire(message) is False


def test_the_handlers_emit_the_age_metric_for_the_environment(
    world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world.arrive(THING, "SMm", "m")
    world.clock.now += 120
    # What the stack sets in the environment (read when the module is imported).
    monkeypatch.setattr(handler.metrics, "namespace", "TextDevice")
    monkeypatch.setattr(handler, "runtime", lambda: world.runtime(False))
    result = handler.sweeper_handler({"source": "aws.events"}, FakeContext())
    assert result == {"expired": 0, "oldest_pending_age_seconds": 121.0}
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    [record] = emf
    assert record["environment"] == "dev" and record["service"] == "mailbox"
    assert record["OldestPendingAgeSeconds"] == [121.0]
    assert record["ExpiredMessages"] == [0.0]
    assert record["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "TextDevice"


def test_runtime_is_built_from_the_environment(aws_env: None) -> None:
    config = MailboxConfig.from_environ(
        {
            "MAILBOX_TABLE": "mailbox",
            "MAILBOX_RETENTION_SECONDS": "604800",
            "ENVIRONMENT_NAME": "prod",
            "SEND_FUNCTION_NAME": "send",
        }
    )
    assert config.send_function == "send" and config.retention_seconds == 604800
    with mock_aws():
        runtime = MailboxRuntime.from_config(config)
    assert runtime.retention_seconds == 604800
    assert runtime.notifier is not None and runtime.environment == "prod"


@pytest.mark.parametrize(
    "environ",
    [
        {"MAILBOX_RETENTION_SECONDS": "60", "ENVIRONMENT_NAME": "dev"},
        {"MAILBOX_TABLE": "m", "MAILBOX_RETENTION_SECONDS": "", "ENVIRONMENT_NAME": "dev"},
        {"MAILBOX_TABLE": "m", "MAILBOX_RETENTION_SECONDS": "0", "ENVIRONMENT_NAME": "dev"},
    ],
)
def test_a_misconfigured_mailbox_names_what_is_wrong(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="MAILBOX_"):
        MailboxConfig.from_environ(environ)
