"""1, 100 and 1,000 devices: every AWS limit holds, and what must not grow does not.

Each size is synthesized once (module-scoped) and shared by the checks; the 1,000-device
synth (~20 s) is marked `slow`: `make test` runs it, `pytest -m "not slow"` skips it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from device.tool import fleet
from tests.conftest import synthesize
from tests.infra.synthetic_fleet import (
    MAX_INLINE_POLICIES_PER_ROLE,
    MAX_LAMBDA_ENVIRONMENT,
    MAX_MANAGED_POLICY,
    MAX_OUTPUTS,
    MAX_RESOURCES,
    MAX_TEMPLATE_BYTES,
    FleetFigures,
    measure,
    write_fleet,
)

ENV = "dev"
SIZES = [1, 100, pytest.param(1000, marks=pytest.mark.slow)]


@dataclass(frozen=True)
class SynthesizedFleet:
    """One fleet size, synthesized."""

    size: int
    devices_dir: Path
    outdir: Path
    figures: FleetFigures
    nag: dict[str, Any]


_cache: dict[int, SynthesizedFleet] = {}


def fleet_of(size: int, tmp_path_factory: pytest.TempPathFactory) -> SynthesizedFleet:
    """The environment with `size` synthetic devices, synthesized once per session."""
    if size not in _cache:
        base = tmp_path_factory.mktemp(f"fleet-{size}")
        write_fleet(base / "devices", ENV, size)
        synthesize(ENV, base / "out", devices_dir=str(base / "devices"))
        report = json.loads((base / "out" / "validation-report.json").read_text())
        nag = next(r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions")
        _cache[size] = SynthesizedFleet(
            size, base / "devices", base / "out", measure(base / "out"), nag
        )
    return _cache[size]


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"{n}-devices")
def sized(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> SynthesizedFleet:
    return fleet_of(int(request.param), tmp_path_factory)


def test_every_stack_stays_within_cloudformation_limits(sized: SynthesizedFleet) -> None:
    figures = sized.figures
    assert len(figures.nested) >= 1
    for stack in figures.stacks:
        assert stack.resources <= MAX_RESOURCES, stack
        assert stack.outputs <= MAX_OUTPUTS, stack
        assert stack.template_bytes <= MAX_TEMPLATE_BYTES, stack
    # The devices are in the shards: the parent holds a fixed set plus one stack per shard.
    things = sum(
        1
        for path in sized.outdir.glob("*.nested.template.json")
        for r in json.loads(path.read_text())["Resources"].values()
        if r["Type"] == "AWS::IoT::Thing"
    )
    assert things == sized.size


def test_policies_and_lambda_configuration_stay_within_limits(sized: SynthesizedFleet) -> None:
    figures = sized.figures
    assert figures.largest_managed_policy <= MAX_MANAGED_POLICY
    assert figures.largest_inline_policies_per_role <= MAX_INLINE_POLICIES_PER_ROLE
    assert figures.largest_lambda_environment <= MAX_LAMBDA_ENVIRONMENT


def test_cdk_nag_passes_at_every_size(sized: SynthesizedFleet) -> None:
    assert sized.nag["conclusion"] == "success", sized.nag["violations"]


def test_nothing_but_the_shards_grows_with_the_fleet(
    sized: SynthesizedFleet, tmp_path_factory: pytest.TempPathFactory
) -> None:
    one = fleet_of(1, tmp_path_factory).figures
    figures = sized.figures
    # Same policies, same Lambda environments, same outputs, whatever the size.
    assert figures.lambda_environments == one.lambda_environments
    assert figures.largest_inline_policies_per_role == one.largest_inline_policies_per_role
    assert figures.largest_managed_policy == one.largest_managed_policy == 0
    assert figures.parent.outputs == one.parent.outputs
    assert figures.parent.resources - len(figures.nested) == one.parent.resources - 1


def test_adding_a_device_changes_only_its_own_resources_and_its_shards_bindings(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """What `cdk diff` would show after `device.tool add`: the new device's resources, its
    shard's bindings (and the shard stack's template URL), the device count; nothing else."""
    before = fleet_of(100, tmp_path_factory)
    base = tmp_path_factory.mktemp("fleet-100-plus-one")
    devices_dir = base / "devices"
    write_fleet(devices_dir, ENV, 100)
    fleet.add(
        fleet.Fleet(env=ENV, devices_root=devices_dir, keys_root=base / "keys"),
        "fleet-new",
        "+15559990000",
    )
    synthesize(ENV, base / "out", devices_dir=str(devices_dir))

    old = {p.name: json.loads(p.read_text()) for p in before.outdir.glob("*.template.json")}
    new = {p.name: json.loads(p.read_text()) for p in (base / "out").glob("*.template.json")}
    changed = sorted(name for name in new if old.get(name) != new[name])
    parent = f"TextDevice-{ENV}.template.json"
    assert parent in changed
    (shard,) = [name for name in changed if name != parent]

    # The shard: the new device's resources added, its bindings updated, nothing removed.
    old_shard, new_shard = old.get(shard, {"Resources": {}}), new[shard]
    assert old_shard["Resources"].keys() <= new_shard["Resources"].keys()
    added = new_shard["Resources"].keys() - old_shard["Resources"].keys()
    assert {new_shard["Resources"][k]["Type"] for k in added} >= {
        "AWS::IoT::Thing",
        "AWS::IoT::Certificate",
        "AWS::IoT::ThingPrincipalAttachment",
        "AWS::IoT::PolicyPrincipalAttachment",
    }
    for logical_id in added:
        assert (
            "/Device-fleet-new/" in new_shard["Resources"][logical_id]["Metadata"]["aws:cdk:path"]
        )
    modified = [
        k for k in old_shard["Resources"] if old_shard["Resources"][k] != new_shard["Resources"][k]
    ]
    if modified:  # none when the device opened a new shard
        (bindings,) = modified
        properties = new_shard["Resources"][bindings]["Properties"]
        old_properties = old_shard["Resources"][bindings]["Properties"]
        assert properties["Bindings"] == {**old_properties["Bindings"], "fleet-new": "+15559990000"}

    # The parent: only that shard's stack resource (its template URL) and the device count.
    old_parent, new_parent = old[parent]["Resources"], new[parent]["Resources"]
    differing = {
        k for k in old_parent.keys() | new_parent.keys() if old_parent.get(k) != new_parent.get(k)
    }
    assert {new_parent[k]["Type"] for k in differing} == {"AWS::CloudFormation::Stack"}
    assert len(differing) == 1
    outputs = {k for k, v in new[parent]["Outputs"].items() if old[parent]["Outputs"][k] != v}
    assert outputs == {"DeviceCount"}
