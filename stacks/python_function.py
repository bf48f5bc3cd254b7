"""A Python Lambda function bundled on the developer's machine, without Docker.

`PythonFunction` from lambda-python-alpha needs a Docker engine; this construct installs the
function's own `requirements.txt` with pip for the Lambda platform (arm64, the runtime's
Python version, wheels only) and copies the handler's sources beside them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import cast

import jsii
from aws_cdk import (
    BundlingOptions,
    DockerImage,
    Duration,
    ILocalBundling,
    RemovalPolicy,
    aws_iam,
    aws_lambda,
    aws_logs,
)
from constructs import Construct

RUNTIME = aws_lambda.Runtime.PYTHON_3_14
ARCHITECTURE = aws_lambda.Architecture.ARM_64
PIP_PLATFORM = "manylinux2014_aarch64"
# Files and folders of a Lambda source folder that never belong in its bundle.
DEFAULT_TIMEOUT = Duration.seconds(10)
SOURCE_EXCLUDES = (
    "__pycache__",
    "*.pyc",
    "requirements.txt",
    "bundle-exclude.txt",
    "tests",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
)


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """Installs requirements with pip for the Lambda platform, then copies the sources."""

    def __init__(self, source_dir: Path) -> None:
        self._source_dir = source_dir

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        """Called by jsii with the asset's staging folder; returns True when bundled."""
        out = Path(output_dir)
        requirements = self._source_dir / "requirements.txt"
        if requirements.exists():
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "install",
                    "-qq",
                    "--disable-pip-version-check",
                    "--no-compile",
                    "--target",
                    str(out),
                    "--platform",
                    PIP_PLATFORM,
                    "--implementation",
                    "cp",
                    "--python-version",
                    RUNTIME.name.removeprefix("python"),
                    "--only-binary=:all:",
                    "--requirement",
                    str(requirements),
                ],
                check=True,
            )
            prune_bundle(out, self._source_dir / "bundle-exclude.txt")
        shutil.copytree(
            self._source_dir,
            out,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(*SOURCE_EXCLUDES),
        )
        return True


def prune_bundle(bundle_dir: Path, exclude_file: Path) -> None:
    """Deletes what the function never imports (glob patterns, one a line, `#` comments).

    pip installs a library whole; a Lambda that uses two modules of it should not pay the
    cold-start and size cost of the rest. Like .gitignore, a pattern starting with `!`
    keeps what it matches again, and the last matching line wins:

        twilio/*
        !twilio/request_validator.py
    """
    if not exclude_file.exists():
        return
    doomed: set[Path] = set()
    for line in exclude_file.read_text().splitlines():
        pattern = line.split("#", 1)[0].strip()
        keep = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip()
        if not pattern:
            continue
        matched = {
            file
            for path in bundle_dir.glob(pattern)
            for file in ([path] if not path.is_dir() else path.rglob("*"))
            if not file.is_dir()
        }
        doomed = doomed - matched if keep else doomed | matched
    for file in doomed:
        file.unlink()
    # Folders left empty (or that only held pruned files) go too, deepest first.
    for folder in sorted((p for p in bundle_dir.rglob("*") if p.is_dir()), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


class BundledPythonFunction(Construct):
    """An arm64 Python Lambda function with its own log group and bundled requirements."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        source_dir: Path,
        handler: str,
        description: str,
        environment: dict[str, str],
        log_retention: aws_logs.RetentionDays,
        removal_policy: RemovalPolicy,
        timeout: Duration = DEFAULT_TIMEOUT,
        memory_size: int = 256,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = aws_logs.LogGroup(
            self, "Logs", retention=log_retention, removal_policy=removal_policy
        )
        # An own role instead of AWSLambdaBasicExecutionRole: write to this log group only.
        self.role = aws_iam.Role(
            self,
            "Role",
            assumed_by=aws_iam.ServicePrincipal("lambda.amazonaws.com"),
            description=description,
        )
        self.log_group.grant_write(self.role)
        self.function = aws_lambda.Function(
            self,
            "Function",
            role=self.role,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            description=description,
            code=aws_lambda.Code.from_asset(
                str(source_dir),
                exclude=[p for p in SOURCE_EXCLUDES if not p.endswith(".txt")],
                bundling=BundlingOptions(
                    # Never used: local bundling always succeeds or raises.
                    image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.14"),
                    local=cast(ILocalBundling, PipLocalBundling(source_dir)),
                ),
            ),
            environment=environment,
            timeout=timeout,
            memory_size=memory_size,
            reserved_concurrent_executions=reserved_concurrency,
            log_group=self.log_group,
            logging_format=aws_lambda.LoggingFormat.JSON,
            tracing=aws_lambda.Tracing.DISABLED,
        )
