# The device's I/O loop: one MQTT session, its messages, keep-alive, shadow.
# Every dependency is passed in, so tests and the host swap in fakes; smsboot
# wires the board's real modules. Rare work lives in modules imported only
# while it runs: connecting in smsconn, over-the-air updates in smsota.
import gc

import smscore

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


FIRMWARE = "1.1.0"
JOURNAL = "ota.json"  # the update journal, beside the app; present only while an update runs
_SLICE_MS = const(500)  # longest sleep without feeding the watchdog (ESP8266: fixed ~3 s)


class Device:
    """Keep one MQTT session to AWS IoT alive and route inbound SMS to the app.

    Keyword arguments only:
    config: the parsed config.json (smsboot.load_config).
    handle: the app's handle(message) -> None, str or {"Body", "MediaUrl"}.
    mqtt: factory with umqtt.simple.MQTTClient's signature
        (client_id, server, port=0, user=None, password=None, keepalive=0, ssl=None).
    wlan: object like network.WLAN(network.STA_IF).
    clock: object like MicroPython's time (ticks_ms, ticks_add, ticks_diff, sleep_ms).
    ntp: object like ntptime (settime()), or None to skip clock setting.
    ssl: SSLContext handed to the client, or None for plain MQTT.
    wdt: factory like machine.WDT, armed after the first MQTT connection, or None.
    rand: callable returning a random non-negative int (jitter, boot id).
    uid: bytes identifying the board (machine.unique_id()).
    reset: callable restarting the board (machine.reset), used by updates.
    root: folder holding the app modules ("" on the board: the working directory).
    """

    def __init__(self, *, config, handle, mqtt, wlan, clock, ntp=None, ssl=None, wdt=None,
                 rand=None, uid=b"", keepalive=60, poll_ms=100, log=print, reset=None,
                 root=""):  # fmt: skip
        self.config = config
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
        self.reset = reset
        self.root = root
        thing = config["thing"]
        base = config["topic_prefix"] + "/" + thing + "/"  # topics are bytes for umqtt
        self.topic_in = (base + "inbound").encode()
        self.topic_out = (base + "outbound").encode()
        self.topic_ack = (base + "ack").encode()
        self.topic_shadow = ("$aws/things/" + thing + "/shadow/update").encode()
        # Device-originated Ids: thing, board, boot and a counter make them unique.
        board_hex = ""
        for byte in uid:
            board_hex += "%02x" % byte
        self.id_prefix = "%s-%s-%08x-" % (thing, board_hex, self.rand() & 0xFFFFFFFF)
        self.seq = 1
        self.boot = config["boot_message"]  # None once sent
        self.client = None
        self.fails = 0
        self.halt = False
        self.dropped = 0
        self.up_ms = 0
        self.ntp_at = None  # never synced
        # Pending update work for smsota: a notify-next payload, b"" to ask for
        # the next job, or None. job_at: when smsota wants to run again (probation).
        self.job = None
        self.job_at = None
        now = clock.ticks_ms()
        self.up_at = self.ping_at = self.report_at = now

    def run(self, max_iter=0):
        """Loop until stop() or max_iter iterations (0: forever); network errors never escape."""
        self.halt = False
        done = 0
        while not self.halt and (max_iter <= 0 or done < max_iter):
            done += 1
            self.step()
        if self.halt:
            self.close()

    def stop(self):
        """Make run() return after the current iteration (safe to call from the app)."""
        self.halt = True  # also cuts a backoff sleep short

    def close(self, graceful=True):
        """Drop the MQTT session: DISCONNECT if graceful, else just close the socket."""
        client, self.client = self.client, None
        try:
            if graceful or not hasattr(client, "sock"):
                client.disconnect()
            else:
                client.sock.close()  # the stream is suspect: no DISCONNECT packet
        except (OSError, AttributeError):  # already broken, never opened, or no client
            pass

    def step(self):
        """One iteration: (re)connect if needed, take one message, keep-alive, shadow, updates."""
        self._feed()
        clock = self.clock
        now = clock.ticks_ms()
        self.up_ms += clock.ticks_diff(now, self.up_at)  # ticks wrap; accumulate deltas
        self.up_at = now
        try:
            if self.client is None:
                # Connecting is rare: its code is loaded only then (smsconn unloads itself).
                __import__("smsconn").connect(self)
            elif not self.wlan.isconnected():
                raise OSError(113)  # EHOSTUNREACH: Wi-Fi lost, do not wait for TCP to notice
            due = self.job_at
            if self.job is not None or (due is not None and clock.ticks_diff(now, due) >= 0):
                # Update code is loaded only for update work; smsota unloads itself.
                # Before taking a message: a new app's trial starts first.
                __import__("smsota").run(self)
            got = self.client.check_msg()
            now = clock.ticks_ms()
            if clock.ticks_diff(now, self.ping_at) >= self.keepalive * 500:
                self.client.ping()  # at half the keep-alive; the broker allows 1.5 times
                self.ping_at = now
            if clock.ticks_diff(now, self.report_at) >= self.config["shadow_interval_s"] * 1000:
                self._report(now)
        except Exception as error:  # umqtt raises OSError, MQTTException, AssertionError...
            self.close(False)
            delay = smscore.backoff_ms(self.fails, self.rand())
            self.fails += 1
            code = error.args[0] if error.args else ""
            self.log("net: %s %s, retry in %d ms" % (type(error).__name__, code, delay))
            self._sleep(delay)
            return
        if got is None:
            clock.sleep_ms(self.poll_ms)

    def send(self, to, body, media_url=None, qos=0, msg_id=None):
        """Publish a device-originated message (alert...) with a unique Id; returns the Id."""
        if msg_id is None:
            msg_id = self.id_prefix + str(self.seq)
            self.seq += 1
        outgoing = smscore.outgoing(msg_id, to, body, media_url)
        self.client.publish(self.topic_out, outgoing, False, qos)
        return msg_id

    def _on_msg(self, topic, raw):
        # umqtt calls this from check_msg and acknowledges a QoS 1 message only
        # after it returns. The reply is published QoS 0 first, so on the same
        # TCP stream the broker sees the reply before the ack: a drop in between
        # means redelivery, and the reply Id (from the inbound Id) deduplicates.
        if topic != self.topic_in:
            if topic.endswith(b"/jobs/notify-next"):  # the only such topic we subscribe
                self.job = raw  # handled by step(), outside umqtt's callback
            return
        message = reply = None
        try:
            message = smscore.parse_inbound(raw)
            reply = smscore.reply_for(message, self.handle(message))
        except Exception as error:  # bad input or a failing app must not stop the loop
            self.dropped += 1
            if isinstance(error, smscore.Drop):
                reason = error.args[0]
            else:
                reason = "app " + type(error).__name__
            self.log("drop: " + reason)
        if reply is not None:
            self.client.publish(self.topic_out, reply)  # network errors escape: no PUBACK
        if message is not None:  # taken (answered or not): it leaves the cloud's mailbox
            self.client.publish(self.topic_ack, smscore.ack(message["Id"]))

    def _report(self, now):
        self.report_at = now
        try:
            rssi = self.wlan.status("rssi")
        except (OSError, ValueError, TypeError):  # not every port reports it
            rssi = None
        free = gc.mem_free() if hasattr(gc, "mem_free") else None  # None under CPython
        self.client.publish(
            self.topic_shadow, smscore.shadow(FIRMWARE, free, rssi, self.up_ms // 1000)
        )

    def _sleep(self, ms):
        while ms > 0 and not self.halt:
            self._feed()
            chunk = _SLICE_MS if ms > _SLICE_MS else ms
            self.clock.sleep_ms(chunk)
            ms -= chunk

    def _feed(self):
        if self.wdt is not None:
            self.wdt.feed()
