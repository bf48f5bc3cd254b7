"""The status callback's bounds (issue 11, point 6) and token rotation (point 4).

The same bounds as the message webhook, before the secret is read or any HMAC computed:
body size, field count, query parameters, a malformed signature. HMACs are counted by
wrapping the `hmac` module twilio's RequestValidator uses.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest
from moto import mock_aws
from twilio.request_validator import RequestValidator

from lambda_shared.twilio_credentials import credentials_of
from status_lambda import handler as status_handler

SECRET = "text-device/test/twilio"
TOKEN = "0123456789abcdef0123456789abcdef"
DOMAIN = "abc123.execute-api.eu-west-1.amazonaws.com"
URL = f"https://{DOMAIN}/v1/status"
REPORT = {"MessageSid": "SM" + "b" * 32, "MessageStatus": "delivered", "To": "+15551234567"}


class Context:
    function_name = "status"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:status"
    aws_request_id = "req"


@pytest.fixture
def handler(aws_env: None) -> Iterator[ModuleType]:
    from aws_lambda_powertools.utilities import parameters

    with mock_aws():
        boto3.client("secretsmanager").create_secret(
            Name=SECRET, SecretString=json.dumps({"account_sid": "AC1", "auth_token": TOKEN})
        )
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        status_handler.config.cache_clear()
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setenv("TWILIO_SECRET_NAME", SECRET)
            yield status_handler
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        status_handler.config.cache_clear()


@pytest.fixture
def secret_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from aws_lambda_powertools.utilities import parameters

    reads: list[str] = []
    real = parameters.get_secret

    def counting(name: str, **kwargs: Any) -> Any:
        reads.append(name)
        return real(name, **kwargs)

    monkeypatch.setattr(parameters, "get_secret", counting)
    return reads


def callback(
    form: dict[str, str] | None = None,
    *,
    token: str = TOKEN,
    body: str | None = None,
    signature: str | None = None,
    query: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    form = REPORT if form is None else form
    raw = urlencode(form) if body is None else body
    return {
        "body": base64.b64encode(raw.encode()).decode(),
        "isBase64Encoded": True,
        "headers": {
            "X-Twilio-Signature": signature
            if signature is not None
            else RequestValidator(token).compute_signature(URL, form)
        },
        "multiValueQueryStringParameters": query,
        "requestContext": {"domainName": DOMAIN, "path": "/v1/status"},
    }


def status(handler: ModuleType, event: dict[str, Any]) -> int:
    answer: int = handler.lambda_handler(event, Context())["statusCode"]
    return answer


def test_a_genuine_callback_costs_two_hmacs(
    handler: ModuleType, hmacs: list[int], secret_reads: list[str]
) -> None:
    event = callback()
    hmacs.clear()  # signing the request above is not the handler's work
    assert status(handler, event) == 204
    assert 0 < len(hmacs) <= 2 and secret_reads == [SECRET]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # The attack: an unsigned 5.8 MB body of 650k fields.
        (callback(body="a=1&" * 1_450_000, signature=""), 400),
        (callback(body="Body=" + "x" * (64 * 1024)), 400),  # one byte over 64 KiB
        (callback(body="&".join(f"f{i}=1" for i in range(201))), 400),
        (callback(query={f"q{i}": ["1"] for i in range(5)}), 400),
        (callback(signature=""), 403),
        (callback(signature="bm90IGEgc2lnbmF0dXJl"), 403),
        (callback(signature="A" * 43 + "="), 403),  # an HMAC-SHA256 length
    ],
    ids=["5.8MB-650k-fields", "over-64KiB", "201-fields", "5-query", "unsigned", "short", "sha256"],
)
def test_out_of_bounds_callbacks_cost_no_hmac_and_no_secret_read(
    handler: ModuleType,
    hmacs: list[int],
    secret_reads: list[str],
    event: dict[str, Any],
    expected: int,
) -> None:
    started = time.perf_counter()
    assert status(handler, event) == expected
    assert hmacs == [] and secret_reads == []
    # Not a timing assert on the code path (bench/ measures): a guard that it was not parsed.
    assert time.perf_counter() - started < 5


def test_a_body_at_the_limit_is_still_verified(handler: ModuleType, hmacs: list[int]) -> None:
    form = {**REPORT, "Pad": "x" * (64 * 1024 - len(urlencode(REPORT)) - len("&Pad="))}
    assert len(urlencode(form)) == 64 * 1024
    event = callback(form)
    hmacs.clear()
    assert status(handler, event) == 204
    assert 0 < len(hmacs) <= 2


def test_both_tokens_verify_during_a_rotation(handler: ModuleType) -> None:
    from aws_lambda_powertools.utilities import parameters

    boto3.client("secretsmanager").put_secret_value(
        SecretId=SECRET,
        SecretString=json.dumps(
            {"account_sid": "AC1", "auth_token": TOKEN, "secondary_auth_token": "new-token"}
        ),
    )
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    assert status(handler, callback()) == 204
    assert status(handler, callback(token="new-token")) == 204
    assert status(handler, callback(token="another-token")) == 403


@pytest.mark.parametrize(
    ("secondary", "expected"),
    [(None, ("a",)), ("", ("a",)), ("a", ("a",)), ("b", ("a", "b")), (7, ("a",))],
)
def test_auth_tokens_skip_empty_and_repeated_values(
    secondary: object, expected: tuple[str, ...]
) -> None:
    secret: dict[str, object] = {"account_sid": "AC1", "auth_token": "a"}
    if secondary is not None:
        secret["secondary_auth_token"] = secondary
    assert credentials_of(secret, SECRET).auth_tokens == expected
