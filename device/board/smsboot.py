# Boot-time wiring: read config.json, build the TLS context, hand the board's
# real modules to smslink.Device. main.py drops this module once the device is
# built, so its code does not occupy RAM during TLS handshakes.
import json


def load_config(text):
    """Parse config.json text, fill optional keys with defaults; ValueError if unusable."""
    cfg = json.loads(text)
    if not isinstance(cfg, dict):
        raise ValueError("config: not an object")
    for k in ("wifi_ssid", "wifi_password", "endpoint", "thing"):
        v = cfg.get(k)
        if not isinstance(v, str) or (not v and k != "wifi_password"):
            raise ValueError("config: " + k)
    for k, v in (
        ("port", 8883),
        ("topic_prefix", "sms"),
        ("key_file", "device.key.der"),
        ("cert_file", "device.crt.der"),
        ("ca_file", "AmazonRootCA1.der"),
        ("boot_message", None),
        ("shadow_interval_s", 300),
    ):  # the optional keys and their defaults
        if cfg.get(k) is None:
            cfg[k] = v
    for k in ("port", "shadow_interval_s"):
        if not isinstance(cfg[k], int) or cfg[k] <= 0:
            raise ValueError("config: " + k)
    bm = cfg["boot_message"]
    if bm is not None and not (
        isinstance(bm, dict) and isinstance(bm.get("To"), str) and bm["To"]
        and isinstance(bm.get("Body"), str)
    ):  # fmt: skip
        raise ValueError("config: boot_message")
    return cfg


def tls_context(cfg, mod=None, log=print):
    """Build the client SSLContext from the DER files named in cfg.

    ESP8266 firmware uses axTLS: it takes the client key and certificate but
    cannot verify the server, so the CA is loaded only where the port can use it.
    """
    if mod is None:
        try:
            import ssl as mod
        except ImportError:  # micropython-lib's ssl needs mbedTLS names; axTLS has tls only
            import tls as mod
    ctx = mod.SSLContext(mod.PROTOCOL_TLS_CLIENT)
    f = cfg["cert_file"], cfg["key_file"], cfg["ca_file"]
    d = []
    for p in f:  # DER bytes: axTLS takes data, not file names
        with open(p, "rb") as fh:
            d.append(fh.read())
    ctx.load_cert_chain(d[0], d[1])
    try:
        ca = d[2]
        try:
            ctx.load_verify_locations(cadata=ca)
        except TypeError:  # tls.SSLContext takes it positionally
            ctx.load_verify_locations(ca)
        ctx.verify_mode = mod.CERT_REQUIRED
    except AttributeError:
        log("tls: this port cannot verify the server certificate")
    return ctx


def build(path="config.json", clock=None, tls=None):
    """Read config.json and wire the board's modules into a ready smslink.Device."""
    import random

    import machine
    import network
    import ntptime
    import smslink
    from umqtt.simple import MQTTClient

    import app

    if clock is None:
        import time as clock
    with open(path) as f:
        cfg = load_config(f.read())
    ctx = tls_context(cfg, tls)

    def rand():
        return random.getrandbits(30)  # the ESP8266 seeds it from its hardware RNG

    return smslink.Device(cfg, app.handle, MQTTClient, network.WLAN(network.STA_IF), clock,
                          ntptime, ctx, machine.WDT, rand, machine.unique_id())  # fmt: skip
