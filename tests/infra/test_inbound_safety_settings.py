"""Issue 11, inbound: the settings behind the sender allow-list, the replay window and the
throttle, validated at synth; what the stack makes of them (receive environment, 4xx alarm)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import contract
from stacks.device_files import load_settings, write_bindings
from stacks.monitoring import WEBHOOK_4XX_PER_5_MINUTES
from stacks.settings import (
    MIN_THROTTLE_BURST,
    MIN_THROTTLE_RATE,
    SettingsError,
    default_throttle,
    parse_environment,
)
from tests.conftest import ENVIRONMENTS, Synthesized, cdk_context

BASE = {"region": "eu-west-1", "devices": {"door": "+15555550100"}}


def parse(**change: Any) -> Any:
    return parse_environment("test", {**BASE, **change})


def test_defaults_are_safe() -> None:
    settings = parse()
    assert settings.allowed_senders == {}
    assert settings.replay_window_days == contract.DEFAULT_REPLAY_WINDOW_DAYS >= 365
    assert (settings.throttle_rate_limit, settings.throttle_burst_limit) == default_throttle(1)


@pytest.mark.parametrize("count", [0, 1, 20, 21, 25, 1000])
def test_default_throttle_lets_every_device_get_texts_at_the_same_moment(count: int) -> None:
    rate, burst = default_throttle(count)
    assert burst >= 2 * count and burst >= MIN_THROTTLE_BURST
    assert rate >= count and rate >= MIN_THROTTLE_RATE
    devices = {f"d{i}": f"+1555555{i:04d}" for i in range(count)}
    settings = parse_environment("test", {"region": "eu-west-1", "devices": devices})
    assert settings.throttle_burst_limit == burst


def test_default_throttle_changes_only_when_the_fleet_doubles() -> None:
    for count in range(1, 1000):
        rate, burst = default_throttle(count)
        assert rate < 2 * max(count, MIN_THROTTLE_RATE) and burst < 2 * max(2 * count, 50)
        if default_throttle(count + 1) != (rate, burst):
            assert count & (count - 1) == 0, count  # a power of two: the fleet doubled


def test_allowed_senders_are_kept_per_device() -> None:
    settings = parse(allowed_senders={"door": ["+15551234567", "whatsapp:+15551234567"]})
    assert settings.allowed_senders == {"door": ("+15551234567", "whatsapp:+15551234567")}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"allowed_senders": {"window": ["+15551234567"]}}, "'window', which is not one of"),
        ({"allowed_senders": {"door": ["5551234567"]}}, "non-empty list of E.164"),
        ({"allowed_senders": {"door": []}}, "non-empty list"),
        ({"allowed_senders": {"door": "+15551234567"}}, "non-empty list"),
        ({"allowed_senders": ["+15551234567"]}, "must map thing names"),
        (
            {"allowed_senders": {"door": [f"+1555{n:07d}" for n in range(200)]}},
            "over 2048 bytes of JSON",
        ),
        ({"replay_window_days": 0}, "'replay_window_days'"),
        ({"replay_window_days": 3651}, "'replay_window_days'"),
        ({"replay_window_days": True}, "'replay_window_days'"),
        ({"throttle_rate_limit": 0}, "'throttle_rate_limit'"),
        ({"throttle_burst_limit": 5001}, "'throttle_burst_limit'"),
        ({"throttle_burst_limit": 1.5}, "'throttle_burst_limit'"),
        (
            {
                "devices": {"a": "+15555550100", "b": "+15555550101", "c": "+15555550102"},
                "throttle_burst_limit": 2,
            },
            "below the number of devices (3)",
        ),
    ],
)
def test_invalid_inbound_settings_fail_synth(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=r"environments\.test: ") as error:
        parse(**change)
    assert message in str(error.value)


def test_allowed_senders_in_cdk_json_name_the_devices_of_the_devices_file(
    tmp_path: Path,
) -> None:
    write_bindings("test", {"door": "+15555550100"}, tmp_path)
    senders = {"door": ["+15551234567"]}
    environments = {"test": {"region": "eu-west-1", "allowed_senders": senders}}
    settings = load_settings("test", environments, tmp_path)
    assert settings.allowed_senders == {"door": ("+15551234567",)}
    environments["test"]["allowed_senders"] = {"gate": ["+15551234567"]}
    with pytest.raises(SettingsError, match=r"devices\.json: 'allowed_senders' names 'gate'"):
        load_settings("test", environments, tmp_path)


def receive_environment(synth: Synthesized) -> dict[str, Any]:
    for resource in synth.template_json["Resources"].values():
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        if "IDEMPOTENCY_TABLE" in variables:  # the receive Lambda's own table
            return dict(variables)
    raise AssertionError("no receive function")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_receive_lambda_gets_the_allow_list_and_replay_window(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    settings = load_settings(env, cdk_context()["environments"])
    variables = receive_environment(synthesized[env])
    assert json.loads(variables["ALLOWED_SENDERS"]) == {
        thing: list(senders) for thing, senders in settings.allowed_senders.items()
    }
    assert int(variables["REPLAY_WINDOW_SECONDS"]) == settings.replay_window_days * 86400


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_webhook_4xx_floods_raise_an_alarm_next_to_the_5xx_one(
    synthesized: dict[str, Synthesized], env: str
) -> None:
    alarms = {
        name: resource["Properties"]
        for name, resource in synthesized[env].template_json["Resources"].items()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
    }
    by_metric = {props.get("MetricName"): props for props in alarms.values()}
    client_errors, server_errors = by_metric["4XXError"], by_metric["5XXError"]
    assert client_errors["Namespace"] == "AWS/ApiGateway"
    assert client_errors["Dimensions"] == server_errors["Dimensions"]  # the same API
    assert client_errors["Statistic"] == "Sum" and client_errors["Period"] == 300
    assert client_errors["Threshold"] == WEBHOOK_4XX_PER_5_MINUTES
    assert client_errors["ComparisonOperator"] == "GreaterThanThreshold"
    assert client_errors["AlarmActions"] == server_errors["AlarmActions"]
    assert "429" in client_errors["AlarmDescription"]


@pytest.mark.parametrize(
    "value",
    [
        "+15551234567",
        "whatsapp:+15551234567",
        "rcs:+447700900123",
        "messenger:1234567",
        "22395",
        "+15551234567FromCountryUS",
        "whatsapp:15551234567",
        "+0123",
        "",
    ],
)
def test_allowed_senders_take_what_the_receive_lambda_accepts_as_a_sender(value: str) -> None:
    try:
        parse(allowed_senders={"door": [value]})
    except SettingsError:
        accepted = False
    else:
        accepted = True
    assert accepted == contract.is_sender_address(value)
