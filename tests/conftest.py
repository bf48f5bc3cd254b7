"""Shared fixtures: synthesized stacks (once per session) and a clean AWS environment."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
ENVIRONMENTS = ("dev", "prod")

from loop import stack as loop_stack  # noqa: E402 (needs ROOT on sys.path)

cdk_context = loop_stack.cdk_context


def mailbox_table_definition(template: dict[str, Any]) -> dict[str, Any]:
    """`create_table` arguments for the mailbox table as the template declares it."""
    properties = next(
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::DynamoDB::Table" and "LocalSecondaryIndexes" in r["Properties"]
    )
    return {
        "BillingMode": "PAY_PER_REQUEST",
        **{
            k: properties[k] for k in ("KeySchema", "AttributeDefinitions", "LocalSecondaryIndexes")
        },
    }


@dataclass(frozen=True)
class Synthesized:
    """One environment's synthesized stack, template and cdk-nag report."""

    env: str
    stack: Any
    template: Any  # aws_cdk.assertions.Template
    template_json: dict[str, Any]
    template_path: Path
    nag_report: dict[str, Any]


def synthesize(env: str, outdir: Path, **extra_context: Any) -> Synthesized:
    """Synthesizes one environment in-process, with bundling skipped."""
    from aws_cdk.assertions import Template

    stack, template_path = loop_stack.synthesize(env, outdir, **extra_context)
    report_path = outdir / "validation-report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    return Synthesized(
        env=env,
        stack=stack,
        template=Template.from_stack(stack),
        template_json=json.loads(template_path.read_text()),
        template_path=template_path,
        nag_report=report,
    )


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Synthesized]:
    """Both environments, synthesized once for the whole test session."""
    return {env: synthesize(env, tmp_path_factory.mktemp(f"cdk-{env}")) for env in ENVIRONMENTS}


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and region, so nothing can reach a real AWS account."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    yield
