"""The send Lambda's outbound policy, opt-outs and 401 handling, against Prism and moto."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

import contract
from loop.twilio_loopback import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN
from send_lambda.outbound_policy import OutboundPolicy
from tests.doubles.twilio_faults import FaultProxy
from tests.send.scenarios import (
    CONTACTS_TABLE,
    RECIPIENT,
    SECRET_NAME,
    THING,
    AwsStandIns,
    FakeContext,
    build_runtime,
    deliver_async,
    event,
)


def emf_metrics(output: str) -> list[dict[str, Any]]:
    """The CloudWatch EMF documents the handler printed."""
    documents = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def test_a_stranger_is_refused_dead_lettered_with_its_reason_and_counted(
    aws: AwsStandIns,
    fresh_proxy: FaultProxy,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    runtime = build_runtime(aws, fresh_proxy.url)
    delivery = deliver_async(runtime, aws, event("fraud", To="+19005550100"))
    assert delivery.invocations == 1  # never retried
    assert delivery.result == {"outcome": "refused", "reason": "not-a-recent-contact"}
    assert fresh_proxy.exchanges == []
    [record] = aws.refused()
    assert record["requestContext"]["condition"] == contract.OUTBOUND_POLICY_REFUSED
    assert record["responsePayload"]["reason"] == "not-a-recent-contact"
    assert record["requestPayload"]["To"] == "+19005550100"
    assert aws.dead_letters() == []  # the alarmed DLQ stays for undelivered messages
    [metric] = [m for m in emf_metrics(capsys.readouterr().out) if "OutboundRefused" in m]
    assert metric["OutboundRefused"] == [1.0]
    assert metric["reason"] == "not-a-recent-contact"
    assert metric["service"] == "send"
    assert "+1900" not in caplog.text


def test_the_minute_cap_is_counted_atomically_under_concurrency(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    policy = OutboundPolicy(per_minute=5, per_day=100)
    # Twilio's answers take their time under 8 concurrent sends: no client timeout here.
    runtime = build_runtime(aws, fresh_proxy.url, policy=policy, timeout=6.0)
    fixed = datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC)
    runtime._clock = lambda: fixed
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(
            pool.map(lambda n: runtime.handle(event(f"cap-{n}"), FakeContext()), range(12))
        )
    outcomes = sorted(r["outcome"] for r in results)
    assert outcomes == ["refused"] * 7 + ["sent"] * 5
    assert fresh_proxy.messages_accepted() == 5
    reasons = {r["responsePayload"]["reason"] for r in aws.refused()}
    assert reasons == {"per-minute-cap"}


def test_the_day_cap_holds_across_minutes_and_a_repeat_is_not_counted(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    policy = OutboundPolicy(per_minute=5, per_day=3)
    runtime = build_runtime(aws, fresh_proxy.url, policy=policy)
    minutes = iter(range(10))
    runtime._clock = lambda: datetime(2026, 12, 1, 12, next(minutes), tzinfo=UTC)
    first = runtime.handle(event("day-0"), FakeContext())
    assert runtime.handle(event("day-0"), FakeContext())["sid"] == first["sid"]  # repeat
    assert runtime.handle(event("day-1"), FakeContext())["outcome"] == "sent"
    assert runtime.handle(event("day-2"), FakeContext())["outcome"] == "sent"
    assert runtime.handle(event("day-3"), FakeContext()) == {
        "outcome": "refused",
        "reason": "per-day-cap",
    }
    assert fresh_proxy.messages_accepted() == 3


def test_no_reply_is_attempted_to_an_opted_out_number(
    aws: AwsStandIns,
    fresh_proxy: FaultProxy,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    aws.remember_contact(RECIPIENT, opted_out=True)
    runtime = build_runtime(aws, fresh_proxy.url)
    delivery = deliver_async(runtime, aws, event("after-stop"))
    assert delivery.result == {"outcome": "opted-out"}
    assert fresh_proxy.exchanges == []
    assert aws.refused() == [] and aws.dead_letters() == []
    [record] = [r for r in caplog.records if r.getMessage() == "not sent: the recipient opted out"]
    assert record.levelno == logging.INFO
    metrics = emf_metrics(capsys.readouterr().out)
    assert [m["RecipientOptedOut"] for m in metrics if "RecipientOptedOut" in m] == [[1.0]]
    assert not any("OutboundRefused" in m for m in metrics)


def test_twilio_21610_is_an_expected_outcome_and_remembered(
    aws: AwsStandIns, fresh_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    runtime = build_runtime(aws, fresh_proxy.url)
    fresh_proxy.plan("21610")
    delivery = deliver_async(runtime, aws, event("stopped"))
    assert delivery.invocations == 1
    assert delivery.result == {"outcome": "opted-out"}
    assert aws.dead_letters() == [] and aws.refused() == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    item = aws.dynamodb.get_item(
        TableName=CONTACTS_TABLE,
        Key={contract.CONTACT_KEY_ATTRIBUTE: {"S": contract.contact_key(THING, RECIPIENT)}},
    )["Item"]
    assert item[contract.OPTED_OUT_ATTRIBUTE] == {"BOOL": True}
    # The next reply is not even attempted.
    assert runtime.handle(event("stopped-2"), FakeContext()) == {"outcome": "opted-out"}
    assert fresh_proxy.messages_accepted() == 0
    assert len(fresh_proxy.exchanges) == 1


def put_secret(aws: AwsStandIns, **tokens: str) -> None:
    aws.secrets.put_secret_value(
        SecretId=SECRET_NAME, SecretString=json.dumps({"account_sid": TEST_ACCOUNT_SID, **tokens})
    )


def test_a_401_re_reads_the_secret_and_retries_once(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    assert runtime.twilio().password == TEST_AUTH_TOKEN  # cached for SECRET_MAX_AGE
    put_secret(aws, auth_token="rotated-token")  # the operator updated the secret
    fresh_proxy.plan("401")
    delivery = deliver_async(runtime, aws, event("rotated"))
    assert delivery.result is not None and delivery.result["outcome"] == "sent"
    assert delivery.invocations == 1
    assert [e.client_status for e in fresh_proxy.exchanges] == [401, 201]
    assert fresh_proxy.messages_accepted() == 1
    assert runtime.twilio().password == "rotated-token"


def test_a_401_tries_the_secondary_token_during_a_rotation(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    put_secret(aws, auth_token=TEST_AUTH_TOKEN, secondary_auth_token="promoted-token")
    runtime = build_runtime(aws, fresh_proxy.url)
    fresh_proxy.plan("401")
    assert runtime.handle(event("secondary"), FakeContext())["outcome"] == "sent"
    assert [e.client_status for e in fresh_proxy.exchanges] == [401, 201]


def test_a_401_with_nothing_new_in_the_secret_is_dead_lettered_after_one_try(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    fresh_proxy.plan("401", "401")
    delivery = deliver_async(runtime, aws, event("bad-token"))
    assert delivery.result == {"outcome": "dead-lettered", "twilio_code": 20003}
    assert [e.client_status for e in fresh_proxy.exchanges] == [401]
    [record] = aws.dead_letters()
    assert record["responsePayload"]["twilioStatus"] == 401


def test_a_second_401_after_the_refresh_gives_up(aws: AwsStandIns, fresh_proxy: FaultProxy) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    runtime.twilio()
    put_secret(aws, auth_token="also-wrong")
    fresh_proxy.plan("401", "401")
    delivery = deliver_async(runtime, aws, event("still-bad"))
    assert delivery.result == {"outcome": "dead-lettered", "twilio_code": 20003}
    assert [e.client_status for e in fresh_proxy.exchanges] == [401, 401]
    assert len(aws.dead_letters()) == 1
