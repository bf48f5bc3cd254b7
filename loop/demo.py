"""`make demo`: text the device and watch the reply come back, all on this machine.

    python -m loop.demo                          the classic: "Oozy rat in a sanitary zoo."
    python -m loop.demo "Hello, board 👋"        your own text
    python -m loop.demo --interactive            type messages at a prompt (empty line ends)
    python -m loop.demo --media https://example.com/cat.jpg "An MMS"
    python -m loop.demo --ota                    then update the board over the air (and
                                                 push two broken apps it rolls back)

No AWS account, Twilio number or board is needed: see `loop/local_loop.py` for what runs.
Everything started is stopped on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from device.tool.plan import BOARD_SOURCES
from loop.local_loop import LocalLoop
from loop.trace import mask

CLASSIC = "Oozy rat in a sanitary zoo."
# The apps `--ota` pushes, each a whole device/board/app.py.
UPPER_APP = """# Updated over the air: answers in capitals.
def handle(message):
    return message["Body"].upper()
"""
FAILS_ON_IMPORT_APP = """# Fails on import (a module the board does not have): rolled back.
import no_such_module


def handle(message):
    return no_such_module.answer(message)
"""
FAILS_ON_MESSAGE_APP = """# Fails on its first message (reads a field messages lack): rolled back.
def handle(message):
    return message["Text"].upper()
"""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM stops as cleanly as Ctrl-C


def send_and_show(loop: LocalLoop, body: str, media: list[str]) -> bool:
    """Texts the device, prints every hop and the reply the mock Twilio received."""
    before = len(loop.twilio.sent_messages())
    loop.trace.restart()
    print(f"\nTexting {body!r} to the device bound to {mask(loop.number_of())}:")
    response = loop.text(body, media=[(url, "image/jpeg") for url in media])
    if response.status != 200:
        print(f"The webhook answered {response.status}: {response.body}")
        return False
    if not loop.wait_for(lambda: len(loop.twilio.sent_messages()) > before, timeout=20, poll=0.001):
        print("No reply reached the mock Twilio within 20 s (see the logs in the work folder).")
        return False
    elapsed = (time.monotonic() - loop.trace.started) * 1000
    reply = loop.twilio.sent_messages()[-1]
    # Let the send Lambda's own hop (it returns after Twilio answered) print first.
    loop.wait_for(lambda: any(h.where == "send → Twilio" for h in loop.trace.hops), timeout=5)
    print(
        f"\nTwilio (mock) received, {elapsed:.0f} ms after the text was sent:\n"
        f"  From {mask(reply.get('From', ''))}  To {mask(reply.get('To', ''))}\n"
        f"  Body {reply.get('Body', '')!r}"
        + (f"\n  MediaUrl {reply['MediaUrl']}" if reply.get("MediaUrl") else "")
    )
    return True


def board_with_app(folder: Path, app: str) -> Path:
    """A copy of device/board whose app.py is `app`: what `make ota` would ship from."""
    shutil.copytree(BOARD_SOURCES, folder)
    (folder / "app.py").write_text(app)
    return folder


def update_and_show(loop: LocalLoop, work: Path, name: str, app: str, text: bool) -> int:
    """Pushes `app` to the board as `make ota` does and prints the tool's output; with
    `text`, texts the board once it has restarted into it (its first message settles the
    job). Returns the tool's exit status."""
    device = next(iter(loop.devices.values()))
    print(f"\nUpdating the board over the air: {name}")
    trace_echo, loop.trace.echo = loop.trace.echo, None  # the tool's lines, not every hop
    boots = device.boots
    update = loop.start_update(board_with_app(work / name, app), echo=lambda s: print("  " + s))
    if text:
        loop.wait_for(lambda: device.boots > boots or update.done(), timeout=60)
    loop.trace.echo = trace_echo
    if text:
        send_and_show(loop, CLASSIC, [])
    status = update.result(timeout=120)
    print(f"make ota would exit {status}; the board has booted {device.boots} times.")
    return status


def ota_demo(loop: LocalLoop, work: Path) -> bool:
    """A good update, then an app that fails on import and one that fails on its first
    message, each rolled back by the board; True if all three ended as they should."""
    return (
        update_and_show(loop, work, "an upper-casing app", UPPER_APP, text=True) == 0
        and update_and_show(loop, work, "an app that fails on import", FAILS_ON_IMPORT_APP, False)
        == 1
        and update_and_show(
            loop, work, "an app that fails on its first message", FAILS_ON_MESSAGE_APP, True
        )
        == 1
    )


def main(argv: list[str] | None = None) -> int:
    """Runs the demo; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m loop.demo", description=__doc__.split("\n")[0])
    parser.add_argument("text", nargs="*", help=f"what to text (default: {CLASSIC!r})")
    parser.add_argument("--interactive", action="store_true", help="prompt for messages")
    parser.add_argument("--media", action="append", default=[], help="an MMS media URL")
    parser.add_argument("--env", default="dev", help="environment of cdk.json (default: dev)")
    parser.add_argument(
        "--ota", action="store_true", help="then update the board's app over the air"
    )
    args = parser.parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # hops appear as they happen, piped too
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)  # a closed terminal stops as cleanly too

    print("Starting the local loop (mosquitto, moto, Prism, the Lambdas, the firmware)...")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="text-a-device-") as work:
        try:
            with LocalLoop(Path(work), env=args.env) as loop:
                # The reply window: until the receive Lambda records contacts (issue 11's
                # inbound half), the person's texting is recorded here.
                loop.remember_contact()
                print(f"Ready in {time.monotonic() - started:.1f} s. Hops, in ms since the text:")
                loop.trace.echo = lambda line: print("  " + line)
                if args.interactive:
                    while True:
                        try:
                            body = input("\nText to send (empty line to quit): ")
                        except EOFError:
                            break
                        if not body:
                            break
                        send_and_show(loop, body, args.media)
                    return 0
                body = " ".join(args.text) or CLASSIC
                if not send_and_show(loop, body, args.media):
                    return 1
                if args.ota and not ota_demo(loop, Path(work) / "updates"):
                    return 1
                return 0
        except KeyboardInterrupt:
            print("\nInterrupted: everything started has been stopped.")
            return 130


if __name__ == "__main__":
    sys.exit(main())
