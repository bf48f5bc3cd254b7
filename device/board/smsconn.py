# Connecting the device: Wi-Fi, the clock, the MQTT session and what follows
# it (subscriptions, the mailbox request after a lost session, the watchdog,
# the boot message, the shadow report). Connecting is rare, so smslink
# imports this module only then, and it drops itself from sys.modules: its
# RAM is not resident while messages are served.
import gc
import sys

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_WIFI_TIMEOUT_MS = const(20000)
_NTP_EVERY_MS = const(86400000)  # re-sync daily: the ESP8266's RTC drifts
# umqtt.simple's connect(timeout=): a stalled TCP or TLS handshake gives up
# instead of hanging before the watchdog is armed.
_CONNECT_TIMEOUT_S = const(20)


def connect(device):
    """Connect `device` (smslink.Device): Wi-Fi, clock, MQTT session, subscriptions.

    Network errors escape: the device's loop backs off and calls this again.
    """
    try:
        _connect(device)
    finally:
        sys.modules.pop(__name__, None)  # freed once the call returns


def _connect(device):
    gc.collect()  # TLS wants large contiguous blocks
    clock = device.clock
    wlan = device.wlan
    config = device.config
    if not wlan.isconnected():
        wlan.active(True)
        wlan.connect(config["wifi_ssid"], config["wifi_password"])
        started = clock.ticks_ms()
        while not wlan.isconnected():
            if device.halt or clock.ticks_diff(clock.ticks_ms(), started) > _WIFI_TIMEOUT_MS:
                raise OSError(110)  # ETIMEDOUT: back off, then try again
            device._sleep(200)
    now = clock.ticks_ms()
    if device.ntp and (
        device.ntp_at is None or clock.ticks_diff(now, device.ntp_at) >= _NTP_EVERY_MS
    ):
        try:
            device.ntp.settime()
            device.ntp_at = now
        except OSError:
            if device.ntp_at is None:
                raise  # TLS needs the time once; a later failed re-sync is harmless
            device.log("ntp: re-sync failed")
    client = device.mqtt(config["thing"], config["endpoint"], config["port"], None, None,
                          device.keepalive, device.ssl)  # fmt: skip
    client.set_callback(device._on_msg)
    device.client = client  # before connect, so a failure closes a half-open socket
    device._feed()
    # Persistent session: QoS 1 messages wait for us.
    present = client.connect(False, _CONNECT_TIMEOUT_S)
    device._feed()
    # Subscribing again is harmless when the session survived, needed when it expired.
    client.subscribe(device.topic_in, 1)
    client.subscribe(("$aws/things/" + config["thing"] + "/jobs/notify-next").encode(), 1)
    if not present:
        # Expired, reflashed or failed over: ask the cloud's mailbox for every
        # message still waiting, now that the inbound topic is subscribed.
        client.publish(device.topic_ack[:-3] + b"redeliver", b"{}")
    device.fails = 0
    device.ping_at = clock.ticks_ms()
    device.log("mqtt: connected, session " + ("resumed" if present else "new"))
    if device.wdt is None and device.wdt_factory is not None:
        # Armed only once a connection worked: a board whose TLS handshake is
        # slower than the ESP8266's fixed timeout then still boots and serves.
        device.wdt = device.wdt_factory()
    boot_message = device.boot
    if boot_message is not None:  # QoS 1 and a fixed Id: a retry after a drop dedups
        device.send(boot_message["To"], boot_message["Body"], None, 1, device.id_prefix + "0")
        device.boot = None
    device._report(clock.ticks_ms())
