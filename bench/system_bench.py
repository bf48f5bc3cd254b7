"""`make bench`: the system's figures in one table, also in bench/results.md and a PNG.

    .venv/bin/python bench/system_bench.py [--messages 200] [--skip-synth]

- end-to-end latency, webhook POST -> reply at the mock Twilio, p50/p99 over `--messages`
  texts through the local loop (`loop.local_loop`), drawn as bench/latency.png;
- receive and send Lambda: cold import time (median of fresh interpreters) and bundle size,
  built as `cdk synth` builds them; warm handler latency p50/p99;
- device firmware memory per message and at import (real MicroPython, WebAssembly port);
- `make synth` wall time, cold (empty cdk.out) and warm.
Speed is measured and reported here, never asserted in tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "CRITICAL")

RESULTS = ROOT / "bench" / "results.md"
HISTOGRAM = ROOT / "bench" / "latency.png"


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def end_to_end(messages: int) -> list[float]:
    """Seconds from webhook POST to the reply reaching the mock Twilio, one text at a time."""
    from loop.local_loop import LOAD_CAPS, LocalLoop

    latencies = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-loop-") as work,
        LocalLoop(Path(work), settings=LOAD_CAPS) as loop,
    ):
        for warm_up in range(5):
            loop.text(f"warm-up {warm_up}")
        loop.wait_for(lambda: len(loop.twilio.sent_messages()) >= 5)
        for n in range(messages):
            body = f"bench {n} {uuid.uuid4().hex[:6]}"
            count = len(loop.twilio.sent_messages())
            start = time.perf_counter()
            assert loop.text(body).status == 200

            def replied(before: int = count) -> bool:
                return len(loop.twilio.sent_messages()) > before

            if not loop.wait_for(replied, timeout=30, poll=0.001):
                raise RuntimeError(f"message {n} got no reply within 30 s")
            latencies.append(time.perf_counter() - start)
    return latencies


def lambda_figures(work: Path) -> dict[str, float]:
    """Cold import, bundle size and warm latency of the receive and send Lambdas."""
    from bench import receive_bench, send_bench
    from loop.prism_server import PrismServer

    figures: dict[str, float] = {}
    runtime = receive_bench.runtime_site(work / "runtime")
    receive = receive_bench.build_bundle(receive_bench.RECEIVE_DIR, work / "receive")
    cold = receive_bench.cold_import_ms({"receive": receive}, runtime, 7)
    figures["receive_cold_ms"] = cold["receive"][0]
    _, unzipped, zipped = receive_bench.bundle_size(receive)
    figures["receive_bundle_mb"], figures["receive_zip_mb"] = unzipped / 1e6, zipped / 1e6
    samples = receive_bench.warm_latency(2000)["receive"]
    figures["receive_warm_p50_ms"] = percentile(samples, 0.5)
    figures["receive_warm_p99_ms"] = percentile(samples, 0.99)

    pruned, _, host = send_bench.build_bundles(work / "send")
    figures["send_cold_ms"] = statistics.median(send_bench.cold_imports(host, 7)) * 1000
    figures["send_bundle_mb"] = send_bench.tree_size(pruned) / 1e6
    figures["send_zip_mb"] = send_bench.zipped_size(pruned) / 1e6
    with PrismServer() as prism:
        sends, _ = send_bench.warm_sends(prism, 200)
    millis = [s * 1000 for s in sends]
    figures["send_warm_p50_ms"] = percentile(millis, 0.5)
    figures["send_warm_p99_ms"] = percentile(millis, 0.99)
    return figures


def device_figures() -> dict[str, float]:
    """Firmware memory on real MicroPython and the .mpy total."""
    from bench import device_memory

    measured = device_memory.measure()
    total = sum(size for _, size, _ in device_memory.sizes())
    total += len((ROOT / "device" / "board" / "main.py").read_bytes())
    return {
        "device_import_bytes": measured["import_resident"],
        "device_msg_bytes": measured["msg160_ascii_step"],
        "device_msg_unicode_bytes": measured["msg160_unicode_step"],
        "device_growth_bytes": measured["growth_next_10000"],
        "device_mpy_bytes": total,
    }


def synth_seconds() -> tuple[float, float]:
    """`make synth` wall time with an empty cdk.out (bundling runs pip), then again."""
    shutil.rmtree(ROOT / "cdk.out", ignore_errors=True)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(["make", "-s", "synth"], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def draw(latencies_ms: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5), dpi=110)
    axes.hist(latencies_ms, bins=40, color="#3b7dd8")
    marks = (
        ("p50", percentile(latencies_ms, 0.5), "#d83b3b"),
        ("p99", percentile(latencies_ms, 0.99), "#8a1c7c"),
    )
    for label, value, colour in marks:
        axes.axvline(value, color=colour, linestyle="--", label=f"{label} {value:.0f} ms")
    axes.legend(loc="upper right", fontsize=8)
    axes.set_xlabel("webhook POST → reply at the mock Twilio (ms)")
    axes.set_ylabel("messages")
    axes.set_title(f"End-to-end latency, local loop, {len(latencies_ms)} messages")
    figure.tight_layout()
    figure.savefig(HISTOGRAM)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--skip-synth", action="store_true", help="do not time `make synth`")
    args = parser.parse_args()

    rows: list[tuple[str, str, str]] = []
    latencies = [s * 1000 for s in end_to_end(args.messages)]
    rows.append(("end-to-end latency p50", f"{percentile(latencies, 0.5):.1f} ms",
                 f"{args.messages} texts, one at a time, local loop"))  # fmt: skip
    rows.append(("end-to-end latency p99", f"{percentile(latencies, 0.99):.1f} ms", "same"))
    with tempfile.TemporaryDirectory(prefix="bench-lambdas-") as work:
        lam = lambda_figures(Path(work))
    for name in ("receive", "send"):
        rows += [
            (f"{name} Lambda cold import", f"{lam[name + '_cold_ms']:.0f} ms",
             "median of 7 fresh interpreters, no .pyc"),
            (f"{name} Lambda bundle",
             f"{lam[name + '_bundle_mb']:.2f} MB ({lam[name + '_zip_mb']:.2f} MB zipped)",
             "arm64, as cdk synth builds it"),
            (f"{name} handler warm p50 / p99",
             f"{lam[name + '_warm_p50_ms']:.2f} / {lam[name + '_warm_p99_ms']:.2f} ms",
             "2,000 signed events, moto" if name == "receive" else "200 sends to Prism, moto"),
        ]  # fmt: skip
    dev = device_figures()
    rows += [
        ("device: import firmware", f"{dev['device_import_bytes']:,} B", "budget 8,192 B"),
        ("device: one 160-char SMS", f"{dev['device_msg_bytes']:,} B", "budget 2,048 B"),
        ("device: one 160-char Unicode SMS", f"{dev['device_msg_unicode_bytes']:,} B",
         "budget 2,048 B"),
        ("device: heap growth, 10,000 msgs", f"{dev['device_growth_bytes']:,} B",
         "noise; a leak is >= 160,000 B"),
        ("device: .mpy files + main.py", f"{dev['device_mpy_bytes']:,} B",
         "mpy-cross -march=xtensa -O3"),
    ]  # fmt: skip
    if not args.skip_synth:
        cold, warm = synth_seconds()
        rows.append(
            ("make synth, cold / warm", f"{cold:.1f} / {warm:.1f} s", "cold: empty cdk.out")
        )

    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    lines = [f"| {'measure':<{width}} | {'value':>{value_width}} | note |",
             f"|{'-' * (width + 2)}|{'-' * (value_width + 1)}:|------|"]  # fmt: skip
    lines += [f"| {m:<{width}} | {v:>{value_width}} | {n} |" for m, v, n in rows]
    table = "\n".join(lines)
    print(table)
    draw(latencies)
    RESULTS.write_text(
        "# Benchmark results\n\n"
        f"Produced by `make bench` (`bench/system_bench.py`) on {time.strftime('%Y-%m-%d')}, "
        f"{os.cpu_count()} cores, Python {sys.version.split()[0]}.\n\n{table}\n\n"
        "![End-to-end latency histogram](latency.png)\n"
    )
    print(f"\nWritten: {RESULTS.relative_to(ROOT)}, {HISTOGRAM.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
