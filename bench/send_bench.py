"""Send Lambda benchmark: bundle size, cold import time, warm send latency, fault table.

    .venv/bin/python bench/send_bench.py [--runs 7] [--sends 50]

- bundle: built with stacks/python_function.py's PipLocalBundling (the Lambda platform,
  arm64, pruned by lambdas/send_lambda/bundle-exclude.txt) into a temp folder; sizes unzipped and
  zipped, against the same bundle unpruned;
- cold import: `import send_lambda.handler` in fresh interpreters, from the same pruned file set
  installed for this host (the arm64 wheels' extensions cannot load here), with and
  without precompiled .pyc (Lambda's /var/task is read-only: no .pyc is written there);
  the pruned bundle also sends one message to Prism, proving the prune removed nothing used;
- warm send: SendRuntime.handle against Prism with moto's in-process AWS, next to a bare
  twilio `messages.create` against the same Prism, so the ratio is what the Lambda adds;
- fault table: every fault of tests/send/scenarios.FAULT_CASES through the fault proxy,
  which remembers the messages Twilio would have accepted and lists them, so a retry after
  an ambiguous failure (timeout, reset, a 5xx after Twilio accepted) reconciles instead of
  texting twice.
"""

from __future__ import annotations

import argparse
import compileall
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "lambdas")]  # as pytest's pythonpath
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# The tables are the output; the Lambda's own log lines would drown them.
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")

from loop.prism_server import PrismServer  # noqa: E402
from loop.twilio_loopback import twilio_client  # noqa: E402
from tests.doubles.twilio_faults import FaultProxy  # noqa: E402
from tests.send import scenarios  # noqa: E402

SEND_DIR = ROOT / "lambdas" / "send_lambda"
IMPORT_BUDGET_S = 1.0  # what a cold start may spend importing, before any request


def tree_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def zipped_size(folder: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder))
    return len(buffer.getvalue())


def build_bundles(work: Path) -> tuple[Path, Path, Path]:
    """(pruned Lambda bundle, unpruned Lambda bundle, pruned host bundle)."""
    from stacks.python_function import (
        SHARED_SOURCES,
        SOURCE_EXCLUDES,
        PipLocalBundling,
        prune_bundle,
    )

    pruned = work / "lambda"
    PipLocalBundling(SEND_DIR).try_bundle(str(pruned), None)  # type: ignore[arg-type]
    unpruned_src = work / "src-unpruned" / SEND_DIR.name
    shutil.copytree(SEND_DIR, unpruned_src, ignore=shutil.ignore_patterns("bundle-exclude.txt"))
    unpruned = work / "lambda-unpruned"
    PipLocalBundling(unpruned_src).try_bundle(str(unpruned), None)  # type: ignore[arg-type]
    host = work / "host"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-qq", "--disable-pip-version-check",
         "--no-compile", "--target", str(host), "-r", str(SEND_DIR / "requirements.txt")],
        check=True,
    )  # fmt: skip
    prune_bundle(host, SEND_DIR / "bundle-exclude.txt")
    for source in (SEND_DIR, *SHARED_SOURCES):
        if source.is_file():
            shutil.copy2(source, host / source.name)
        else:
            shutil.copytree(
                source, host / source.name, ignore=shutil.ignore_patterns(*SOURCE_EXCLUDES)
            )
    return pruned, unpruned, host


IMPORT_SNIPPET = """
import sys, time
sys.path.insert(0, {bundle!r})
start = time.perf_counter()
import send_lambda.handler
print(time.perf_counter() - start)
"""

SEND_SNIPPET = """
import sys
sys.path.insert(0, {bundle!r}); sys.path.insert(1, {root!r})
import send_lambda.handler, twilio
assert twilio.__file__.startswith({bundle!r}), twilio.__file__
from loop.twilio_loopback import twilio_client
message = twilio_client({url!r}).messages.create(
    to="+15551234567", from_="+15555550100", body="bench", media_url=["https://e.com/a.png"])
print(message.sid)
"""


def cold_imports(bundle: Path, runs: int) -> list[float]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "AWS_DEFAULT_REGION": "eu-west-1"}
    times = []
    for _ in range(runs):
        result = subprocess.run(
            [sys.executable, "-B", "-c", IMPORT_SNIPPET.format(bundle=str(bundle))],
            capture_output=True, text=True, check=True, env=env,
        )  # fmt: skip
        times.append(float(result.stdout.strip().splitlines()[-1]))
    return times


def load_policy() -> Any:
    """The default outbound policy with caps high enough for a benchmark's burst: the same
    reads and writes per message as the defaults."""
    from send_lambda.outbound_policy import OutboundPolicy

    return OutboundPolicy(per_minute=1000, per_day=100_000)


def dynamodb_calls_per_send(prism: PrismServer, sends: int = 20) -> Counter[str]:
    """DynamoDB operations one sent message costs, averaged over `sends` warm sends."""
    calls: Counter[str] = Counter()
    with scenarios.aws_stand_ins() as aws:
        runtime = scenarios.build_runtime(aws, prism.url, timeout=6.0, policy=load_policy())
        runtime.handle(scenarios.event("warm-up"), scenarios.FakeContext())
        aws.dynamodb.meta.events.register(
            "before-call.dynamodb.*",
            lambda model, **_: calls.update([model.name]),
        )
        for i in range(sends):
            result = runtime.handle(scenarios.event(f"count-{i}"), scenarios.FakeContext())
            assert result["outcome"] == "sent", result
    return Counter({name: count // sends for name, count in calls.items()})


def warm_sends(prism: PrismServer, sends: int) -> tuple[list[float], list[float]]:
    with scenarios.aws_stand_ins() as aws:
        runtime = scenarios.build_runtime(aws, prism.url, timeout=6.0, policy=load_policy())
        runtime.handle(scenarios.event("warm-up"), scenarios.FakeContext())
        lambda_times = []
        for i in range(sends):
            start = time.perf_counter()
            result = runtime.handle(scenarios.event(f"bench-{i}"), scenarios.FakeContext())
            lambda_times.append(time.perf_counter() - start)
            assert result["outcome"] == "sent", result
    client = twilio_client(prism.url)
    client.messages.create(to="+15551234567", from_="+15555550100", body="warm-up")
    bare = []
    for _ in range(sends):
        start = time.perf_counter()
        client.messages.create(to="+15551234567", from_="+15555550100", body="hello")
        bare.append(time.perf_counter() - start)
    return lambda_times, bare


def fault_table(prism: PrismServer) -> list[tuple[str, str, int]]:
    rows = []
    with FaultProxy(prism.url, hang_seconds=scenarios.CLIENT_TIMEOUT * 3) as proxy:
        for case in scenarios.FAULT_CASES:
            with scenarios.aws_stand_ins() as aws:
                runtime = scenarios.build_runtime(aws, proxy.url)
                row = scenarios.run_fault_case(case, runtime, aws, proxy, case.name)
                rows.append((case.name, scenarios.describe(row), row.sms_sent))
    return rows


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="cold imports per variant")
    parser.add_argument("--sends", type=int, default=50, help="warm sends measured")
    args = parser.parse_args()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "testing"
    os.environ["AWS_DEFAULT_REGION"] = "eu-west-1"

    with tempfile.TemporaryDirectory(prefix="send-bench-") as tmp, PrismServer() as prism:
        pruned, unpruned, host = build_bundles(Path(tmp))
        print("\nSend Lambda bundle (arm64, as deployed)")
        print(f"{'bundle':<12}{'unzipped':>12}{'zipped':>12}")
        for label, folder in (("unpruned", unpruned), ("pruned", pruned)):
            unzipped, zipped = tree_size(folder), zipped_size(folder)
            print(f"{label:<12}{unzipped / 1e6:>10.1f}MB{zipped / 1e6:>10.1f}MB")
        print(f"ratio pruned/unpruned (zipped): {zipped_size(pruned) / zipped_size(unpruned):.2f}")

        sid = subprocess.run(
            [sys.executable, "-B", "-c",
             SEND_SNIPPET.format(bundle=str(host), root=str(ROOT), url=prism.url)],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        print(f"pruned bundle sends through Prism: {sid}")

        no_pyc = cold_imports(host, args.runs)
        compileall.compile_dir(host, quiet=1, workers=1)
        with_pyc = cold_imports(host, args.runs)
        runs = f"{args.runs} fresh interpreters, Python {sys.version[:4]}"
        print(f"\nCold `import send_lambda.handler` ({runs})")
        print(f"{'variant':<22}{'median':>10}{'min':>10}{'max':>10}{'of budget':>11}")
        for label, times in (("sources only", no_pyc), ("precompiled .pyc", with_pyc)):
            median = statistics.median(times)
            print(
                f"{label:<22}{ms(median):>10}{ms(min(times)):>10}{ms(max(times)):>10}"
                f"{median / IMPORT_BUDGET_S:>10.0%}"
            )

        lambda_times, bare = warm_sends(prism, args.sends)
        print(f"\nWarm send against Prism ({args.sends} sends, moto for AWS)")
        print(f"{'path':<34}{'p50':>10}{'p95':>10}")
        for label, times in (("SendRuntime.handle (whole Lambda)", lambda_times),
                             ("bare twilio messages.create", bare)):  # fmt: skip
            p95 = statistics.quantiles(times, n=20)[-1]
            print(f"{label:<34}{ms(statistics.median(times)):>10}{ms(p95):>10}")
        ratio = statistics.median(lambda_times) / statistics.median(bare)
        print(
            f"ratio Lambda/bare (p50): {ratio:.1f}x "
            "(idempotency records, attempt marker, outbound policy, secret cache)"
        )

        calls = dynamodb_calls_per_send(prism)
        print("\nDynamoDB calls per sent message (warm, no fault)")
        for name, count in sorted(calls.items()):
            print(f"{name:<12}{count:>4}")

        print("\nFault table (Lambda async invoke simulated: 1 + 2 retries, then the DLQ)")
        rows = fault_table(prism)
        width = max(len(r[0]) for r in rows) + 2
        what_width = max(len(r[1]) for r in rows) + 2
        print(f"{'fault':<{width}}{'what happened':<{what_width}}{'SMS sent':>9}")
        for name, what, sent in rows:
            print(f"{name:<{width}}{what:<{what_width}}{sent:>9}")


if __name__ == "__main__":
    main()
