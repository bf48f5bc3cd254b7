"""A Python Lambda function bundled on the developer's machine, without Docker.

`PythonFunction` from lambda-python-alpha needs a Docker engine; this construct installs the
function's own `requirements.txt` with pip for the Lambda platform (arm64, the runtime's
Python version, wheels only), then copies beside them the function's package
(`lambdas/{name}/`, imported as `{name}.handler`) and what every function shares: the
contract (`contract.py`) and `lambdas/lambda_shared/`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import cast

import jsii
from aws_cdk import (
    AssetHashType,
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
DEFAULT_TIMEOUT = Duration.seconds(10)
ROOT = Path(__file__).resolve().parent.parent
LAMBDAS_DIR = ROOT / "lambdas"
SHARED_SOURCES = (ROOT / "contract.py", LAMBDAS_DIR / "lambda_shared")
"""Copied into every function's bundle, beside its own package."""
# Build and tool caches: neither part of a bundle nor of what it is built from.
CACHE_PATTERNS = ("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", ".ruff_cache")
# Files and folders of a Lambda source folder that never belong in its bundle.
SOURCE_EXCLUDES = (*CACHE_PATTERNS, "requirements.txt", "bundle-exclude.txt", "tests")


def handler_of(package_dir: Path, entry_point: str = "lambda_handler") -> str:
    """The handler setting of the function whose package is `package_dir`: its `handler`
    module's `entry_point`."""
    return f"{package_dir.name}.handler.{entry_point}"


def _source_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and not any(
            fnmatch.fnmatch(part, pattern)
            for part in p.relative_to(path).parts
            for pattern in CACHE_PATTERNS
        )
    )


def source_hash(package_dir: Path, shared: tuple[Path, ...] = SHARED_SOURCES) -> str:
    """A hash of everything a function's bundle is built from: its package (requirements
    and exclusions included) and the shared sources, so a change to any of them deploys.
    Paths count as they are in the bundle, so the checkout's location does not."""
    digest = hashlib.sha256()
    for source in (package_dir, *shared):
        for file in _source_files(source):
            name = file.relative_to(source.parent).as_posix()
            digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


@jsii.implements(ILocalBundling)
class PipLocalBundling:
    """Installs requirements with pip for the Lambda platform, then copies the sources."""

    def __init__(self, package_dir: Path) -> None:
        self._package_dir = package_dir

    def try_bundle(self, output_dir: str, options: BundlingOptions) -> bool:
        """Called by jsii with the asset's staging folder; returns True when bundled."""
        out = Path(output_dir)
        requirements = self._package_dir / "requirements.txt"
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
        ignore = shutil.ignore_patterns(*SOURCE_EXCLUDES)
        for source in (self._package_dir, *SHARED_SOURCES):
            if source.is_file():
                shutil.copy2(source, out / source.name)
            else:
                shutil.copytree(source, out / source.name, dirs_exist_ok=True, ignore=ignore)
        prune_bundle(out, self._package_dir / "bundle-exclude.txt")
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
    """An arm64 Python Lambda function with its own log group and bundled requirements.

    `package_dir`: the function's package, `lambdas/{name}/`, holding `handler.py` (with
    `lambda_handler`, or `entry_point` when one package serves two functions),
    `requirements.txt` and optionally `bundle-exclude.txt`.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        package_dir: Path,
        description: str,
        environment: dict[str, str],
        log_retention: aws_logs.RetentionDays,
        removal_policy: RemovalPolicy,
        timeout: Duration = DEFAULT_TIMEOUT,
        memory_size: int = 256,
        reserved_concurrency: int | None = None,
        entry_point: str = "lambda_handler",
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
            handler=handler_of(package_dir, entry_point),
            description=description,
            code=aws_lambda.Code.from_asset(
                str(package_dir),
                exclude=[p for p in SOURCE_EXCLUDES if not p.endswith(".txt")],
                # The bundle also holds the shared sources: hash them all, not the folder.
                asset_hash_type=AssetHashType.CUSTOM,
                asset_hash=source_hash(package_dir),
                bundling=BundlingOptions(
                    # Never used: local bundling always succeeds or raises.
                    image=DockerImage.from_registry("public.ecr.aws/sam/build-python3.14"),
                    local=cast(ILocalBundling, PipLocalBundling(package_dir)),
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
