"""The send Lambda against Prism (Twilio's contract) with injected faults.

Lambda's asynchronous invocation is simulated (tests/send/scenarios.deliver_async): the
handler is invoked up to 1 + RETRY_ATTEMPTS times while it raises, then the event goes
to the dead-letter queue. The stack's matching configuration is asserted in
test_send_stack.py.
"""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qs

import pytest

from loop.prism import FaultProxy, LoopbackHttpClient, bracket_form_arrays
from tests.send.scenarios import (
    FAULT_CASES,
    RETRY_ATTEMPTS,
    SECRET_NAME,
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


@pytest.mark.parametrize("name", ["500 once", "503 once", "429 once", "timeout once (Twilio hung)"])
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


def test_a_permanent_twilio_error_is_dead_lettered_at_once_with_its_code(
    aws: AwsStandIns, fresh_proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    runtime = build_runtime(aws, fresh_proxy.url)
    row = run_fault_case(case("400 code 21211"), runtime, aws, fresh_proxy, "perm-1")
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
    item = aws.dynamodb.scan(TableName="send-idempotency")["Items"][0]
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
    runtime = build_runtime(aws, fresh_proxy.url, allow_list=frozenset({"+15557654321"}))
    delivery = deliver_async(runtime, aws, event("nope"))
    assert delivery.invocations == 1
    assert delivery.result == {"outcome": "rejected", "reason": "to-not-allowed"}
    assert fresh_proxy.exchanges == []
    assert "rejected: to-not-allowed" in caplog.text
    assert "+1555" not in caplog.text


def test_unset_credentials_fail_the_invocation_so_it_is_retried(
    aws: AwsStandIns, fresh_proxy: FaultProxy
) -> None:
    aws.secrets.put_secret_value(
        SecretId=SECRET_NAME, SecretString='{"account_sid": "", "auth_token": ""}'
    )
    delivery = deliver_async(build_runtime(aws, fresh_proxy.url), aws, event("early"))
    assert delivery.dead_lettered_by_lambda
    assert delivery.errors == ["ValueError"] * (1 + RETRY_ATTEMPTS)
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
