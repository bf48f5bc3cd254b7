"""The mailbox's figures: redelivery of waiting messages after a lost session, and the
end-to-end latency with the mailbox in the path. Prints a table.

    .venv/bin/python bench/mailbox_bench.py [--pending 100] [--messages 200]

Redelivery: the device is off while `--pending` texts arrive, its broker session ends (as
after AWS IoT's 1-hour expiry), then it boots: the clock runs from boot until its app has
taken the last message and until Twilio has accepted the last reply.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from bench.system_bench import end_to_end, percentile  # noqa: E402
from loop.local_loop import LOAD_CAPS, LocalLoop  # noqa: E402

THING = "dev-reverser"


def redelivery(pending: int) -> tuple[float, float]:
    """Seconds from boot to the last message taken, and to the last reply accepted."""
    with (
        tempfile.TemporaryDirectory(prefix="bench-mailbox-") as work,
        LocalLoop(Path(work), settings=LOAD_CAPS) as loop,
    ):
        batch = uuid.uuid4().hex[:6]
        bodies = {f"pending {batch} {n:03d}" for n in range(pending)}
        loop.stop_device(THING)
        for body in sorted(bodies):
            assert loop.text(body).status == 200
        loop.expire_session(THING)
        sent_before = len(loop.twilio.sent_messages())
        start = time.perf_counter()
        loop.start_device(THING)

        def taken() -> bool:
            return sum(m["Body"] in bodies for m in loop.received[THING]) >= pending

        assert loop.wait_for(taken, timeout=120, poll=0.005)
        took = time.perf_counter() - start
        assert loop.wait_for(
            lambda: len(loop.twilio.sent_messages()) - sent_before >= pending,
            timeout=120,
            poll=0.005,
        )
        replied = time.perf_counter() - start
        assert loop.wait_for(lambda: not loop.pending(THING), timeout=60)
        return took, replied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pending", type=int, default=100)
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    # Each measure in its own process: a process holds one moto backend, one loop's tables.
    spawn = multiprocessing.get_context("spawn")
    with spawn.Pool(1) as pool:
        took, replied = pool.apply(redelivery, (args.pending,))
    with spawn.Pool(1) as pool:
        latencies = [s * 1000 for s in pool.apply(end_to_end, (args.messages,))]
    rows = [
        (f"redelivery: {args.pending} waiting, boot -> last taken", f"{took:.2f} s"),
        (f"redelivery: {args.pending} waiting, boot -> last reply", f"{replied:.2f} s"),
        ("end-to-end latency p50", f"{percentile(latencies, 0.50):.1f} ms"),
        ("end-to-end latency p99", f"{percentile(latencies, 0.99):.1f} ms"),
        ("end-to-end latency mean", f"{statistics.fmean(latencies):.1f} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|------:|")
    for label, value in rows:
        print(f"| {label:<{width}} | {value} |")


if __name__ == "__main__":
    main()
