"""The local AWS IoT Jobs + MQTT file delivery model, driven by real MQTT clients through
a real mosquitto whose device ACL is the synthesized IoT policy (so these tests also show
the policy lets a device do exactly its own jobs and streams)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError

from device.tool.ota import ApiCall
from loop.broker import Broker
from loop.iot_jobs import LocalIotJobs, data_message_size
from tests.ota.conftest import BUCKET, OTHER, THING, Device

pytestmark = pytest.mark.e2e
ROLE = "arn:aws:iam::123456789012:role/stream"


def arn(thing: str) -> str:
    return f"arn:aws:iot:eu-west-1:123456789012:thing/{thing}"


def create_update(
    jobs: LocalIotJobs, job_id: str, files: dict[int, bytes], things: list[str]
) -> dict[str, Any]:
    """What the ota tool does: upload, CreateStream, CreateJob; returns the document."""
    entries = []
    for file_id, data in files.items():
        key = f"updates/{job_id}/{file_id}.mpy"
        version = jobs.call(
            ApiCall("s3", "PutObject", {"Bucket": BUCKET, "Key": key, "Body": data})
        )["VersionId"]
        entries.append(
            {"fileId": file_id, "s3Location": {"bucket": BUCKET, "key": key, "version": version}}
        )
    jobs.call(
        ApiCall(
            "iot",
            "CreateStream",
            {"streamId": job_id, "description": "t", "files": entries, "roleArn": ROLE},
        )
    )
    document = {
        "operation": "app-update",
        "streamId": job_id,
        "files": [
            {
                "name": f"m{i}.mpy",
                "fileId": i,
                "size": len(d),
                "sha256": hashlib.sha256(d).hexdigest(),
            }
            for i, d in files.items()
        ],
    }
    jobs.call(
        ApiCall(
            "iot",
            "CreateJob",
            {
                "jobId": job_id,
                "targets": [arn(t) for t in things],
                "document": json.dumps(document),
            },
        )
    )
    return document


def describe(jobs: LocalIotJobs, job_id: str, thing: str = THING) -> dict[str, Any]:
    execution: dict[str, Any] = jobs.call(
        ApiCall("iot", "DescribeJobExecution", {"jobId": job_id, "thingName": thing})
    )["execution"]
    return execution


def test_a_job_goes_queued_in_progress_succeeded_with_versions_and_notifications(
    jobs: LocalIotJobs, device: Device
) -> None:
    device.subscribe(
        "jobs/notify-next",
        "jobs/start-next/accepted",
        "jobs/start-next/rejected",
        "jobs/$next/get/accepted",
        "jobs/+/update/accepted",
        "jobs/+/update/rejected",
    )
    document = create_update(jobs, "job-life", {0: b"print(1)"}, [THING])
    topic, notified = device.next()
    assert topic == "jobs/notify-next"
    assert notified["execution"]["jobId"] == "job-life"
    assert notified["execution"]["status"] == "QUEUED"
    assert notified["execution"]["jobDocument"] == document
    assert describe(jobs, "job-life")["status"] == "QUEUED"

    device.publish("jobs/start-next", {"clientToken": "t1", "statusDetails": {"step": "start"}})
    topic, started = device.next()
    assert topic == "jobs/start-next/accepted"
    assert started["clientToken"] == "t1"
    execution = started["execution"]
    assert (execution["status"], execution["versionNumber"]) == ("IN_PROGRESS", 2)
    assert execution["thingName"] == THING and execution["jobDocument"] == document
    assert execution["statusDetails"] == {"step": "start"}

    device.publish("jobs/$next/get", {"clientToken": "t2"})
    topic, got = device.next()
    assert topic == "jobs/$next/get/accepted" and got["execution"]["versionNumber"] == 2

    device.publish(
        "jobs/job-life/update",
        {"status": "IN_PROGRESS", "statusDetails": {"received": "8/8"}, "expectedVersion": 2},
    )
    topic, _ = device.next()
    assert topic == "jobs/job-life/update/accepted"
    assert describe(jobs, "job-life")["statusDetails"] == {"detailsMap": {"received": "8/8"}}

    device.publish(
        "jobs/job-life/update",
        {"status": "SUCCEEDED", "includeJobExecutionState": True, "clientToken": "t3"},
    )
    answers = dict([device.next(), device.next()])
    accepted = answers["jobs/job-life/update/accepted"]
    assert accepted["executionState"]["status"] == "SUCCEEDED"
    assert accepted["executionState"]["versionNumber"] == 4
    assert accepted["clientToken"] == "t3"
    assert "execution" not in answers["jobs/notify-next"]  # the queue is empty now
    assert describe(jobs, "job-life")["status"] == "SUCCEEDED"
    traffic = jobs.traffic[THING]
    assert traffic.to_device_messages == 6 and traffic.from_device_messages == 4


def test_start_next_resumes_the_job_in_progress_before_a_queued_one(
    jobs: LocalIotJobs, device: Device
) -> None:
    device.subscribe("jobs/notify-next", "jobs/start-next/accepted", "jobs/+/update/accepted")
    create_update(jobs, "first", {0: b"a"}, [THING])
    assert device.next()[1]["execution"]["jobId"] == "first"
    create_update(jobs, "second", {0: b"b"}, [THING])
    assert device.nothing()  # the next pending job did not change: no notification
    for _ in range(2):  # after a restart, start-next hands back the same job
        device.publish("jobs/start-next", {})
        topic, answer = device.next()
        assert (topic, answer["execution"]["jobId"]) == ("jobs/start-next/accepted", "first")
    device.publish("jobs/first/update", {"status": "FAILED", "statusDetails": {"reason": "x"}})
    answers = dict([device.next(), device.next()])
    assert answers["jobs/notify-next"]["execution"]["jobId"] == "second"
    listed = jobs.call(ApiCall("iot", "ListJobExecutionsForThing", {"thingName": THING}))
    assert [
        (s["jobId"], s["jobExecutionSummary"]["status"]) for s in listed["executionSummaries"]
    ] == [
        ("first", "FAILED"),
        ("second", "QUEUED"),
    ]


@pytest.mark.parametrize(
    ("update", "code"),
    [
        ({"status": "SUCCEEDED", "expectedVersion": 7}, "VersionMismatch"),
        ({"status": "QUEUED"}, "InvalidRequest"),
        ({"status": "DONE"}, "InvalidRequest"),
        ({"status": "FAILED", "statusDetails": {"reason": 3}}, "InvalidRequest"),
        ({"status": "FAILED", "statusDetails": {"bad key": "x"}}, "InvalidRequest"),
        ({"status": "FAILED", "statusDetails": {"reason": "x" * 1025}}, "InvalidRequest"),
    ],
)
def test_a_bad_update_is_rejected_with_aws_error_code(
    jobs: LocalIotJobs, device: Device, update: dict[str, Any], code: str
) -> None:
    device.subscribe("jobs/+/update/accepted", "jobs/+/update/rejected")
    create_update(jobs, "bad-update", {0: b"a"}, [THING])
    device.publish("jobs/bad-update/update", {**update, "clientToken": "c"})
    topic, answer = device.next()
    assert topic == "jobs/bad-update/update/rejected"
    assert answer["code"] == code and answer["clientToken"] == "c" and answer["message"]
    if code == "VersionMismatch":  # AWS adds the current state
        assert answer["executionState"] == {
            "status": "QUEUED",
            "statusDetails": {},
            "versionNumber": 1,
        }
    assert describe(jobs, "bad-update")["status"] == "QUEUED"


def test_updates_of_an_ended_or_unknown_job_and_non_json_are_rejected(
    jobs: LocalIotJobs, device: Device
) -> None:
    device.subscribe("jobs/+/update/accepted", "jobs/+/update/rejected")
    create_update(jobs, "ended", {0: b"a"}, [THING])
    device.publish("jobs/ended/update", {"status": "REJECTED", "statusDetails": {"reason": "r"}})
    assert device.next()[0] == "jobs/ended/update/accepted"
    device.publish("jobs/ended/update", {"status": "SUCCEEDED"})
    assert device.next()[1]["code"] == "TerminalStateReached"
    device.publish("jobs/nope/update", {"status": "SUCCEEDED"})
    assert device.next()[1]["code"] == "ResourceNotFound"
    device.publish("jobs/ended/update", b"{not json")
    assert device.next()[1]["code"] == "InvalidJson"


def read_file(device: Device, stream: str, file_id: int, size: int, block: int) -> bytes:
    """Downloads a file the way the board does: one block per request."""
    data = b""
    offset = 0
    while len(data) < size:
        device.publish(
            f"streams/{stream}/get/json",
            {"c": f"b{offset}", "s": 1, "f": file_id, "l": block, "o": offset, "n": 1},
        )
        topic, answer = device.next()
        assert topic == f"streams/{stream}/data/json", answer
        assert (answer["c"], answer["f"], answer["i"]) == (f"b{offset}", file_id, offset)
        chunk = base64.b64decode(answer["p"])
        assert answer["l"] == len(chunk) <= block
        data += chunk
        offset += 1
    return data


def test_a_file_downloads_in_1024_byte_blocks_and_matches_its_hash(
    jobs: LocalIotJobs, device: Device
) -> None:
    device.subscribe("streams/+/data/json", "streams/+/rejected/json", "streams/+/description/json")
    app, helper = os.urandom(3000), os.urandom(700)
    document = create_update(jobs, "download", {0: app, 1: helper}, [THING])
    device.publish("streams/download/describe/json", {"c": "d"})
    topic, description = device.next()
    assert topic == "streams/download/description/json"
    assert description["c"] == "d" and description["s"] == 1
    assert description["r"] == [{"f": 0, "z": 3000}, {"f": 1, "z": 700}]
    for entry, data in zip(document["files"], (app, helper), strict=True):
        got = read_file(device, "download", entry["fileId"], entry["size"], 1024)
        assert hashlib.sha256(got).hexdigest() == entry["sha256"]
        assert got == data
    assert jobs.oversized == []


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"f": 0, "l": 255, "o": 0, "n": 1}, "BlockSizeOutOfBounds"),
        ({"f": 0, "l": 131_073, "o": 0, "n": 1}, "BlockSizeOutOfBounds"),
        ({"f": 9, "l": 1024, "o": 0, "n": 1}, "ResourceNotFound"),
        ({"f": 0, "l": 1024, "o": 2, "n": 1}, "OffsetOutOfBounds"),
        ({"f": 0, "l": 1024, "o": 0, "n": 1, "s": 2}, "VersionMismatch"),
        ({"f": 0, "l": 1024, "o": 0, "n": 0}, "BlockCountLimitExceeded"),
        ({"f": 0, "l": 1024, "o": 0, "n": 98_305}, "BlockCountLimitExceeded"),
        ({"f": 0, "l": "big", "o": 0, "n": 1}, "InvalidRequest"),
    ],
)
def test_a_bad_block_request_is_rejected(
    jobs: LocalIotJobs, device: Device, request_: dict[str, Any], code: str
) -> None:
    device.subscribe("streams/+/data/json", "streams/+/rejected/json")
    create_update(jobs, "blocks", {0: os.urandom(2048)}, [THING])
    device.publish("streams/blocks/get/json", {"c": "x", **request_})
    topic, answer = device.next()
    assert topic == "streams/blocks/rejected/json"
    assert (answer["o"], answer["c"]) == (code, "x") and answer["m"]


def test_a_request_without_o_or_n_gets_the_file_from_its_start(
    jobs: LocalIotJobs, device: Device
) -> None:
    # AWS: `o` defaults to 0, `n` to 131,072 / block size.
    device.subscribe("streams/+/data/json")
    data = os.urandom(2500)
    create_update(jobs, "whole", {0: data}, [THING])
    device.publish("streams/whole/get/json", {"c": "x", "f": 0, "l": 1024})
    blocks = [device.next()[1] for _ in range(3)]
    assert [(b["i"], b["l"]) for b in blocks] == [(0, 1024), (1, 1024), (2, 452)]
    assert device.nothing()


def test_an_unknown_stream_is_rejected(jobs: LocalIotJobs, device: Device) -> None:
    device.subscribe("streams/+/rejected/json")
    device.publish("streams/missing/get/json", {"c": "x", "f": 0, "l": 1024, "o": 0, "n": 1})
    assert device.next() == (
        "streams/missing/rejected/json",
        {"o": "ResourceNotFound", "m": "no stream missing", "c": "x"},
    )


def test_one_request_gets_at_most_128_kb_and_big_blocks_are_flagged_for_the_board(
    jobs: LocalIotJobs, device: Device
) -> None:
    device.subscribe("streams/+/data/json")
    create_update(jobs, "big", {0: os.urandom(40_000)}, [THING])
    device.publish("streams/big/get/json", {"c": "x", "f": 0, "l": 4096, "o": 0, "n": 50})
    blocks = [device.next()[1] for _ in range(10)]  # 40,000 bytes: 10 blocks of 4 KB
    assert [b["i"] for b in blocks] == list(range(10))
    assert device.nothing()
    # A full 4 KB block is ~5.5 KB of JSON: over what the ESP8266's TLS can receive (the
    # last, 3,136-byte block is not).
    assert len(jobs.oversized) == 9
    assert data_message_size(4096) > 5000 > data_message_size(1024)
    device.publish("streams/big/get/json", {"c": "y", "f": 0, "l": 256, "o": 0, "n": 1000})
    got = [device.next()[1] for _ in range(157)]  # 40,000 / 256, under the 128 KB cap
    assert got[-1]["l"] == 40_000 - 156 * 256


def test_a_device_reaches_neither_another_things_jobs_nor_its_files(
    jobs: LocalIotJobs, broker: Broker, device: Device
) -> None:
    # The ACL is the synthesized IoT policy: mosquitto does not deliver other things' topics.
    device.client.subscribe(f"$aws/things/{OTHER}/jobs/notify-next", 1)
    device.client.subscribe(f"$aws/things/{OTHER}/streams/+/data/json", 1)
    device.subscribe("jobs/start-next/accepted")
    create_update(jobs, "theirs", {0: b"secret app"}, [OTHER])
    device.client.publish(f"$aws/things/{OTHER}/jobs/start-next", b"{}", qos=1)
    device.client.publish(
        f"$aws/things/{OTHER}/streams/theirs/get/json",
        json.dumps({"c": "x", "f": 0, "l": 256, "o": 0, "n": 1}).encode(),
        qos=1,
    )
    assert device.nothing(0.5)
    assert describe(jobs, "theirs", OTHER)["status"] == "QUEUED"
    # Its own start-next finds nothing: the job is not for it.
    device.publish("jobs/start-next", {"clientToken": "mine"})
    topic, answer = device.next()
    assert topic == "jobs/start-next/accepted"
    assert set(answer) == {"timestamp", "clientToken"}  # no execution: nothing pending


@pytest.mark.parametrize(
    ("operation", "params", "code"),
    [
        (
            "CreateJob",
            {"jobId": "big", "targets": [arn(THING)], "document": json.dumps({"x": "y" * 32_768})},
            "InvalidRequestException",
        ),
        (
            "CreateJob",
            {"jobId": "nobody", "targets": [arn("ghost")], "document": "{}"},
            "ResourceNotFoundException",
        ),
        (
            "CreateJob",
            {"jobId": "has space", "targets": [arn(THING)], "document": "{}"},
            "InvalidRequestException",
        ),
        (
            "CreateStream",
            {
                "streamId": "s",
                "files": [{"fileId": 0, "s3Location": {"bucket": BUCKET, "key": "none"}}],
                "roleArn": ROLE,
            },
            "InvalidRequestException",
        ),
        ("DescribeThing", {"thingName": "ghost"}, "ResourceNotFoundException"),
        (
            "DescribeJobExecution",
            {"jobId": "none", "thingName": THING},
            "ResourceNotFoundException",
        ),
    ],
)
def test_control_plane_errors_carry_aws_error_codes(
    jobs: LocalIotJobs, operation: str, params: dict[str, Any], code: str
) -> None:
    with pytest.raises(ClientError) as raised:
        jobs.call(ApiCall("iot", operation, params))
    assert raised.value.response["Error"]["Code"] == code


def test_a_duplicate_job_or_stream_and_a_foreign_bucket_are_refused(jobs: LocalIotJobs) -> None:
    create_update(jobs, "dup", {0: b"a"}, [THING])
    with pytest.raises(ClientError, match="ResourceAlreadyExists"):
        create_update(jobs, "dup", {0: b"a"}, [THING])
    with pytest.raises(ClientError, match="NoSuchBucket"):
        jobs.call(ApiCall("s3", "PutObject", {"Bucket": "other", "Key": "k", "Body": b""}))
