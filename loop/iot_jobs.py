"""A local model of AWS IoT Jobs and MQTT-based file delivery, over the local broker.

The device side is AWS's MQTT API, served on the local mosquitto as the `cloud` user:

- Jobs: `$aws/things/{thing}/jobs/start-next`, `.../$next/get`, `.../get`,
  `.../{jobId}/get` and `.../{jobId}/update`, each answered on `/accepted` or `/rejected`;
  `.../notify-next` whenever a thing's next pending execution changes. Executions go
  QUEUED -> IN_PROGRESS -> SUCCEEDED / FAILED / REJECTED with a version number that every
  change increments (`expectedVersion` is checked); start-next returns the execution in
  progress before starting a queued one, so a device that uses it runs one job at a time.
- File delivery (JSON): `.../streams/{streamId}/get/json` answered with one
  `.../data/json` message per block (base64 payload) or `.../rejected/json`; and
  `.../describe/json` -> `.../description/json`. Block sizes outside 256..131,072 bytes,
  unknown streams or files, offsets past the end and stream version mismatches are rejected
  as AWS rejects them; one request gets at most 128 KB of blocks.

The control plane is `call(ApiCall)`, the `device.tool.ota.IotJobsApi` seam: S3
PutObject (a versioned bucket), CreateStream, CreateJob (document <= 32 KB),
DescribeThing, ListJobExecutionsForThing and DescribeJobExecution, failing with botocore
`ClientError`s carrying AWS's error codes, so `python -m device.tool ota`'s code runs
unchanged against it.

Limits that matter on the board are measured, not enforced (AWS does not enforce them
either): every message to a device is counted (`traffic`), and one larger than
`device_message_limit` (the ESP8266's TLS record limit, ~5,000 bytes: such a message kills
its connection) is recorded in `oversized`.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from botocore.exceptions import ClientError

from device.tool.ota import ApiCall
from device.tool.ota_build import JOB_DOCUMENT_LIMIT
from loop.cloud import CloudClient

ACCOUNT = "123456789012"
MIN_BLOCK = 256
MAX_BLOCK = 131_072
MAX_BYTES_PER_REQUEST = 131_072
MAX_BLOCK_COUNT = 98_304
"""Largest `n` (and `o`) of a GetStream request: a 24 MB file in 256-byte blocks."""
DEVICE_MESSAGE_LIMIT = 5_000
"""Largest MQTT payload the ESP8266 receives: its axTLS build caps TLS records."""
DEVICE_STATUSES = frozenset({"IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED"})
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED", "REMOVED"})
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
DETAIL_KEY = re.compile(r"^[A-Za-z0-9:_-]{1,128}$")
DETAIL_VALUE_LIMIT = 1024
REQUEST_FILTERS = (
    "$aws/things/+/jobs/start-next",
    "$aws/things/+/jobs/get",
    "$aws/things/+/jobs/+/get",
    "$aws/things/+/jobs/+/update",
    "$aws/things/+/streams/+/get/json",
    "$aws/things/+/streams/+/describe/json",
)


def client_error(operation: str, code: str, message: str) -> ClientError:
    """The error boto3 raises for an AWS error response."""
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


def publish_packet_size(topic: str, payload: bytes, qos: int = 1) -> int:
    """Bytes of one MQTT 3.1.1 PUBLISH packet: fixed header, topic, packet id, payload."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16_384 else 3
    return 1 + length_bytes + remaining


def data_message_size(block_size: int) -> int:
    """Payload bytes of one full `data/json` block message (client token of 8 chars)."""
    block = base64.b64encode(bytes(block_size)).decode()
    return len(json.dumps({"c": "x" * 8, "f": 0, "l": block_size, "i": 0, "p": block}).encode())


class RequestError(Exception):
    """A device request AWS would reject: `code` and `message` go to the rejected topic."""

    def __init__(self, code: str, message: str, state: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.state = state
        """`executionState` AWS adds to a VersionMismatch, so the device need not ask."""


@dataclass
class Execution:
    """One thing's execution of one job."""

    job_id: str
    thing: str
    document: str
    queued_at: int
    status: str = "QUEUED"
    details: dict[str, str] = field(default_factory=dict)
    version: int = 1
    execution_number: int = 1
    started_at: int | None = None
    updated_at: int = 0

    def state(self) -> dict[str, Any]:
        """`executionState` of an update response."""
        return {"status": self.status, "statusDetails": self.details, "versionNumber": self.version}

    def as_mqtt(self) -> dict[str, Any]:
        """The `execution` object of the Jobs MQTT API."""
        found: dict[str, Any] = {
            "jobId": self.job_id,
            "thingName": self.thing,
            "jobDocument": json.loads(self.document),
            "status": self.status,
            "queuedAt": self.queued_at,
            "lastUpdatedAt": self.updated_at,
            "versionNumber": self.version,
            "executionNumber": self.execution_number,
        }
        if self.details:
            found["statusDetails"] = self.details
        if self.started_at is not None:
            found["startedAt"] = self.started_at
        return found


@dataclass(frozen=True)
class Stream:
    """An IoT stream: its version and its files' bytes by file id."""

    stream_id: str
    version: int
    description: str
    files: Mapping[int, bytes]


@dataclass
class Traffic:
    """MQTT bytes and messages between the model and one thing."""

    to_device_bytes: int = 0
    to_device_messages: int = 0
    from_device_bytes: int = 0
    from_device_messages: int = 0


class LocalIotJobs:
    """AWS IoT Jobs + MQTT-based file delivery for `things`, on the local broker."""

    def __init__(
        self,
        cloud: CloudClient,
        *,
        things: Iterable[str],
        bucket: str,
        region: str = "eu-west-1",
        device_message_limit: int = DEVICE_MESSAGE_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cloud = cloud
        self.things = set(things)
        self.bucket = bucket
        self.region = region
        self.device_message_limit = device_message_limit
        self.clock = clock
        self.objects: dict[tuple[str, str], bytes] = {}
        """(key, version id) -> bytes of the versioned bucket."""
        self.latest: dict[str, str] = {}
        self.streams: dict[str, Stream] = {}
        self.jobs: dict[str, str] = {}
        """job id -> job document."""
        self.executions: dict[str, list[Execution]] = {thing: [] for thing in self.things}
        self.traffic: dict[str, Traffic] = {thing: Traffic() for thing in self.things}
        self.oversized: list[tuple[str, int]] = []
        """(topic, payload bytes) of messages to a device over `device_message_limit`."""
        self._lock = threading.RLock()
        # One worker: requests are answered in the order they arrived, off paho's thread
        # (publishing with a wait from inside its callback would deadlock).
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iot-jobs")
        for topic_filter in REQUEST_FILTERS:
            cloud.client.message_callback_add(topic_filter, self._on_message)
            cloud.client.subscribe(topic_filter, qos=1)

    def close(self) -> None:
        """Stops answering; requests under way finish first."""
        for topic_filter in REQUEST_FILTERS:
            self.cloud.client.message_callback_remove(topic_filter)
        self._worker.shutdown(wait=True)

    # -- control plane: the ota tool's IotJobsApi ---------------------------------------

    def call(self, request: ApiCall) -> Mapping[str, Any]:
        """Answers one AWS API call as AWS would (errors as `ClientError`)."""
        handlers: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "s3:PutObject": self._put_object,
            "iot:CreateStream": self._create_stream,
            "iot:CreateJob": self._create_job,
            "iot:DescribeThing": self._describe_thing,
            "iot:ListJobExecutionsForThing": self._list_executions,
            "iot:DescribeJobExecution": self._describe_execution,
        }
        name = f"{request.service}:{request.operation}"
        if name not in handlers:
            raise ValueError(f"the local IoT Jobs model does not serve {name}")
        with self._lock:
            return handlers[name](request.params)

    def _arn(self, resource: str) -> str:
        return f"arn:aws:iot:{self.region}:{ACCOUNT}:{resource}"

    def _put_object(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if params["Bucket"] != self.bucket:
            raise client_error("PutObject", "NoSuchBucket", "The specified bucket does not exist")
        version = secrets.token_hex(16)
        self.objects[(params["Key"], version)] = bytes(params["Body"])
        self.latest[params["Key"]] = version
        return {"VersionId": version}

    def _create_stream(self, params: Mapping[str, Any]) -> dict[str, Any]:
        stream_id = params["streamId"]
        if not ID_PATTERN.match(stream_id):
            raise client_error("CreateStream", "InvalidRequestException", "invalid streamId")
        if stream_id in self.streams:
            raise client_error(
                "CreateStream", "ResourceAlreadyExistsException", f"stream {stream_id} exists"
            )
        if not params.get("roleArn"):
            raise client_error("CreateStream", "InvalidRequestException", "roleArn is required")
        files: dict[int, bytes] = {}
        for entry in params["files"]:
            location = entry["s3Location"]
            version = location.get("version") or self.latest.get(location["key"], "")
            data = self.objects.get((location["key"], version))
            if location["bucket"] != self.bucket or data is None:
                raise client_error(
                    "CreateStream",
                    "InvalidRequestException",
                    f"s3://{location['bucket']}/{location['key']} cannot be read",
                )
            files[int(entry["fileId"])] = data
        self.streams[stream_id] = Stream(stream_id, 1, params.get("description", ""), files)
        return {
            "streamId": stream_id,
            "streamArn": self._arn(f"stream/{stream_id}"),
            "streamVersion": 1,
        }

    def _create_job(self, params: Mapping[str, Any]) -> dict[str, Any]:
        job_id, document = params["jobId"], params["document"]
        if not ID_PATTERN.match(job_id) or len(job_id) > 64:
            raise client_error("CreateJob", "InvalidRequestException", "invalid jobId")
        if job_id in self.jobs:
            raise client_error("CreateJob", "ResourceAlreadyExistsException", f"{job_id} exists")
        if len(document.encode()) > JOB_DOCUMENT_LIMIT:
            raise client_error(
                "CreateJob", "InvalidRequestException", "the job document exceeds 32 KB"
            )
        try:
            json.loads(document)
        except ValueError:
            raise client_error(
                "CreateJob", "InvalidRequestException", "the job document is not JSON"
            ) from None
        things = [self._thing_of_arn(arn) for arn in params["targets"]]
        self.jobs[job_id] = document
        now = int(self.clock())
        for thing in things:
            before = self._next(thing)
            self.executions[thing].append(Execution(job_id, thing, document, now, updated_at=now))
            self._notify_if_next_changed(thing, before)
        return {"jobArn": self._arn(f"job/{job_id}"), "jobId": job_id}

    def _thing_of_arn(self, arn: str) -> str:
        thing = arn.rsplit(":thing/", 1)[-1]
        if arn != self._arn(f"thing/{thing}") or thing not in self.things:
            raise client_error("CreateJob", "ResourceNotFoundException", f"no thing {arn}")
        return thing

    def _describe_thing(self, params: Mapping[str, Any]) -> dict[str, Any]:
        thing = params["thingName"]
        if thing not in self.things:
            raise client_error(
                "DescribeThing", "ResourceNotFoundException", f"Thing {thing} cannot be found."
            )
        return {"thingName": thing, "thingArn": self._arn(f"thing/{thing}")}

    def _list_executions(self, params: Mapping[str, Any]) -> dict[str, Any]:
        thing = params["thingName"]
        status = params.get("status")
        return {
            "executionSummaries": [
                {
                    "jobId": e.job_id,
                    "jobExecutionSummary": {
                        "status": e.status,
                        "versionNumber": e.version,
                        "executionNumber": e.execution_number,
                    },
                }
                for e in self.executions.get(thing, [])
                if status is None or e.status == status
            ]
        }

    def _describe_execution(self, params: Mapping[str, Any]) -> dict[str, Any]:
        execution = self._find(params["thingName"], params["jobId"])
        if execution is None:
            raise client_error(
                "DescribeJobExecution", "ResourceNotFoundException", "no such job execution"
            )

        def when(seconds: int | None) -> datetime.datetime | None:
            if seconds is None:
                return None
            return datetime.datetime.fromtimestamp(seconds, datetime.UTC)

        return {
            "execution": {
                "jobId": execution.job_id,
                "thingArn": self._arn(f"thing/{execution.thing}"),
                "status": execution.status,
                "statusDetails": {"detailsMap": dict(execution.details)},
                "queuedAt": when(execution.queued_at),
                "startedAt": when(execution.started_at),
                "lastUpdatedAt": when(execution.updated_at),
                "versionNumber": execution.version,
                "executionNumber": execution.execution_number,
            }
        }

    # -- queue ---------------------------------------------------------------------------

    def _find(self, thing: str, job_id: str) -> Execution | None:
        return next((e for e in self.executions.get(thing, []) if e.job_id == job_id), None)

    def _next(self, thing: str) -> Execution | None:
        """The next pending execution: the oldest in progress, else the oldest queued."""
        queue = self.executions.get(thing, [])
        for status in ("IN_PROGRESS", "QUEUED"):
            found = next((e for e in queue if e.status == status), None)
            if found is not None:
                return found
        return None

    def _notify_if_next_changed(self, thing: str, before: Execution | None) -> None:
        after = self._next(thing)
        if (before and before.job_id) == (after and after.job_id):
            return
        message: dict[str, Any] = {"timestamp": int(self.clock())}
        if after is not None:
            message["execution"] = after.as_mqtt()
        self._publish(f"$aws/things/{thing}/jobs/notify-next", message, thing)

    # -- data plane: MQTT requests from devices ------------------------------------------

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._worker.submit(self._handle, message.topic, bytes(message.payload))

    def _handle(self, topic: str, payload: bytes) -> None:
        levels = topic.split("/")
        thing = levels[2]
        with self._lock:
            if thing in self.traffic:
                count = self.traffic[thing]
                count.from_device_bytes += publish_packet_size(topic, payload)
                count.from_device_messages += 1
            if levels[3] == "jobs":
                self._handle_jobs(thing, levels[4:], payload)
            else:
                self._handle_stream(thing, levels[4], levels[5], payload)

    def _publish(self, topic: str, message: Mapping[str, Any], thing: str) -> None:
        payload = json.dumps(message, separators=(",", ":")).encode()
        if thing in self.traffic:
            count = self.traffic[thing]
            count.to_device_bytes += publish_packet_size(topic, payload)
            count.to_device_messages += 1
        if len(payload) > self.device_message_limit:
            self.oversized.append((topic, len(payload)))
        self.cloud.publish(topic, payload, qos=1)

    def _handle_jobs(self, thing: str, rest: list[str], payload: bytes) -> None:
        base = f"$aws/things/{thing}/jobs/" + "/".join(rest)
        token = None
        try:
            request = json.loads(payload.decode("utf-8")) if payload.strip() else {}
            if not isinstance(request, dict):
                raise RequestError("InvalidJson", "the request is not a JSON object")
            token = request.get("clientToken")
            if thing not in self.things:
                raise RequestError("ResourceNotFound", f"no thing {thing}")
            if rest == ["start-next"]:
                answer = self._start_next(thing, request)
            elif rest == ["$next", "get"]:
                answer = self._get(thing, self._next(thing), request, missing_ok=True)
            elif rest == ["get"]:
                answer = self._get_pending(thing)
            elif rest[1:] == ["get"]:
                answer = self._get(thing, self._find(thing, rest[0]), request, missing_ok=False)
            else:  # [jobId, "update"]
                answer = self._update(thing, rest[0], request)
        except RequestError as error:
            rejected: dict[str, Any] = {
                "code": error.code,
                "message": error.message,
                "timestamp": int(self.clock()),
            }
            if token is not None:
                rejected["clientToken"] = token
            if error.state is not None:
                rejected["executionState"] = error.state
            self._publish(f"{base}/rejected", rejected, thing)
            return
        except (ValueError, UnicodeDecodeError):
            self._publish(
                f"{base}/rejected",
                {"code": "InvalidJson", "message": "the request is not JSON"},
                thing,
            )
            return
        answer["timestamp"] = int(self.clock())
        if token is not None:
            answer["clientToken"] = token
        self._publish(f"{base}/accepted", answer, thing)

    def _check_details(self, request: Mapping[str, Any]) -> dict[str, str] | None:
        details = request.get("statusDetails")
        if details is None:
            return None
        if not isinstance(details, dict) or not all(
            isinstance(k, str)
            and DETAIL_KEY.match(k)
            and isinstance(v, str)
            and 0 < len(v) <= DETAIL_VALUE_LIMIT
            for k, v in details.items()
        ):
            raise RequestError(
                "InvalidRequest",
                "statusDetails must map names ([A-Za-z0-9:_-], up to 128) to non-empty "
                f"strings of up to {DETAIL_VALUE_LIMIT} characters",
            )
        return dict(details)

    def _start_next(self, thing: str, request: Mapping[str, Any]) -> dict[str, Any]:
        details = self._check_details(request)
        execution = self._next(thing)
        if execution is None:
            return {}
        now = int(self.clock())
        if execution.status == "QUEUED":
            execution.status = "IN_PROGRESS"
            execution.started_at = now
            execution.version += 1
            execution.updated_at = now
        if details is not None:
            execution.details = details
        return {"execution": execution.as_mqtt()}

    def _get(
        self,
        thing: str,
        execution: Execution | None,
        request: Mapping[str, Any],
        *,
        missing_ok: bool,
    ) -> dict[str, Any]:
        if execution is None:
            if missing_ok:
                return {}
            raise RequestError("ResourceNotFound", "no such job execution")
        return {"execution": execution.as_mqtt()}

    def _get_pending(self, thing: str) -> dict[str, Any]:
        def summary(e: Execution) -> dict[str, Any]:
            return {
                "jobId": e.job_id,
                "queuedAt": e.queued_at,
                "lastUpdatedAt": e.updated_at,
                "versionNumber": e.version,
                "executionNumber": e.execution_number,
            }

        queue = self.executions[thing]
        return {
            "inProgressJobs": [summary(e) for e in queue if e.status == "IN_PROGRESS"],
            "queuedJobs": [summary(e) for e in queue if e.status == "QUEUED"],
        }

    def _update(self, thing: str, job_id: str, request: Mapping[str, Any]) -> dict[str, Any]:
        execution = self._find(thing, job_id)
        if execution is None:
            raise RequestError("ResourceNotFound", f"no execution of {job_id} for {thing}")
        status = request.get("status")
        if status not in DEVICE_STATUSES:
            raise RequestError(
                "InvalidRequest", f"status must be one of {', '.join(sorted(DEVICE_STATUSES))}"
            )
        details = self._check_details(request)
        expected = request.get("expectedVersion")
        if expected is not None and int(expected) != execution.version:
            raise RequestError(
                "VersionMismatch",
                f"expected version {expected}, the execution is at {execution.version}",
                execution.state(),
            )
        if execution.status in TERMINAL:
            raise RequestError(
                "TerminalStateReached", f"the execution is already {execution.status}"
            )
        before = self._next(thing)
        now = int(self.clock())
        if execution.started_at is None:
            execution.started_at = now
        execution.status = status
        if details is not None:
            execution.details = details
        execution.version += 1
        execution.updated_at = now
        self._notify_if_next_changed(thing, before)
        answer: dict[str, Any] = {}
        if request.get("includeJobExecutionState"):
            answer["executionState"] = execution.state()
        if request.get("includeJobDocument"):
            answer["jobDocument"] = json.loads(execution.document)
        return answer

    def _handle_stream(self, thing: str, stream_id: str, action: str, payload: bytes) -> None:
        base = f"$aws/things/{thing}/streams/{stream_id}"
        token = None
        try:
            try:
                request = json.loads(payload.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise RequestError("InvalidJson", "the request is not JSON") from None
            if not isinstance(request, dict):
                raise RequestError("InvalidJson", "the request is not a JSON object")
            token = request.get("c")
            stream = self.streams.get(stream_id)
            if stream is None or thing not in self.things:
                raise RequestError("ResourceNotFound", f"no stream {stream_id}")
            if action == "describe":
                description = {
                    "s": stream.version,
                    "d": stream.description,
                    "r": [{"f": f, "z": len(data)} for f, data in sorted(stream.files.items())],
                }
                self._publish(f"{base}/description/json", {"c": token, **description}, thing)
                return
            for index, block in self._blocks(stream, request):
                message = {
                    "c": token,
                    "f": int(request["f"]),
                    "l": len(block),
                    "i": index,
                    "p": base64.b64encode(block).decode(),
                }
                self._publish(f"{base}/data/json", message, thing)
        except RequestError as error:
            rejected = {"o": error.code, "m": error.message}
            if token is not None:
                rejected["c"] = token
            self._publish(f"{base}/rejected/json", rejected, thing)

    def _blocks(self, stream: Stream, request: Mapping[str, Any]) -> list[tuple[int, bytes]]:
        """The blocks a GetStream request asks for, or the `RequestError` AWS answers."""

        def number(name: str, default: int | None = None) -> int:
            value = request.get(name, default)
            try:
                return int(value)  # AWS accepts numbers and numeric strings
            except (TypeError, ValueError):
                raise RequestError("InvalidRequest", f"'{name}' must be a number") from None

        if "s" in request and number("s") != stream.version:
            raise RequestError("VersionMismatch", f"the stream is at version {stream.version}")
        if "b" in request:
            raise RequestError("InvalidRequest", "this model serves 'n' blocks, not a bitmap")
        file_id = number("f")
        data = stream.files.get(file_id)
        if data is None:
            raise RequestError("ResourceNotFound", f"no file {file_id} in {stream.stream_id}")
        size = number("l")
        if not MIN_BLOCK <= size <= MAX_BLOCK:
            raise RequestError(
                "BlockSizeOutOfBounds", f"block size must be {MIN_BLOCK}..{MAX_BLOCK} bytes"
            )
        # `o` defaults to 0 and `n` to as many blocks as one request may carry (128 KB).
        offset, count = number("o", 0), number("n", MAX_BYTES_PER_REQUEST // size)
        if offset < 0 or offset * size >= len(data):
            raise RequestError("OffsetOutOfBounds", f"block {offset} is past the file's end")
        if not 1 <= count <= MAX_BLOCK_COUNT:
            raise RequestError(
                "BlockCountLimitExceeded", f"'n' must be 1..{MAX_BLOCK_COUNT} blocks"
            )
        # One request gets at most 128 KB; the device asks again for the rest.
        count = min(count, max(1, MAX_BYTES_PER_REQUEST // size))
        blocks = []
        for index in range(offset, offset + count):
            block = data[index * size : (index + 1) * size]
            if not block:
                break
            blocks.append((index, block))
        return blocks
