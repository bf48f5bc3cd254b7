"""Template assertions for over-the-air updates: the bucket, the stream role, the device
policy's jobs and streams statements and the outputs the `ota` tool reads."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aws_cdk.assertions import Match

from contract import OTA_BUCKET_OUTPUT, OTA_STREAM_ROLE_OUTPUT
from tests.conftest import ENVIRONMENTS, Synthesized, cdk_context
from tests.infra.test_stack import resolve_join

THING = "${iot:Connection.Thing.ThingName}"


@pytest.fixture(params=ENVIRONMENTS)
def synth(request: pytest.FixtureRequest, synthesized: dict[str, Synthesized]) -> Synthesized:
    return synthesized[request.param]


def only(synth: Synthesized, type_name: str, **where: Any) -> tuple[str, dict[str, Any]]:
    found = synth.template.find_resources(type_name, where or None)
    assert len(found) == 1, f"expected one {type_name}, found {len(found)}"
    [(logical_id, resource)] = found.items()
    return logical_id, resource


def bucket(synth: Synthesized) -> tuple[str, dict[str, Any]]:
    return only(synth, "AWS::S3::Bucket")


def test_the_update_bucket_is_private_encrypted_versioned_and_expires_files(
    synth: Synthesized,
) -> None:
    _, resource = bucket(synth)
    properties = resource["Properties"]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption[0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    [rule] = properties["LifecycleConfiguration"]["Rules"]
    assert rule["Prefix"] == "updates/" and rule["Status"] == "Enabled"
    assert rule["ExpirationInDays"] == 90
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 7}


def test_the_bucket_follows_retain_data(synth: Synthesized) -> None:
    retain = cdk_context()["environments"][synth.env].get("retain_data", False)
    _, resource = bucket(synth)
    assert resource["DeletionPolicy"] == ("Retain" if retain else "Delete")


def test_the_bucket_refuses_requests_without_tls(synth: Synthesized) -> None:
    bucket_id, _ = bucket(synth)
    synth.template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "Bucket": {"Ref": bucket_id},
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            },
        },
    )


def test_the_stream_role_is_for_aws_iot_of_this_account_and_reads_update_files_only(
    synth: Synthesized,
) -> None:
    bucket_id, _ = bucket(synth)
    role_id, role = only(
        synth,
        "AWS::IAM::Role",
        Properties={"Description": Match.string_like_regexp("MQTT-based file delivery")},
    )
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "iot.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    policies = synth.template.find_resources(
        "AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role_id}]}}
    )
    [policy] = policies.values()
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert statement["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/updates/*"]]
    }


def jobs_statements(synth: Synthesized) -> dict[str, list[str]]:
    _, policy = only(synth, "AWS::IoT::Policy")
    found = {}
    for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
        if "Job" in statement["Sid"]:
            assert statement["Effect"] == "Allow"
            arns = [resolve_join(r) for r in statement["Resource"]]
            assert all(a.startswith("arn:<AWS::Partition>:iot:") for a in arns)
            resources = [re.sub(r"^.*?:<AWS::AccountId>:", "", a) for a in arns]
            found[statement["Action"]] = resources
    return found


def test_each_device_gets_its_own_jobs_and_streams_topics_only(synth: Synthesized) -> None:
    own = f"$aws/things/{THING}"
    responses = [
        f"{own}/jobs/notify-next",
        f"{own}/jobs/start-next/accepted",
        f"{own}/jobs/start-next/rejected",
        f"{own}/jobs/$next/get/accepted",
        f"{own}/jobs/$next/get/rejected",
        f"{own}/jobs/*/update/accepted",
        f"{own}/jobs/*/update/rejected",
        f"{own}/streams/*/data/json",
        f"{own}/streams/*/description/json",
        f"{own}/streams/*/rejected/json",
    ]
    assert jobs_statements(synth) == {
        "iot:Subscribe": [f"topicfilter/{t}" for t in responses],
        "iot:Receive": [f"topic/{t}" for t in responses],
        "iot:Publish": [
            f"topic/{own}/jobs/start-next",
            f"topic/{own}/jobs/$next/get",
            f"topic/{own}/jobs/*/update",
            f"topic/{own}/streams/*/get/json",
            f"topic/{own}/streams/*/describe/json",
        ],
    }


def test_the_tool_finds_the_bucket_and_role_in_the_outputs(synth: Synthesized) -> None:
    bucket_id, _ = bucket(synth)
    outputs = synth.template_json["Outputs"]
    assert outputs[OTA_BUCKET_OUTPUT]["Value"] == {"Ref": bucket_id}
    role_arn = outputs[OTA_STREAM_ROLE_OUTPUT]["Value"]["Fn::GetAtt"]
    assert role_arn[1] == "Arn"
    assert synth.template_json["Resources"][role_arn[0]]["Type"] == "AWS::IAM::Role"
