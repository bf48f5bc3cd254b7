# mypy: ignore-errors
# (MicroPython program: no typing module there, so it is not type-checked)
"""Device test cases, run unchanged under MicroPython (WebAssembly) and CPython.

Each case_* function raises AssertionError on failure. No typing imports, no
pathlib or contextlib: MicroPython has neither.
"""
# ruff: noqa: PTH102, PTH107, PTH123, PTH208, SIM105

import json

import fakes
import smsboot
import smscore
import smslink
import smstext

THING = "dev-1"
PHONE = "+15551234567"
T_IN = b"sms/dev-1/inbound"
T_OUT = b"sms/dev-1/outbound"
T_ACK = b"sms/dev-1/ack"
T_REDELIVER = b"sms/dev-1/redeliver"
T_SHADOW = b"$aws/things/dev-1/shadow/update"
T_JOBS = b"$aws/things/dev-1/jobs/notify-next"
OOZY = "Oozy rat in a sanitary zoo."
TMP = "/tmp"  # the host points this at pytest's tmp_path
BOARD = "/board"  # where device/board is mounted; the host points it at the real folder
ENDPOINT = "abc-ats.iot.eu-west-1.amazonaws.com"


def config(**kw: object) -> dict:
    cfg = {"wifi_ssid": "lab", "wifi_password": "pw", "endpoint": ENDPOINT, "thing": THING}
    for k in kw:
        cfg[k] = kw[k]
    return smsboot.load_config(json.dumps(cfg))


def inbound(i: str = "SM1", body: str = OOZY, media: object = None, **kw: object) -> bytes:
    m = {"Type": "Incoming", "Id": i, "From": PHONE, "To": "+15557654321", "Body": body,
         "Media": media if media is not None else []}  # fmt: skip
    for k in kw:
        m[k] = kw[k]
    return smscore._dumps(m).encode()  # raw UTF-8, as the receive Lambda writes it


class Rig:
    """A device wired to fakes, with its log captured."""

    def __init__(self, handle: object = None, **cfg: object) -> None:
        import app

        self.clock = fakes.Clock()
        self.wlan = fakes.WLAN(self.clock)
        self.broker = fakes.Broker(self.wlan)
        self.ntp = fakes.NTP()
        self.lines = []
        self.n = 0
        fakes.WDT.made = []
        self.dev = smslink.Device(
            config=config(**cfg), handle=handle or app.handle, mqtt=self.broker.factory(),
            wlan=self.wlan, clock=self.clock, ntp=self.ntp, wdt=fakes.WDT, rand=self.rand,
            uid=b"\xde\xad", log=self.lines.append,
        )  # fmt: skip

    def rand(self) -> int:
        self.n += 1
        return (self.n * 2654435761) & 0x3FFFFFFF

    def replies(self) -> list:
        return [json.loads(str(m, "utf-8")) for m in self.broker.outbound(T_OUT)]

    def connected(self) -> "Rig":
        self.dev.run(1)
        assert self.dev.client is not None, self.lines
        return self


# --- pure logic -------------------------------------------------------------


def case_reverse_ascii() -> None:
    assert smstext.reverse(OOZY) == ".ooz yratinas a ni tar yzoO"
    assert smstext.reverse("") == ""
    assert smstext.reverse("a") == "a"


def case_reverse_unicode() -> None:
    r = smstext.reverse
    assert r("héllo wörld") == "dlröw olléh"
    assert r("a😀b") == "b😀a"
    assert r("日本語") == "語本日"
    assert r("Привет") == "тевирП"


def case_reverse_clusters() -> None:
    r = smstext.reverse
    family = "👨\u200d👩\u200d👧"  # one emoji made of three people and two joiners
    assert r("x" + family + "y") == "y" + family + "x"
    assert r("🇫🇷🇩🇪") == "🇩🇪🇫🇷"  # flags are pairs of regional indicators
    assert r("👍🏽!") == "!👍🏽"  # skin tone stays on its hand
    assert r("e\u0301a") == "ae\u0301"  # combining accent stays on its letter
    assert r("1\ufe0f\u20e3 go") == "og 1\ufe0f\u20e3"  # keycap
    assert r("❤\ufe0f ok") == "ko ❤\ufe0f"  # variation selector
    assert r("a\r\nb") == "b\r\na"
    assert r("🏳\ufe0f\u200d🌈x") == "x🏳\ufe0f\u200d🌈"


def case_reverse_is_permutation() -> None:
    pool = "aZ é😀\u0301\u200d🇫🇷\r\n語\ufe0f🏽"
    seed = 7
    for _ in range(200):
        s = ""
        for _ in range(seed % 13):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            s += pool[seed % len(pool)]
        out = smstext.reverse(s)
        assert len(out.encode()) == len(s.encode())
        assert sorted(out) == sorted(s)


def case_parse_valid() -> None:
    m = smscore.parse_inbound(inbound(body="hi 😀", Extra=1))
    assert m["Id"] == "SM1" and m["Body"] == "hi 😀" and m["Media"] == []
    mms = [{"Url": "https://x/1.jpg", "ContentType": "image/jpeg"}]
    m = smscore.parse_inbound(inbound(media=mms, body=""))
    assert m["Media"][0]["Url"] == "https://x/1.jpg"
    # Media may be absent: treated as an SMS
    raw = b'{"Type":"Incoming","Id":"a","From":"+1","To":"+2","Body":"x"}'
    assert smscore.parse_inbound(raw)["Media"] == []


BAD = (
    (b"not json", "not json"),
    (b"\xff\xfe{}", "not utf-8"),
    (b'{"Type":"Incoming","Id":"a","From":"+1","To":"+2","Body":"\xc3"}', "not utf-8"),
    (b"[1,2]", "not an object"),
    (b"", "not json"),
    (b'{"Type":"Outgoing","Id":"a","From":"+1","To":"+2","Body":"x"}', "bad Type"),
    (b'{"Type":"Incoming","From":"+1","To":"+2","Body":"x"}', "bad Id"),
    (b'{"Type":"Incoming","Id":7,"From":"+1","To":"+2","Body":"x"}', "bad Id"),
    (b'{"Type":"Incoming","Id":"a","To":"+2","Body":"x"}', "bad From"),
    (b'{"Type":"Incoming","Id":"a","From":"+1","Body":"x"}', "bad To"),
    (b'{"Type":"Incoming","Id":"a","From":"+1","To":"+2"}', "bad Body"),
    (b'{"Type":"Incoming","Id":"a","From":"+1","To":"+2","Body":5}', "bad Body"),
    (b'{"Type":"Incoming","Id":"a","From":"+1","To":"+2","Body":"x","Media":{}}', "bad Media"),
    (b'{"Type":"Incoming","Id":"a","From":"+1","To":"+2","Body":"x","Media":[{}]}', "bad Media"),
    (b'{"Type":"Incoming","Id":"a","From":"+1","To":"+2","Body":"x","Media":[3]}', "bad Media"),
)


def case_parse_bad() -> None:
    for raw, reason in BAD:
        try:
            smscore.parse_inbound(raw)
        except smscore.Drop as e:
            assert e.args[0] == reason, (raw, e.args[0])
        else:
            raise AssertionError(raw)


def case_parse_oversized() -> None:
    for body in ("x" * 1601, "é" * 1601):
        try:
            smscore.parse_inbound(inbound(body=body))
        except smscore.Drop as e:
            assert e.args[0] == "body too long"
        else:
            raise AssertionError(len(body))
    # A payload of exactly MAX_RAW bytes (the most the cloud publishes) is taken whole;
    # one byte more is dropped undecoded.
    envelope = len(inbound(body=""))
    emoji = (smscore.MAX_RAW - envelope) // 4
    body = "😀" * emoji + "x" * (smscore.MAX_RAW - envelope - 4 * emoji)
    raw = inbound(body=body)
    assert len(raw) == smscore.MAX_RAW
    assert smscore.parse_inbound(raw)["Body"] == body
    try:
        smscore.parse_inbound(inbound(body=body + "x"))
    except smscore.Drop as e:
        assert e.args[0] == "too big"
    else:
        raise AssertionError("one byte over")
    try:
        smscore.parse_inbound(b" " * (smscore.MAX_RAW + 1))
    except smscore.Drop as e:
        assert e.args[0] == "too big"
    else:
        raise AssertionError("too big")


def case_outgoing_raw_utf8() -> None:
    raw = smscore.outgoing("SM1:r0", PHONE, 'ça 😀 "q"\n', "https://x/y.png")
    assert isinstance(raw, bytes)
    assert "😀".encode() in raw and b"\\u" not in raw
    d = json.loads(str(raw, "utf-8"))
    assert d == {"Type": "Outgoing", "Id": "SM1:r0", "To": PHONE, "Body": "ça 😀 \"q\"\n",
                 "MediaUrl": "https://x/y.png"}  # fmt: skip
    assert "MediaUrl" not in json.loads(smscore.outgoing("i", PHONE, "b"))


def case_reply_for() -> None:
    m = smscore.parse_inbound(inbound(i="SMab"))
    assert smscore.reply_for(m, None) is None
    assert smscore.reply_for(m, "") is None
    d = json.loads(smscore.reply_for(m, "yo"))
    assert d["Id"] == "SMab:r0" and d["To"] == PHONE and d["Body"] == "yo"
    d = json.loads(smscore.reply_for(m, {"Image": "https://i"}))
    assert d["MediaUrl"] == "https://i" and d["Body"] == ""
    for bad in (5, {"Body": 3}, {"Body": "x" * 1601}, {"MediaUrl": 4}):
        try:
            smscore.reply_for(m, bad)
        except smscore.Drop:
            pass
        else:
            raise AssertionError(bad)


def case_config_defaults() -> None:
    cfg = config()
    assert cfg["port"] == 8883 and cfg["topic_prefix"] == "sms"
    assert cfg["key_file"] == "device.key.der" and cfg["cert_file"] == "device.crt.der"
    assert cfg["ca_file"] == "AmazonRootCA1.der" and cfg["boot_message"] is None
    assert cfg["shadow_interval_s"] == 300
    dev = Rig().dev
    assert (dev.topic_in, dev.topic_out, dev.topic_shadow) == (T_IN, T_OUT, T_SHADOW)
    dev = Rig(topic_prefix="x").dev
    assert dev.topic_in == b"x/dev-1/inbound" and dev.topic_out == b"x/dev-1/outbound"
    assert config(wifi_password="")["wifi_password"] == ""
    for bad in ('{"wifi_ssid":"a"}', "[]", "nope"):
        try:
            smsboot.load_config(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(bad)
    for kw in ({"port": "1"}, {"shadow_interval_s": 0}, {"boot_message": {"To": "+1"}},
               {"thing": ""}):  # fmt: skip
        try:
            config(**kw)
        except ValueError:
            pass
        else:
            raise AssertionError(kw)


def case_backoff() -> None:
    prev = 0
    for a in range(12):
        lo = smscore.backoff_ms(a, 0)
        hi = smscore.backoff_ms(a, (1 << 30) - 1)
        assert lo <= hi <= 120000 and lo >= prev // 2
        assert smscore.backoff_ms(a, 12345) >= lo
        prev = lo
    assert smscore.backoff_ms(0, 0) == 500 and smscore.backoff_ms(1, 0) == 1000
    assert smscore.backoff_ms(40, 7) <= 120000 and smscore.backoff_ms(40, 0) == 60000


def case_shadow() -> None:
    d = json.loads(smscore.shadow("1.0.0", 20000, -61, 42))
    assert d == {"state": {"reported": {"firmware": "1.0.0", "mem_free": 20000, "rssi": -61,
                                        "uptime_s": 42}}}  # fmt: skip


# --- the loop against fakes -------------------------------------------------


def case_connect_and_reply() -> None:
    rig = Rig().connected()
    b = rig.broker
    c = b.clients[0]
    assert (c.client_id, c.server, c.port, c.keepalive) == (THING, ENDPOINT, 8883, 60)
    assert b.connects == [(THING, False, 0)]  # clean_session=False
    assert b.sessions[THING]["subs"] == {T_IN: 1, T_JOBS: 1}
    assert rig.ntp.calls == 1
    assert len(b.outbound(T_SHADOW)) == 1
    b.deliver(T_IN, inbound())
    rig.dev.run(3)
    assert rig.replies() == [{"Type": "Outgoing", "Id": "SM1:r0", "To": PHONE,
                              "Body": ".ooz yratinas a ni tar yzoO"}]  # fmt: skip
    assert b.sessions[THING]["queue"] == []  # acknowledged


def case_mms_and_unicode_reply() -> None:
    rig = Rig().connected()
    media = [{"Url": "https://m/1.jpg", "ContentType": "image/jpeg"},
             {"Url": "https://m/2.jpg", "ContentType": "image/jpeg"}]  # fmt: skip
    rig.broker.deliver(T_IN, inbound("MM1", "héllo 👍🏽", media))
    rig.broker.deliver(T_IN, inbound("MM2", "", media[1:]))
    rig.dev.run(3)
    r = rig.replies()
    assert r[0]["Body"] == "🏽👍 olléh"[2:] or r[0]["Body"] == "👍🏽 olléh"
    assert r[0]["Body"] == "👍🏽 olléh" and r[0]["MediaUrl"] == "https://m/1.jpg"
    assert r[0]["Id"] == "MM1:r0"
    assert r[1] == {"Type": "Outgoing", "Id": "MM2:r0", "To": PHONE, "Body": "",
                    "MediaUrl": "https://m/2.jpg"}  # fmt: skip
    assert b"\\u" not in rig.broker.outbound(T_OUT)[0]


def case_bad_inputs_never_stop() -> None:
    rig = Rig().connected()
    for raw, _ in BAD:
        rig.broker.deliver(T_IN, raw)
    rig.broker.deliver(T_IN, inbound(body="x" * 1601))
    rig.broker.deliver(T_IN, inbound("SMok", "ab"))
    rig.dev.run(len(BAD) + 5)
    drops = [ln for ln in rig.lines if ln.startswith("drop:")]
    assert len(drops) == len(BAD) + 1, drops
    for ln in drops:
        assert PHONE not in ln and "+1" not in ln and "xxx" not in ln
    assert [r["Id"] for r in rig.replies()] == ["SMok:r0"]
    assert rig.broker.sessions[THING]["queue"] == []  # bad ones acked, never redelivered
    assert rig.dev.fails == 0 and len(rig.broker.connects) == 1


def case_app_errors_are_dropped() -> None:
    def handle(m: dict) -> object:
        if m["Body"] == "boom":
            raise KeyError(m["From"])
        if m["Body"] == "weird":
            return 42
        return "ok"

    rig = Rig(handle).connected()
    for i, body in (("A", "boom"), ("B", "weird"), ("C", "fine")):
        rig.broker.deliver(T_IN, inbound(i, body))
    rig.dev.run(4)
    assert [r["Id"] for r in rig.replies()] == ["C:r0"]
    assert "drop: app KeyError" in rig.lines and "drop: bad reply" in rig.lines
    assert all(PHONE not in ln for ln in rig.lines)


def case_no_reply_when_app_returns_none() -> None:
    rig = Rig(lambda _m: None).connected()
    rig.broker.deliver(T_IN, inbound())
    rig.dev.run(2)
    assert rig.replies() == [] and rig.broker.sessions[THING]["queue"] == []


def case_other_topics_ignored() -> None:
    rig = Rig().connected()
    rig.broker.sessions[THING]["subs"][b"other"] = 1
    rig.broker.deliver(b"other", inbound())
    rig.dev.run(2)
    assert rig.replies() == [] and rig.dev.dropped == 0


def case_every_message_taken_is_acked_by_id() -> None:
    # answered, unanswered (app returns None) and a failing app alike: the device took
    # them, so each leaves the cloud's mailbox; an undecodable payload has no Id to confirm
    def handle(m: dict) -> object:
        if m["Body"] == "boom":
            raise ValueError("app bug")
        return None if m["Body"] == "quiet" else "ok"

    rig = Rig(handle).connected()
    for i, body in (("SMa", "hi"), ("SMb", "quiet"), ("SMc", "boom")):
        rig.broker.deliver(T_IN, inbound(i, body))
    rig.broker.deliver(T_IN, b"\xff not utf-8")
    rig.dev.run(6)
    acks = [json.loads(str(m, "utf-8")) for m in rig.broker.outbound(T_ACK)]
    assert acks == [{"Id": "SMa"}, {"Id": "SMb"}, {"Id": "SMc"}], acks
    assert [r["Id"] for r in rig.replies()] == ["SMa:r0"]
    order = [p[1] for p in rig.broker.published if p[1] in (T_OUT, T_ACK)]
    assert order[:2] == [T_OUT, T_ACK]  # the reply goes out before the message is confirmed


def case_new_session_asks_for_redelivery_resumed_does_not() -> None:
    rig = Rig().connected()
    b = rig.broker
    assert b.connects[-1][2] == 0  # the first connection has no session
    assert len(b.outbound(T_REDELIVER)) == 1
    subscribed = [i for i, p in enumerate(b.published) if p[1] == T_REDELIVER]
    assert b.sessions[THING]["subs"].get(T_IN) == 1 and subscribed  # asked once subscribed
    b.fault("ping")  # the link drops; the broker keeps the session
    rig.clock.advance(rig.dev.keepalive * 1000)
    rig.dev.run(4)
    assert b.connects[-1][2] == 1 and len(b.outbound(T_REDELIVER)) == 1  # resumed: no ask
    del b.sessions[THING]  # the session expires while the board is away
    b.fault("ping")
    rig.clock.advance(rig.dev.keepalive * 1000)
    rig.dev.run(4)
    assert b.connects[-1][2] == 0 and len(b.outbound(T_REDELIVER)) == 2


def case_publish_drop_redelivers_same_id() -> None:
    rig = Rig().connected()
    b = rig.broker
    b.deliver(T_IN, inbound("SMx"))
    b.fault("publish")  # the reply's publish fails: no PUBACK, broker keeps the message
    rig.dev.run(1)
    assert rig.dev.client is None and rig.dev.fails == 1
    assert rig.clock.slept[-1] <= 1000
    assert any(ln.startswith("net: OSError 104") for ln in rig.lines)
    rig.dev.run(4)
    assert [r["Id"] for r in rig.replies()] == ["SMx:r0"]
    assert b.connects[-1] == (THING, False, 1)  # session resumed
    assert rig.dev.fails == 0


def case_ack_lost_duplicate_reply_same_id() -> None:
    rig = Rig().connected()
    b = rig.broker
    b.deliver(T_IN, inbound("SMd"))
    b.fault("ack")  # reply went out, then the link died before the PUBACK
    rig.dev.run(5)
    ids = [r["Id"] for r in rig.replies()]
    assert ids == ["SMd:r0", "SMd:r0"], ids  # redelivered: same Id, the cloud sends once


def case_redelivered_inbound_same_reply_id() -> None:
    rig = Rig().connected()
    rig.broker.deliver(T_IN, inbound("SMdup"))
    rig.broker.deliver(T_IN, inbound("SMdup"))
    rig.dev.run(3)
    assert [r["Id"] for r in rig.replies()] == ["SMdup:r0", "SMdup:r0"]


def case_check_msg_error_reconnects_with_backoff() -> None:
    rig = Rig().connected()
    b = rig.broker
    b.fault("check_msg")
    b.fault("connect", 3)
    rig.dev.run(5)
    waits = [int(ln.split("retry in ")[1].split()[0]) for ln in rig.lines if "retry in" in ln]
    assert len(waits) == 4, rig.lines
    for a, w in enumerate(waits):
        assert smscore.backoff_ms(a, 0) <= w <= 2 * smscore.backoff_ms(a, 0)
    assert waits[3] >= 4000
    assert rig.dev.client is not None and rig.dev.fails == 0
    assert sum(rig.clock.slept) >= sum(waits)


def case_broker_down_long_never_exits() -> None:
    rig = Rig().connected()
    rig.broker.down = True
    rig.dev.run(30)
    assert rig.dev.client is None and rig.dev.fails == 30
    assert max(rig.clock.slept) <= 500  # sleeps sliced (0.5 s) so the watchdog is fed
    rig.broker.down = False
    rig.dev.run(1)
    assert rig.dev.client is not None


def case_wifi_flap() -> None:
    rig = Rig().connected()
    rig.wlan.drop()
    rig.wlan.refuse = 2  # the next two joins time out
    rig.broker.deliver(T_IN, inbound("SMw"))
    rig.dev.run(1)
    assert rig.dev.client is None
    assert "net: OSError 113" in rig.lines[-1]
    rig.dev.run(2)  # two Wi-Fi timeouts
    assert sum(1 for ln in rig.lines if "OSError 110" in ln) == 2
    rig.dev.run(3)
    assert rig.wlan.connects == 4 and rig.dev.client is not None
    assert [r["Id"] for r in rig.replies()] == ["SMw:r0"]


def case_stalled_handshake_times_out_and_retries() -> None:
    # A peer that accepts TCP but never answers the TLS/MQTT handshake: umqtt's
    # connect(timeout=) gives up, the board logs, backs off and tries again.
    rig = Rig()
    rig.broker.stall = True
    rig.broker.clock = rig.clock
    rig.dev.run(3)  # fakes.Hang (a BaseException) would escape if connect could block forever
    assert rig.dev.client is None and rig.dev.fails == 3
    timeouts = [ln for ln in rig.lines if ln.startswith("net: OSError 110, retry in")]
    assert len(timeouts) == 3, rig.lines
    assert fakes.WDT.made == []  # the watchdog is still not armed
    assert rig.broker.clients[0].port == 8883 or rig.broker.clients[0].port == 1883
    rig.broker.stall = False
    rig.dev.run(1)
    assert rig.dev.client is not None and rig.dev.fails == 0
    assert len(fakes.WDT.made) == 1


def case_connect_without_timeout_would_hang() -> None:
    # The fake itself: a connect without a timeout to a silent peer is a hang.
    broker = fakes.Broker()
    broker.stall = True
    client = broker.factory()(THING, "e")
    try:
        client.connect(False)
    except fakes.Hang:
        pass
    else:
        raise AssertionError("no hang")


def case_ntp_failure_then_recovery() -> None:
    rig = Rig()
    rig.ntp.fail = 2
    rig.dev.run(3)
    assert rig.ntp.calls == 3 and rig.dev.client is not None
    assert rig.broker.connects and len(rig.broker.connects) == 1


def case_keepalive_and_shadow_timers() -> None:
    rig = Rig(shadow_interval_s=120).connected()
    b = rig.broker
    assert b.pings == 0
    rig.clock.advance(31000)  # past half the keep-alive
    rig.dev.run(1)
    assert b.pings == 1
    rig.dev.run(1)
    assert b.pings == 1
    rig.clock.advance(90000)
    rig.dev.run(1)
    shadows = b.outbound(T_SHADOW)
    assert len(shadows) == 2
    rep = json.loads(shadows[1])["state"]["reported"]
    assert rep["firmware"] == smslink.FIRMWARE and rep["rssi"] == -61
    assert rep["uptime_s"] >= 121 and (rep["mem_free"] is None or rep["mem_free"] > 0)


def case_watchdog_armed_after_connect_and_fed() -> None:
    rig = Rig()
    rig.broker.fault("connect")
    rig.dev.run(1)
    assert fakes.WDT.made == []  # not armed before a connection ever worked
    rig.dev.run(1)
    assert len(fakes.WDT.made) == 1
    w = fakes.WDT.made[0]
    f = w.feeds
    rig.dev.run(10)
    assert w.feeds >= f + 10
    rig.broker.fault("check_msg")
    rig.dev.run(2)
    assert len(fakes.WDT.made) == 1  # armed once


def case_boot_message_unique_ids() -> None:
    bm = {"To": PHONE, "Body": "booted ✓"}
    rig = Rig(boot_message=bm)
    rig.broker.fault("publish")  # the first boot publish fails: retried with the same Id
    rig.dev.run(3)
    boots = rig.replies()
    assert len(boots) == 1 and boots[0]["Body"] == "booted ✓", boots
    assert boots[0]["Id"].startswith(THING + "-dead-")
    assert [p[4] for p in rig.broker.published if p[1] == T_OUT] == [1]  # QoS 1
    rig2 = Rig(boot_message=bm)
    rig2.n = 99  # another boot, another random
    rig2.dev.__init__(config=rig2.dev.config, handle=rig2.dev.handle, mqtt=rig2.broker.factory(),
                      wlan=rig2.wlan, clock=rig2.clock, ntp=rig2.ntp, rand=rig2.rand,
                      uid=b"\xde\xad")  # fmt: skip
    assert rig2.dev.id_prefix != rig.dev.id_prefix
    a = rig.dev.send(PHONE, "one")
    b = rig.dev.send(PHONE, "two")
    assert len({a, b, boots[0]["Id"]}) == 3


def case_stop_flag_and_max_iter() -> None:
    rig = Rig()
    rig.dev.run(7)
    assert rig.dev.client is not None  # max_iter keeps the session

    def handle(m: dict) -> object:
        rig.dev.stop()
        return "bye"

    rig.dev.handle = handle
    rig.broker.deliver(T_IN, inbound("SMs"))
    rig.dev.run(0)  # forever, until the app calls stop()
    assert rig.dev.client is None and not rig.broker.clients[0].connected
    assert [r["Body"] for r in rig.replies()] == ["bye"]


def case_main_wires_real_modules() -> None:
    import os

    clock = fakes.Clock()
    wlan = fakes.WLAN(clock)
    broker = fakes.Broker(wlan)
    broker.jobs = fakes.Jobs(THING)
    ntp = fakes.NTP()
    tls = fakes.TLS()
    d = TMP + "/smsdev_main"
    try:
        os.mkdir(d)
    except OSError:
        pass
    files = {"device.crt.der": b"CRT", "device.key.der": b"KEY", "AmazonRootCA1.der": b"CA"}
    for name in files:
        with open(d + "/" + name, "wb") as f:
            f.write(files[name])
    cfg = {"wifi_ssid": "lab", "wifi_password": "pw", "endpoint": "e-ats.iot", "thing": THING,
           "cert_file": d + "/device.crt.der", "key_file": d + "/device.key.der",
           "ca_file": d + "/AmazonRootCA1.der",
           "boot_message": {"To": PHONE, "Body": "hi"}}  # fmt: skip
    with open(d + "/config.json", "w") as f:
        f.write(json.dumps(cfg))
    old = fakes.install(broker, wlan, ntp)
    try:
        dev = smsboot.build(d + "/config.json", clock, tls)
    finally:
        fakes.uninstall(old)
    dev.run(3)
    dev.close()
    ctx = tls.contexts[0]
    assert ctx.chain == (b"CRT", b"KEY") and ctx.cadata == b"CA" and ctx.verify_mode == 2
    c = broker.clients[0]
    assert c.ssl is ctx and c.port == 8883 and c.client_id == THING
    assert dev.id_prefix.startswith(THING + "-0102abcd-")
    assert broker.connects == [(THING, False, 0)] and ntp.calls == 1
    assert not c.connected  # close() disconnects
    assert len(broker.outbound(T_OUT)) == 1


def case_tls_without_verify_support() -> None:
    import os

    tls = fakes.TLS(verify=False)
    d = TMP + "/smsdev_tls"
    try:
        os.mkdir(d)
    except OSError:
        pass
    for name in ("c", "k", "a"):
        with open(d + "/" + name, "wb") as f:
            f.write(name.encode())
    lines = []
    ctx = smsboot.tls_context({"cert_file": d + "/c", "key_file": d + "/k", "ca_file": d + "/a"},
                              tls, lines.append)  # fmt: skip
    assert ctx.chain == (b"c", b"k") and ctx.verify_mode == 0
    assert lines == ["tls: this port cannot verify the server certificate"]


def case_main_py_boots_and_drops_boot_code() -> None:
    import os
    import sys

    clock = fakes.Clock()
    wlan = fakes.WLAN(clock)
    broker = fakes.Broker(wlan)
    broker.jobs = fakes.Jobs(THING)
    d = TMP + "/smsdev_boot"
    try:
        os.mkdir(d)
    except OSError:
        pass
    for name in ("device.crt.der", "device.key.der", "AmazonRootCA1.der"):
        with open(d + "/" + name, "wb") as f:
            f.write(b"x")
    cfg = {"wifi_ssid": "a", "wifi_password": "b", "endpoint": "e", "thing": THING,
           "cert_file": d + "/device.crt.der", "key_file": d + "/device.key.der",
           "ca_file": d + "/AmazonRootCA1.der"}  # fmt: skip
    with open(d + "/config.json", "w") as f:
        f.write(json.dumps(cfg))
    with open(BOARD + "/main.py") as f:
        src = f.read()
    real_run = smslink.Device.run
    real_build = smsboot.build
    tls = fakes.TLS()

    def run(self: object, max_iter: int = 0) -> None:
        real_run(self, 3)  # main.py runs forever; three iterations are enough here

    def build(path: str = "config.json") -> object:
        return real_build(d + "/" + path, clock, tls)

    old = fakes.install(broker, wlan, fakes.NTP())
    smslink.Device.run = run
    smsboot.build = build
    try:
        exec(src, {"__name__": "__main__"})  # noqa: S102 (runs the board's own main.py)
    finally:
        smslink.Device.run = real_run
        smsboot.build = real_build
        sys.modules["smsboot"] = smsboot
        fakes.uninstall(old)
    assert broker.connects == [(THING, False, 0)]
    assert not broker.clients[0].connected  # main.py closes on the way out


def names() -> list:
    """All case names, in file order where the port keeps it."""
    g = globals()
    return sorted(k for k in g if k.startswith("case_"))


# --- over-the-air updates ---------------------------------------------------

APPS = "/t/apps"  # compiled test apps (.mpy); under CPython the host puts source there


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _sha256(data: bytes) -> str:
    import binascii
    import hashlib

    return str(binascii.hexlify(hashlib.sha256(data).digest()), "ascii")


class OtaRig:
    """A board booted by smsboot from its own folder, with AWS IoT Jobs and streams faked.

    A reset (machine.reset) or a power cut boots it again from what is on its
    "flash" (the folder): modules are imported afresh, the broker keeps the session.
    """

    def __init__(self, name: str, app: str = "app") -> None:
        import os
        import sys

        self.root = TMP + "/" + name + "/"
        try:
            os.mkdir(self.root[:-1])
        except OSError:
            pass
        for leftover in os.listdir(self.root[:-1]):
            os.remove(self.root + leftover)
        self.old = _read(APPS + "/" + app + ".mpy")
        _write(self.root + "app.mpy", self.old)
        for der in ("device.crt.der", "device.key.der", "AmazonRootCA1.der"):
            _write(self.root + der, b"x")
        cfg = {"wifi_ssid": "lab", "wifi_password": "pw", "endpoint": ENDPOINT, "thing": THING,
               "cert_file": self.root + "device.crt.der", "key_file": self.root + "device.key.der",
               "ca_file": self.root + "AmazonRootCA1.der"}  # fmt: skip
        _write(self.root + "config.json", json.dumps(cfg).encode())
        self.clock = fakes.Clock()
        self.wlan = fakes.WLAN(self.clock)
        self.broker = fakes.Broker(self.wlan)
        self.jobs = fakes.Jobs(THING)
        self.broker.jobs = self.jobs
        self.lines = []
        self.boots = 0
        self.resets = 0
        self.cuts = 0
        # os as the firmware sees it: renames and removes counted for power cuts
        self.os = fakes.FileOps(os)
        sys.modules["os"] = self.os
        sys.path.insert(0, self.root[:-1])
        self.boot()

    def __enter__(self) -> "OtaRig":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        import sys

        sys.path.remove(self.root[:-1])
        sys.modules.pop("app", None)
        sys.modules["os"] = self.os.real

    def cut_power_at(self, op: int) -> None:
        """Make the op-th file rename or remove from now on a power cut."""
        self.os.count = 0
        self.os.cut_at = op

    def boot(self) -> None:
        import sys

        while True:
            self.boots += 1
            sys.modules.pop("app", None)  # a restart loads the app from flash again
            old = fakes.install(self.broker, self.wlan, fakes.NTP())
            try:
                self.dev = smsboot.build(self.root + "config.json", self.clock, fakes.TLS(),
                                         self.root, fakes.reset)  # fmt: skip
                break
            except fakes.Reset:  # smsboot rolled back an app that failed to import
                self.resets += 1
            finally:
                fakes.uninstall(old)
        self.dev.log = self.lines.append

    def run(self, turns: int) -> None:
        """Run the loop; a reset or power cut boots the board again, as the real one does."""
        for _ in range(turns):
            try:
                self.dev.run(1)
            except fakes.Reset:
                self.resets += 1
                self.boot()
            except fakes.PowerCut:
                self.cuts += 1
                self.boot()

    def app_file(self) -> bytes:
        return _read(self.root + "app.mpy")

    def files(self) -> list:
        import os

        return sorted(n for n in os.listdir(self.root[:-1]) if n[:3] in ("app", "ota"))

    def offer(self, job_id: str, payload: bytes, **wrong: object) -> dict:
        """Queue an app-update job for payload and notify the board.

        wrong: a file entry key (name, size, sha256), a job document key, or
        thing (the execution's thingName), to make the job wrong in that way.
        """
        stream = "stream-" + job_id
        self.jobs.streams[stream] = {0: payload}
        entry = {"name": "app.mpy", "fileId": 0, "size": len(payload), "sha256": _sha256(payload)}
        doc = {"operation": "app-update", "streamId": stream, "files": [entry]}
        thing = wrong.pop("thing", None)
        for key in wrong:
            (entry if key in entry else doc)[key] = wrong[key]
        execution = self.jobs.queue(job_id, doc, thing)
        self.jobs.notify(self.broker)
        return execution

    def update(self, job_id: str, payload: bytes, **offer: object) -> None:
        """Connect, offer an update job for payload, and run until the board has handled it."""
        self.run(2)
        self.offer(job_id, payload, **offer)
        self.run(3)

    def texts(self, sms_id: str, body: str = OOZY) -> list:
        """Text the board and return the bodies it answered that message with."""
        self.broker.deliver(T_IN, inbound(sms_id, body))
        self.run(4)
        return [r["Body"] for r in self.replies() if r["Id"] == sms_id + ":r0"]

    def replies(self) -> list:
        return [json.loads(str(m, "utf-8")) for m in self.broker.outbound(T_OUT)]


REVERSED = ".ooz yratinas a ni tar yzoO"
UPPER = "OOZY RAT IN A SANITARY ZOO."


def case_ota_steady_state_imports_no_update_code() -> None:
    import sys

    with OtaRig("ota_idle") as rig:
        rig.run(3)  # connects, asks AWS IoT Jobs once (nothing queued), serves
        assert rig.dev.client is not None and "smsota" not in sys.modules
        assert "smstrial" not in sys.modules
        assert rig.broker.sessions[THING]["subs"][T_JOBS] == 1
        assert rig.texts("SMi") == [REVERSED]
        assert "smsota" not in sys.modules
        assert rig.files() == ["app.mpy"]


def case_ota_good_update() -> None:
    with OtaRig("ota_good") as rig:
        rig.run(2)
        new = _read(APPS + "/upper.mpy")
        assert len(new) > 1024  # several blocks
        rig.offer("job-1", new)
        rig.broker.deliver(T_IN, inbound("SMd"))  # an SMS during the download is served
        rig.run(3)
        assert rig.resets == 1 and rig.app_file() == new
        assert [r["Body"] for r in rig.replies() if r["Id"] == "SMd:r0"] == [REVERSED]
        assert rig.jobs.status("job-1") == "IN_PROGRESS"  # on probation until a message
        assert rig.texts("SMu") == [UPPER]
        rig.run(2)
        assert rig.jobs.status("job-1") == "SUCCEEDED"
        statuses = [u[1] for u in rig.jobs.updates]
        assert statuses == ["IN_PROGRESS", "SUCCEEDED"], rig.jobs.updates
        assert rig.jobs.updates[0][2] == {"step": "restarting"}
        assert rig.files() == ["app.mpy"]  # no .new, .old or journal left
        assert rig.jobs.blocks == (len(new) + 1023) // 1024
        assert "ota: job SUCCEEDED" in rig.lines


def case_ota_source_update_retires_the_compiled_app() -> None:
    # An update may carry source (app.py): MicroPython imports NAME.py before
    # NAME.mpy, so the board moves app.mpy aside and restores it on a rollback.
    with OtaRig("ota_source") as rig:
        rig.update("job-s", _read(APPS + "/upper.py"), name="app.py")
        assert rig.resets == 1 and rig.files() == ["app.mpy.old", "app.py", "ota.json"]
        assert rig.texts("SMs") == [UPPER]
        rig.run(2)
        assert rig.jobs.status("job-s") == "SUCCEEDED" and rig.files() == ["app.py"]
    with OtaRig("ota_source_back") as rig:
        rig.update("job-b", _read(APPS + "/broken_message.py"), name="app.py")
        assert rig.texts("SMb") == [REVERSED]  # rolled back: app.py gone, app.mpy again
        rig.run(2)
        assert rig.jobs.status("job-b") == "FAILED" and rig.files() == ["app.mpy"]
        assert rig.app_file() == rig.old


def case_ota_probation_window_passes_without_messages() -> None:
    import smstrial

    with OtaRig("ota_window") as rig:
        rig.update("job-w", _read(APPS + "/upper.mpy"))
        assert rig.resets == 1 and rig.jobs.status("job-w") == "IN_PROGRESS"
        rig.clock.advance(smstrial.PROBATION_MS + 1000)
        rig.run(3)
        assert rig.jobs.status("job-w") == "SUCCEEDED"
        assert rig.texts("SMw") == [UPPER]
        assert rig.files() == ["app.mpy"]


def _rejected(folder: str, reason: str, **offer: object) -> None:
    with OtaRig(folder) as rig:
        rig.update("job-x", _read(APPS + "/upper.mpy"), **offer)
        assert rig.jobs.status("job-x") == "REJECTED", rig.jobs.updates
        assert rig.jobs.updates[-1][2] == {"reason": reason}, rig.jobs.updates
        assert rig.resets == 0 and rig.app_file() == rig.old
        assert rig.files() == ["app.mpy"]  # nothing written beside it is left
        assert rig.texts("SMr") == [REVERSED]


def case_ota_bad_hash_rejected() -> None:
    _rejected("ota_hash", "bad sha256", sha256="0" * 64)


def case_ota_wrong_size_rejected() -> None:
    new = _read(APPS + "/upper.mpy")
    _rejected("ota_big", "wrong size", size=len(new) + 10)
    _rejected("ota_small", "wrong size", size=len(new) - 10)
    # A size at a block boundary short of the file's end: what was fetched fails the hash.
    _rejected("ota_edge", "bad sha256", size=1024)


def case_ota_foreign_thing_rejected() -> None:
    with OtaRig("ota_foreign") as rig:
        rig.update("job-f", _read(APPS + "/upper.mpy"), thing="dev-2")
        assert rig.jobs.updates == [("job-f", "REJECTED", {"reason": "foreign thing"})]
        assert rig.jobs.blocks == 0 and rig.app_file() == rig.old


def case_ota_bad_documents_rejected() -> None:
    for name in ("../main.mpy", "smslink.mpy", "main.mpy", "smsota.py", "app.txt", "a/b.mpy",
                 ".mpy", ".py", "App.mpy", "9lives.mpy", 7):  # fmt: skip
        _rejected("ota_name", "bad file name", name=name)
    _rejected("ota_op", "unknown operation", operation="firmware-update")
    _rejected("ota_sha", "bad sha256", sha256="A" * 64)
    _rejected("ota_stream", "bad streamId", streamId="")
    _rejected("ota_files", "bad files", files=[])
    _rejected("ota_huge", "too big", size=1 << 40)


def case_ota_power_cut_mid_download() -> None:
    with OtaRig("ota_cut") as rig:
        rig.run(2)
        new = _read(APPS + "/upper.mpy")
        rig.offer("job-c", new)
        rig.jobs.cut_after_blocks = 1  # the power goes while the second block is on its way
        for _ in range(5):
            if not rig.cuts:
                rig.run(1)
        assert rig.cuts == 1 and rig.app_file() == rig.old, (
            rig.cuts,
            rig.resets,
            rig.lines,
            rig.files(),
        )
        assert "app.mpy.new" in rig.files()  # half written, never used
        assert rig.texts("SMc") == [REVERSED]  # booted the old app; then it asked for the job
        assert rig.resets == 1 and rig.app_file() == new
        assert rig.texts("SMc2") == [UPPER]
        rig.run(2)
        assert rig.jobs.status("job-c") == "SUCCEEDED" and rig.files() == ["app.mpy"]


def case_ota_power_cut_at_every_file_step() -> None:
    # Cut the power before each rename/remove of the whole update, one run each:
    # every boot finds the old app or the new one, and the job still ends well.
    new = _read(APPS + "/upper.mpy")
    op = 1
    while True:
        with OtaRig("ota_step") as rig:
            rig.run(2)
            rig.offer("job-s", new)
            rig.cut_power_at(op)
            for _ in range(6):
                rig.run(1)
                assert rig.app_file() in (rig.old, new), op
            for i in range(3):
                rig.texts("SMs" + str(i))
                assert rig.app_file() in (rig.old, new), op
            rig.run(3)
            assert rig.jobs.status("job-s") == "SUCCEEDED", (op, rig.jobs.updates, rig.lines)
            assert rig.app_file() == new and rig.files() == ["app.mpy"], op
            cut = rig.cuts
        if not cut:
            break  # the update has fewer file steps than op: all were covered
        op += 1
    assert op > 6, op


def case_ota_app_failing_import_rolled_back() -> None:
    with OtaRig("ota_import") as rig:
        rig.run(2)
        rig.offer("job-i", _read(APPS + "/broken_import.mpy"))
        rig.run(4)
        assert rig.resets == 2  # into the new app, which fails; back to the old one
        assert rig.app_file() == rig.old
        assert rig.jobs.status("job-i") == "FAILED"
        reason = rig.jobs.updates[-1][2]["reason"]  # CPython names the ImportError's subclass
        assert reason in ("import ImportError", "import ModuleNotFoundError"), rig.jobs.updates
        assert rig.files() == ["app.mpy"]
        assert rig.texts("SMo") == [REVERSED]


def case_ota_app_failing_first_message_rolled_back() -> None:
    with OtaRig("ota_message") as rig:
        rig.update("job-m", _read(APPS + "/broken_message.mpy"))
        assert rig.resets == 1 and rig.jobs.status("job-m") == "IN_PROGRESS"
        # The first message makes the new app raise: the board restores the old
        # app and restarts before acknowledging it, so the old app answers it.
        assert rig.texts("SMf") == [REVERSED]
        assert rig.resets == 2 and rig.app_file() == rig.old
        rig.run(2)
        assert rig.jobs.status("job-m") == "FAILED"
        assert rig.jobs.updates[-1][2] == {"reason": "app KeyError"}, rig.jobs.updates
        assert rig.files() == ["app.mpy"]


def case_ota_power_cut_during_rollback() -> None:
    new = _read(APPS + "/broken_message.mpy")
    for op in (1, 2, 3):  # the journal's "rollback", the restoring rename, the journal's "failed"
        with OtaRig("ota_rbcut") as rig:
            rig.update("job-r", new)
            assert rig.resets == 1
            rig.cut_power_at(op)
            rig.broker.deliver(T_IN, inbound("SMp"))
            rig.run(1)
            assert rig.cuts == 1, op
            # Cut before "rollback" was journaled, the new app is still on trial and
            # fails again on the redelivered message; after, the boot finishes the rollback.
            assert rig.app_file() == (new if op == 1 else rig.old), op
            rig.run(4)
            assert rig.app_file() == rig.old, op
            assert rig.jobs.status("job-r") == "FAILED", (op, rig.jobs.updates)
            assert [r["Body"] for r in rig.replies() if r["Id"] == "SMp:r0"] == [REVERSED]
            assert rig.files() == ["app.mpy"]


def case_ota_no_answer_keeps_serving() -> None:
    with OtaRig("ota_silent") as rig:
        rig.jobs.silent = True  # AWS IoT never answers the jobs topics
        rig.run(2)
        assert any(ln.startswith("ota: no answer to jobs/start-next") for ln in rig.lines)
        assert rig.texts("SMn") == [REVERSED] and rig.dev.fails == 0
