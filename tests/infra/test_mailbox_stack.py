"""Template assertions for the mailbox (issue 12), for every environment in cdk.json."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

import contract
from tests.conftest import Synthesized, cdk_context, synthesize
from tests.infra.test_stack import devices, only, resolve_join, resources, synth  # noqa: F401


def _by_path(synth: Synthesized, type_name: str, suffix: str) -> tuple[str, dict[str, Any]]:  # noqa: F811
    for logical_id, resource in synth.template_json["Resources"].items():
        path = resource.get("Metadata", {}).get("aws:cdk:path", "")
        if resource["Type"] == type_name and path.endswith(suffix):
            return logical_id, resource
    raise AssertionError(f"no {type_name} at {suffix}")


def _statements(synth: Synthesized, policy_prefix: str) -> list[dict[str, Any]]:  # noqa: F811
    found = []
    for logical_id, policy in resources(synth, "AWS::IAM::Policy").items():
        if logical_id.startswith(policy_prefix):
            found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def test_mailbox_table_is_keyed_per_thing_and_sorted_by_arrival(synth: Synthesized) -> None:  # noqa: F811
    _, table = _by_path(synth, "AWS::DynamoDB::Table", "Mailbox/Table/Resource")
    properties = table["Properties"]
    assert properties["KeySchema"] == [
        {"AttributeName": "thing", "KeyType": "HASH"},
        {"AttributeName": "id", "KeyType": "RANGE"},
    ]
    [index] = properties["LocalSecondaryIndexes"]
    assert index["IndexName"] == "by_arrival"
    assert index["KeySchema"][1] == {"AttributeName": "arrived", "KeyType": "RANGE"}
    assert properties["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at",
        "Enabled": True,
    }
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]


def test_receive_records_with_put_item_only_and_knows_the_retention(synth: Synthesized) -> None:  # noqa: F811
    table_id, _ = _by_path(synth, "AWS::DynamoDB::Table", "Mailbox/Table/Resource")
    on_mailbox = [s for s in _statements(synth, "WebhookReceive") if table_id in str(s["Resource"])]
    assert on_mailbox == [
        {
            "Action": "dynamodb:PutItem",
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [table_id, "Arn"]},
        }
    ]
    _, receive = _by_path(synth, "AWS::Lambda::Function", "Receive/Function/Resource")
    variables = receive["Properties"]["Environment"]["Variables"]
    assert variables["MAILBOX_TABLE"] == {"Ref": table_id}
    days = cdk_context()["environments"][synth.env].get("mailbox_retention_days", 7)
    assert variables["MAILBOX_RETENTION_SECONDS"] == str(days * 86400)


def test_device_requests_come_from_two_rules_that_take_the_thing_from_the_topic(
    synth: Synthesized,  # noqa: F811
) -> None:
    sql = {}
    for name in ("AckRule", "RedeliverRule"):
        _, rule = _by_path(synth, "AWS::IoT::TopicRule", f"Mailbox/{name}")
        payload = rule["Properties"]["TopicRulePayload"]
        sql[name] = payload["Sql"]
        assert "Sqs" in payload["ErrorAction"]
    assert sql == {
        "AckRule": "SELECT Id, topic(2) AS thing, topic(3) AS request FROM 'sms/+/ack'",
        "RedeliverRule": "SELECT Id, topic(2) AS thing, topic(3) AS request FROM 'sms/+/redeliver'",
    }


def test_mailbox_functions_get_exactly_what_they_call(synth: Synthesized) -> None:  # noqa: F811
    table_id, _ = _by_path(synth, "AWS::DynamoDB::Table", "Mailbox/Table/Resource")
    # The requests read one device's messages through the index; the sweeper scans the
    # table (no list of devices to grow with the fleet).
    expected = {
        "MailboxDeviceRequests": (
            ["dynamodb:DeleteItem", "dynamodb:Query"],
            [f"<{table_id}.Arn>", f"<{table_id}.Arn>/index/by_arrival"],
        ),
        "MailboxSweeper": (["dynamodb:DeleteItem", "dynamodb:Scan"], [f"<{table_id}.Arn>"]),
    }
    for prefix, (actions, arns) in expected.items():
        statements = _statements(synth, prefix)
        dynamo = [s for s in statements if "dynamodb:" in str(s["Action"])]
        assert [sorted(s["Action"]) for s in dynamo] == [actions]
        targets = dynamo[0]["Resource"]
        targets = targets if isinstance(targets, list) else [targets]
        assert sorted(resolve_join(r) for r in targets) == arns
        publish = [s for s in statements if "iot:Publish" in str(s["Action"])]
        if prefix == "MailboxSweeper":
            assert publish == []  # the sweeper never publishes to a device
            continue
        [statement] = publish
        targets = statement["Resource"]
        targets = targets if isinstance(targets, list) else [targets]
        # One ARN whatever the fleet's size: the thing level only (acknowledged in cdk-nag).
        assert [resolve_join(r).split(":topic/")[1] for r in targets] == ["sms/*/inbound"]


def test_the_send_lambda_remembers_ids_as_long_as_a_message_can_wait(
    synth: Synthesized,  # noqa: F811
) -> None:
    # A message redelivered on its last day brings its reply Id back: still texted once.
    _, send = _by_path(synth, "AWS::Lambda::Function", "Send/Function/Resource")
    days = cdk_context()["environments"][synth.env].get("mailbox_retention_days", 7)
    seconds = int(send["Properties"]["Environment"]["Variables"]["IDEMPOTENCY_SECONDS"])
    assert seconds == contract.mailbox_lifetime_seconds(days) > days * 86400


def test_the_mailbox_functions_hold_no_list_of_devices(synth: Synthesized) -> None:  # noqa: F811
    for name in ("DeviceRequests", "Sweeper"):
        _, function = _by_path(synth, "AWS::Lambda::Function", f"Mailbox/{name}/Function/Resource")
        variables = function["Properties"]["Environment"]["Variables"]
        assert not any(thing in str(variables) for thing in devices(synth.env))
        assert function["Properties"]["Handler"].startswith("mailbox_lambda.handler.")


def test_the_sweeper_runs_every_5_minutes_and_alarms_watch_age_and_expiry(
    synth: Synthesized,  # noqa: F811
) -> None:
    sweeper_id, _ = _by_path(synth, "AWS::Lambda::Function", "Mailbox/Sweeper/Function/Resource")
    _, schedule = _by_path(synth, "AWS::Events::Rule", "Mailbox/SweepSchedule/Resource")
    assert schedule["Properties"]["ScheduleExpression"] == "rate(5 minutes)"
    assert schedule["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [sweeper_id, "Arn"]}
    minutes = cdk_context()["environments"][synth.env].get("mailbox_alarm_age_minutes", 60)
    _, age = _by_path(synth, "AWS::CloudWatch::Alarm", "Mailbox/OldestPendingAlarm/Resource")
    assert age["Properties"]["MetricName"] == "OldestPendingAgeSeconds"
    assert age["Properties"]["Namespace"] == "TextDevice"
    assert age["Properties"]["Threshold"] == minutes * 60
    assert {"Name": "environment", "Value": synth.env} in age["Properties"]["Dimensions"]
    _, expired = _by_path(synth, "AWS::CloudWatch::Alarm", "Mailbox/ExpiredAlarm/Resource")
    assert expired["Properties"]["MetricName"] == "ExpiredMessages"
    for alarm in (age, expired):
        assert len(alarm["Properties"]["AlarmActions"]) == 1  # the alarm topic


def test_notify_sender_lets_the_sweeper_invoke_only_the_send_lambda(
    tmp_path: Path,
) -> None:
    environments = copy.deepcopy(cdk_context()["environments"])
    environments["dev"]["mailbox_expiry_action"] = "notify_sender"
    synthesized = synthesize("dev", tmp_path, environments=environments)
    send_id, _ = _by_path(synthesized, "AWS::Lambda::Function", "Send/Function/Resource")
    invoke = [
        s
        for s in _statements(synthesized, "MailboxSweeper")
        if "lambda:InvokeFunction" in str(s["Action"])
    ]
    assert len(invoke) == 1
    assert invoke[0]["Action"] == "lambda:InvokeFunction"
    assert invoke[0]["Resource"] == {"Fn::GetAtt": [send_id, "Arn"]}  # no other version
    _, sweeper = _by_path(synthesized, "AWS::Lambda::Function", "Mailbox/Sweeper/Function/Resource")
    assert sweeper["Properties"]["Environment"]["Variables"]["SEND_FUNCTION_NAME"] == {
        "Ref": send_id
    }


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_without_notify_the_sweeper_cannot_invoke_anything(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    statements = _statements(synthesized[env], "MailboxSweeper")
    assert not any("lambda:" in str(s["Action"]) for s in statements)
