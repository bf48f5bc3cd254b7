"""Fleets of any size for synth tests and benchmarks, and the AWS limits they must respect.

`write_fleet` lays out N devices the way `device.tool add` does (bindings file and one
committed CSR each; one key signs them all, which keeps a 1,000-device fleet fast to make:
the template only carries the CSRs). `measure` reads a synthesized cloud assembly and
reports the figures CloudFormation, IAM and Lambda limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from device.tool.keys import build_csr
from stacks.device_files import csr_path, write_bindings

# The limits (AWS documentation, "quotas"), checked by tests/infra/test_fleet_scale.py.
MAX_RESOURCES = 500
MAX_OUTPUTS = 200
MAX_MANAGED_POLICY = 6_144
MAX_INLINE_POLICIES_PER_ROLE = 10_240
MAX_LAMBDA_ENVIRONMENT = 4_096
MAX_TEMPLATE_BYTES = 1_000_000  # a template given by S3 URL (nested stacks are)
# A Ref or Fn::GetAtt resolves to at most this many characters here (table names, ARNs,
# queue URLs): the estimates below over-count rather than under-count.
RESOLVED_REFERENCE = 128


@cache
def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def thing_name(index: int) -> str:
    """The index-th synthetic device."""
    return f"fleet-{index:04d}"


def number(index: int) -> str:
    """The index-th synthetic device's number (555 numbers are reserved for fiction)."""
    return f"+1555{index:07d}"


def write_fleet(root: Path, env: str, count: int) -> dict[str, str]:
    """Writes `devices/{env}/` for `count` devices under `root`; returns their bindings."""
    bindings = {thing_name(i): number(i) for i in range(count)}
    write_devices(root, env, bindings)
    return bindings


def write_devices(root: Path, env: str, bindings: dict[str, str]) -> None:
    """Writes `devices/{env}/` under `root`: these bindings and a CSR for each device."""
    write_bindings(env, bindings, root)
    for thing in bindings:
        pem = build_csr(_key(), thing).public_bytes(serialization.Encoding.PEM).decode()
        csr_path(env, thing, root).write_text(pem)


def resolved(value: Any) -> Any:
    """`value` as CloudFormation would resolve it, each reference standing in as the
    longest string it could be here (so sizes are over-counted, never under-counted)."""
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function in ("Ref", "Fn::GetAtt", "Fn::ImportValue", "Fn::Sub"):
            return "x" * RESOLVED_REFERENCE
        if function == "Fn::Join":
            separator, parts = argument
            return str(separator).join(str(resolved(part)) for part in parts)
    if isinstance(value, dict):
        return {k: resolved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v) for v in value]
    return value


def json_length(value: Any) -> int:
    """Characters of `value` resolved, as compact JSON (IAM ignores whitespace; Lambda
    counts its variables' JSON)."""
    return len(json.dumps(resolved(value), separators=(",", ":"), ensure_ascii=False))


@dataclass(frozen=True)
class StackFigures:
    """One template's figures."""

    name: str
    resources: int
    outputs: int
    template_bytes: int


@dataclass(frozen=True)
class FleetFigures:
    """A synthesized environment against the limits."""

    stacks: tuple[StackFigures, ...]
    largest_managed_policy: int
    largest_inline_policies_per_role: int
    largest_lambda_environment: int
    lambda_environments: dict[str, int]

    @property
    def parent(self) -> StackFigures:
        """The environment's own (top-level) stack."""
        return self.stacks[0]

    @property
    def nested(self) -> tuple[StackFigures, ...]:
        """The shards."""
        return self.stacks[1:]


def _templates(outdir: Path) -> Iterator[tuple[str, dict[str, Any], int]]:
    parents = sorted(p for p in outdir.glob("*.template.json") if ".nested." not in p.name)
    for path in [*parents, *sorted(outdir.glob("*.nested.template.json"))]:
        text = path.read_text()
        yield path.name, json.loads(text), len(text.encode())


def measure(outdir: Path) -> FleetFigures:
    """The figures of the cloud assembly in `outdir` (parent stack first)."""
    stacks = []
    managed, environments = [0], {}
    inline_by_role: dict[str, int] = {}
    for name, template, size in _templates(outdir):
        resources = template.get("Resources", {})
        stacks.append(StackFigures(name, len(resources), len(template.get("Outputs", {})), size))
        for logical_id, resource in resources.items():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::IAM::ManagedPolicy":
                managed.append(json_length(properties["PolicyDocument"]))
            elif resource["Type"] == "AWS::IAM::Policy":
                for role in properties.get("Roles", []):
                    key = json.dumps(role)
                    size_now = json_length(properties["PolicyDocument"])
                    inline_by_role[key] = inline_by_role.get(key, 0) + size_now
            elif resource["Type"] == "AWS::Lambda::Function":
                variables = properties.get("Environment", {}).get("Variables", {})
                environments[logical_id] = json_length(variables) if variables else 0
    return FleetFigures(
        stacks=tuple(stacks),
        largest_managed_policy=max(managed),
        largest_inline_policies_per_role=max(inline_by_role.values(), default=0),
        largest_lambda_environment=max(environments.values(), default=0),
        lambda_environments=environments,
    )
