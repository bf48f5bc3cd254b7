"""Settings from cdk.json: valid environments parse, mistakes fail synth with a clear message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stacks.device_files import load_settings, read_bindings
from stacks.settings import SettingsError, parse_environment
from tests.conftest import cdk_context


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_configured_environment_parses(env: str) -> None:
    settings = load_settings(env, cdk_context()["environments"])
    assert settings.stack_name == f"TextDevice-{env}"
    assert settings.devices == read_bindings(env)
    assert settings.devices
    assert set(settings.things_by_number.values()) == set(settings.devices)
    assert settings.device_shards == 32


def test_devices_in_cdk_json_are_refused_with_where_they_moved() -> None:
    environments = {"qa": {"region": "eu-west-1", "devices": {"a": "+15555550100"}}}
    with pytest.raises(SettingsError, match=r"devices are listed in devices/qa/devices.json"):
        load_settings("qa", environments)


def test_a_malformed_devices_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "qa").mkdir()
    (tmp_path / "qa" / "devices.json").write_text("[1, 2]")
    with pytest.raises(SettingsError, match=r"devices\.json must map thing names"):
        load_settings("qa", {"qa": {"region": "eu-west-1"}}, tmp_path)
    (tmp_path / "qa" / "devices.json").write_text('{"a": "+1555"')
    with pytest.raises(SettingsError, match="is not valid JSON"):
        load_settings("qa", {"qa": {"region": "eu-west-1"}}, tmp_path)
    (tmp_path / "qa" / "devices.json").write_text('{"a": "5555550100"}')
    with pytest.raises(SettingsError) as error:
        load_settings("qa", {"qa": {"region": "eu-west-1"}}, tmp_path)
    assert str(error.value) == (
        f"{tmp_path / 'qa' / 'devices.json'}: device 'a' is bound to an invalid number "
        "(E.164 expected)"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"region": ""}, "'region' is required"),
        ({"devices": {"bad name!": "+15555550100"}}, "not a valid AWS IoT thing name"),
        ({"devices": {"a": "5555550100"}}, "invalid number"),
        ({"devices": {"a": "+15555550100", "b": "+15555550100"}}, "same number"),
        ({"topic_prefix": "sms/x"}, "'topic_prefix'"),
        ({"topic_prefix": "$aws"}, "'topic_prefix'"),
        ({"body_limit": 0}, "'body_limit'"),
        ({"log_retention_days": 13}, "'log_retention_days'"),
        ({"extra_fields": ["Body2"]}, "unknown webhook parameter(s) Body2"),
        ({"destination_allow_list": ["0044"]}, "E.164"),
        ({"fallback_url": "http://x"}, "https://"),
        ({"retain_data": "yes"}, "'retain_data' must be true or false"),
        ({"colour": "blue"}, "unknown key(s) colour"),
        ({"device_shards": 0}, "'device_shards' must be an integer from 1 to 100"),
        ({"device_shards": True}, "'device_shards' must be an integer from 1 to 100"),
    ],
)
def test_invalid_settings_name_the_environment_and_the_key(
    change: dict[str, Any], message: str
) -> None:
    raw = {"region": "eu-west-1", "devices": {"kitchen": "+15555550100"}, **change}
    with pytest.raises(SettingsError) as error:
        parse_environment("qa", raw)
    assert "environments.qa" in str(error.value)
    assert message in str(error.value)


def test_unknown_environment_stops_synth_with_the_known_names() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import app; from aws_cdk import App; "
            "app.build(App(context={'env': 'nope', 'environments': {'dev': {}}}))",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 1
    assert "Unknown environment 'nope'" in result.stderr
    assert "Known: dev" in result.stderr
