# mypy: ignore-errors
# (MicroPython program: no typing module there, so it is not type-checked)
"""Memory use of the firmware, measured inside MicroPython; prints one JSON line.

The WebAssembly port's heap grows instead of raising MemoryError, so figures
are gc.mem_alloc() deltas: after gc.collect() for what stays allocated, with
gc.disable() for everything one operation allocates. That port reclaims
garbage only in a collection at top level, so tests/device/runmp.mjs runs each
"phase" below as its own call and every phase starts with gc.collect().
"""

import gc
import json
import sys

# Globals and result keys exist before measuring, so their storage is not counted.
res = {"import_boot_peak": 0, "import_resident": 0, "import_smsboot": 0}
base = 0
# The board's boot order: main.py imports smsboot, whose build() imports
# smslink (with smscore) and app (with smstext); then main.py drops smsboot.
# Interned names (qstrs) are never freed, so they count, as on the board.
# --- phase ---
gc.collect()
base = gc.mem_alloc()
__import__("smsboot")
__import__("smslink")
__import__("app")
# --- phase ---
gc.collect()
res["import_boot_peak"] = gc.mem_alloc() - base
sys.modules.pop("smsboot")
# --- phase ---
gc.collect()
res["import_resident"] = gc.mem_alloc() - base  # what stays loaded while serving
res["import_smsboot"] = res["import_boot_peak"] - res["import_resident"]
# --- phase ---
import fakes  # noqa: E402
import smscore  # noqa: E402
import smslink  # noqa: E402

import app  # noqa: E402


def smsboot_load_config(text):
    # a fresh import for the benchmark's own set-up, after the measurement
    import smsboot

    return smsboot.load_config(text)


T_IN = b"sms/dev-1/inbound"


class NullClient:
    """umqtt.simple's API, keeping nothing: the only allocations are the firmware's."""

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None):  # fmt: skip
        self.cb = None
        self.raw = None
        self.published = 0
        self.acks = 0
        self.last = 0

    def set_callback(self, f):
        self.cb = f

    def connect(self, clean_session=True):
        return 1

    def subscribe(self, topic, qos=0):
        pass

    def publish(self, topic, msg, retain=False, qos=0):
        if topic is dev.t_ack:  # confirmations are counted apart from replies
            self.acks += 1
            return
        self.published += 1
        self.last = len(msg)

    def ping(self):
        pass

    def check_msg(self):
        raw = self.raw
        if raw is None:
            return None
        self.cb(T_IN, raw)
        return 0x32

    def disconnect(self):
        pass


def msg(i, body):
    m = {"Type": "Incoming", "Id": "SM" + str(100000 + i) * 5, "From": "+15551234567",
         "To": "+15557654321", "Body": body, "Media": []}  # fmt: skip
    return smscore._dumps(m).encode()


def nolog(line):
    pass


clock = fakes.Clock()
wlan = fakes.WLAN(clock, 0)
cfg = smsboot_load_config(
    '{"wifi_ssid":"a","wifi_password":"b","endpoint":"e","thing":"dev-1","shadow_interval_s":86400}'
)
dev = smslink.Device(cfg, app.handle, NullClient, wlan, clock, None, None, None, None, b"\x01",
                     log=nolog)  # fmt: skip
dev.keepalive = 86400  # no ping inside the measured steps
dev.poll_ms = 0
dev.step()  # connect (Wi-Fi, MQTT, shadow) outside the measurement
client = dev.c
assert client is not None

ascii160 = ("Oozy rat in a sanitary zoo. " * 6)[:160]
uni160 = ("Zoë 😀 ça va? 日本 " * 20)[:160]
BAD = (b"not json", b"\xff\xfe", msg(1, "x" * 1601), b'{"Type":"Incoming"}')


def one(raw, step):
    # gc.disable(): count every byte allocated while handling one message
    client.raw = raw
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    if step:
        dev.step()
    else:
        dev._on_msg(T_IN, raw)
    b = gc.mem_alloc()
    gc.enable()
    client.raw = None
    return b - a


m_ascii = msg(7, ascii160)
m_uni = msg(8, uni160)
one(m_ascii, True)  # warm-up: first-call caches
res["msg160_ascii_callback"] = one(m_ascii, False)
res["msg160_ascii_step"] = one(m_ascii, True)
res["msg160_unicode_step"] = one(m_uni, True)
res["reply_bytes_ascii"] = client.last
res["bad_input_step"] = one(BAD[0], True)
# The largest payload the cloud may publish (MAX_RAW bytes): 4-byte characters, as much
# body as fits, answered by the default app (which reverses it).
envelope = len(msg(9, ""))
body_max = "😀" * ((smscore.MAX_RAW - envelope) // 4)
body_max += "x" * (smscore.MAX_RAW - envelope - len(body_max.encode()))
m_max = msg(9, body_max)
assert len(m_max) == smscore.MAX_RAW
res["msg_max_bytes"] = len(m_max)
res["msg_max_step"] = one(m_max, True)


def silent(m):
    return None


dev.handle = silent  # the firmware's own share: parse and confirm, no answer
res["msg_max_silent_step"] = one(m_max, True)
dev.handle = app.handle

raws = [msg(i, ascii160) for i in range(9)] + [BAD[1]]  # one in ten is dropped
N = 10000
sent0 = client.published
marks = []


def pump(n):
    i = 0
    while i < n:
        client.raw = raws[i % 10]
        dev.step()
        i += 1
    client.raw = None


pump(100)  # warm-up: first-use caches are not growth
# The three rounds below run identical phase code, so the compiled phase text
# weighs the same in every mark.
# --- phase ---
gc.collect()
marks.append(gc.mem_alloc())
pump(N)
# --- phase ---
gc.collect()
marks.append(gc.mem_alloc())
pump(N)
# --- phase ---
gc.collect()
marks.append(gc.mem_alloc())
res["loop_messages"] = 2 * N
res["loop_replies"] = client.published - sent0
res["loop_acks"] = client.acks
res["loop_dropped"] = dev.dropped
res["growth_first_10000"] = marks[1] - marks[0]
res["growth_next_10000"] = marks[2] - marks[1]
res["mem_alloc_after"] = marks[2]
print(json.dumps(res))
