"""The custom resource that points a Twilio number at the webhook, against Prism.

Prism answers from the examples of Twilio's contract (its example number is
+18089255327, PNaaaa...); every request the resource makes is checked against the
contract, and the proxy records them so the tests can see what was asked of Twilio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aws_lambda_powertools.utilities import parameters

from lambda_shared import twilio_rest
from loop.twilio_loopback import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, LoopbackHttpClient
from stacks.python_function import LAMBDAS_DIR
from tests.conftest import ROOT
from tests.doubles.twilio_faults import FaultProxy
from tests.send.scenarios import FakeContext
from twilio_number_lambda.number_webhook import (
    Desired,
    NumberWebhookError,
    SmsWebhook,
    configure,
    parse_physical_id,
    physical_id,
    reconfigure,
    restore,
)

PRISM_NUMBER = "+18089255327"  # the example number of Twilio's contract
PRISM_SID = "PN" + "a" * 32
WEBHOOK = "https://abc123.execute-api.eu-west-1.amazonaws.com/v1/message"
FALLBACK = "https://fallback.example.com/sms"
SECRET = "text-device/test/twilio"


@pytest.fixture
def handler(
    aws_env: None, fresh_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[ModuleType, list[dict[str, Any]]]]:
    """The handler with the Twilio secret in moto, Twilio at Prism, and CloudFormation's
    answers captured instead of PUT to the pre-signed URL."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        boto3.client("secretsmanager").create_secret(
            Name=SECRET,
            SecretString=json.dumps(
                {"account_sid": TEST_ACCOUNT_SID, "auth_token": TEST_AUTH_TOKEN}
            ),
        )
        monkeypatch.setenv("TWILIO_SECRET_NAME", SECRET)
        # A cold container whose Twilio client talks to Prism. Imported here, with a region
        # set: crhelper builds its boto3 clients at import, as in Lambda.
        from twilio_number_lambda import handler as module

        module.twilio_clients.cache_clear()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        twilio_rest.use_transport(lambda t: LoopbackHttpClient(fresh_proxy.url, timeout=t))
        answers: list[dict[str, Any]] = []
        send = module.helper._send  # type: ignore[attr-defined]

        def capture(status: Any = None, reason: str = "", send_response: Any = None) -> None:
            send(status, reason, send_response=lambda _url, body, _verify: answers.append(body))

        monkeypatch.setattr(module.helper, "_send", capture)
        try:
            yield module, answers
        finally:
            twilio_rest.use_transport(None)


def cfn_event(request: str, **extra: Any) -> dict[str, Any]:
    return {
        "RequestType": request,
        "ResponseURL": "https://cloudformation-custom-resource-response.example/presigned",
        "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/TextDevice-dev/x",
        "RequestId": "req",
        "LogicalResourceId": "NumberWebhook",
        "ResourceType": "Custom::TwilioNumberWebhook",
        "ResourceProperties": {
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:x",
            "PhoneNumber": PRISM_NUMBER,
            "SmsUrl": WEBHOOK,
            "SmsFallbackUrl": FALLBACK,
        },
        **extra,
    }


def form(body: str) -> dict[str, list[str]]:
    return parse_qs(body, keep_blank_values=True)


def test_create_sets_the_webhook_and_remembers_the_previous_one(
    handler: tuple[ModuleType, list[dict[str, Any]]], fresh_proxy: FaultProxy
) -> None:
    module, answers = handler
    module.lambda_handler(cfn_event("Create"), FakeContext())
    [answer] = answers
    assert answer["Status"] == "SUCCESS", answer["Reason"]
    parsed = parse_physical_id(answer["PhysicalResourceId"])
    assert parsed == (PRISM_SID, SmsWebhook("", "POST", "", "POST"))
    listing, update = fresh_proxy.exchanges
    assert listing.method == "GET"
    assert parse_qs(urlsplit(listing.path).query)["PhoneNumber"] == [PRISM_NUMBER]
    assert update.method == "POST"
    assert update.path.endswith(f"/IncomingPhoneNumbers/{PRISM_SID}.json")
    assert form(update.body) == {
        "SmsUrl": [WEBHOOK],
        "SmsMethod": ["POST"],
        "SmsFallbackUrl": [FALLBACK],
        "SmsFallbackMethod": ["POST"],
    }


def test_delete_leaves_a_webhook_someone_changed_since(
    handler: tuple[ModuleType, list[dict[str, Any]]], fresh_proxy: FaultProxy
) -> None:
    module, answers = handler
    resource_id = physical_id(PRISM_SID, SmsWebhook("https://old.example/sms"))
    module.lambda_handler(cfn_event("Delete", PhysicalResourceId=resource_id), FakeContext())
    assert answers[0]["Status"] == "SUCCESS"
    # Prism's example number has no SmsUrl, i.e. not ours any more: only a fetch, no update.
    assert [e.method for e in fresh_proxy.exchanges] == ["GET"]


def test_delete_of_a_failed_create_does_nothing(
    handler: tuple[ModuleType, list[dict[str, Any]]], fresh_proxy: FaultProxy
) -> None:
    module, answers = handler
    event = cfn_event("Delete", PhysicalResourceId="TextDevice-dev_NumberWebhook_ABCDEF")
    module.lambda_handler(event, FakeContext())
    assert answers[0]["Status"] == "SUCCESS"
    assert fresh_proxy.exchanges == []


def test_update_of_the_same_number_keeps_the_remembered_webhook(
    handler: tuple[ModuleType, list[dict[str, Any]]], fresh_proxy: FaultProxy
) -> None:
    module, answers = handler
    resource_id = physical_id(PRISM_SID, SmsWebhook("https://old.example/sms"))
    old = cfn_event("Create")["ResourceProperties"] | {"SmsUrl": "https://old-api.example/v1/m"}
    event = cfn_event("Update", PhysicalResourceId=resource_id, OldResourceProperties=old)
    module.lambda_handler(event, FakeContext())
    assert answers[0]["Status"] == "SUCCESS"
    assert answers[0]["PhysicalResourceId"] == resource_id
    [update] = fresh_proxy.exchanges
    assert form(update.body)["SmsUrl"] == [WEBHOOK]


def test_a_twilio_error_fails_the_deploy_with_a_reason(
    handler: tuple[ModuleType, list[dict[str, Any]]], fresh_proxy: FaultProxy
) -> None:
    module, answers = handler
    fresh_proxy.paths = ("/IncomingPhoneNumbers.json",)
    fresh_proxy.plan("500")
    try:
        module.lambda_handler(cfn_event("Create"), FakeContext())
    finally:
        fresh_proxy.paths = ("/Messages.json",)
    assert answers[0]["Status"] == "FAILED"
    assert "500" in answers[0]["Reason"]


def test_unset_credentials_fail_the_deploy_with_instructions(
    handler: tuple[ModuleType, list[dict[str, Any]]], fresh_proxy: FaultProxy
) -> None:
    import boto3

    module, answers = handler
    boto3.client("secretsmanager").put_secret_value(
        SecretId=SECRET, SecretString='{"account_sid": "", "auth_token": ""}'
    )
    module.lambda_handler(cfn_event("Create"), FakeContext())
    assert answers[0]["Status"] == "FAILED"
    assert "put-secret-value" in answers[0]["Reason"]
    assert fresh_proxy.exchanges == []


# -- The logic with a fake client: the paths Prism's static examples cannot show ------------


class FakeNumber:
    def __init__(self, webhook: SmsWebhook) -> None:
        self.sid = PRISM_SID
        self.phone_number = PRISM_NUMBER
        self.set(webhook)

    def set(self, webhook: SmsWebhook) -> None:
        self.sms_url = webhook.sms_url
        self.sms_method = webhook.sms_method
        self.sms_fallback_url = webhook.sms_fallback_url
        self.sms_fallback_method = webhook.sms_fallback_method


class FakeNumbers:
    """Twilio's IncomingPhoneNumbers with one number in the account."""

    def __init__(self, number: FakeNumber) -> None:
        self.number = number
        self.updates = 0

    def list(self, phone_number: str, limit: int) -> list[FakeNumber]:
        return [self.number] if phone_number == self.number.phone_number else []

    def __call__(self, sid: str) -> FakeNumbers:
        assert sid == self.number.sid
        return self

    def fetch(self) -> FakeNumber:
        return self.number

    def update(self, **fields: str) -> FakeNumber:
        self.updates += 1
        self.number.set(SmsWebhook(**fields))
        return self.number


class FakeClient:
    def __init__(self, webhook: SmsWebhook) -> None:
        self.incoming_phone_numbers = FakeNumbers(FakeNumber(webhook))


def test_create_then_delete_restores_the_previous_webhook() -> None:
    before = SmsWebhook("https://old.example/sms", "GET", "https://old.example/fb", "GET")
    client = FakeClient(before)
    desired = Desired(PRISM_NUMBER, WEBHOOK, FALLBACK)
    resource_id = configure(client, desired)
    assert client.incoming_phone_numbers.number.sms_url == WEBHOOK
    assert restore(client, resource_id, desired) == "restored"
    assert SmsWebhook.of(client.incoming_phone_numbers.number) == before


def test_moving_to_another_number_configures_it_afresh() -> None:
    client = FakeClient(SmsWebhook("https://old.example/sms"))
    first = configure(client, Desired(PRISM_NUMBER, WEBHOOK))
    other = Desired("+15555550199", WEBHOOK)
    with pytest.raises(NumberWebhookError, match="not in this Twilio account"):
        reconfigure(client, first, Desired(PRISM_NUMBER, WEBHOOK), other)


def test_properties_are_validated() -> None:
    good = {"PhoneNumber": PRISM_NUMBER, "SmsUrl": WEBHOOK}
    assert Desired.from_properties(good) == Desired(PRISM_NUMBER, WEBHOOK, "")
    for bad in (
        {**good, "PhoneNumber": "8089255327"},
        {**good, "SmsUrl": "http://insecure.example"},
        {**good, "SmsFallbackUrl": "ftp://x"},
    ):
        with pytest.raises(NumberWebhookError):
            Desired.from_properties(bad)


def test_previous_urls_too_long_to_remember_fail_before_any_change() -> None:
    client = FakeClient(SmsWebhook("https://old.example/" + "x" * 900))
    with pytest.raises(NumberWebhookError, match="too long"):
        configure(client, Desired(PRISM_NUMBER, WEBHOOK))
    assert client.incoming_phone_numbers.updates == 0


def test_physical_id_round_trip_and_foreign_ids() -> None:
    webhook = SmsWebhook("https://a.example/x?y=1", "GET", "", "POST")
    assert parse_physical_id(physical_id(PRISM_SID, webhook)) == (PRISM_SID, webhook)
    for foreign in ("", "abc", "twilio-number:PNxyz:e30=", f"twilio-number:{PRISM_SID}:!!"):
        assert parse_physical_id(foreign) is None


# -- The bundle ------------------------------------------------------------------------------

BUNDLE_CHECK = """
import json, sys
sys.path[:0] = [{bundle!r}, {root!r}]
import twilio, twilio_number_lambda.handler
from twilio_number_lambda.number_webhook import find_number
from loop.twilio_loopback import twilio_client
assert twilio.__file__.startswith({bundle!r}), twilio.__file__
print(find_number(twilio_client({url!r}), {number!r}).sid)
"""


def test_the_pruned_bundle_finds_a_number_through_twilio(
    tmp_path: Path, fresh_proxy: FaultProxy
) -> None:
    from bench.receive_bench import build_bundle

    bundle = build_bundle(LAMBDAS_DIR / "twilio_number_lambda", tmp_path / "bundle")
    code = BUNDLE_CHECK.format(
        bundle=str(bundle), root=str(ROOT), url=fresh_proxy.url, number=PRISM_NUMBER
    )
    result = subprocess.run(
        [sys.executable, "-I", "-B", "-c", code],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "eu-west-1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [PRISM_SID]
