"""The bindings table, filled as the shards' `Custom::DeviceBindings` resources fill it.

Locally there is no CloudFormation to call the custom resource: this runs its own writer
(`lambdas/device_bindings_lambda/bindings_table.py`) with each shard's `Bindings` property, as
read from the synthesized nested templates.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from loop.stack import ROOT
from stacks.device_shard import BINDINGS_RESOURCE_TYPE

WRITER = ROOT / "lambdas" / "device_bindings_lambda" / "bindings_table.py"


@cache
def writer() -> ModuleType:
    """The custom resource's writer module, loaded from its file: the loop's own process
    does not have `lambdas/` on its path (the writer imports only `contract`)."""
    spec = importlib.util.spec_from_file_location("device_bindings_table", WRITER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shard_bindings(outdir: Path) -> list[dict[str, str]]:
    """The `Bindings` property of every shard in the cloud assembly at `outdir`."""
    found = []
    for path in sorted(outdir.glob("*.nested.template.json")):
        for resource in json.loads(path.read_text())["Resources"].values():
            if resource["Type"] == BINDINGS_RESOURCE_TYPE:
                found.append(dict(resource["Properties"]["Bindings"]))
    return found


def fill(table: Any, *shards: Mapping[str, str]) -> None:
    """Writes each shard's bindings to `table` (a boto3 DynamoDB Table), as on deploy."""
    for bindings in shards:
        writer().apply(table, {}, bindings)
