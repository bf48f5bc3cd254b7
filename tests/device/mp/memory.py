# mypy: ignore-errors
# (MicroPython program: no typing module there, so it is not type-checked)
# ruff: noqa: PTH102, PTH123, UP031
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

    def connect(self, clean_session=True, timeout=None):
        return 1

    def subscribe(self, topic, qos=0):
        pass

    def publish(self, topic, msg, retain=False, qos=0):
        if topic is dev.topic_ack:  # confirmations are counted apart from replies
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
dev = smslink.Device(config=cfg, handle=app.handle, mqtt=NullClient, wlan=wlan, clock=clock,
                     uid=b"\x01", log=nolog)  # fmt: skip
dev.keepalive = 86400  # no ping inside the measured steps
dev.poll_ms = 0
dev.step()  # connect (Wi-Fi, MQTT, shadow) outside the measurement
client = dev.client
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
# --- phase ---
# Over-the-air update: the peak heap above steady state. binascii, hashlib and
# os are built into the ESP8266 firmware (no heap); this port loads binascii
# from Python, so all three are loaded before the baseline.
import binascii  # noqa: E402
import hashlib  # noqa: E402
import os  # noqa: E402

PREFIX = b"$aws/things/dev-1/"
TOKEN = "00000000"  # the device's tokens: "%08x" % rand(), and rand() is 0 here


class JobsClient(NullClient):
    """NullClient answering AWS IoT Jobs and stream requests from prepared messages.

    Each answer is delivered as a fresh copy, as umqtt.simple reads it off the
    socket; the answers themselves are built before the measurement.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.answers = {}  # request topic -> [(answer topic, payload), ...]
        self.inbox = []
        self.mqtt_bytes = 0  # topics and payloads, both ways

    def publish(self, topic, msg, retain=False, qos=0):
        self.published += 1
        self.mqtt_bytes += len(topic) + len(msg)
        queued = self.answers.get(topic)
        if queued:
            self.inbox.append(queued.pop(0))

    def check_msg(self):
        if not self.inbox:
            return None
        topic, raw = self.inbox.pop(0)
        self.mqtt_bytes += len(topic) + len(raw)
        self.cb(bytes(topic), bytes(raw))  # new bytes from bytearrays, as umqtt reads them
        return 0x30


def prepare_update(size):
    """A device on a JobsClient with a job for a size-byte app; returns (device, client)."""
    import smsota

    payload = bytes(i * 7 % 251 for i in range(size))
    digest = str(binascii.hexlify(hashlib.sha256(payload).digest()), "ascii")
    root = "/ota%d/" % size
    os.mkdir(root[:-1])
    execution = {"jobId": "job-m", "thingName": "dev-1", "status": "IN_PROGRESS",
                 "jobDocument": {"operation": "app-update", "streamId": "s1",
                                 "files": [{"name": "app.mpy", "fileId": 0, "size": size,
                                            "sha256": digest}]}}  # fmt: skip
    ok = {"clientToken": TOKEN, "timestamp": 1}
    block = smsota.BLOCK
    data = []
    for index in range((size + block - 1) // block):
        part = payload[index * block : (index + 1) * block]
        text = binascii.b2a_base64(part).strip()
        c_binascii.blocks[(len(text), text[:16])] = bytearray(part)
        body = {"c": TOKEN, "f": 0, "l": len(part), "i": index, "p": str(text, "ascii")}
        data.append(
            (bytearray(PREFIX + b"streams/s1/data/json"), bytearray(json.dumps(body).encode()))
        )
    client_ = None
    device = smslink.Device(config=cfg, handle=app.handle, mqtt=JobsClient, wlan=wlan,
                            clock=clock, uid=b"\x01", log=nolog, root=root)  # fmt: skip
    device.keepalive = 86400
    device.poll_ms = 0
    device.step()  # connect outside the measurement
    client_ = device.client
    started = dict(ok)
    started["execution"] = execution
    client_.answers = {
        PREFIX + b"jobs/start-next": [(bytearray(PREFIX + b"jobs/start-next/accepted"),
                                       bytearray(json.dumps(started).encode()))],
        PREFIX + b"streams/s1/get/json": data,
        PREFIX + b"jobs/job-m/update": [(bytearray(PREFIX + b"jobs/job-m/update/accepted"),
                                         bytearray(json.dumps(ok).encode()))],
    }  # fmt: skip
    client_.mqtt_bytes = 0
    device.job = b'{"timestamp":1,"execution":{"jobId":"job-m"}}'  # notify-next
    return device, client_


class CBinascii:
    """binascii as the ESP8266 has it, in C: decoding allocates the decoded block only.

    This port's binascii is micropython-lib's Python one, which allocates tens
    of kilobytes per block, so the measurement uses this stand-in: it returns the
    block from a table and allocates a buffer of its size, as the C code does.
    """

    def __init__(self):
        self.blocks = {}  # (length, first 16 characters) of the base64 text -> decoded block

    def a2b_base64(self, data):
        block = self.blocks[(len(data), bytes(data[:16]))]  # a few dozen bytes: counted
        return bytes(block)  # a copy of the bytearray: the one allocation the C code makes

    def hexlify(self, data):
        return binascii.hexlify(data)


c_binascii = CBinascii()
update_1 = prepare_update(1000)
update_4 = prepare_update(4000)
staged, _ = prepare_update(900)  # another size: CBinascii tells blocks apart by length
sys.modules.pop("smsota", None)
sys.modules["binascii"] = c_binascii
ota = None
held = {}
stages = {}
found = {}


def stage(name, work):
    # What is held when the stage starts (after a collection), plus everything
    # the stage allocates (gc disabled, garbage included): a bound on its peak.
    gc.collect()
    held[name] = gc.mem_alloc() - base
    gc.disable()
    before = gc.mem_alloc()
    work()
    stages[name] = gc.mem_alloc() - before
    gc.enable()


def load():
    global ota
    ota = __import__("smsota")


def start():
    payload = {"clientToken": TOKEN, "statusDetails": {"step": "download"}}
    answers = ("jobs/start-next/accepted", "jobs/start-next/rejected")
    found["answer"] = ota._ask(staged, "jobs/start-next", payload, answers, TOKEN)[1]
    found["plan"] = ota.plan(found["answer"]["execution"], "dev-1", None)


def download():
    stream_id, files = found["plan"]
    ota._download(staged, stream_id, files[0], TOKEN)


def switch():
    journal = {"job": "job-m", "files": ["app.mpy"], "fresh": ["app.mpy"], "retire": []}
    ota.write_journal(staged.root, journal, "switch")
    ota.switch(staged.root, journal)
    ota.report(staged, "job-m", "IN_PROGRESS", step="restarting")


# The update's stages, each started from the top level: this port collects
# garbage only there, as the board does whenever it needs to.
# --- phase ---
gc.collect()
base = gc.mem_alloc()
# --- phase ---
stage("load", load)
# --- phase ---
stage("start", start)
# --- phase ---
stage("download", download)
# --- phase ---
stage("switch", switch)
# --- phase ---
res["ota_module"] = stages["load"]  # smsota's code, loaded only during update work
res["ota_peak"] = max(held[k] + stages[k] for k in stages)
res["ota_stages"] = stages
res["ota_held"] = held
ota = None
found = None
sys.modules.pop("smsota", None)
# --- phase ---


def whole_update(prepared):
    # gc.disable(): every byte the update allocates, garbage included
    device, jobs_client = prepared
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    device.step()  # imports smsota, starts the job, downloads, verifies, switches
    used = gc.mem_alloc() - before
    gc.enable()
    assert switched(device), "the update did not finish"
    return used, jobs_client.mqtt_bytes


def switched(device):
    with open(device.root + "ota.json") as f:
        return json.loads(f.read())["step"] == "trial"


res["ota_update_1000_alloc"], res["ota_update_1000_mqtt"] = whole_update(update_1)
res["ota_update_4000_alloc"], res["ota_update_4000_mqtt"] = whole_update(update_4)
# One block more costs this much, all of it garbage once the block is written.
res["ota_block_alloc"] = (res["ota_update_4000_alloc"] - res["ota_update_1000_alloc"]) // 3
print(json.dumps(res))
