"""Template assertions for the outbound side: rule, destinations, queues, alarm, options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from send_lambda.sender import TWILIO_TIMEOUT
from stacks.device_files import read_bindings
from tests.conftest import ENVIRONMENTS, Synthesized, cdk_context, synthesize
from tests.send.scenarios import RETRY_ATTEMPTS

FALLBACK = "https://fallback.example.com/sms"


@pytest.fixture(params=ENVIRONMENTS)
def synth(request: pytest.FixtureRequest, synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized[request.param]


@pytest.fixture(scope="module")
def with_number_webhook(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """dev with `configure_twilio_number` and a fallback URL switched on."""
    environments = json.loads(json.dumps(cdk_context()["environments"]))
    environments["dev"] |= {"configure_twilio_number": True, "fallback_url": FALLBACK}
    out: Path = tmp_path_factory.mktemp("cdk-dev-number")
    return synthesize("dev", out, environments=environments)


def of_type(synth: Synthesized, type_name: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = synth.template.find_resources(type_name)
    return found


def resource(synth: Synthesized, logical_id: str) -> dict[str, Any]:
    found: dict[str, Any] = synth.template_json["Resources"][logical_id]
    return found


def send_function(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    for logical_id, function in of_type(synth, "AWS::Lambda::Function").items():
        if "DEAD_LETTER_QUEUE_URL" in function["Properties"].get("Environment", {}).get(
            "Variables", {}
        ):
            return logical_id, function["Properties"]
    raise AssertionError("no send function")


def ref(value: Any) -> str:
    """The logical ID a Ref / Fn::GetAtt points at."""
    if "Ref" in value:
        return str(value["Ref"])
    return str(value["Fn::GetAtt"][0])


def statements_of_role(synth: Synthesized, role_id: str) -> list[dict[str, Any]]:
    found = []
    for policy in of_type(synth, "AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def test_rule_invokes_the_send_lambda_and_sends_its_errors_to_a_queue(synth: Synthesized) -> None:
    [rule] = [
        r
        for r in of_type(synth, "AWS::IoT::TopicRule").values()
        if r["Metadata"]["aws:cdk:path"].endswith("/Outbound/OutboundRule")
    ]
    payload = rule["Properties"]["TopicRulePayload"]
    assert payload["Sql"] == (
        "SELECT Type, Id, From, To, Body, MediaUrl, Image, topic(2) AS thing FROM 'sms/+/outbound'"
    )
    [action] = payload["Actions"]
    send_id, _ = send_function(synth)
    assert ref(action["Lambda"]["FunctionArn"]) == send_id
    error = payload["ErrorAction"]["Sqs"]
    queue_id = ref(error["QueueUrl"])
    assert resource(synth, queue_id)["Type"] == "AWS::SQS::Queue"
    role_id = ref(error["RoleArn"])
    sends = [s for s in statements_of_role(synth, role_id) if "sqs:SendMessage" in s["Action"]]
    assert sends and ref(sends[0]["Resource"]) == queue_id


def test_async_retries_then_the_dead_letter_queue(synth: Synthesized) -> None:
    [config] = of_type(synth, "AWS::Lambda::EventInvokeConfig").values()
    properties = config["Properties"]
    send_id, send = send_function(synth)
    assert ref(properties["FunctionName"]) == send_id
    assert properties["MaximumRetryAttempts"] == RETRY_ATTEMPTS
    assert properties["MaximumEventAgeInSeconds"] == 6 * 3600
    destination = ref(properties["DestinationConfig"]["OnFailure"]["Destination"])
    assert resource(synth, destination)["Type"] == "AWS::SQS::Queue"
    # The handler dead-letters permanent errors itself, into the same queue.
    assert ref(send["Environment"]["Variables"]["DEAD_LETTER_QUEUE_URL"]) == destination
    role_id = ref(send["Role"])
    granted = [
        ref(resource)
        for s in statements_of_role(synth, role_id)
        if "sqs:SendMessage" in s["Action"]
        for resource in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    assert destination in granted


def test_twilio_timeout_fits_in_the_lambda_timeout(synth: Synthesized) -> None:
    _, send = send_function(synth)
    # connect + read, each bounded by TWILIO_TIMEOUT, plus AWS calls: a hung Twilio
    # becomes a retried invocation, not a Lambda timeout.
    assert send["Timeout"] >= 2 * TWILIO_TIMEOUT + 5


def test_idempotency_table_keys_and_ttl(synth: Synthesized) -> None:
    _, send = send_function(synth)
    table_id = ref(send["Environment"]["Variables"]["IDEMPOTENCY_TABLE"])
    table = resource(synth, table_id)["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}


def test_send_lambda_reads_the_numbers_from_the_bindings_table_and_knows_the_allow_list(
    synth: Synthesized,
) -> None:
    _, send = send_function(synth)
    variables = send["Environment"]["Variables"]
    settings = cdk_context()["environments"][synth.env]
    table = resource(synth, ref(variables["BINDINGS_TABLE"]))["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert "+" not in json.dumps(variables)  # no number in the Lambda's configuration
    assert variables["DESTINATION_ALLOW_LIST"] == ",".join(settings["destination_allow_list"])
    assert "TOPIC_PREFIX" not in variables  # the rule's SQL reads the topic, not the Lambda


def test_dead_letter_queues_are_encrypted_and_kept_14_days(synth: Synthesized) -> None:
    queues = of_type(synth, "AWS::SQS::Queue")
    assert len(queues) == 3  # send dead letters, rule errors, refused by the policy
    for queue in queues.values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
        assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_an_alarm_fires_when_any_dead_letter_queue_holds_a_message(synth: Synthesized) -> None:
    # Refusals are the policy working: their alarm counts them (tests/infra/
    # test_outbound_policy_stack.py) instead of firing on one.
    queues = {q for q in of_type(synth, "AWS::SQS::Queue") if "Refused" not in q}
    alarmed = set()
    for alarm in of_type(synth, "AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        if properties.get("MetricName") != "ApproximateNumberOfMessagesVisible":
            continue
        assert properties["Namespace"] == "AWS/SQS"
        assert properties["ComparisonOperator"] == "GreaterThanThreshold"
        assert properties["Threshold"] == 0
        assert properties["AlarmActions"]
        [dimension] = properties["Dimensions"]
        alarmed.add(ref(dimension["Value"]))
    assert alarmed == queues


def test_status_callback_follows_the_setting(synth: Synthesized) -> None:
    _, send = send_function(synth)
    variables = send["Environment"]["Variables"]
    wanted = cdk_context()["environments"][synth.env].get("status_callback", False)
    methods = [m["Properties"] for m in of_type(synth, "AWS::ApiGateway::Method").values()]
    status_resources = [
        r
        for r in of_type(synth, "AWS::ApiGateway::Resource").values()
        if r["Properties"]["PathPart"] == "status"
    ]
    if not wanted:
        assert "STATUS_CALLBACK_URL" not in variables
        assert status_resources == []
        return
    url = json.dumps(variables["STATUS_CALLBACK_URL"])
    assert "/status" in url and "execute-api" in url
    assert len(status_resources) == 1
    proxy = [m for m in methods if m["Integration"]["Type"] == "AWS_PROXY"]
    assert len(proxy) == 1 and proxy[0]["HttpMethod"] == "POST"


def test_number_webhook_is_off_by_default(synth: Synthesized) -> None:
    assert of_type(synth, "Custom::TwilioNumberWebhook") == {}


def test_number_webhook_sets_each_bound_number_when_switched_on(
    with_number_webhook: Synthesized,
) -> None:
    synth = with_number_webhook
    # One resource per number, beside its device in the device's shard (a nested stack,
    # which gets the handler's ARN and the webhook URL from the parent as parameters).
    found = []
    shards = of_type(synth, "AWS::CloudFormation::Stack").values()
    parameters = {k: v for s in shards for k, v in s["Properties"]["Parameters"].items()}
    for path in synth.template_path.parent.glob("*.nested.template.json"):
        for custom in json.loads(path.read_text())["Resources"].values():
            if custom["Type"] == "Custom::TwilioNumberWebhook":
                found.append(custom["Properties"])
    devices = read_bindings("dev")
    assert sorted(p["PhoneNumber"] for p in found) == sorted(devices.values())
    for properties in found:
        assert properties["SmsFallbackUrl"] == FALLBACK
        assert json.dumps(properties["SmsUrl"]).endswith('"/message"]]}')
        service_token = parameters[properties["ServiceToken"]["Ref"]]
        handler = resource(synth, ref(service_token))["Properties"]
        assert handler["Runtime"] == "python3.14"
        assert handler["Architectures"] == ["arm64"]
        reads = [
            s
            for s in statements_of_role(synth, ref(handler["Role"]))
            if "secretsmanager:GetSecretValue" in s["Action"]
        ]
        assert len(reads) == 1
    nag = next(r for r in synth.nag_report["pluginReports"] if r["pluginName"] == "AwsSolutions")
    assert nag["violations"] == []
