"""Fixtures for the receive side: the Lambda's modules, moto, the real API method, signing."""

from __future__ import annotations

import io
import json
import os
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws
from moto.backends import get_backend
from twilio.request_validator import RequestValidator

import contract
from loop import bindings
from loop.apigw_vtl import (
    HttpRequest,
    HttpResponse,
    LambdaMethod,
    default_context,
    invoke_in_process,
)
from receive_lambda import handler
from tests.conftest import Synthesized, mailbox_table_definition

TOKEN = "0123456789abcdef0123456789abcdef"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
SECRET_NAME = "text-device/dev/twilio"
TABLE = "receive-idempotency"
BINDINGS_TABLE = "bindings"
MAILBOX_TABLE = "mailbox"
EXECUTE_API = default_context()
EXECUTE_API_URL = "https://abc123defg.execute-api.eu-west-1.amazonaws.com/v1/message"
FORM = "application/x-www-form-urlencoded; charset=UTF-8"


class FakeContext:
    """The parts of a LambdaContext that Powertools reads."""

    function_name = "receive"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:receive"
    aws_request_id = "11111111-2222-4333-8444-555555555555"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def receive_function_environment(synth: Synthesized) -> dict[str, str]:
    """The receive Lambda's environment as synthesized (tokens replaced by test names)."""
    for resource in synth.template_json["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        if "TOPIC_PREFIX" in variables:
            return {
                **{k: v for k, v in variables.items() if isinstance(v, str)},
                "IDEMPOTENCY_TABLE": TABLE,
                contract.BINDINGS_TABLE_VARIABLE: BINDINGS_TABLE,
                "MAILBOX_TABLE": MAILBOX_TABLE,
            }
    raise AssertionError("no receive function in the template")


def sign(url: str, pairs: Sequence[tuple[str, str]], token: str = TOKEN) -> str:
    """X-Twilio-Signature as Twilio computes it (twilio's own implementation)."""
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    signature: str = RequestValidator(token).compute_signature(url, _GetAll(params))
    return signature


class _GetAll(dict[str, list[str]]):
    def getall(self, name: str) -> list[str]:
        return self[name]


def sms(
    *,
    body: str = "Oozy rat in a sanitary zoo.",
    to: str = "+15555550100",
    sender: str = "+15551234567",
    sid: str = "SM" + "0" * 31 + "1",
    extra: Sequence[tuple[str, str]] = (),
) -> list[tuple[str, str]]:
    """The form fields of an incoming SMS, in Twilio's order."""
    return [
        ("ToCountry", "US"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", to),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", "AC" + "a" * 32),
        ("From", sender),
        ("ApiVersion", "2010-04-01"),
        *extra,
    ]


@dataclass
class Call:
    """One webhook request, signed like Twilio unless told otherwise."""

    pairs: Sequence[tuple[str, str]]
    url: str = EXECUTE_API_URL
    context: dict[str, Any] = field(default_factory=lambda: dict(EXECUTE_API))
    query: Sequence[tuple[str, str]] = ()
    signature: str | None = None
    content_type: str | None = FORM
    raw_body: bytes | None = None
    token: str = TOKEN

    def request(self) -> HttpRequest:
        body = self.raw_body
        if body is None:
            body = urllib.parse.urlencode(list(self.pairs)).encode()
        signature = (
            self.signature if self.signature is not None else sign(self.url, self.pairs, self.token)
        )
        headers = [("Host", self.context["domainName"]), ("X-Twilio-Signature", signature)]
        if self.content_type is not None:
            headers.append(("Content-Type", self.content_type))
        return HttpRequest(body=body, headers=headers, query=self.query, context=self.context)


@dataclass
class ReceiveWorld:
    """moto (Secrets Manager, DynamoDB, IoT data) + the synthesized API method + the handler."""

    method: LambdaMethod
    environment: dict[str, str]
    captured_qos: list[int] = field(default_factory=list)
    log_stream: io.StringIO = field(default_factory=io.StringIO)

    def logs(self) -> list[dict[str, Any]]:
        """The handler's JSON log lines so far."""
        return [json.loads(line) for line in self.log_stream.getvalue().splitlines() if line]

    def invoke(self) -> Any:
        """Calls the handler like the Lambda runtime (an exception is a function error)."""
        return invoke_in_process(handler.lambda_handler, FakeContext())

    def send(self, call: Call) -> HttpResponse:
        return self.method.handle(call.request(), self.invoke())

    def published(self) -> list[tuple[str, dict[str, Any]]]:
        backend = get_backend("iot-data")[ACCOUNT][REGION]
        return [(topic, json.loads(payload)) for topic, payload in backend.published_payloads]

    def published_raw(self) -> list[tuple[str, bytes]]:
        return list(get_backend("iot-data")[ACCOUNT][REGION].published_payloads)

    def put_token(self, token: str) -> None:
        boto3.client("secretsmanager", region_name=REGION).put_secret_value(
            SecretId=SECRET_NAME,
            SecretString=json.dumps({"account_sid": "AC1", "auth_token": token}),
        )


def reset_receiver() -> None:
    """Forgets the container's receiver and cached secret (a new cold start)."""
    handler.runtime.cache_clear()
    parameters.clear_caches()  # type: ignore[no-untyped-call]


def make_world(
    synth: Synthesized, monkeypatch: pytest.MonkeyPatch, **overrides: str
) -> ReceiveWorld:
    """Sets up moto and the environment (call inside `mock_aws()`); `overrides` change
    the function's environment variables."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    environment = {**receive_function_environment(synth), **overrides}
    for name, value in {
        **environment,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "MOTO_ACCOUNT_ID": ACCOUNT,
    }.items():
        monkeypatch.setenv(name, value)
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=environment["TWILIO_SECRET_NAME"],
        SecretString=json.dumps({"account_sid": "AC1", "auth_token": TOKEN}),
    )
    for table in (TABLE, BINDINGS_TABLE):
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    # The dev stack's bindings, as its shards write them on deploy.
    bindings.fill(
        boto3.resource("dynamodb", region_name=REGION).Table(BINDINGS_TABLE),
        *bindings.shard_bindings(synth.template_path.parent),
    )
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=MAILBOX_TABLE, **mailbox_table_definition(synth.template_json)
    )
    reset_receiver()
    world = ReceiveWorld(LambdaMethod.from_template(synth.template_json, "message"), environment)
    iot_data = handler.runtime().publisher._iot_data

    def capture(params: dict[str, Any], **_: Any) -> None:
        world.captured_qos.append(int(params["qos"]))

    iot_data.meta.events.register("provide-client-params.iot-data.Publish", capture)
    # Powertools' handler holds the stdout of import time: read its lines from here instead.
    handler.logger.registered_handler.setStream(world.log_stream)  # type: ignore[attr-defined]
    return world


@pytest.fixture
def world(
    synthesized: dict[str, Synthesized], monkeypatch: pytest.MonkeyPatch
) -> Iterator[ReceiveWorld]:
    """A fresh moto account with the secret filled in and the dev stack's API method."""
    with mock_aws():
        yield make_world(synthesized["dev"], monkeypatch)
    reset_receiver()


@pytest.fixture(scope="module")
def shared_world(synthesized: dict[str, Synthesized]) -> Iterator[ReceiveWorld]:
    """Like `world`, shared by a module's examples (property tests: unique MessageSids)."""
    with pytest.MonkeyPatch.context() as monkeypatch, mock_aws():
        yield make_world(synthesized["dev"], monkeypatch)
    reset_receiver()
