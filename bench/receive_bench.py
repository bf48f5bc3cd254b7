"""Receive Lambda vs the tutorial's naive handler: cold import, bundle size, warm latency.

    .venv/bin/python bench/receive_bench.py [--runs 7] [--events 2000]

Bundles are built with the stack's own `PipLocalBundling` (pip for arm64 Lambda + the
function's bundle-exclude.txt) into a temp folder. Cold import: the handler module in fresh
interpreters that see only the bundle, the standard library and what the Lambda runtime
provides (boto3, botocore, jmespath, dateutil, s3transfer, six, urllib3), with no bytecode
cache, as on Lambda's read-only file system. Warm latency: signed webhook events rendered
through the real request template, handled in-process against moto.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "lambdas")]  # as pytest's pythonpath
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from loop import bindings  # noqa: E402
from stacks.python_function import PipLocalBundling  # noqa: E402

RECEIVE_DIR = ROOT / "lambdas" / "receive_lambda"
RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "dateutil", "s3transfer", "six.py", "urllib3")


def build_bundle(package_dir: Path, out: Path) -> Path:
    """The bundle CDK would upload for the Lambda package `package_dir`, built into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    PipLocalBundling(package_dir).try_bundle(str(out), None)  # type: ignore[arg-type]
    return out


def handler_module(bundle: Path) -> str:
    """The module a bundle's handler setting names: `{package}.handler`."""
    return next(p.parent.name for p in bundle.glob("*/handler.py")) + ".handler"


def naive_source(work: Path) -> Path:
    """A Lambda package holding the naive handler and the tutorial's requirements."""
    folder = work / "naive_receive_lambda"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "bench" / "naive_receive.py", folder / "handler.py")
    (folder / "requirements.txt").write_text("twilio==9.13.0\n")
    return folder


def runtime_site(folder: Path) -> Path:
    """What the Lambda Python runtime provides besides the standard library (links)."""
    import boto3

    site = Path(boto3.__file__).resolve().parent.parent
    folder.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_PACKAGES:
        if not (folder / name).exists():
            (folder / name).symlink_to(site / name)
    return folder


def isolated_python(bundle: Path, runtime: Path, code: str, pycache: Path | None = None) -> str:
    """Runs `code` in a fresh interpreter that sees only bundle, runtime and stdlib.

    Without `pycache`, nothing is cached (Lambda's read-only file system, no .pyc in the
    bundle); with it, bytecode is kept there, as in a bundle precompiled for the runtime.
    """
    prelude = f"import sys; sys.path[:0] = [{str(bundle)!r}, {str(runtime)!r}]\n"
    # -I ignores PYTHON* variables: bytecode is steered with flags instead.
    cache = ["-X", f"pycache_prefix={pycache}"] if pycache else ["-B"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_DEFAULT_REGION": "eu-west-1",
        "TWILIO_SECRET_NAME": "s",
        "IDEMPOTENCY_TABLE": "t",
    }
    result = subprocess.run(
        [sys.executable, "-I", *cache, "-c", prelude + code],
        capture_output=True,
        text=True,
        env=env,
        cwd=bundle,
        check=True,
    )
    return result.stdout


IMPORT_TIMER = """
import importlib, time
start = time.perf_counter()
importlib.import_module({module!r})
elapsed = time.perf_counter() - start
print(elapsed, 'twilio.rest' in sys.modules)
"""


def cold_import_ms(
    bundles: dict[str, Path], runtime: Path, runs: int, pycache: Path | None = None
) -> dict[str, tuple[float, bool]]:
    """Per bundle: median time to import its handler module over fresh interpreters, and whether
    twilio.rest was loaded. Runs alternate between bundles so load on the machine hits both."""
    if pycache is not None:
        for bundle in bundles.values():  # fill the bytecode cache once
            isolated_python(bundle, runtime, f"import {handler_module(bundle)}", pycache)
    samples: dict[str, list[float]] = {name: [] for name in bundles}
    rest: dict[str, bool] = {}
    for _ in range(runs):
        for name, bundle in bundles.items():
            timer = IMPORT_TIMER.format(module=handler_module(bundle))
            seconds, loaded = isolated_python(bundle, runtime, timer, pycache).split()
            samples[name].append(float(seconds) * 1000)
            rest[name] = loaded == "True"
    return {name: (statistics.median(values), rest[name]) for name, values in samples.items()}


def bundle_size(bundle: Path) -> tuple[int, int, int]:
    """(files, bytes unzipped, bytes zipped) of the bundle, __pycache__ excluded."""
    files = [p for p in bundle.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(bundle))
    return len(files), sum(p.stat().st_size for p in files), len(buffer.getvalue())


def warm_latency(events: int) -> dict[str, list[float]]:
    """Per-call latency (ms) of both handlers on `events` signed webhooks, against moto."""
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    from loop.apigw_vtl import default_context, render
    from loop.stack import synthesized_template
    from receive_lambda import handler as receive_handler
    from receive_lambda.config import ReceiveConfig
    from receive_lambda.decision import decide
    from receive_lambda.event import parse_event
    from receive_lambda.signature import signature_is_valid
    from tests.conftest import mailbox_table_definition
    from tests.receive.conftest import EXECUTE_API_URL, TOKEN, FakeContext, sign, sms

    template = (ROOT / "stacks" / "templates" / "receive_request.vtl").read_text()
    with tempfile.TemporaryDirectory() as synth_out:
        mailbox = mailbox_table_definition(synthesized_template("dev", Path(synth_out)))
    context = default_context()
    rendered = []
    for index in range(events):
        pairs = sms(sid=f"SM{index:032x}", body=f"Bench message {index} 😀")
        body = urllib.parse.urlencode(pairs).encode()
        headers = {"X-Twilio-Signature": sign(EXECUTE_API_URL, pairs)}
        rendered.append(json.loads(render(template, body, headers, (), context)))

    environment = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "TWILIO_SECRET_NAME": "text-device/bench/twilio",
        "IDEMPOTENCY_TABLE": "bench-idempotency",
        "THINGS_BY_NUMBER": json.dumps({"+15555550100": "bench"}),  # the naive baseline's
        "BINDINGS_TABLE": "bench-bindings",
        "MAILBOX_TABLE": "bench-mailbox",
        "MAILBOX_RETENTION_SECONDS": str(7 * 86400),
        "TOPIC_PREFIX": "sms",
        "REQUEST_URL": EXECUTE_API_URL,
    }
    os.environ.update(environment)
    sys.path.insert(0, str(ROOT / "bench"))
    import naive_receive

    results: dict[str, list[float]] = {}
    with mock_aws():
        boto3.client("secretsmanager").create_secret(
            Name=environment["TWILIO_SECRET_NAME"],
            SecretString=json.dumps({"account_sid": "AC1", "auth_token": TOKEN}),
        )
        for table in (environment["IDEMPOTENCY_TABLE"], environment["BINDINGS_TABLE"]):
            boto3.client("dynamodb").create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        bindings.fill(
            boto3.resource("dynamodb").Table(environment["BINDINGS_TABLE"]),
            {"bench": "+15555550100"},
        )
        boto3.client("dynamodb").create_table(  # the mailbox, as the stack declares it
            TableName=environment["MAILBOX_TABLE"],
            **mailbox,
        )
        receive_handler.runtime.cache_clear()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        receive_handler.logger.setLevel("WARNING")  # a log line per call would dominate
        handlers: dict[str, Any] = {
            "receive": receive_handler.lambda_handler,
            "naive": naive_receive.lambda_handler,
        }
        for name, handler in handlers.items():
            samples = []
            handler(rendered[0], FakeContext())  # warm: clients, cached secret
            for event in rendered[1:]:
                start = time.perf_counter()
                handler(event, FakeContext())
                samples.append((time.perf_counter() - start) * 1000)
            results[name] = samples
        # The receive handler's own work, without the AWS calls (moto's cost dominates them).
        config = ReceiveConfig.from_environ(os.environ)
        things = {"+15555550100": "bench"}
        samples = []
        for event in rendered:
            start = time.perf_counter()
            request = parse_event(event)
            if not signature_is_valid(request, TOKEN):
                raise AssertionError("bench event not signed")
            decide(request.form, config, things).twiml  # noqa: B018
            samples.append((time.perf_counter() - start) * 1000)
        results["receive logic only"] = samples
    return results


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="fresh interpreters per handler")
    parser.add_argument("--events", type=int, default=2000, help="signed events per handler")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        runtime = runtime_site(work / "runtime")
        bundles = {
            "receive": build_bundle(RECEIVE_DIR, work / "receive"),
            "naive": build_bundle(naive_source(work / "naive-src"), work / "naive"),
        }
        print(f"Cold import, median of {args.runs} fresh interpreters (ms): as bundled today")
        print("(no .pyc: Lambda cannot write one) and precompiled (bytecode for the runtime)")
        header = ("handler", "import", "precompiled", "twilio.rest", "files", "unzip MB", "zip MB")
        print("{:<10} {:>8} {:>12} {:>12} {:>6} {:>9} {:>7}".format(*header))
        cold = cold_import_ms(bundles, runtime, args.runs)
        warm = cold_import_ms(bundles, runtime, args.runs, pycache=work / "pycache")
        rows = {}
        for name, bundle in bundles.items():
            (millis, rest), compiled = cold[name], warm[name][0]
            files, unzipped, zipped = bundle_size(bundle)
            rows[name] = (millis, compiled, unzipped, zipped)
            print(
                f"{name:<10} {millis:>8.1f} {compiled:>12.1f} {'yes' if rest else 'no':>12} "
                f"{files:>6} {unzipped / 1e6:>9.2f} {zipped / 1e6:>7.2f}"
            )
        ratio = [rows["naive"][i] / rows["receive"][i] for i in range(4)]
        print(
            f"{'naive/ours':<10} {ratio[0]:>7.2f}x {ratio[1]:>11.2f}x {'':>12} {'':>6} "
            f"{ratio[2]:>8.1f}x {ratio[3]:>6.1f}x"
        )

    print(f"\nWarm latency ({args.events} signed events, in-process, AWS = moto)")
    print(f"{'handler':<20} {'p50 ms':>8} {'p99 ms':>8}")
    for name, samples in warm_latency(args.events).items():
        print(f"{name:<20} {percentile(samples, 0.5):>8.2f} {percentile(samples, 0.99):>8.2f}")


if __name__ == "__main__":
    main()
