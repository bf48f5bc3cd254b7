"""The redrive tool: every record format classified with its reason, and `make redrive`'s
command line against moto (a deployed stack's outputs, its queues)."""

from __future__ import annotations

import json
from typing import Any

import pytest

import contract
from loop.failure_records import rule_error_record
from tools.redrive import QUEUE_OUTPUTS, classify, main

EVENT = {"Type": "Outgoing", "Id": "m-1", "To": "+15551234567", "Body": "hi", "thing": "dev-a"}


def lambda_record(condition: str, response: dict[str, Any]) -> str:
    """A record as Lambda (or the send Lambda, same shape) puts it in a queue."""
    record = contract.dead_letter_record(
        EVENT,
        condition=condition,
        request_id="req-1",
        function_arn="arn:aws:lambda:eu-west-1:123456789012:function:send",
        error=response,
        invoke_count=3,
    )
    return json.dumps(record)


def rule_record(payload: bytes) -> str:
    """A record as the topic rule's error action writes it (the local loop's model)."""
    return json.dumps(rule_error_record("OutboundRule", "sms/dev-a/outbound", payload, "Throttled"))


@pytest.mark.parametrize(
    ("body", "retry", "reason"),
    [
        (
            lambda_record("RetriesExhausted", {"errorType": "TransientTwilioError"}),
            True,
            "RetriesExhausted (TransientTwilioError: )",
        ),
        (lambda_record("EventAgeExceeded", {}), True, "EventAgeExceeded"),
        (
            lambda_record("PermanentTwilioError", {"twilioStatus": 401, "twilioCode": 20003}),
            True,
            "Twilio 401 (code 20003): retry once the secret holds the token",
        ),
        (
            lambda_record("PermanentTwilioError", {"twilioStatus": 400, "twilioCode": 21211}),
            False,
            "Twilio refused it for good: 400 (code 21211)",
        ),
        (
            lambda_record("OutboundPolicyRefused", {"reason": "fleet-number"}),
            False,
            "refused by the outbound policy: fleet-number",
        ),
        (
            rule_record(json.dumps({"Id": "m-1", "To": "+1"}).encode()),
            True,
            "rule error: Throttled",
        ),
        (rule_record(b"not json {"), False, "the payload is not a JSON object"),
        ("not json", False, "unreadable record"),
        ("[1]", False, "unreadable record"),
        ('{"requestContext": {"condition": "Odd"}, "responsePayload": {}}', False, "'Odd'"),
    ],
)
def test_every_format_is_classified_with_its_reason(body: str, retry: bool, reason: str) -> None:
    letter = classify("SomeQueue", body, "sms")
    assert letter.retry is retry
    assert reason in letter.reason
    if retry:
        assert letter.topic == "sms/dev-a/outbound"
        assert letter.payload is not None and "thing" not in letter.payload
        assert letter.idempotency_key == "dev-a#m-1"


STACK_TEMPLATE = {
    "Resources": {
        "Dlq": {"Type": "AWS::SQS::Queue"},
        "Rule": {"Type": "AWS::SQS::Queue"},
        "Refused": {"Type": "AWS::SQS::Queue"},
    },
    "Outputs": {
        "SendDeadLetterQueueUrl": {"Value": {"Ref": "Dlq"}},
        "RuleErrorQueueUrl": {"Value": {"Ref": "Rule"}},
        "RefusedQueueUrl": {"Value": {"Ref": "Refused"}},
        "SendIdempotencyTable": {"Value": "send-idempotency"},
        "TopicPrefix": {"Value": "sms"},
    },
}


def test_make_redrive_dry_run_lists_reasons_and_changes_nothing(
    aws_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3
    from moto import mock_aws

    with mock_aws():
        cloudformation = boto3.client("cloudformation", region_name="eu-west-1")
        cloudformation.create_stack(
            StackName="TextDevice-dev", TemplateBody=json.dumps(STACK_TEMPLATE)
        )
        outputs = {
            o["OutputKey"]: o["OutputValue"]
            for o in cloudformation.describe_stacks(StackName="TextDevice-dev")["Stacks"][0][
                "Outputs"
            ]
        }
        sqs = boto3.client("sqs", region_name="eu-west-1")
        dlq = outputs[QUEUE_OUTPUTS["SendDeadLetterQueue"]]
        refused = outputs[QUEUE_OUTPUTS["RefusedQueue"]]
        sqs.send_message(QueueUrl=dlq, MessageBody=lambda_record("RetriesExhausted", {}))
        sqs.send_message(
            QueueUrl=refused,
            MessageBody=lambda_record("OutboundPolicyRefused", {"reason": "per-day-cap"}),
        )
        assert main(["--env", "dev", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "would redrive" in out and "RetriesExhausted" in out
        assert "refused by the outbound policy: per-day-cap" in out
        assert "0 redriven, 1 would be redriven (dry run), 1 left" in out
        assert "+1555" not in out  # no phone number in the listing
        for url in (dlq, refused):
            attributes = sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            assert attributes["ApproximateNumberOfMessages"] == "1"


def test_make_redrive_names_the_fix_when_the_stack_is_not_deployed(aws_env: None) -> None:
    from moto import mock_aws

    with mock_aws(), pytest.raises(SystemExit, match="Cannot read stack TextDevice-dev"):
        main(["--env", "dev", "--dry-run"])
    with pytest.raises(SystemExit, match="Unknown environment 'nope'"):
        main(["--env", "nope"])
