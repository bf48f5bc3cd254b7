"""The outbound policy's settings (validated at synth) and what the stack makes of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import contract
import send_lambda
from stacks.outbound_policy import REFUSAL_ALARM_THRESHOLD
from stacks.settings import SettingsError, parse_environment
from tests.conftest import ENVIRONMENTS, Synthesized, cdk_context, synthesize
from tests.send.scenarios import THING

BASE = {"region": "eu-west-1", "devices": {THING: "+15555550100"}}


@pytest.fixture(params=ENVIRONMENTS)
def synth(request: pytest.FixtureRequest, synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized[request.param]


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """dev with every outbound policy setting changed from its default."""
    environments = json.loads(json.dumps(cdk_context()["environments"]))
    environments["dev"] |= {
        "reply_window_days": 7,
        "destination_allow_list": ["+15557000001"],
        "destination_allow_list_by_device": {"dev-reverser": ["+15557000002"]},
        "destination_prefixes": ["+1", "+44"],
        "send_limit_per_minute": 3,
        "send_limit_per_day": 50,
        "send_reserved_concurrency": False,
    }
    out: Path = tmp_path_factory.mktemp("cdk-dev-policy")
    return synthesize("dev", out, environments=environments)


def test_defaults_are_safe() -> None:
    settings = parse_environment("qa", BASE)
    assert settings.reply_window_days == 30
    assert settings.destination_allow_list == ()
    assert settings.destination_allow_list_by_device == {}
    assert settings.destination_prefixes == ()
    assert (settings.send_limit_per_minute, settings.send_limit_per_day) == (10, 200)
    assert settings.send_reserved_concurrency == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reply_window_days": -1}, "'reply_window_days'"),
        ({"reply_window_days": 366}, "'reply_window_days'"),
        ({"reply_window_days": True}, "'reply_window_days'"),
        ({"destination_allow_list_by_device": ["+15557000001"]}, "must map thing names"),
        ({"destination_allow_list_by_device": {"other": ["+15557000001"]}}, "not a device"),
        ({"destination_allow_list_by_device": {THING: ["0044"]}}, "E.164"),
        ({"destination_allow_list_by_device": {THING: "+15557000001"}}, "E.164"),
        ({"destination_prefixes": "+1"}, "'destination_prefixes'"),
        ({"destination_prefixes": ["1"]}, "'destination_prefixes'"),
        ({"destination_prefixes": ["+0"]}, "'destination_prefixes'"),
        ({"send_limit_per_minute": 0}, "'send_limit_per_minute'"),
        ({"send_limit_per_minute": 1001}, "'send_limit_per_minute'"),
        ({"send_limit_per_minute": "10"}, "'send_limit_per_minute'"),
        ({"send_limit_per_minute": 20, "send_limit_per_day": 10}, "'send_limit_per_day'"),
        ({"send_limit_per_day": 100_001}, "'send_limit_per_day'"),
        ({"send_reserved_concurrency": 0}, "'send_reserved_concurrency'"),
        ({"send_reserved_concurrency": True}, "'send_reserved_concurrency'"),
        ({"send_reserved_concurrency": 1001}, "'send_reserved_concurrency'"),
    ],
)
def test_invalid_policy_settings_fail_synth_naming_the_key(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError) as error:
        parse_environment("qa", {**BASE, **change})
    assert "environments.qa" in str(error.value)
    assert message in str(error.value)


def test_reserved_concurrency_may_be_switched_off_for_a_new_account() -> None:
    settings = parse_environment("qa", {**BASE, "send_reserved_concurrency": False})
    assert settings.send_reserved_concurrency is None
    with pytest.raises(SettingsError, match="must be false or an integer"):
        parse_environment("qa", {**BASE, "send_reserved_concurrency": None})


def of_type(synth: Synthesized, type_name: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = synth.template.find_resources(type_name)
    return found


def function(synth: Synthesized, path_suffix: str) -> dict[str, Any]:
    for resource in of_type(synth, "AWS::Lambda::Function").values():
        if resource["Metadata"]["aws:cdk:path"].endswith(path_suffix):
            return resource["Properties"]  # type: ignore[no-any-return]
    raise AssertionError(f"no function at {path_suffix}")


def role_statements(synth: Synthesized, role_arn: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of the role a function's `Role` (Fn::GetAtt Arn) names."""
    role = {"Ref": role_arn["Fn::GetAtt"][0]}
    found = []
    for policy in of_type(synth, "AWS::IAM::Policy").values():
        if role in policy["Properties"]["Roles"]:
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def contacts_id(synth: Synthesized) -> str:
    [(logical_id, _)] = [
        (k, v)
        for k, v in of_type(synth, "AWS::DynamoDB::Table").items()
        if v["Properties"]["KeySchema"][0]["AttributeName"] == "pk"
    ]
    return logical_id


def test_contacts_table_is_on_demand_encrypted_recoverable_and_expiring(synth: Synthesized) -> None:
    table = of_type(synth, "AWS::DynamoDB::Table")[contacts_id(synth)]
    properties = table["Properties"]
    assert properties["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    retain = cdk_context()["environments"][synth.env].get("retain_data", False)
    assert table["DeletionPolicy"] == ("Retain" if retain else "Delete")


def test_both_lambdas_know_the_contacts_table_with_least_privilege(synth: Synthesized) -> None:
    table = {"Fn::GetAtt": [contacts_id(synth), "Arn"]}
    for path, actions in (
        ("Receive/Function/Resource", {"dynamodb:UpdateItem"}),
        ("Send/Function/Resource", {"dynamodb:GetItem", "dynamodb:UpdateItem"}),
    ):
        properties = function(synth, path)
        assert properties["Environment"]["Variables"]["CONTACTS_TABLE"] == {
            "Ref": contacts_id(synth)
        }
        granted = [s for s in role_statements(synth, properties["Role"]) if s["Resource"] == table]
        [statement] = granted
        action = statement["Action"]
        assert set(action if isinstance(action, list) else [action]) == actions


def test_send_lambda_has_reserved_concurrency_and_the_default_policy(synth: Synthesized) -> None:
    send = function(synth, "Send/Function/Resource")
    assert send["ReservedConcurrentExecutions"] == 5
    variables = send["Environment"]["Variables"]
    assert variables["REPLY_WINDOW_SECONDS"] == str(30 * 86_400)
    assert variables["SEND_LIMIT_PER_MINUTE"] == "10"
    assert variables["SEND_LIMIT_PER_DAY"] == "200"
    assert variables["DESTINATION_PREFIXES"] == ""
    assert json.loads(variables["DESTINATION_ALLOW_LIST_BY_THING"]) == {}
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == f"TextDevice-{synth.env}"


def test_settings_reach_the_send_lambda(configured: Synthesized) -> None:
    send = function(configured, "Send/Function/Resource")
    assert "ReservedConcurrentExecutions" not in send
    variables = send["Environment"]["Variables"]
    assert variables["REPLY_WINDOW_SECONDS"] == str(7 * 86_400)
    assert variables["DESTINATION_ALLOW_LIST"] == "+15557000001"
    assert json.loads(variables["DESTINATION_ALLOW_LIST_BY_THING"]) == {
        "dev-reverser": ["+15557000002"]
    }
    assert variables["DESTINATION_PREFIXES"] == "+1,+44"
    assert (variables["SEND_LIMIT_PER_MINUTE"], variables["SEND_LIMIT_PER_DAY"]) == ("3", "50")


def test_refusals_go_to_their_own_queue_and_repeated_ones_raise_an_alarm(
    synth: Synthesized,
) -> None:
    send = function(synth, "Send/Function/Resource")
    queue = send["Environment"]["Variables"]["REFUSED_QUEUE_URL"]["Ref"]
    assert "Refused" in queue
    sends = [s for s in role_statements(synth, send["Role"]) if "sqs:SendMessage" in s["Action"]]
    assert any(
        {"Fn::GetAtt": [queue, "Arn"]} in json.loads(json.dumps(s))["Resource"] for s in sends
    )
    [alarm] = [
        a["Properties"]
        for a in of_type(synth, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == contract.OUTBOUND_REFUSED_METRIC
    ]
    assert alarm["Namespace"] == f"TextDevice-{synth.env}"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "send"}]
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == REFUSAL_ALARM_THRESHOLD > 1  # repeated, not one stray reply
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"]


def test_the_alarm_watches_the_dimension_the_send_lambda_writes() -> None:
    assert contract.SEND_METRIC_DIMENSIONS == {"service": send_lambda.SERVICE}


def test_redrive_finds_the_queues_and_the_idempotency_table_in_the_outputs(
    synth: Synthesized,
) -> None:
    from tools.redrive import QUEUE_OUTPUTS

    outputs = synth.template_json["Outputs"]
    names = [*QUEUE_OUTPUTS.values(), contract.SEND_IDEMPOTENCY_TABLE_OUTPUT]
    for name in [*names, contract.TOPIC_PREFIX_OUTPUT]:
        assert name in outputs


def test_cdk_nag_finds_nothing_unacknowledged(configured: Synthesized) -> None:
    nag = next(
        r for r in configured.nag_report["pluginReports"] if r["pluginName"] == "AwsSolutions"
    )
    assert nag["violations"] == []
