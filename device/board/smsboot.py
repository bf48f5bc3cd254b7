# Boot-time wiring: read config.json, build the TLS context, hand the board's
# real modules to smslink.Device. main.py drops this module once the device is
# built, so its code does not occupy RAM during TLS handshakes.
import json


def load_config(text):
    """Parse config.json text, fill optional keys with defaults; ValueError if unusable."""
    config = json.loads(text)
    if not isinstance(config, dict):
        raise ValueError("config: not an object")
    for key in ("wifi_ssid", "wifi_password", "endpoint", "thing"):
        value = config.get(key)
        if not isinstance(value, str) or (not value and key != "wifi_password"):
            raise ValueError("config: " + key)
    for key, default in (
        ("port", 8883),
        ("topic_prefix", "sms"),
        ("key_file", "device.key.der"),
        ("cert_file", "device.crt.der"),
        ("ca_file", "AmazonRootCA1.der"),
        ("boot_message", None),
        ("shadow_interval_s", 300),
    ):  # the optional keys and their defaults
        if config.get(key) is None:
            config[key] = default
    for key in ("port", "shadow_interval_s"):
        if not isinstance(config[key], int) or config[key] <= 0:
            raise ValueError("config: " + key)
    boot_message = config["boot_message"]
    if boot_message is not None and not (
        isinstance(boot_message, dict) and isinstance(boot_message.get("To"), str)
        and boot_message["To"] and isinstance(boot_message.get("Body"), str)
    ):  # fmt: skip
        raise ValueError("config: boot_message")
    return config


def tls_context(config, mod=None, log=print):
    """Build the client SSLContext from the DER files named in config.

    ESP8266 firmware uses axTLS: it takes the client key and certificate but
    cannot verify the server, so the CA is loaded only where the port can use it.
    """
    if mod is None:
        try:
            import ssl as mod
        except ImportError:  # micropython-lib's ssl needs mbedTLS names; axTLS has tls only
            import tls as mod
    context = mod.SSLContext(mod.PROTOCOL_TLS_CLIENT)
    der = []
    for key in ("cert_file", "key_file", "ca_file"):  # DER bytes: axTLS takes data, not names
        with open(config[key], "rb") as f:
            der.append(f.read())
    context.load_cert_chain(der[0], der[1])
    try:
        try:
            context.load_verify_locations(cadata=der[2])
        except TypeError:  # tls.SSLContext takes it positionally
            context.load_verify_locations(der[2])
        context.verify_mode = mod.CERT_REQUIRED
    except AttributeError:
        log("tls: this port cannot verify the server certificate")
    return context


def build(path="config.json", clock=None, tls=None, root="", reset=None):
    """Read config.json and wire the board's modules into a ready smslink.Device.

    root: folder of the app modules and the update journal ("" on the board).
    reset: what restarts the board (machine.reset unless given).
    """
    import os
    import random

    import machine
    import network
    import ntptime
    import smslink
    from umqtt.simple import MQTTClient

    if clock is None:
        import time as clock
    if reset is None:
        reset = machine.reset
    with open(path) as f:
        config = load_config(f.read())
    context = tls_context(config, tls)
    try:
        os.stat(root + smslink.JOURNAL)
        trial = True  # an update was under way: smstrial repairs and judges it
    except OSError:
        trial = False
    if trial:
        import smstrial

        handle = smstrial.boot(root, reset, print)  # it unloads itself
    else:
        import app

        handle = app.handle

    def rand():
        return random.getrandbits(30)  # the ESP8266 seeds it from its hardware RNG

    device = smslink.Device(
        config=config, handle=handle, mqtt=MQTTClient, wlan=network.WLAN(network.STA_IF),
        clock=clock, ntp=ntptime, ssl=context, wdt=machine.WDT, rand=rand,
        uid=machine.unique_id(), reset=reset, root=root,
    )  # fmt: skip
    device.job = b""  # after connecting, ask AWS IoT Jobs for an update queued while away
    return device
