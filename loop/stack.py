"""Synthesizes an environment's stack in-process (no AWS call, Lambda bundling skipped).

The local loop and the tests take API Gateway's templates, the topic rule's SQL and the
Lambdas' environments from this synthesized template, never from a copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def cdk_context() -> dict[str, Any]:
    """The context of cdk.json, as `cdk synth` would pass it."""
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


def synthesize(env: str, outdir: Path, **extra_context: Any) -> tuple[Any, Path]:
    """Synthesizes `env` into `outdir`; returns the stack and its template's path."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    from aws_cdk import App

    import app as cdk_app

    context = {
        **cdk_context(),
        "env": env,
        "aws:cdk:bundling-stacks": [],  # no pip run: tests and the local loop use the sources
        "aws:cdk:enable-path-metadata": True,  # as `cdk synth` does: resources name their path
        **extra_context,
    }
    cdk = App(context=context, outdir=str(outdir))
    stack = cdk_app.build(cdk)
    cdk.synth()
    return stack, outdir / f"{stack.stack_name}.template.json"


def synthesized_template(
    env: str,
    outdir: Path,
    *,
    environments: Mapping[str, Any] | None = None,
    devices_dir: Path | None = None,
) -> dict[str, Any]:
    """The template of `env` as a dict, synthesized in a child process; `environments`
    replaces `cdk.json`'s (a test's settings), `devices_dir` the committed `devices/`.

    A child process, so that jsii's Node kernel lives only as long as the synthesis: the
    local loop runs for long and is stopped with Ctrl-C, which would otherwise reach that
    kernel too and make its exit noisy.
    """
    context: dict[str, Any] = {}
    if environments is not None:
        context["environments"] = environments
    if devices_dir is not None:
        context["devices_dir"] = str(devices_dir)
    script = (
        "import json, sys; from pathlib import Path; from loop.stack import synthesize; "
        "print(synthesize(sys.argv[1], Path(sys.argv[2]), **json.loads(sys.argv[3]))[1])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, env, str(outdir), json.dumps(context)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"synthesizing {env} failed:\n{result.stderr[-3000:]}")
    path = Path(result.stdout.strip().splitlines()[-1])
    template: dict[str, Any] = json.loads(path.read_text())
    return template
