"""`python -m device.tool ota`: update the app of deployed boards over the air.

Compiles the app (see `ota_build`), uploads the modules to the stack's bucket, creates an
AWS IoT stream over them (MQTT-based file delivery) and one job for the chosen things, then
follows each job execution to its end. Every AWS call goes through an `IotJobsApi`: AWS
itself (`AwsJobsApi`, boto3) or the local loop's stand-in (`loop.iot_jobs.LocalIotJobs`),
so the same code runs against both, and `--dry-run` prints the same calls without making
the ones that change anything.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from contract import (
    OTA_BUCKET_OUTPUT,
    OTA_STREAM_ROLE_OUTPUT,
    OTA_UPDATE_PREFIX,
)
from device.tool.errors import (
    JobInProgress,
    StackNotDeployed,
    ThingUnknown,
    ToolError,
)
from device.tool.external_tools import tool_path
from device.tool.ota_build import (
    UpdateFile,
    app_modules,
    compile_command,
    compile_modules,
    encode_document,
    job_document,
    source_files,
)
from device.tool.plan import BOARD_SOURCES

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED", "REMOVED"})
PENDING = ("QUEUED", "IN_PROGRESS")
# A board that is offline when the job is created gets it when it reconnects; once it has
# started, an update that is not finished in this time is TIMED_OUT by AWS IoT.
# The board's probation (new app imported and answered, or a quiet window) is inside it.
IN_PROGRESS_TIMEOUT_MINUTES = 60
UPLOADED_VERSION = "<VersionId of the PutObject above>"
JOB_ID_LIMIT = 64
EXIT_UPDATE_FAILED = 1


@dataclass(frozen=True)
class ApiCall:
    """One AWS API call: `service` (iot, s3), operation name as AWS spells it, parameters."""

    service: str
    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        """The call as the dry run prints it; file contents as their length."""
        shown = {
            key: f"<{len(value)} bytes>" if isinstance(value, bytes) else value
            for key, value in self.params.items()
        }
        return f"{self.service}:{self.operation} {json.dumps(shown, indent=None)}"


class IotJobsApi(Protocol):
    """The tool's seam to AWS IoT Jobs, streams and S3: one call, its JSON-like answer.

    Failures are botocore `ClientError`s with AWS's error codes, from either side.
    """

    def call(self, request: ApiCall) -> Mapping[str, Any]:
        """Makes `request` and returns AWS's response."""
        ...


def _snake(operation: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation).lower()


class AwsJobsApi:
    """`IotJobsApi` over boto3 (the `iot` and `s3` clients of one region)."""

    def __init__(self, region: str, session: Any = None) -> None:
        import boto3

        session = session or boto3.Session(region_name=region)
        self.clients = {name: session.client(name, region_name=region) for name in ("iot", "s3")}

    def call(self, request: ApiCall) -> Mapping[str, Any]:
        """Calls the boto3 method named after the operation (CreateJob -> create_job)."""
        from device.tool.cloud import _call  # maps credential failures to NoAwsCredentials

        method = getattr(self.clients[request.service], _snake(request.operation))
        return _call(method, **request.params)


@dataclass(frozen=True)
class Update:
    """Everything one update creates, named from the job id."""

    job_id: str
    files: list[UpdateFile]
    bucket: str
    role_arn: str

    @property
    def stream_id(self) -> str:
        """The stream has the job's id: one stream per update."""
        return self.job_id

    def key(self, f: UpdateFile) -> str:
        """S3 key of one file: under the prefix the stream role may read."""
        return f"{OTA_UPDATE_PREFIX}{self.job_id}/{f.name}"

    @property
    def document(self) -> str:
        """The job document, as CreateJob takes it."""
        return encode_document(job_document(self.stream_id, self.files))


def new_job_id(env: str, files: Sequence[UpdateFile], now: datetime.datetime) -> str:
    """`ota-ENV-UTCTIME-HASH-RANDOM` in AWS's character set: sorts by time, names the
    content, and never repeats (AWS IoT refuses a job id used before, even a deleted one's)."""
    digest = hashlib.sha256(b"".join(f.data for f in files)).hexdigest()[:8]
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    safe_env = re.sub(r"[^A-Za-z0-9_-]", "-", env)[: JOB_ID_LIMIT - 36]
    return f"ota-{safe_env}-{stamp}-{digest}-{secrets.token_hex(2)}"


def _client_error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def check_things(api: IotJobsApi, things: Sequence[str]) -> list[str]:
    """The thing ARNs, after checking that each thing exists and has no pending job."""
    arns = []
    for thing in things:
        try:
            described = api.call(ApiCall("iot", "DescribeThing", {"thingName": thing}))
        except ClientError as error:
            if _client_error_code(error) == "ResourceNotFoundException":
                raise ThingUnknown(
                    f"AWS IoT has no thing {thing!r}: deploy the stack that registers it "
                    "(`make deploy`) before updating it."
                ) from None
            raise
        arns.append(str(described["thingArn"]))
        for status in PENDING:
            found = api.call(
                ApiCall("iot", "ListJobExecutionsForThing", {"thingName": thing, "status": status})
            )
            for summary in found.get("executionSummaries", []):
                job = summary.get("jobId", "?")
                raise JobInProgress(
                    f"{thing} already has job {job} {status}: wait for it "
                    f"(`aws iot describe-job-execution --job-id {job} --thing-name {thing}`) "
                    f"or cancel it (`aws iot cancel-job --job-id {job}`) first."
                )
    return arns


def write_calls(update: Update, target_arns: Sequence[str]) -> list[ApiCall]:
    """The calls that create the update, in order: uploads, the stream, the job."""
    calls = [
        ApiCall(
            "s3",
            "PutObject",
            {
                "Bucket": update.bucket,
                "Key": update.key(f),
                "Body": f.data,
                "ContentType": "application/octet-stream",
            },
        )
        for f in update.files
    ]
    calls.append(
        ApiCall(
            "iot",
            "CreateStream",
            {
                "streamId": update.stream_id,
                "description": f"App update {update.job_id}",
                "files": [
                    {
                        "fileId": f.file_id,
                        # Pinned to the version uploaded: nothing can swap the file later.
                        "s3Location": {
                            "bucket": update.bucket,
                            "key": update.key(f),
                            "version": UPLOADED_VERSION,
                        },
                    }
                    for f in update.files
                ],
                "roleArn": update.role_arn,
            },
        )
    )
    calls.append(
        ApiCall(
            "iot",
            "CreateJob",
            {
                "jobId": update.job_id,
                "targets": list(target_arns),
                "document": update.document,
                "description": "App update: " + ", ".join(f.name for f in update.files),
                "targetSelection": "SNAPSHOT",
                "timeoutConfig": {"inProgressTimeoutInMinutes": IN_PROGRESS_TIMEOUT_MINUTES},
            },
        )
    )
    return calls


@dataclass
class Outcome:
    """How one device's job execution ended (or where it stood when following stopped)."""

    thing: str
    status: str
    details: dict[str, str]

    @property
    def succeeded(self) -> bool:
        """The device runs the new app."""
        return self.status == "SUCCEEDED"


def follow(
    api: IotJobsApi,
    job_id: str,
    things: Sequence[str],
    *,
    timeout_s: float,
    poll_s: float,
    echo: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Outcome]:
    """Polls DescribeJobExecution per device until every execution ends or `timeout_s`;
    prints each change of status or details as progress."""
    outcomes = {thing: Outcome(thing, "QUEUED", {}) for thing in things}
    deadline = clock() + timeout_s
    pending = list(things)
    while pending:
        for thing in list(pending):
            answer = api.call(
                ApiCall("iot", "DescribeJobExecution", {"jobId": job_id, "thingName": thing})
            )
            execution = answer["execution"]
            status = str(execution["status"])
            details = dict(execution.get("statusDetails", {}).get("detailsMap", {}))
            outcome = outcomes[thing]
            if (status, details) != (outcome.status, outcome.details):
                shown = ", ".join(f"{k}={v}" for k, v in sorted(details.items()))
                echo(f"  {thing}: {status}" + (f" ({shown})" if shown else ""))
                outcome.status, outcome.details = status, details
            if status in TERMINAL:
                pending.remove(thing)
        if not pending or clock() >= deadline:
            break
        sleep(poll_s)
    return [outcomes[thing] for thing in things]


def update_devices(
    *,
    env: str,
    things: Sequence[str],
    outputs: Mapping[str, str],
    api: IotJobsApi,
    dry_run: bool = False,
    timeout_s: float = 600.0,
    poll_s: float = 2.0,
    sources: Path = BOARD_SOURCES,
    ship_source: bool = False,
    mpy_cross: str | None = None,
    echo: Callable[[str], None] = print,
    now: datetime.datetime | None = None,
) -> int:
    """Runs one update of `things` and returns the exit status (0: every device updated).

    `outputs` are the deployed stack's outputs (the bucket and the stream role);
    `ship_source` sends MicroPython source (`.py`) instead of mpy-cross output.
    """
    bucket, role_arn = outputs.get(OTA_BUCKET_OUTPUT), outputs.get(OTA_STREAM_ROLE_OUTPUT)
    if not bucket or not role_arn:
        raise StackNotDeployed(
            f"The deployed stack of {env} has no update bucket (output {OTA_BUCKET_OUTPUT}): "
            f"it predates over-the-air updates. Run `make deploy ENV={env}`."
        )
    mpy_cross = mpy_cross or tool_path("mpy-cross")
    sources_list = app_modules(sources)
    steps = 5
    echo(f"Update {', '.join(things)} ({env}) with the app in {sources}:")
    if ship_source:
        echo(f"[1/{steps}] ship {len(sources_list)} module(s) as source (no compile)")
        files = source_files(sources_list)
    else:
        with tempfile.TemporaryDirectory(prefix="ota-") as out:
            echo(f"[1/{steps}] compile {len(sources_list)} module(s) with mpy-cross")
            for source in sources_list:
                output = Path(out) / f"{source.stem}.mpy"
                echo("      " + " ".join(compile_command(mpy_cross, source, output)))
            files = compile_modules(sources_list, Path(out), mpy_cross)
    for f in files:
        echo(f"      {f.name:<14} {f.size:>6} B  sha256 {f.sha256}")
    update = Update(
        job_id=new_job_id(env, files, now or datetime.datetime.now(datetime.UTC)),
        files=files,
        bucket=bucket,
        role_arn=role_arn,
    )
    echo(f"[2/{steps}] check each device exists and has no update pending")
    for thing in things:
        echo("      " + ApiCall("iot", "DescribeThing", {"thingName": thing}).render())
        for status in PENDING:
            request = ApiCall(
                "iot", "ListJobExecutionsForThing", {"thingName": thing, "status": status}
            )
            echo("      " + request.render())
    try:
        arns = check_things(api, things)
        calls = write_calls(update, arns)
        echo(f"[3/{steps}] upload, create the stream and the job")
        echo(f"      job document ({len(update.document.encode())} bytes): {update.document}")
        for request in calls:
            echo("      " + request.render())
        echo(f"[4/{steps}] follow each job execution (every {poll_s:g} s, up to {timeout_s:g} s)")
        for thing in things:
            request = ApiCall(
                "iot", "DescribeJobExecution", {"jobId": update.job_id, "thingName": thing}
            )
            echo("      " + request.render())
        if dry_run:
            echo("Dry run: nothing was uploaded and no stream or job was created.")
            return 0
        for request in calls:
            answer = api.call(request)
            if request.operation == "PutObject":
                _pin_version(calls, request, answer.get("VersionId"))
        echo(f"Job {update.job_id} created; following it:")
        outcomes = follow(api, update.job_id, things, timeout_s=timeout_s, poll_s=poll_s, echo=echo)
    except ClientError as error:
        raise ToolError(f"AWS refused a call: {error}") from None
    except BotoCoreError as error:
        raise ToolError(f"Could not reach AWS: {error}") from None
    echo(f"[5/{steps}] outcome")
    for outcome in outcomes:
        reason = outcome.details.get("reason", "")
        if outcome.status not in TERMINAL:
            reason = f"still {outcome.status} after {timeout_s:g} s; the job stays queued"
        echo(f"      {outcome.thing:<24} {outcome.status:<12} {reason}")
    return 0 if all(o.succeeded for o in outcomes) else EXIT_UPDATE_FAILED


def _pin_version(calls: list[ApiCall], upload: ApiCall, version: str | None) -> None:
    """Puts the uploaded object's version into the stream's file list (none: the bucket
    is not versioned, and the stream reads the current object)."""
    stream = next(c for c in calls if c.operation == "CreateStream")
    for entry in stream.params["files"]:
        location = entry["s3Location"]
        if location["key"] == upload.params["Key"]:
            if version:
                location["version"] = version
            else:
                del location["version"]
