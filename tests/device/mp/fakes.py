# mypy: ignore-errors
# (MicroPython program: no typing module there, so it is not type-checked)
"""Fakes for the board's I/O, with the exact API of umqtt.simple, network, machine, ntptime.

This file runs under MicroPython (WebAssembly port) and CPython: no typing
imports, annotations only with builtin names (MicroPython ignores them).
"""

import binascii
import json
import sys

TICKS_PERIOD = 1 << 30  # MicroPython's ticks wrap here on the ESP8266


class Clock:
    """time-like: ticks_ms/ticks_diff/sleep_ms; time passes only when code sleeps."""

    def __init__(self, start: int = TICKS_PERIOD - 5000) -> None:
        self.now = start  # near the wrap, so wrap-around bugs show
        self.slept = []

    def ticks_ms(self) -> int:
        return self.now % TICKS_PERIOD

    def ticks_add(self, ticks: int, delta: int) -> int:
        return (ticks + delta) % TICKS_PERIOD

    def ticks_diff(self, a: int, b: int) -> int:
        half = TICKS_PERIOD // 2
        return ((a - b + half) % TICKS_PERIOD) - half

    def sleep_ms(self, ms: int) -> None:
        self.slept.append(ms)
        self.now += ms

    def advance(self, ms: int) -> None:
        self.now += ms


class WLAN:
    """network.WLAN(STA_IF)-like; connects after `delay_ms` of clock time."""

    def __init__(self, clock: object, delay_ms: int = 300) -> None:
        self.clock = clock
        self.delay_ms = delay_ms
        self.ready_at = None
        self.up = False
        self.connects = 0
        self.refuse = 0  # the next n connect() calls never come up

    def active(self, on: object = None) -> bool:
        if on is not None:
            self.up = bool(on)
        return self.up

    def connect(self, ssid: str, password: str) -> None:
        assert isinstance(ssid, str) and isinstance(password, str)
        self.connects += 1
        if self.refuse:
            self.refuse -= 1
            self.ready_at = None
        else:
            self.ready_at = self.clock.now + self.delay_ms

    def isconnected(self) -> bool:
        return self.up and self.ready_at is not None and self.clock.now >= self.ready_at

    def disconnect(self) -> None:
        self.ready_at = None

    def drop(self) -> None:
        """The access point goes away (a flap)."""
        self.ready_at = None

    def status(self, param: object = None) -> int:
        return -61 if param == "rssi" else 5


class Broker:
    """An in-memory MQTT broker with persistent sessions and fault injection."""

    def __init__(self, wlan: object = None) -> None:
        self.wlan = wlan
        self.sessions = {}  # client_id -> {"subs": {topic: qos}, "queue": [...]}
        self.published = []  # (client_id, topic, msg, retain, qos)
        self.faults = {}  # op name -> how many next calls raise OSError
        self.active = None
        self.connects = []  # (client_id, clean_session, session_present)
        self.clients = []
        self.pings = 0
        self.down = False
        self.stall = False  # TCP/TLS handshakes that never get an answer
        self.clock = None  # set to let a stalled connect spend its timeout
        self.jobs = None  # a Jobs: answers the jobs and streams topics

    def fault(self, op: str, n: int = 1) -> None:
        self.faults[op] = self.faults.get(op, 0) + n

    def take(self, op: str) -> None:
        n = self.faults.get(op, 0)
        if n:
            self.faults[op] = n - 1
            raise OSError(104)  # ECONNRESET

    def deliver(self, topic: bytes, msg: bytes, qos: int = 1) -> None:
        """Publish from the cloud side: queue for every session subscribed to topic."""
        for s in self.sessions.values():
            if topic in s["subs"]:
                s["queue"].append((topic, msg, min(qos, s["subs"][topic])))

    def outbound(self, topic: bytes) -> list:
        return [p[2] for p in self.published if p[1] == topic]

    def factory(self) -> object:
        broker = self

        class MQTTClient:
            """Same constructor and methods as umqtt.simple.MQTTClient."""

            def __init__(self, client_id: str, server: str, port: int = 0,
                         user: object = None, password: object = None, keepalive: int = 0,
                         ssl: object = None) -> None:  # fmt: skip
                if port == 0:
                    port = 8883 if ssl else 1883
                self.client_id = client_id
                self.server = server
                self.port = port
                self.user = user
                self.pswd = password
                self.keepalive = keepalive
                self.ssl = ssl
                self.cb = None
                self.connected = False
                self.lw = None
                broker.clients.append(self)

            def _alive(self, op: str) -> None:
                if not self.connected or broker.active is not self or broker.down:
                    raise OSError(104)
                if broker.wlan is not None and not broker.wlan.isconnected():
                    raise OSError(113)
                broker.take(op)

            def set_callback(self, f: object) -> None:
                self.cb = f

            def set_last_will(self, topic: bytes, msg: bytes, retain: bool = False,
                              qos: int = 0) -> None:  # fmt: skip
                assert 0 <= qos <= 2 and topic
                self.lw = (topic, msg, retain, qos)

            def connect(self, clean_session: bool = True, timeout: object = None) -> int:
                if broker.down or (broker.wlan is not None and not broker.wlan.isconnected()):
                    raise OSError(113)
                if broker.stall:
                    # umqtt.simple sets the socket's timeout to `timeout` for the
                    # handshake; without one, a peer that never answers blocks forever.
                    if timeout is None:
                        raise Hang("connect() without a timeout would block forever")
                    if broker.clock is not None:
                        broker.clock.advance(int(timeout * 1000))
                    raise OSError(110)  # ETIMEDOUT
                broker.take("connect")
                cid = self.client_id
                present = 0
                if clean_session or cid not in broker.sessions:
                    broker.sessions[cid] = {"subs": {}, "queue": []}
                else:
                    present = 1
                broker.active = self  # a new connection kicks the old one, like AWS IoT
                self.connected = True
                broker.connects.append((cid, clean_session, present))
                return present

            def disconnect(self) -> None:
                self.connected = False

            def ping(self) -> None:
                self._alive("ping")
                broker.pings += 1

            def publish(self, topic: bytes, msg: bytes, retain: bool = False,
                        qos: int = 0) -> None:  # fmt: skip
                # umqtt frames with len(msg): a str would make a short packet
                assert isinstance(topic, bytes), "topic must be bytes"
                assert isinstance(msg, (bytes, bytearray)), "payload must be bytes"
                self._alive("publish")
                broker.published.append((self.client_id, topic, bytes(msg), retain, qos))
                if broker.jobs is not None:
                    broker.jobs.request(broker, topic, bytes(msg))

            def subscribe(self, topic: bytes, qos: int = 0) -> None:
                assert self.cb is not None, "Subscribe callback is not set"
                assert isinstance(topic, bytes)
                self._alive("subscribe")
                broker.sessions[self.client_id]["subs"][topic] = qos

            def check_msg(self) -> object:
                self._alive("check_msg")
                q = broker.sessions[self.client_id]["queue"]
                if not q:
                    return None
                topic, msg, qos = q[0]
                if qos == 0:
                    q.pop(0)
                self.cb(topic, msg)
                # like umqtt: the PUBACK goes out only after the callback returned
                broker.take("ack")
                if qos:
                    q.pop(0)
                return 0x30 | qos << 1

            def wait_msg(self) -> object:
                return self.check_msg()

        return MQTTClient


class Hang(BaseException):
    """The board would wait forever here (a test failure, never caught by firmware)."""


class Reset(BaseException):
    """machine.reset(): nothing after it runs; the test boots the board again."""


class PowerCut(BaseException):
    """The power goes at this point: nothing after it runs, files stay as they are."""


def reset() -> None:
    raise Reset()


class Jobs:
    """AWS IoT Jobs and MQTT-based file delivery (JSON) for one thing, in memory.

    Answers what the device publishes on $aws/things/{thing}/jobs/... and
    .../streams/... the way AWS IoT does, through the broker's delivery.
    """

    def __init__(self, thing: str) -> None:
        self.thing = thing
        self.prefix = "$aws/things/" + thing + "/"
        self.executions = []  # dicts: jobId, thingName, jobDocument, status, statusDetails...
        self.streams = {}  # stream id -> {file id: bytes}
        self.updates = []  # (jobId, status, statusDetails) in order
        self.blocks = 0  # data/json messages sent
        self.block_bytes = 0  # their payload bytes
        self.cut_after_blocks = None  # raise PowerCut when the device asks for one more
        self.silent = False  # AWS IoT never answers

    def queue(self, job_id: str, document: dict, thing: object = None) -> dict:
        execution = {"jobId": job_id, "thingName": thing or self.thing,
                     "jobDocument": document, "status": "QUEUED", "versionNumber": 1,
                     "executionNumber": 1, "statusDetails": {}}  # fmt: skip
        self.executions.append(execution)
        return execution

    def notify(self, broker: object) -> None:
        """Publish notify-next, as AWS IoT does when the next job changes."""
        pending = self.pending()
        body = {"timestamp": 1}
        if pending is not None:
            body["execution"] = pending
        broker.deliver((self.prefix + "jobs/notify-next").encode(), json.dumps(body).encode())

    def pending(self) -> object:
        for execution in self.executions:
            if execution["status"] in ("QUEUED", "IN_PROGRESS"):
                return execution
        return None

    def status(self, job_id: str) -> str:
        for execution in self.executions:
            if execution["jobId"] == job_id:
                return execution["status"]
        return ""

    def reply(self, broker: object, topic: str, body: dict) -> None:
        broker.deliver((self.prefix + topic).encode(), json.dumps(body).encode(), 0)

    def request(self, broker: object, topic: bytes, raw: bytes) -> None:
        topic = str(topic, "utf-8")
        if not topic.startswith(self.prefix) or self.silent:
            return
        topic = topic[len(self.prefix) :]
        body = json.loads(raw)
        if topic == "jobs/start-next":
            answer = {"clientToken": body["clientToken"], "timestamp": 2}
            pending = self.pending()
            if pending is not None:
                pending["status"] = "IN_PROGRESS"
                pending["statusDetails"] = body.get("statusDetails", {})
                answer["execution"] = pending
            self.reply(broker, "jobs/start-next/accepted", answer)
        elif topic.startswith("jobs/") and topic.endswith("/update"):
            job_id = topic[5:-7]
            for execution in self.executions:
                if execution["jobId"] == job_id and execution["status"] == "IN_PROGRESS":
                    execution["status"] = body["status"]
                    execution["statusDetails"] = body.get("statusDetails", {})
                    self.updates.append((job_id, body["status"], execution["statusDetails"]))
                    answer = {"clientToken": body.get("clientToken"), "timestamp": 3}
                    self.reply(broker, topic + "/accepted", answer)
                    return
            self.reply(broker, topic + "/rejected", {"clientToken": body.get("clientToken"),
                       "code": "InvalidStateTransition", "message": "not in progress"})  # fmt: skip
        elif topic.startswith("streams/") and topic.endswith("/get/json"):
            stream_id = topic[8:-9]
            files = self.streams.get(stream_id)
            base = "streams/" + stream_id
            if files is None or body["f"] not in files:
                self.reply(
                    broker,
                    base + "/rejected/json",
                    {"o": "ResourceNotFound", "m": "no such stream", "c": body["c"]},
                )
                return
            data = files[body["f"]]
            size = body["l"]
            assert 256 <= size <= 131072, "AWS IoT takes block sizes of 256..131072"
            for index in range(body["o"], body["o"] + body.get("n", 1)):
                if index * size >= len(data):
                    self.reply(
                        broker,
                        base + "/rejected/json",
                        {"o": "OffsetOutOfBounds", "m": "offset", "c": body["c"]},
                    )
                    return
                if self.cut_after_blocks is not None and self.blocks >= self.cut_after_blocks:
                    self.cut_after_blocks = None
                    raise PowerCut()
                block = data[index * size : (index + 1) * size]
                payload = {"c": body["c"], "f": body["f"], "l": len(block), "i": index,
                           "p": str(binascii.b2a_base64(block), "ascii").strip()}  # fmt: skip
                raw = json.dumps(payload).encode()
                self.blocks += 1
                self.block_bytes += len(raw)
                broker.deliver((self.prefix + base + "/data/json").encode(), raw, 0)


class FileOps:
    """os with rename/remove counted: a PowerCut before operation number `cut_at`."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.count = 0
        self.cut_at = None

    def _tick(self) -> None:
        self.count += 1
        if self.cut_at is not None and self.count >= self.cut_at:
            self.cut_at = None
            raise PowerCut()

    def rename(self, a: str, b: str) -> None:
        self._tick()
        self.real.rename(a, b)

    def remove(self, path: str) -> None:
        self._tick()
        self.real.remove(path)

    def stat(self, path: str) -> object:
        return self.real.stat(path)

    def statvfs(self, path: str) -> object:
        return self.real.statvfs(path)

    def listdir(self, path: str) -> list:
        return self.real.listdir(path)

    def mkdir(self, path: str) -> None:
        self.real.mkdir(path)


class NTP:
    """ntptime-like."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = 0
        self.host = "pool.ntp.org"
        self.timeout = 1

    def settime(self) -> None:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise OSError(110)


class WDT:
    """machine.WDT-like: counts feeds; ESP8266 accepts only the default timeout."""

    made = []  # noqa: RUF012 (a plain list: MicroPython has no typing.ClassVar)

    def __init__(self, id: int = 0, timeout: int = 5000) -> None:
        assert timeout == 5000, "ESP8266: the timeout is fixed"
        self.feeds = 0
        WDT.made.append(self)

    def feed(self) -> None:
        self.feeds += 1


class Module:
    """A stand-in module object for sys.modules."""


class TLS:
    """ssl/tls-module-like: records what the firmware loads into its context."""

    PROTOCOL_TLS_CLIENT = 0
    CERT_REQUIRED = 2

    def __init__(self, verify: bool = True) -> None:
        self.contexts = []
        tls = self

        class SSLContext:
            def __init__(self, protocol: int) -> None:
                self.protocol = protocol
                self.chain = None
                self.cadata = None
                self.verify_mode = 0
                tls.contexts.append(self)

            def load_cert_chain(self, certfile: object, keyfile: object) -> None:
                self.chain = (certfile, keyfile)

            def wrap_socket(self, sock: object, server_side: bool = False,
                            do_handshake_on_connect: bool = True,
                            server_hostname: object = None) -> object:  # fmt: skip
                return sock

        if verify:

            def load_verify_locations(self: object, cafile: object = None,
                                      cadata: object = None) -> None:  # fmt: skip
                self.cadata = cadata

            SSLContext.load_verify_locations = load_verify_locations
        self.SSLContext = SSLContext


def install(broker: object, wlan: object, ntp: object) -> dict:
    """Put fake network, machine, ntptime, umqtt.simple into sys.modules; return the old ones."""
    net = Module()
    net.STA_IF = 0
    net.AP_IF = 1
    net.WLAN = lambda _iface=0: wlan
    mach = Module()
    mach.WDT = WDT
    mach.unique_id = lambda: b"\x01\x02\xab\xcd"
    mach.reset = reset
    umqtt = Module()
    simple = Module()
    simple.MQTTClient = broker.factory()
    simple.MQTTException = Exception
    umqtt.simple = simple
    new = {"network": net, "machine": mach, "ntptime": ntp, "umqtt": umqtt,
           "umqtt.simple": simple}  # fmt: skip
    old = {}
    for k in new:
        old[k] = sys.modules.get(k)
        sys.modules[k] = new[k]
    return old


def uninstall(old: dict) -> None:
    """Undo install()."""
    for k in old:
        if old[k] is None:
            sys.modules.pop(k, None)
        else:
            sys.modules[k] = old[k]
