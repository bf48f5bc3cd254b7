"""The Lambdas' entry points, built from their environment as in AWS (moto, Prism)."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import pytest
from aws_lambda_powertools.utilities import parameters
from twilio.request_validator import RequestValidator

import contract
from lambda_shared import twilio_rest
from loop import bindings
from loop.twilio_loopback import TEST_AUTH_TOKEN, LoopbackHttpClient
from send_lambda import handler as send_handler
from status_lambda import handler as status_lambda_handler
from tests.doubles.twilio_faults import FaultProxy
from tests.send.scenarios import (
    CONTACTS_TABLE,
    QUEUE_NAME,
    SECRET_NAME,
    SENDER,
    TABLE_NAME,
    THING,
    AwsStandIns,
    FakeContext,
    event,
)


def test_send_handler_builds_its_runtime_from_the_environment(
    aws: AwsStandIns, fresh_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    aws.dynamodb.create_table(
        TableName="bindings",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    bindings.fill(
        boto3.resource("dynamodb", region_name="eu-west-1").Table("bindings"), {THING: SENDER}
    )
    for name, value in {
        contract.BINDINGS_TABLE_VARIABLE: "bindings",
        "DESTINATION_ALLOW_LIST": "",
        "TWILIO_SECRET_NAME": SECRET_NAME,
        "IDEMPOTENCY_TABLE": TABLE_NAME,
        "DEAD_LETTER_QUEUE_URL": aws.queue_url,
        "CONTACTS_TABLE": CONTACTS_TABLE,
        "REFUSED_QUEUE_URL": aws.refused_queue_url,
    }.items():
        monkeypatch.setenv(name, value)
    # A cold container whose Twilio client talks to Prism.
    send_handler.runtime.cache_clear()
    twilio_rest.use_transport(lambda t: LoopbackHttpClient(fresh_proxy.url, timeout=t))
    try:
        first = send_handler.lambda_handler(event("h-1"), FakeContext())
        again = send_handler.lambda_handler(event("h-1"), FakeContext(aws_request_id="req-2"))
        built = send_handler.runtime()
    finally:
        twilio_rest.use_transport(None)
        send_handler.runtime.cache_clear()
    assert first["outcome"] == "sent" and again["sid"] == first["sid"]
    assert fresh_proxy.messages_accepted() == 1
    assert QUEUE_NAME in built.config.dead_letter_queue_url


# -- Status callback ------------------------------------------------------------------------

DOMAIN = "abc123.execute-api.eu-west-1.amazonaws.com"
STATUS_URL = f"https://{DOMAIN}/v1/status"


def status_event(form: dict[str, str], *, token: str = TEST_AUTH_TOKEN) -> dict[str, Any]:
    signature = RequestValidator(token).compute_signature(STATUS_URL, form)
    body = base64.b64encode(urlencode(form).encode()).decode()
    return {
        "body": body,
        "isBase64Encoded": True,
        "headers": {"x-twilio-signature": signature},
        "requestContext": {"domainName": DOMAIN, "path": "/v1/status"},
    }


@pytest.fixture
def status_handler(aws: AwsStandIns, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    monkeypatch.setenv("TWILIO_SECRET_NAME", SECRET_NAME)
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    status_lambda_handler.config.cache_clear()
    yield status_lambda_handler
    status_lambda_handler.config.cache_clear()


REPORT = {
    "MessageSid": "SM" + "b" * 32,
    "MessageStatus": "undelivered",
    "ErrorCode": "30003",
    "To": "+15551234567",
    "From": SENDER,
}


def test_a_failed_delivery_is_logged_as_an_error_without_numbers(
    status_handler: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    answer = status_handler.lambda_handler(status_event(REPORT), FakeContext())
    assert answer["statusCode"] == 204
    [record] = [r for r in caplog.records if r.getMessage() == "message not delivered"]
    assert record.levelno == logging.ERROR
    assert record.error_code == "30003"  # type: ignore[attr-defined]
    assert "+1555" not in caplog.text


def test_a_delivered_message_is_logged_at_info(
    status_handler: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    delivered = {**REPORT, "MessageStatus": "delivered"}
    delivered.pop("ErrorCode")
    assert (
        status_handler.lambda_handler(status_event(delivered), FakeContext())["statusCode"] == 204
    )
    assert any(r.getMessage() == "message status" for r in caplog.records)


def test_a_forged_or_malformed_callback_is_refused(status_handler: ModuleType) -> None:
    forged = status_event(REPORT, token="not-the-token")
    assert status_handler.lambda_handler(forged, FakeContext())["statusCode"] == 403
    missing = status_event({"MessageStatus": "sent"})
    assert status_handler.lambda_handler(missing, FakeContext())["statusCode"] == 400
    garbage = {**status_event(REPORT), "body": "%%%", "isBase64Encoded": False}
    assert status_handler.lambda_handler(garbage, FakeContext())["statusCode"] == 400


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("%%%", "the body is not valid base64"),  # outside base64's alphabet
        ("abc", "the body is not valid base64"),  # bad padding
        (base64.b64encode(b"MessageSid=\xff\xfe").decode(), "the body is not UTF-8"),
    ],
)
def test_a_base64_body_that_does_not_decode_is_a_400_not_a_crash(
    status_handler: ModuleType, caplog: pytest.LogCaptureFixture, body: str, reason: str
) -> None:
    caplog.set_level(logging.INFO)
    bad = {**status_event(REPORT), "body": body, "isBase64Encoded": True}
    assert status_handler.lambda_handler(bad, FakeContext())["statusCode"] == 400
    [record] = [r for r in caplog.records if r.getMessage() == "status callback rejected"]
    assert record.reason == reason  # type: ignore[attr-defined]


def test_a_callback_without_api_gateway_context_is_a_400(status_handler: ModuleType) -> None:
    event = status_event(REPORT)
    event.pop("requestContext")
    assert status_handler.lambda_handler(event, FakeContext())["statusCode"] == 400


def test_an_unset_secret_refuses_every_callback_and_logs_the_fix(
    aws: AwsStandIns, status_handler: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    aws.secrets.put_secret_value(
        SecretId=SECRET_NAME, SecretString='{"account_sid": "", "auth_token": ""}'
    )
    caplog.set_level(logging.INFO)
    assert status_handler.lambda_handler(status_event(REPORT), FakeContext())["statusCode"] == 403
    assert f"put-secret-value --secret-id {SECRET_NAME}" in caplog.text
