"""The contract (`contract.py`) is the one source of what the parts agree on: the topic
rule's field list and the send Lambda's checks, topics, names and shapes."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import contract
from loop.cloud import RuleQuery
from send_lambda.config import SendConfig
from send_lambda.outbound import Reason, Rejected, parse_message
from tests.conftest import ROOT, Synthesized

THING = "dev-reverser"
NUMBER = "+15555550100"
CONFIG = SendConfig()
NUMBERS = {THING: NUMBER, "dev-doorbell": "+15555550101"}


def rule_sql(synth: Synthesized) -> str:
    """The outbound rule's query (the mailbox's request rules are tested with the mailbox)."""
    [rule] = [
        r
        for r in synth.template_json["Resources"].values()
        if r["Type"] == "AWS::IoT::TopicRule"
        and r["Metadata"]["aws:cdk:path"].endswith("/Outbound/OutboundRule")
    ]
    sql: str = rule["Properties"]["TopicRulePayload"]["Sql"]
    return sql


def rule_event(synth: Synthesized, thing: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What the synthesized rule hands the send Lambda for `payload` published by `thing`
    (the local loop's stand-in of the rules engine evaluates the SQL)."""
    query = RuleQuery.parse(rule_sql(synth))
    topic = contract.outbound_topic(contract.DEFAULT_TOPIC_PREFIX, thing)
    return query.event(topic, json.dumps(payload).encode())


def test_the_rule_selects_the_contract_fields_and_the_thing_from_the_topic(
    synthesized: dict[str, Synthesized],
) -> None:
    for synth in synthesized.values():
        query = RuleQuery.parse(rule_sql(synth))
        assert query.fields == contract.OUTBOUND_FIELDS and not query.select_all
        assert query.topic_fields == ((contract.THING_FIELD, contract.THING_LEVEL),)
        assert query.topic_filter == contract.outbound_topic(contract.DEFAULT_TOPIC_PREFIX, "+")


class _Recording(Mapping[str, Any]):
    """An event that records which keys its reader looks up."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_the_send_lambda_reads_exactly_what_the_rule_selects() -> None:
    every_field = {name: "x" for name in contract.OUTBOUND_FIELDS}
    event = _Recording(
        {
            **every_field,
            "Type": contract.OUTBOUND_TYPE,
            "Id": "m-1",
            "To": "+15551234567",
            "From": NUMBER,
            "Body": "hi",
            "MediaUrl": "https://example.com/a.png",
            "Image": "https://example.com/a.png",
            contract.THING_FIELD: THING,
        }
    )
    parse_message(event, CONFIG, NUMBERS)
    assert event.read == {*contract.OUTBOUND_FIELDS, contract.THING_FIELD}


def test_a_device_that_names_another_number_as_from_is_refused(
    synthesized: dict[str, Synthesized],
) -> None:
    payload = {"Type": "Outgoing", "Id": "m-1", "To": "+15551234567", "Body": "hi"}
    own = rule_event(synthesized["dev"], THING, {**payload, "From": NUMBER})
    assert parse_message(own, CONFIG, NUMBERS).from_ == NUMBER
    spoofed = rule_event(synthesized["dev"], THING, {**payload, "From": "+15555550101"})
    with pytest.raises(Rejected) as caught:
        parse_message(spoofed, CONFIG, NUMBERS)
    assert caught.value.reason is Reason.FROM_NOT_ALLOWED
    # Nor can a payload choose the thing (and so the number) it sends as.
    other = rule_event(synthesized["dev"], THING, {**payload, "thing": "dev-doorbell"})
    assert parse_message(other, CONFIG, NUMBERS).from_ == NUMBER


def test_topics_and_names() -> None:
    assert contract.inbound_topic("sms", "a") == "sms/a/inbound"
    assert contract.outbound_topic("sms", "a") == "sms/a/outbound"
    assert contract.stack_name("dev") == "TextDevice-dev"
    assert contract.twilio_secret_name("dev") == "text-device/dev/twilio"


def test_binding_items_hold_both_directions_without_collisions() -> None:
    items = contract.binding_items({"dev-reverser": "+15555550100", "b": "+15555550101"})
    assert items == {
        "dev-reverser": "+15555550100",
        "+15555550100": "dev-reverser",
        "b": "+15555550101",
        "+15555550101": "b",
    }
    # A number's key and a thing's key never collide: no thing name can start with `+`.
    assert not contract.THING_NAME.match("+15555550100")


@pytest.mark.parametrize(
    ("number", "valid"),
    [
        ("+15551234567", True),
        ("+4915112345678", True),
        ("15551234567", False),
        ("+05551234567", False),
        ("+1555123", True),
        ("+155512", False),
        ("+1555123456789012", False),
        ("whatsapp:+15551234567", False),
        (None, False),
    ],
)
def test_e164(number: object, valid: bool) -> None:
    assert contract.is_e164(number) is valid


def test_every_forwardable_field_has_a_check_that_refuses_garbage() -> None:
    for name, check in contract.FORWARDABLE_FIELDS.items():
        assert not check("x" * 300), name


def test_dead_letter_records_have_lambdas_on_failure_shape() -> None:
    record = contract.dead_letter_record(
        {"Id": "x"},
        condition=contract.RETRIES_EXHAUSTED,
        request_id="r",
        function_arn="arn:f",
        error={"errorType": "TransientTwilioError"},
        invoke_count=3,
        function_error="Unhandled",
    )
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["requestPayload"] == {"Id": "x"}


def test_the_contract_imports_only_the_standard_library() -> None:
    import sys

    imported: set[str] = set()
    for node in ast.walk(ast.parse((ROOT / "contract.py").read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_no_other_file_writes_the_e164_pattern() -> None:
    pattern = "[1-9][0-9]{6,14}"
    sources = [
        p
        for folder in ("lambdas", "stacks", "loop", "device/tool", "bench")
        for p in (ROOT / folder).rglob("*.py")
    ] + [ROOT / "app.py"]
    assert [str(p.relative_to(ROOT)) for p in sources if pattern in p.read_text()] == []
    assert pattern in (ROOT / "contract.py").read_text()
    assert Path(contract.__file__).resolve() == ROOT / "contract.py"
