"""Settings from cdk.json: valid environments parse, mistakes fail synth with a clear message."""

from __future__ import annotations

from typing import Any

import pytest

from stacks.settings import SettingsError, parse_environment
from tests.conftest import cdk_context


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_every_configured_environment_parses(env: str) -> None:
    settings = parse_environment(env, cdk_context()["environments"][env])
    assert settings.stack_name == f"TextDevice-{env}"
    assert settings.devices
    assert set(settings.things_by_number.values()) == set(settings.devices)


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
