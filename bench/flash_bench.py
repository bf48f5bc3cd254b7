"""Flash tool figures: the file set on the board and its size, how long a dry run takes, and
(with --real) how long a real flash takes against the WebAssembly MicroPython REPL.

    .venv/bin/python bench/flash_bench.py [--runs 5] [--real]

AWS is moto (in-process); nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
warnings.filterwarnings("ignore", category=UserWarning)  # moto: unsupported placeholder resource

# Fake values: moto accepts any credentials, and the Wi-Fi settings only reach the plan.
FAKE_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "WIFI_SSID": "home-network",
    "WIFI_PASSWORD": "correct horse battery",
}
os.environ.update(FAKE_ENVIRONMENT)
from moto import mock_aws  # noqa: E402

import contract  # noqa: E402
from device.tool import cli, flash_steps, keys  # noqa: E402
from device.tool import plan as flash_plan  # noqa: E402
from device.tool.plan import board_file_set  # noqa: E402
from tests.flash.conftest import ENV, THING, deploy  # noqa: E402


def quiet_main(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return cli.main(argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--real", action="store_true", help="also flash the WebAssembly REPL")
    args = parser.parse_args()

    with mock_aws(), tempfile.TemporaryDirectory() as temporary:
        keys_dir = Path(temporary) / "keys"
        t0 = time.perf_counter()
        keys.create(keys.device_directory(keys_dir, ENV, THING), THING)
        keys_s = time.perf_counter() - t0
        deploy(keys_dir)
        base = ["flash", "--env", ENV, "--thing", THING, "--keys-dir", str(keys_dir)]

        dry = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            assert quiet_main([*base, "--port", "/dev/ttyUSB0", "--dry-run"]) == 0
            dry.append(time.perf_counter() - t0)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import device.tool.cli, device.tool.cloud"],
            cwd=ROOT,
            check=True,
        )
        imports_s = time.perf_counter() - started

        # Host steps only (stage, compile): the exact file set, without a board.
        stage = keys_dir / ENV / THING / "board"
        files = board_file_set(stage)
        from device.tool import cloud

        key = keys.load_key(keys_dir / ENV / THING / keys.KEY_FILE)
        found = cloud.fetch_device(
            env=ENV,
            stack_name=contract.stack_name(ENV),
            region="eu-west-1",
            thing=THING,
            is_for_key=lambda pem: keys.certificate_matches_key(pem, key),
        )
        config = flash_plan.device_config(
            wifi_ssid="home-network",
            wifi_password=FAKE_ENVIRONMENT["WIFI_PASSWORD"],
            endpoint=found.endpoint,
            thing=THING,
            topic_prefix=contract.DEFAULT_TOPIC_PREFIX,
            boot_message=None,
            shadow_interval_s=300,
        )
        generated = {
            "config.json": flash_plan.config_json(config),
            "device.key.der": keys.key_der(key),
            "device.crt.der": keys.certificate_der(found.certificate_pem),
            "AmazonRootCA1.der": keys.certificate_der(flash_plan.ROOT_CA_PEM.read_text()),
        }
        plan = flash_plan.build_plan(port="unused", stage=stage, files=files)
        host_steps = [s for s in plan if s.host]
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            job = flash_steps.FlashJob(files=files, generated=generated, port="unused")
            flash_steps.execute(host_steps, job)
        host_s = time.perf_counter() - t0

        real_s = None
        if args.real:
            from tests.doubles.micropython_repl import MicroPythonRepl

            with MicroPythonRepl() as repl:
                # The REPL has no umqtt.simple; put a stand-in where mip would.
                from mpremote.transport_serial import SerialTransport

                board = SerialTransport(repl.url)
                board.enter_raw_repl(soft_reset=False)
                for folder in ("/lib", "/lib/umqtt"):
                    board.fs_mkdir(folder)
                board.fs_writefile("/lib/umqtt/simple.py", b"class MQTTClient:\n    pass\n")
                board.exit_raw_repl()
                board.close()
                t0 = time.perf_counter()
                status = quiet_main([*base, "--port", repl.url, "--platform", "webassembly"])
                real_s = time.perf_counter() - t0
                assert status == 0

        sizes = [(f, f.staged.stat().st_size) for f in files]

    print("File set on the board")
    print(f"{'file':<22}{'bytes':>8}  from")
    total = 0
    for f, size in sizes:
        total += size
        origin = f.source.relative_to(ROOT) if f.source else "generated"
        print(f"{f.remote:<22}{size:>8}  {origin}")
    sources = sum(f.source.stat().st_size for f in files if f.source)
    compiled = sum(size for f, size in sizes if f.source)
    print(f"{'total':<22}{total:>8}  ({len(files)} files)")
    print(f"firmware: {sources} bytes of source -> {compiled} bytes on the board "
          f"({compiled / sources:.0%})")  # fmt: skip
    print()
    print("Timings (seconds)")
    print(f"{'what':<44}{'median':>8}{'min':>8}{'max':>8}")
    print(f"{'flash --dry-run (in-process, moto)':<44}"
          f"{statistics.median(dry):>8.3f}{min(dry):>8.3f}{max(dry):>8.3f}")  # fmt: skip
    print(f"{'python startup + tool imports':<44}{imports_s:>8.3f}")
    print(f"{'keys (RSA-2048 key + CSR)':<44}{keys_s:>8.3f}")
    print(f"{'host steps: stage + mpy-cross compile':<44}{host_s:>8.3f}")
    if real_s is not None:
        print(f"{'real flash on the WebAssembly REPL':<44}{real_s:>8.3f}")


if __name__ == "__main__":
    main()
