"""Fleet size vs synth time and every AWS limit: 1, 100 and 1,000 devices.

    .venv/bin/python bench/fleet_bench.py [--sizes 1 100 1000]

For each size it writes a synthetic `devices/dev/` (tests/infra/synthetic_fleet.py) into a
temporary folder and runs what `make synth` runs (`cdk synth --quiet -c env=dev`, Lambda
bundling included) with `-c devices_dir=...`: once to fill the output folder, then again,
timed ("warm", as a developer's second `make synth`). The Lambda bundles are made once and
shared by every size. Prints a table and writes it to bench/fleet_results.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from tests.infra.synthetic_fleet import (  # noqa: E402
    MAX_INLINE_POLICIES_PER_ROLE,
    MAX_LAMBDA_ENVIRONMENT,
    MAX_MANAGED_POLICY,
    MAX_OUTPUTS,
    MAX_RESOURCES,
    FleetFigures,
    measure,
    write_fleet,
)

CDK = ROOT / "node_modules" / ".bin" / "cdk"
RESULTS = ROOT / "bench" / "fleet_results.md"


def cdk_synth(devices_dir: Path, outdir: Path) -> float:
    """Seconds `make synth`'s command takes for the fleet in `devices_dir`."""
    started = time.perf_counter()
    subprocess.run(
        [
            str(CDK),
            "synth",
            "--quiet",
            "-c",
            "env=dev",
            "-c",
            f"devices_dir={devices_dir}",
            "-o",
            str(outdir),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def row(size: int, warm_s: float, figures: FleetFigures) -> str:
    nested = figures.nested
    return (
        f"| {size:>5} | {warm_s:>6.1f} | {figures.parent.resources:>6} | {len(nested):>6} "
        f"| {max(s.resources for s in nested):>10} | {figures.parent.outputs:>7} "
        f"| {figures.parent.template_bytes:>12,} | {sum(s.template_bytes for s in nested):>12,} "
        f"| {figures.largest_managed_policy:>7} | {figures.largest_inline_policies_per_role:>14} "
        f"| {figures.largest_lambda_environment:>11} |"
    )


HEADER = (
    "| devices | warm synth s | parent resources | shards | largest shard (resources) "
    "| outputs | parent template B | shard templates B | managed policy chars "
    "| inline policy chars / role | Lambda env chars |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)
LIMITS = (
    f"Limits: {MAX_RESOURCES} resources and {MAX_OUTPUTS} outputs per stack; IAM managed "
    f"policy {MAX_MANAGED_POLICY:,} characters, inline policies {MAX_INLINE_POLICIES_PER_ROLE:,} "
    f"per role; Lambda environment {MAX_LAMBDA_ENVIRONMENT:,} bytes. Policy and environment "
    "sizes count every Ref/GetAtt as 128 characters (an over-estimate)."
)


def main() -> None:
    """Synthesizes each size twice and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000])
    args = parser.parse_args()
    lines = [HEADER]
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        bundles = work / "bundles"
        for size in args.sizes:
            devices, outdir = work / f"devices-{size}", work / f"out-{size}"
            write_fleet(devices, "dev", size)
            if bundles.exists():  # the Lambda bundles of the first size: not bundled again
                shutil.copytree(bundles, outdir)
            first_s = cdk_synth(devices, outdir)
            if not bundles.exists():
                bundles.mkdir()
                for asset in outdir.glob("asset.*"):
                    shutil.copytree(asset, bundles / asset.name)
            warm_s = cdk_synth(devices, outdir)
            lines.append(row(size, warm_s, measure(outdir)))
            print(f"{size} devices: first synth {first_s:.1f} s, warm {warm_s:.1f} s", flush=True)
    table = "\n".join(lines)
    print(f"\n{table}\n\n{LIMITS}")
    RESULTS.write_text(f"# Fleet size (bench/fleet_bench.py)\n\n{table}\n\n{LIMITS}\n")


if __name__ == "__main__":
    main()
