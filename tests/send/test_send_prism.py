"""The send Lambda against Prism (Twilio's contract) with injected faults.

Lambda's asynchronous invocation is simulated (tests/send/scenarios.deliver_async): the
handler is invoked up to 1 + RETRY_ATTEMPTS times while it raises, then the event goes
to the dead-letter queue. The stack's matching configuration is asserted in
test_send_stack.py.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests

from loop.twilio_loopback import LoopbackHttpClient, bracket_form_arrays, twilio_client
from send_lambda.outbound import RECONCILE_CLOCK_SKEW
from tests.doubles.twilio_faults import FaultProxy
from tests.send.scenarios import (
    CLIENT_TIMEOUT,
    FAULT_CASES,
    RETRY_ATTEMPTS,
    SECRET_NAME,
    SENDER,
    TABLE_NAME,
    THING,
    AwsStandIns,
    FakeContext,
    FaultCase,
    build_runtime,
    deliver_async,
    event,
    run_fault_case,
    slug,
)

CASES = {case.name: case for case in FAULT_CASES}


def case(name: str) -> FaultCase:
    return CASES[name]


def test_retry_attempts_match_the_stack() -> None:
    from stacks.outbound_messaging import RETRY_ATTEMPTS as STACK_RETRIES

    assert RETRY_ATTEMPTS == STACK_RETRIES


def test_a_valid_message_is_sent_once_and_validated_by_prism(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    runtime = build_runtime(aws, fresh_proxy.url, status_callback_url="https://h.example/v1/status")
    row = run_fault_case(case("no fault"), runtime, aws, fresh_proxy, "ok-1")
    [delivery] = row.deliveries
    assert delivery.invocations == 1
    assert delivery.result is not None
    assert delivery.result["outcome"] == "sent"
    assert delivery.result["sid"].startswith("SM")
    assert row.sms_sent == 1
    assert row.dead_letters == []
    [exchange] = fresh_proxy.exchanges
    assert exchange.prism_status == 201  # Prism found the request valid


def test_mms_with_several_media_urls_passes_prisms_validation(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    media = ["https://example.com/a.jpg", "https://example.com/b.png"]
    result = runtime.handle(event("mms-1", Body="", MediaUrl=media), FakeContext())
    assert result["outcome"] == "sent"
    assert fresh_proxy.messages_accepted() == 1


@pytest.mark.parametrize(
    "name", ["500 once", "503 once", "429 once", "timeout, Twilio never got it"]
)
def test_a_transient_failure_is_retried_and_sends_one_sms(
    name: str, aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    row = run_fault_case(case(name), build_runtime(aws, fresh_proxy.url), aws, fresh_proxy, name)
    [delivery] = row.deliveries
    assert delivery.invocations == 2
    assert delivery.result is not None and delivery.result["outcome"] == "sent"
    assert len(delivery.errors) == 1 and delivery.errors[0] == "TransientTwilioError"
    assert row.sms_sent == 1
    assert row.dead_letters == []


@pytest.mark.parametrize("name", ["500 every time", "timeout every time"])
def test_a_failure_that_persists_lands_in_the_dead_letter_queue(
    name: str, aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    row = run_fault_case(case(name), build_runtime(aws, fresh_proxy.url), aws, fresh_proxy, name)
    [delivery] = row.deliveries
    assert delivery.invocations == 1 + RETRY_ATTEMPTS
    assert delivery.dead_lettered_by_lambda
    assert row.sms_sent == 0
    [dead] = row.dead_letters
    assert dead["requestPayload"]["Id"] == slug(name)
    assert dead["requestContext"]["condition"] == "RetriesExhausted"


@pytest.mark.parametrize("fault", ["21211", "21211-problem"])
def test_a_permanent_twilio_error_is_dead_lettered_at_once_with_its_code(
    aws: AwsStandIns, fresh_proxy: FaultProxy, caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    caplog.set_level(logging.INFO)
    runtime = build_runtime(aws, fresh_proxy.url)
    row = run_fault_case(FaultCase(fault, (fault,)), runtime, aws, fresh_proxy, "perm-1")
    [delivery] = row.deliveries
    assert delivery.invocations == 1  # not retried: the invocation succeeded
    assert delivery.result == {"outcome": "dead-lettered", "twilio_code": 21211}
    assert row.sms_sent == 0
    [dead] = row.dead_letters
    assert dead["requestContext"]["condition"] == "PermanentTwilioError"
    assert dead["responsePayload"] == {
        "errorType": "PermanentTwilioError",
        "twilioStatus": 400,
        "twilioCode": 21211,
    }
    assert dead["requestPayload"] == event("perm-1")
    assert dead["requestContext"]["functionArn"].endswith(":function:send")
    logged = [r for r in caplog.records if "Twilio refused" in r.getMessage()]
    assert logged and logged[0].twilio_code == 21211  # type: ignore[attr-defined]
    assert "+1555" not in caplog.text  # no phone number in the logs


def test_a_duplicate_delivery_sends_one_sms_and_returns_the_same_sid(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    row = run_fault_case(case("same Id delivered twice"), runtime, aws, fresh_proxy, "dup-1")
    first, second = row.deliveries
    assert first.result is not None and second.result is not None
    assert first.result["sid"] == second.result["sid"]
    assert row.sms_sent == 1
    assert len(fresh_proxy.exchanges) == 1  # the second delivery never reached Twilio
    items = aws.dynamodb.scan(TableName="send-idempotency")["Items"]
    [item] = [i for i in items if not i["id"]["S"].startswith("attempt#")]
    assert item["status"]["S"] == "COMPLETED"
    assert json.loads(item["data"]["S"])["sid"] == first.result["sid"]
    assert "expiration" in item


def test_a_redelivery_after_the_dead_letter_queue_can_still_send(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    row = run_fault_case(
        case("same Id twice, 500 on the first"), runtime, aws, fresh_proxy, "redrive-1"
    )
    first, second = row.deliveries
    assert first.dead_lettered_by_lambda
    assert second.result is not None and second.result["outcome"] == "sent"
    assert row.sms_sent == 1


def test_two_devices_may_use_the_same_id(aws: AwsStandIns, fresh_proxy: FaultProxy) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    for thing in ("dev-reverser", "dev-doorbell"):
        assert runtime.handle(event("shared-id", thing=thing), FakeContext())["outcome"] == "sent"
    assert fresh_proxy.messages_accepted() == 2


def test_the_same_id_with_other_content_is_rejected_not_sent(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    assert runtime.handle(event("reuse", Body="one"), FakeContext())["outcome"] == "sent"
    again = runtime.handle(event("reuse", Body="two"), FakeContext())
    assert again == {"outcome": "rejected", "reason": "id-reused"}
    assert fresh_proxy.messages_accepted() == 1


def test_a_rejected_message_never_reaches_twilio_and_is_logged_specifically(
    aws: AwsStandIns, fresh_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    runtime = build_runtime(aws, fresh_proxy.url)
    delivery = deliver_async(runtime, aws, event("nope", Type="Incoming"))
    assert delivery.invocations == 1
    assert delivery.result == {"outcome": "rejected", "reason": "wrong-type"}
    assert fresh_proxy.exchanges == []
    assert "rejected: wrong-type" in caplog.text
    assert "+1555" not in caplog.text


def test_unset_credentials_fail_the_invocation_so_it_is_retried(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    aws.secrets.put_secret_value(
        SecretId=SECRET_NAME, SecretString='{"account_sid": "", "auth_token": ""}'
    )
    delivery = deliver_async(build_runtime(aws, fresh_proxy.url), aws, event("early"))
    assert delivery.dead_lettered_by_lambda
    assert delivery.errors == ["MissingCredentials"] * (1 + RETRY_ATTEMPTS)
    assert fresh_proxy.exchanges == []


def test_the_twilio_client_is_reused_across_warm_invocations(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    assert runtime.twilio() is runtime.twilio()


def test_the_loopback_transport_writes_form_arrays_in_bracket_style() -> None:
    assert bracket_form_arrays({"To": "+1", "MediaUrl": ["a", "b"]}) == {
        "To": "+1",
        "MediaUrl[]": ["a", "b"],
    }
    client = LoopbackHttpClient("http://127.0.0.1:9", timeout=1)
    assert client.base_url == "http://127.0.0.1:9"
    with pytest.raises(ValueError, match="http"):
        LoopbackHttpClient("ftp://x", timeout=1)
    assert parse_qs("MediaUrl%5B%5D=a&MediaUrl%5B%5D=b") == {"MediaUrl[]": ["a", "b"]}


# -- Reconciliation after an ambiguous failure ------------------------------------------------


def marker(aws: AwsStandIns, message_id: str) -> dict[str, Any] | None:
    """The "attempted" marker of one of THING's messages, if any."""
    key = {"id": {"S": f"attempt#{THING}#{message_id}"}}
    found: dict[str, Any] | None = aws.dynamodb.get_item(
        TableName=TABLE_NAME, Key=key, ConsistentRead=True
    ).get("Item")
    return found


@pytest.mark.parametrize(
    "name",
    ["timeout after Twilio accepted", "reset after Twilio accepted", "502 after Twilio accepted"],
)
def test_a_retry_after_twilio_accepted_finds_the_message_and_sends_nothing(
    name: str, aws: AwsStandIns, fresh_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    row = run_fault_case(case(name), build_runtime(aws, fresh_proxy.url), aws, fresh_proxy, name)
    [delivery] = row.deliveries
    assert delivery.invocations == 2
    assert delivery.errors == ["TransientTwilioError"]
    assert row.sms_sent == 1
    [accepted] = fresh_proxy.accepted
    assert delivery.result == {
        "outcome": "sent",
        "sid": accepted.sid,
        "status": "sent",
        "reconciled": True,
    }
    methods = [e.method for e in fresh_proxy.exchanges]
    assert methods == ["POST", "GET"]  # the retry only asked Twilio
    assert "reconciled" in caplog.text
    assert "+1555" not in caplog.text
    assert row.dead_letters == []


def test_the_reconciled_sid_is_kept_for_later_deliveries(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    row = run_fault_case(case("timeout after Twilio accepted"), runtime, aws, fresh_proxy, "keep")
    again = runtime.handle(event(slug("keep")), FakeContext(aws_request_id="late"))
    assert row.deliveries[0].result == again
    assert fresh_proxy.messages_accepted() == 1
    assert len(fresh_proxy.exchanges) == 2  # the late delivery did not reach Twilio


def test_a_timeout_before_twilio_accepted_sends_once_on_retry(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    name = "timeout, Twilio never got it"
    row = run_fault_case(case(name), build_runtime(aws, fresh_proxy.url), aws, fresh_proxy, name)
    [delivery] = row.deliveries
    assert delivery.result is not None and "reconciled" not in delivery.result
    assert [e.method for e in fresh_proxy.exchanges] == ["POST", "GET", "POST"]
    assert row.sms_sent == 1
    [accepted] = fresh_proxy.accepted
    assert delivery.result["sid"] == accepted.sid


def test_a_marker_without_a_matching_message_sends(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    # Twilio lists an identical text sent from the same number before the skew window...
    old = datetime.now(UTC) - RECONCILE_CLOCK_SKEW - timedelta(seconds=5)
    fresh_proxy.clock = lambda: old
    try:
        assert runtime.handle(event("earlier"), FakeContext())["outcome"] == "sent"
    finally:
        fresh_proxy.clock = lambda: datetime.now(UTC)
    # ... and one with another body; then a marker says an attempt may have reached Twilio.
    assert runtime.handle(event("other", Body="other text"), FakeContext())["outcome"] == "sent"
    aws.dynamodb.put_item(
        TableName=TABLE_NAME,
        Item={
            "id": {"S": f"attempt#{THING}#fresh"},
            "first_attempt": {"N": str(datetime.now(UTC).timestamp())},
            "expiration": {"N": str(int(datetime.now(UTC).timestamp()) + 3600)},
        },
    )
    result = runtime.handle(event("fresh"), FakeContext())
    assert result["outcome"] == "sent" and "reconciled" not in result
    assert fresh_proxy.messages_accepted() == 3
    assert [e.method for e in fresh_proxy.exchanges][-2:] == ["GET", "POST"]


def test_an_expired_marker_is_ignored(aws: AwsStandIns, fresh_proxy: FaultProxy) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    past = int(datetime.now(UTC).timestamp()) - 10
    aws.dynamodb.put_item(
        TableName=TABLE_NAME,
        Item={
            "id": {"S": f"attempt#{THING}#expired"},
            "first_attempt": {"N": str(past - 3600)},
            "expiration": {"N": str(past)},
        },
    )
    assert runtime.handle(event("expired"), FakeContext())["outcome"] == "sent"
    assert [e.method for e in fresh_proxy.exchanges] == ["POST"]  # no lookup


def test_reconciliation_tolerates_a_lambda_clock_ahead_of_twilios(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    ahead = RECONCILE_CLOCK_SKEW / 2
    runtime = build_runtime(aws, fresh_proxy.url, clock=lambda: datetime.now(UTC) + ahead)
    name = "timeout after Twilio accepted"
    row = run_fault_case(case(name), runtime, aws, fresh_proxy, "skewed")
    assert row.deliveries[0].result is not None and row.deliveries[0].result["reconciled"]
    assert row.sms_sent == 1


def test_an_mms_is_reconciled_by_body_and_media_count(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    runtime = build_runtime(aws, fresh_proxy.url)
    media = ["https://example.com/a.jpg", "https://example.com/b.png"]
    fresh_proxy.plan("lost-reply")
    payload = event("mms-lost", Body="look", MediaUrl=media)
    delivery = deliver_async(runtime, aws, payload)
    assert delivery.result is not None and delivery.result["reconciled"]
    [accepted] = fresh_proxy.accepted
    assert accepted.num_media == 2 and delivery.result["sid"] == accepted.sid


def test_a_definite_refusal_deletes_the_marker_a_5xx_or_timeout_keeps_it(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    name = "429 once"
    row = run_fault_case(case(name), build_runtime(aws, fresh_proxy.url), aws, fresh_proxy, name)
    # The 429 deleted the first marker, so the retry did not ask Twilio before sending.
    assert [e.method for e in fresh_proxy.exchanges] == ["POST", "POST"]
    assert row.sms_sent == 1
    assert marker(aws, slug(name)) is not None  # the successful attempt's, left to its TTL

    # A 500 may come after Twilio accepted: the retry asks Twilio (nothing there), then sends.
    name = "500 once"
    row = run_fault_case(case(name), build_runtime(aws, fresh_proxy.url), aws, fresh_proxy, name)
    assert [e.method for e in fresh_proxy.exchanges] == ["POST", "GET", "POST"]
    assert row.sms_sent == 1
    [delivery] = row.deliveries
    assert delivery.result is not None and "reconciled" not in delivery.result

    name = "timeout every time"
    row = run_fault_case(case(name), build_runtime(aws, fresh_proxy.url), aws, fresh_proxy, name)
    kept = marker(aws, slug(name))
    assert kept is not None and int(kept["expiration"]["N"]) > datetime.now(UTC).timestamp()
    assert row.deliveries[0].dead_lettered_by_lambda and row.sms_sent == 0


def test_a_failed_lookup_is_retried_never_answered_by_sending(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    name = "timeout after accept, list fails once"
    row = run_fault_case(case(name), build_runtime(aws, fresh_proxy.url), aws, fresh_proxy, name)
    [delivery] = row.deliveries
    assert delivery.invocations == 3
    assert delivery.result is not None and delivery.result["reconciled"]
    assert row.sms_sent == 1

    name = "timeout after accept, list always fails"
    row = run_fault_case(case(name), build_runtime(aws, fresh_proxy.url), aws, fresh_proxy, name)
    [delivery] = row.deliveries
    assert delivery.dead_lettered_by_lambda  # waits in the queue: redriven, it reconciles
    assert row.sms_sent == 1
    runtime = build_runtime(aws, fresh_proxy.url)
    redriven = runtime.handle(row.dead_letters[0]["requestPayload"], FakeContext())
    assert redriven["reconciled"] and fresh_proxy.messages_accepted() == 1


def test_the_proxy_lists_accepted_messages_newest_first_with_filters(
    fresh_proxy: FaultProxy,
) -> None:
    client = twilio_client(fresh_proxy.url)
    for to, body in (("+15551234567", "one"), ("+15557654321", "two"), ("+15551234567", "3")):
        client.messages.create(to=to, from_=SENDER, body=body)
    fresh_proxy.plan("hang")  # a new scenario: the proxy forgets, and this one is lost
    with pytest.raises(requests.ReadTimeout):
        twilio_client(fresh_proxy.url, timeout=CLIENT_TIMEOUT).messages.create(
            to="+15551234567", from_=SENDER, body="lost"
        )
    assert fresh_proxy.accepted == []
    for to, body in (("+15551234567", "one"), ("+15557654321", "two"), ("+15551234567", "3")):
        created = client.messages.create(to=to, from_=SENDER, body=body)
    listed = client.messages.list(to="+15551234567", from_=SENDER, limit=20)
    assert [m.body for m in listed] == ["3", "one"]
    assert listed[0].sid == created.sid and listed[0].sid != listed[1].sid
    assert listed[0].date_created is not None and listed[0].num_media == "0"
    assert [m.body for m in client.messages.list(limit=1)] == ["3"]
    assert [e.prism_status for e in fresh_proxy.exchanges if e.method == "GET"] == [200, 200]
