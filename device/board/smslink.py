# The device's I/O loop: Wi-Fi, clock, one MQTT session, watchdog. Every
# dependency is passed in, so tests and the host swap in fakes; smsboot wires
# the board's real modules.
import gc

import smscore

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


FIRMWARE = "1.0.0"
_WIFI_TIMEOUT_MS = const(20000)
_NTP_EVERY_MS = const(86400000)  # re-sync daily: the ESP8266's RTC drifts
SLICE_MS = const(500)  # longest sleep without feeding the watchdog (ESP8266: fixed ~3 s)


class Device:
    """Keep one MQTT session to AWS IoT alive and route inbound SMS to the app.

    mqtt: factory with umqtt.simple.MQTTClient's signature
        (client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None).
    handle: the app's handle(message) -> None, str or {"Body", "MediaUrl"}.
    wlan: object like network.WLAN(network.STA_IF).
    clock: object like MicroPython's time (ticks_ms, ticks_diff, sleep_ms).
    ntp: object like ntptime (settime()), or None to skip clock setting.
    ssl: SSLContext handed to the client, or None for plain MQTT.
    wdt: factory like machine.WDT, armed after the first MQTT connection, or None.
    rand: callable returning a random non-negative int (jitter, boot id).
    uid: bytes identifying the board (machine.unique_id()).
    """

    def __init__(self, cfg, handle, mqtt, wlan, clock, ntp=None, ssl=None, wdt=None,
                 rand=None, uid=b"", keepalive=60, poll_ms=100, log=print):  # fmt: skip
        self.cfg = cfg
        self.handle = handle
        self.mqtt = mqtt
        self.wlan = wlan
        self.clock = clock
        self.ntp = ntp
        self.ssl = ssl
        self.wdt_factory = wdt
        self.wdt = None
        self.rand = rand or (lambda: 0)
        self.keepalive = keepalive
        self.poll_ms = poll_ms
        self.log = log
        t = cfg["thing"]
        base = cfg["topic_prefix"] + "/" + t + "/"  # topics are bytes for umqtt
        self.t_in = (base + "inbound").encode()
        self.t_out = (base + "outbound").encode()
        self.t_ack = (base + "ack").encode()
        self.t_shadow = ("$aws/things/" + t + "/shadow/update").encode()
        # Device-originated Ids: thing, board, boot and a counter make them unique.
        h = ""
        for b in uid:
            h += "%02x" % b
        self.id_prefix = "%s-%s-%08x-" % (t, h, self.rand() & 0xFFFFFFFF)
        self.seq = 1
        self.boot = cfg["boot_message"]  # None once sent
        self.c = None
        self.fails = 0
        self.halt = False
        self.dropped = 0
        self.up_ms = 0
        self.t_ntp = None  # never synced
        now = clock.ticks_ms()
        self.t_up = self.t_ping = self.t_report = now

    def run(self, max_iter=0):
        """Loop until stop() or max_iter iterations (0: forever); network errors never escape."""
        self.halt = False
        n = 0
        while not self.halt and (max_iter <= 0 or n < max_iter):
            n += 1
            self.step()
        if self.halt:
            self.close()

    def stop(self):
        """Make run() return after the current iteration (safe to call from the app)."""
        self.halt = True  # also cuts a backoff sleep short

    def close(self, graceful=True):
        """Drop the MQTT session: DISCONNECT if graceful, else just close the socket."""
        c, self.c = self.c, None
        if c is None:
            return
        s = None if graceful else getattr(c, "sock", None)
        try:
            if s is None:
                c.disconnect()
            else:
                s.close()  # the stream is suspect: no DISCONNECT packet
        except (OSError, AttributeError):  # already broken or never opened
            pass

    def step(self):
        """One iteration: (re)connect if needed, take one message, keep-alive and shadow."""
        self._feed()
        clock = self.clock
        now = clock.ticks_ms()
        self.up_ms += clock.ticks_diff(now, self.t_up)  # ticks wrap; accumulate deltas
        self.t_up = now
        try:
            if self.c is None:
                self._connect()
            elif not self.wlan.isconnected():
                raise OSError(113)  # EHOSTUNREACH: Wi-Fi lost, do not wait for TCP to notice
            got = self.c.check_msg()
            now = clock.ticks_ms()
            if clock.ticks_diff(now, self.t_ping) >= self.keepalive * 500:
                self.c.ping()  # at half the keep-alive; the broker allows 1.5 times
                self.t_ping = now
            if clock.ticks_diff(now, self.t_report) >= self.cfg["shadow_interval_s"] * 1000:
                self._report(now)
        except Exception as e:  # umqtt raises OSError, MQTTException, AssertionError...
            self.close(False)
            d = smscore.backoff_ms(self.fails, self.rand())
            self.fails += 1
            a = e.args[0] if e.args else ""
            self.log("net: %s %s, retry in %d ms" % (type(e).__name__, a, d))
            self._sleep(d)
            return
        if got is None:
            clock.sleep_ms(self.poll_ms)

    def send(self, to, body, media_url=None, qos=0, msg_id=None):
        """Publish a device-originated message (alert...) with a unique Id; returns the Id."""
        if msg_id is None:
            msg_id = self.id_prefix + str(self.seq)
            self.seq += 1
        self.c.publish(self.t_out, smscore.outgoing(msg_id, to, body, media_url), False, qos)
        return msg_id

    def _on_msg(self, topic, raw):
        # umqtt calls this from check_msg and acknowledges a QoS 1 message only
        # after it returns. The reply is published QoS 0 first, so on the same
        # TCP stream the broker sees the reply before the ack: a drop in between
        # means redelivery, and the reply Id (from the inbound Id) deduplicates.
        if topic != self.t_in:
            return
        m = out = None
        try:
            m = smscore.parse_inbound(raw)
            out = smscore.reply_for(m, self.handle(m))
        except Exception as e:  # bad input or a failing app must not stop the loop
            self.dropped += 1
            r = e.args[0] if isinstance(e, smscore.Drop) else "app " + type(e).__name__
            self.log("drop: " + r)
        if out is not None:
            self.c.publish(self.t_out, out)  # network errors escape: no ack, redelivery
        if m is not None:  # taken (answered or not): it leaves the cloud's mailbox
            self.c.publish(self.t_ack, smscore.ack(m["Id"]))

    def _connect(self):
        gc.collect()  # TLS wants large contiguous blocks
        clock = self.clock
        w = self.wlan
        if not w.isconnected():
            w.active(True)
            w.connect(self.cfg["wifi_ssid"], self.cfg["wifi_password"])
            t = clock.ticks_ms()
            while not w.isconnected():
                if self.halt or clock.ticks_diff(clock.ticks_ms(), t) > _WIFI_TIMEOUT_MS:
                    raise OSError(110)  # ETIMEDOUT: back off, then try again
                self._sleep(200)
        now = clock.ticks_ms()
        if self.ntp and (self.t_ntp is None or clock.ticks_diff(now, self.t_ntp) >= _NTP_EVERY_MS):
            try:
                self.ntp.settime()
                self.t_ntp = now
            except OSError:
                if self.t_ntp is None:
                    raise  # TLS needs the time once; a later failed re-sync is harmless
                self.log("ntp: re-sync failed")
        cfg = self.cfg
        c = self.mqtt(cfg["thing"], cfg["endpoint"], cfg["port"], None, None, self.keepalive,
                      self.ssl)  # fmt: skip
        c.set_callback(self._on_msg)
        self.c = c  # before connect, so a failure closes a half-open socket
        self._feed()
        present = c.connect(False)  # persistent session: QoS 1 messages wait for us
        self._feed()
        # Subscribing again is harmless when the session survived, needed when it expired.
        c.subscribe(self.t_in, 1)
        if not present:  # expired, reflashed, failed over: ask the mailbox, now subscribed
            c.publish(self.t_ack[:-3] + b"redeliver", b"{}")  # rare: no resident topic
        self.fails = 0
        self.t_ping = clock.ticks_ms()
        self.log("mqtt: connected, session " + ("resumed" if present else "new"))
        if self.wdt is None and self.wdt_factory is not None:
            # Armed only once a connection worked: a board whose TLS handshake is
            # slower than the ESP8266's fixed timeout then still boots and serves.
            self.wdt = self.wdt_factory()
        bm = self.boot
        if bm is not None:  # QoS 1 and a fixed Id: a retry after a drop dedups
            self.send(bm["To"], bm["Body"], None, 1, self.id_prefix + "0")
            self.boot = None
        self._report(clock.ticks_ms())

    def _report(self, now):
        self.t_report = now
        try:
            rssi = self.wlan.status("rssi")
        except (OSError, ValueError, TypeError):  # not every port reports it
            rssi = None
        free = gc.mem_free() if hasattr(gc, "mem_free") else None  # None under CPython
        msg = smscore.shadow(FIRMWARE, free, rssi, self.up_ms // 1000)
        self.c.publish(self.t_shadow, msg)

    def _sleep(self, ms):
        while ms > 0 and not self.halt:
            self._feed()
            t = SLICE_MS if ms > SLICE_MS else ms
            self.clock.sleep_ms(t)
            ms -= t

    def _feed(self):
        if self.wdt is not None:
            self.wdt.feed()
