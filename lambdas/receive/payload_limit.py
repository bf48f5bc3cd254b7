"""The largest MQTT payload the cloud may publish to a device, and the worst case of a body.

Standard library only: the receive Lambda enforces the number on every message, the stack's
settings refuse a `body_limit` whose worst case cannot fit, and the firmware's `MAX_RAW`
(device/board/smscore.py, which cannot import this) is checked against it by a test.

Why the number: the ESP8266 port builds axTLS with `RT_MAX_PLAIN_LENGTH=1024` and
`RT_EXTRA=4096`, so a TLS record may carry at most 5,120 bytes of plaintext. Measured with
that build, a 5,000-byte MQTT payload arrives and a 6,000-byte one kills the connection
(`RECORD_OVERFLOW`); with QoS 1 and a persistent session it is redelivered at every reconnect
and the board never gets past it. The whole MQTT PUBLISH packet must fit in the record, so
the packet's framing, with the longest topic the settings allow, comes off.
"""

from __future__ import annotations

TLS_RECORD_PLAINTEXT_BYTES = 1024 + 4096
"""axTLS on the ESP8266: RT_MAX_PLAIN_LENGTH + RT_EXTRA."""
MAX_TOPIC_BYTES = 64 + len("/") + 128 + len("/inbound")
"""`{prefix}/{thing}/inbound`: a topic level of at most 64 bytes, a thing name of 128."""
MQTT_PUBLISH_FRAMING_BYTES = 1 + 4 + 2 + MAX_TOPIC_BYTES + 2
"""Fixed header byte, remaining length (up to 4 bytes), topic length, topic, packet id."""
MAX_DEVICE_PAYLOAD_BYTES = TLS_RECORD_PLAINTEXT_BYTES - MQTT_PUBLISH_FRAMING_BYTES
"""Largest inbound payload (the whole JSON, UTF-8) published to a device: 4,910 bytes."""

# Worst case of one inbound message, for the settings check. The receive Lambda measures
# the real payload of every message; these bound what Twilio sends for a valid message.
WORST_BYTES_PER_BODY_CHARACTER = 6
"""A control character is written as `\\u00XX` (6 bytes); any other character takes at
most 4 bytes of UTF-8 (`"` and `\\` take 2)."""
WORST_ENVELOPE_BYTES = len('{"Type":"Incoming","Id":"","From":"","To":"","Body":"","Media":[]}') + (
    34 + 2 * 48
)
"""The contract's keys, a 34-character MessageSid and two addresses of up to 48 bytes
(`whatsapp:+` and 15 digits, with room to spare)."""
WORST_MEDIA_BYTES = len('{"Url":"","ContentType":""},') + 200 + 64
"""One media entry: Twilio's media URL (162 characters; 200 allowed for) and a content type
of up to 64 characters."""
MAX_MEDIA = 10
"""Twilio delivers at most 10 media per message."""
WORST_EXTRA_FIELD_VALUE_BYTES = 256 * WORST_BYTES_PER_BODY_CHARACTER
"""A forwarded webhook parameter: its validator admits at most 256 characters."""
SHORT_EXTRA_FIELDS = {
    "AccountSid": 34,
    "MessagingServiceSid": 34,
    "NumSegments": 4,
    "NumMedia": 4,
    "ReferralNumMedia": 4,
    "SmsStatus": 32,
    "ApiVersion": 10,
    "FromCountry": 2,
    "ToCountry": 2,
    "OptOutType": 32,
    "WaId": 20,
}
"""Forwardable parameters whose validator bounds them tighter (ASCII, characters = bytes)."""


def worst_case_payload_bytes(body_limit: int, extra_fields: tuple[str, ...] = ()) -> int:
    """The largest payload a valid message with a body of `body_limit` characters can need."""
    extras = sum(
        len(f',"{name}":""') + SHORT_EXTRA_FIELDS.get(name, WORST_EXTRA_FIELD_VALUE_BYTES)
        for name in extra_fields
    )
    return (
        WORST_ENVELOPE_BYTES
        + MAX_MEDIA * WORST_MEDIA_BYTES
        + extras
        + body_limit * WORST_BYTES_PER_BODY_CHARACTER
    )


def largest_body_limit(extra_fields: tuple[str, ...] = ()) -> int:
    """The largest `body_limit` whose worst case fits in `MAX_DEVICE_PAYLOAD_BYTES`."""
    spare = MAX_DEVICE_PAYLOAD_BYTES - worst_case_payload_bytes(0, extra_fields)
    return max(0, spare // WORST_BYTES_PER_BODY_CHARACTER)
