"""Template assertions per construct, for every environment in cdk.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Match

from stacks.device_files import read_bindings
from stacks.settings import default_throttle
from tests.conftest import ENVIRONMENTS, ROOT, Synthesized, cdk_context


@pytest.fixture(params=ENVIRONMENTS)
def synth(request: pytest.FixtureRequest, synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized[request.param]


def resources(synth: Synthesized, type_name: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = synth.template.find_resources(type_name)
    return found


def only(synth: Synthesized, type_name: str) -> dict[str, Any]:
    found = list(resources(synth, type_name).values())
    assert len(found) == 1, f"expected one {type_name}, found {len(found)}"
    return found[0]


def devices(env: str) -> dict[str, str]:
    return read_bindings(env)


def nested_resources(synth: Synthesized, type_name: str) -> list[dict[str, Any]]:
    """Resources of `type_name` in the environment's shards (nested stacks)."""
    return [
        resource
        for path in synth.template_path.parent.glob("*.nested.template.json")
        for resource in json.loads(path.read_text())["Resources"].values()
        if resource["Type"] == type_name
    ]


def resolve_join(value: Any) -> str:
    """Flattens Fn::Join/Ref into a readable string (pseudo parameters as placeholders)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(resolve_join(part) for part in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "<" + ".".join(value["Fn::GetAtt"]) + ">"
    return json.dumps(value)


# -- Device IoT ---------------------------------------------------------------------------


def test_one_thing_per_device_and_a_thing_type(synth: Synthesized) -> None:
    things = nested_resources(synth, "AWS::IoT::Thing")
    assert sorted(t["Properties"]["ThingName"] for t in things) == sorted(devices(synth.env))
    assert resources(synth, "AWS::IoT::Thing") == {}  # in the shards, not the parent
    synth.template.has_resource_properties(
        "AWS::IoT::ThingType", {"ThingTypeName": f"text-device-{synth.env}"}
    )


def test_device_policy_confines_each_device_to_its_own_client_id_and_topics(
    synth: Synthesized,
) -> None:
    document = only(synth, "AWS::IoT::Policy")["Properties"]["PolicyDocument"]
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    thing = "${iot:Connection.Thing.ThingName}"
    connect = by_sid["ConnectAsOwnThingOnly"]
    assert connect["Action"] == "iot:Connect"
    assert resolve_join(connect["Resource"]).endswith(f":client/{thing}")
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    assert resolve_join(by_sid["SubscribeOwnInbound"]["Resource"]).endswith(
        f":topicfilter/sms/{thing}/inbound"
    )
    assert resolve_join(by_sid["ReceiveOwnInbound"]["Resource"]).endswith(
        f":topic/sms/{thing}/inbound"
    )
    publish = [resolve_join(r) for r in by_sid["PublishOwnOutboundAndShadow"]["Resource"]]
    assert [r.split(":topic/")[1] for r in publish] == [
        f"sms/{thing}/outbound",
        f"$aws/things/{thing}/shadow/update",
    ]
    mailbox = [resolve_join(r) for r in by_sid["PublishOwnMailboxRequests"]["Resource"]]
    assert [r.split(":topic/")[1] for r in mailbox] == [
        f"sms/{thing}/ack",
        f"sms/{thing}/redeliver",
    ]
    assert set(by_sid) == {
        "ConnectAsOwnThingOnly",
        "SubscribeOwnInbound",
        "ReceiveOwnInbound",
        "PublishOwnOutboundAndShadow",
        # Over-the-air updates (tests/ota/test_ota_stack.py checks them).
        "SubscribeOwnJobAndStreamResponses",
        "ReceiveOwnJobAndStreamResponses",
        "PublishOwnJobAndStreamRequests",
        # The mailbox (tests/infra/test_mailbox_stack.py checks them).
        "PublishOwnMailboxRequests",
    }


def test_outbound_rule_selects_every_device_with_its_thing_name(synth: Synthesized) -> None:
    synth.template.has_resource_properties(
        "AWS::IoT::TopicRule",
        {
            "TopicRulePayload": {
                "Sql": "SELECT Type, Id, From, To, Body, MediaUrl, Image, topic(2) AS thing "
                "FROM 'sms/+/outbound'",
                "AwsIotSqlVersion": "2016-03-23",
                "RuleDisabled": False,
                "Actions": [{"Lambda": {"FunctionArn": Match.any_value()}}],
                "ErrorAction": {"Sqs": Match.object_like({"QueueUrl": Match.any_value()})},
            }
        },
    )


# -- Webhook API ----------------------------------------------------------------------------


def message_method(synth: Synthesized) -> dict[str, Any]:
    """The `POST /message` method (prod also has `POST /status`)."""
    api_resources = resources(synth, "AWS::ApiGateway::Resource")
    message_id = next(
        k for k, r in api_resources.items() if r["Properties"]["PathPart"] == "message"
    )
    methods = [
        m["Properties"]
        for m in resources(synth, "AWS::ApiGateway::Method").values()
        if m["Properties"]["ResourceId"] == {"Ref": message_id}
    ]
    assert len(methods) == 1
    method: dict[str, Any] = methods[0]
    return method


def test_webhook_is_a_non_proxy_post_with_a_form_template(synth: Synthesized) -> None:
    method = message_method(synth)
    assert method["HttpMethod"] == "POST"
    integration = method["Integration"]
    assert integration["Type"] == "AWS"  # non-proxy Lambda integration
    assert integration["PassthroughBehavior"] == "NEVER"
    template = integration["RequestTemplates"]["application/x-www-form-urlencoded"]
    assert "#set($body = $input.body)" in template
    assert "$util.base64Encode($body)" in template
    assert "X-Twilio-Signature" in template
    assert method["RequestParameters"] == {"method.request.header.X-Twilio-Signature": False}
    statuses = {r["StatusCode"]: r for r in integration["IntegrationResponses"]}
    assert set(statuses) == {"200", "400", "403", "500"}
    assert statuses["200"]["ResponseParameters"] == {
        "method.response.header.Content-Type": "'application/xml'"
    }
    assert "SelectionPattern" not in statuses["200"]
    assert statuses["403"]["SelectionPattern"] == "Forbidden:.*"
    assert statuses["400"]["SelectionPattern"] == "BadRequest:.*"
    # Every other function error is a 500, never the default 200.
    assert statuses["500"]["SelectionPattern"] == r"^(?!Forbidden:|BadRequest:)[\s\S]+"


def test_wrong_content_type_is_answered_400(synth: Synthesized) -> None:
    synth.template.has_resource_properties(
        "AWS::ApiGateway::GatewayResponse",
        {"ResponseType": "UNSUPPORTED_MEDIA_TYPE", "StatusCode": "400"},
    )


def test_stage_has_access_logs_and_throttling(synth: Synthesized) -> None:
    stage = only(synth, "AWS::ApiGateway::Stage")["Properties"]
    assert stage["AccessLogSetting"]["DestinationArn"]
    log_format = json.loads(stage["AccessLogSetting"]["Format"])
    assert "$context.requestId" in log_format.values()
    assert not any("sourceIp" in v or "querystring" in v.lower() for v in log_format.values())
    settings = cdk_context()["environments"][synth.env]
    throttle = stage["MethodSettings"][0]
    rate, burst = default_throttle(len(read_bindings(synth.env)))
    assert throttle["ThrottlingRateLimit"] == settings.get("throttle_rate_limit", rate)
    assert throttle["ThrottlingBurstLimit"] == settings.get("throttle_burst_limit", burst)


# -- Lambdas --------------------------------------------------------------------------------


def test_lambdas_are_arm64_on_the_newest_python(synth: Synthesized) -> None:
    functions = resources(synth, "AWS::Lambda::Function")
    assert len(functions) >= 2
    for function in functions.values():
        properties = function["Properties"]
        assert properties["Architectures"] == ["arm64"]
        assert properties["Runtime"] == "python3.14"
        assert properties["LoggingConfig"]["LogFormat"] == "JSON"

        # Each Lambda is a package of its own: `{name}_lambda.handler.lambda_handler`; a
        # package serving two functions (the mailbox's) names its second entry point.
        package, module, function_name = properties["Handler"].split(".")
        handler = ROOT / "lambdas" / package / "handler.py"
        assert module == "handler" and package.endswith("_lambda")
        assert f"def {function_name}(" in handler.read_text()
        assert "def lambda_handler(" in handler.read_text()


def _policy_statements(synth: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    statements = []
    for logical_id, policy in resources(synth, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            statements.append((logical_id, statement))
    return statements


def test_receive_lambda_may_publish_only_to_inbound_topics(synth: Synthesized) -> None:
    publish = [
        s
        for policy, s in _policy_statements(synth)
        if "iot:Publish" in str(s["Action"]) and policy.startswith("WebhookReceive")
    ]
    assert len(publish) == 1
    assert publish[0]["Action"] == "iot:Publish"
    region = cdk_context()["environments"][synth.env]["region"]
    # One ARN whatever the fleet's size, bounded by the prefix and the inbound level.
    arn = f"arn:<AWS::Partition>:iot:{region}:<AWS::AccountId>:topic/sms/*/inbound"
    assert resolve_join(publish[0]["Resource"]) == arn
    nag = next(r for r in synth.nag_report["pluginReports"] if r["pluginName"] == "AwsSolutions")
    (acknowledged,) = [
        s
        for s in nag["suppressedViolations"]
        if s["ruleName"] == f"AwsSolutions-IAM5[Resource::{arn}]"
        and s["reason"].startswith("The receive Lambda")
    ]
    assert "thing level only" in acknowledged["reason"]


def test_tables_are_used_item_by_item_only(synth: Synthesized) -> None:
    # The mailbox's own grants: tests/infra/test_mailbox_stack.py.
    dynamo = [
        s
        for _, s in _policy_statements(synth)
        if "dynamodb:" in str(s["Action"]) and "Mailbox" not in str(s["Resource"])
    ]
    actions = sorted(
        tuple(sorted(s["Action"] if isinstance(s["Action"], list) else [s["Action"]]))
        for s in dynamo
    )
    idempotency = (
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    )
    assert actions == sorted(
        [
            idempotency,  # receive and send, each on its own table
            idempotency,
            ("dynamodb:GetItem",),  # receive and send look bindings up
            ("dynamodb:GetItem",),
            ("dynamodb:DeleteItem", "dynamodb:PutItem"),  # the shards' bindings writer
            ("dynamodb:UpdateItem",),  # receive records contacts
            ("dynamodb:GetItem", "dynamodb:UpdateItem"),  # send reads them, counts its sends
        ]
    )


def test_send_lambda_is_invoked_only_by_the_rule(synth: Synthesized) -> None:
    permissions = [
        p["Properties"]
        for p in resources(synth, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "iot.amazonaws.com"
        and "OutboundSend" in str(p["Properties"]["FunctionName"])
    ]
    assert len(permissions) == 1
    assert "Fn::GetAtt" in permissions[0]["SourceArn"]
    assert permissions[0]["SourceArn"]["Fn::GetAtt"][1] == "Arn"
    rule_id = permissions[0]["SourceArn"]["Fn::GetAtt"][0]
    assert synth.template_json["Resources"][rule_id]["Type"] == "AWS::IoT::TopicRule"
    assert permissions[0]["SourceAccount"] == {"Ref": "AWS::AccountId"}


# -- Secret and outputs ---------------------------------------------------------------------


def test_twilio_secret_is_created_without_credentials(synth: Synthesized) -> None:
    secret = only(synth, "AWS::SecretsManager::Secret")["Properties"]
    assert secret["Name"] == f"text-device/{synth.env}/twilio"
    assert json.loads(secret["SecretString"]) == {"account_sid": "", "auth_token": ""}
    for function in resources(synth, "AWS::Lambda::Function").values():
        variables = function["Properties"].get("Environment", {}).get("Variables", {})
        assert not any("token" in k.lower() or "sid" in k.lower() for k in variables)


def test_outputs_name_what_the_user_needs(synth: Synthesized) -> None:
    outputs = synth.template_json["Outputs"]
    for name in ("WebhookUrl", "DeviceCount", "InboundTopic", "OutboundTopic", "TwilioSecretName"):
        assert name in outputs
    # Nothing per device: outputs do not grow with the fleet.
    assert outputs["DeviceCount"]["Value"] == str(len(devices(synth.env)))
    assert outputs["InboundTopic"]["Value"] == "sms/{thing}/inbound"
    assert not any(t in json.dumps(outputs) for t in devices(synth.env))
    assert outputs["TwilioSecretName"]["Value"] == f"text-device/{synth.env}/twilio"
    url = resolve_join(outputs["WebhookUrl"]["Value"])
    assert url.startswith("https://<")
    assert ".execute-api." in url
    assert url.endswith("/message")


# -- Policies, nag and lint -----------------------------------------------------------------


def test_no_policy_statement_allows_wildcard_actions_or_all_resources(synth: Synthesized) -> None:
    statements = [s for _, s in _policy_statements(synth)]
    statements += [
        s
        for policy in resources(synth, "AWS::IoT::Policy").values()
        for s in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert statements
    for statement in statements:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        for action in actions:
            assert action != "*" and not action.endswith(":*"), statement
        raw_resources = statement.get("Resource", [])
        resource_list = raw_resources if isinstance(raw_resources, list) else [raw_resources]
        assert "*" not in resource_list, statement


def test_cdk_nag_passes_with_a_specific_reason_for_every_acknowledgement(
    synth: Synthesized,
) -> None:
    reports = synth.nag_report["pluginReports"]
    nag = next(r for r in reports if r["pluginName"] == "AwsSolutions")
    assert nag["conclusion"] == "success", json.dumps(nag["violations"], indent=1)
    assert nag["violations"] == []
    for suppressed in nag["suppressedViolations"]:
        assert len(suppressed["reason"]) >= 60, suppressed["ruleName"]
        assert suppressed["acknowledgedId"].endswith(suppressed["ruleName"])


def test_no_managed_policies_on_roles(synth: Synthesized) -> None:
    for role in resources(synth, "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]


def test_validate_against_default_rules_is_on() -> None:
    assert cdk_context()["@aws-cdk/core:validateAgainstDefaultRules"] is True


def test_templates_pass_cfn_lint(synthesized: dict[str, Synthesized]) -> None:
    paths = [
        str(path)
        for s in synthesized.values()
        for path in s.template_path.parent.glob("*.template.json")  # the shards' too
    ]
    # W3005 (DependsOn already implied) is how CDK writes role dependencies: ignored.
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), "--ignore-checks", "W3005", "--", *paths],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
