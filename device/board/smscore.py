# Message logic for the SMS device: pure functions, no I/O and no hardware,
# so the same file runs on the board, under the WebAssembly port and CPython.
# Only what every message needs lives here; boot-time code is in smsboot.
import json

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


MAX_BODY = const(1600)  # Twilio's limit for one message, in characters
_MAX_ID = const(64)  # Twilio SIDs are 34 characters; bounds the reply Id we build
# The largest payload the cloud publishes (MAX_DEVICE_PAYLOAD_BYTES in
# contract.py; a test keeps them equal): the ESP8266's TLS record (5,120 B of
# plaintext) minus MQTT framing. Bigger is dropped undecoded.
MAX_RAW = const(4910)

try:  # CPython escapes non-ASCII unless told not to; MicroPython never does
    json.dumps("", ensure_ascii=False)

    def _dumps(obj):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))

except TypeError:

    def _dumps(obj):
        return json.dumps(obj, separators=(",", ":"))


class Drop(ValueError):
    """A message that cannot be handled; args[0] is a short reason without user data."""


def _is_str(v):
    return isinstance(v, str) and len(v) > 0


def parse_inbound(raw):
    """Decode and validate one inbound payload (bytes); return the message dict.

    Raises Drop with a reason that never contains user data.
    """
    if len(raw) > MAX_RAW:
        raise Drop("too big")
    try:
        text = str(raw, "utf-8")
    except (UnicodeError, ValueError):
        raise Drop("not utf-8")
    try:
        m = json.loads(text)
    except ValueError:
        raise Drop("not json")
    if not isinstance(m, dict):
        raise Drop("not an object")
    if m.get("Type") != "Incoming":
        raise Drop("bad Type")
    i = m.get("Id")
    if not _is_str(i) or len(i) > _MAX_ID:
        raise Drop("bad Id")
    if not _is_str(m.get("From")):
        raise Drop("bad From")
    if not isinstance(m.get("To"), str):
        raise Drop("bad To")
    b = m.get("Body")
    if not isinstance(b, str):
        raise Drop("bad Body")
    if len(b) > MAX_BODY:
        raise Drop("body too long")
    media = m.get("Media")
    if media is None:  # the contract sends [] for SMS; tolerate its absence
        m["Media"] = media = []
    if not isinstance(media, list):
        raise Drop("bad Media")
    for e in media:
        if not isinstance(e, dict) or not _is_str(e.get("Url")):
            raise Drop("bad Media")
    return m


def outgoing(msg_id, to, body, media_url=None):
    """Encode an Outgoing message as UTF-8 bytes (umqtt frames with len(), so bytes)."""
    d = {"Type": "Outgoing", "Id": msg_id, "To": to, "Body": body}
    if media_url:
        d["MediaUrl"] = media_url
    return _dumps(d).encode()


def ack(msg_id):
    """Encode the confirmation of an inbound message (it leaves the cloud's mailbox)."""
    return _dumps({"Id": msg_id}).encode()


def reply_for(inbound, reply, n=0):
    """Turn an app's reply (None, str or dict with Body/MediaUrl) into outbound bytes or None."""
    if reply is None:
        return None
    if isinstance(reply, str):
        body, url = reply, None
    elif isinstance(reply, dict):
        body, url = reply.get("Body", ""), reply.get("MediaUrl") or reply.get("Image")
    else:
        raise Drop("bad reply")
    if not isinstance(body, str) or len(body) > MAX_BODY or (url is not None and not _is_str(url)):
        raise Drop("bad reply")
    if not body and not url:
        return None  # Twilio refuses a message with neither
    # The Id derives from the inbound Id: a redelivered message maps to one SMS.
    return outgoing(inbound["Id"] + ":r" + str(n), inbound["From"], body, url)


def shadow(firmware, mem_free, rssi, uptime_s):
    """Encode a thing-shadow reported-state update as bytes."""
    return _dumps(
        {
            "state": {
                "reported": {
                    "firmware": firmware,
                    "mem_free": mem_free,
                    "rssi": rssi,
                    "uptime_s": uptime_s,
                }
            }
        }
    ).encode()


def backoff_ms(attempt, rnd, base=1000, cap=120000):
    """Delay before reconnect attempt `attempt` (0-based): exponential, capped, with jitter.

    "Equal jitter": half the window is fixed so retries never hammer the broker,
    the other half random (rnd: any non-negative int) so devices do not sync up.
    """
    w = base << attempt if attempt < 16 else cap
    if w > cap:
        w = cap
    h = w >> 1
    return h + rnd % (h + 1)
