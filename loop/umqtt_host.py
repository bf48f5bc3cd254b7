"""micropython-lib's `umqtt.simple.MQTTClient` API, on CPython, over paho-mqtt.

The firmware in `device/board/` talks to its MQTT client through umqtt.simple's API; this
adapter lets the very same firmware run on the host against the local broker. It keeps
umqtt's semantics where the firmware relies on them: calls block until acknowledged,
`check_msg()` delivers at most one message without blocking, a QoS 1 message is
acknowledged only after the callback returned, and failures raise `OSError`.
(paho is used instead of a hand-written MQTT codec: it is well kept and handles sessions.)

Why not micropython-lib's own `umqtt/simple.py` over a socket adapter: no package registry
carries a usable current copy, and copying its source into this repository would be
vendoring. PyPI's `micropython-umqtt.simple` is 1.3.4, years older than the firmware's
target: its `connect()` has no `timeout` (added in 1.5.0), it takes `ssl=True` plus
`ssl_params` and wraps the socket with `ussl.wrap_socket` instead of taking an
`SSLContext` (1.8.0), and it imports `usocket`/`ustruct`/`ubinascii`, which CPython lacks.
The firmware calls 1.8.0's API, so that copy could not run it unchanged. On the board the
firmware uses the real umqtt.simple (frozen in ESP8266_GENERIC, or installed by
`device.tool flash` with `mip`); tests/device runs the firmware on real MicroPython.
"""

from __future__ import annotations

import collections
import ssl as _ssl
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

import contract
from loop.processes import no_delay

ACK_TIMEOUT_S = 10.0


class MQTTException(OSError):
    """A refused connection or a protocol failure (umqtt raises its own MQTTException)."""


class MQTTClient:
    """umqtt.simple.MQTTClient over paho-mqtt; `ssl` is an `ssl.SSLContext` or None."""

    def __init__(
        self,
        client_id: str | bytes,
        server: str,
        port: int = 0,
        user: str | None = None,
        password: str | None = None,
        keepalive: int = 0,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        self.client_id = client_id.decode() if isinstance(client_id, bytes) else client_id
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.ssl = ssl
        self._callback: Callable[[bytes, bytes], None] | None = None
        self._will: tuple[str, bytes, bool, int] | None = None
        self._paho: paho.Client | None = None
        self._inbox: collections.deque[paho.MQTTMessage] = collections.deque()
        self._acked: set[int] = set()
        self._connack: tuple[bool, int] | None = None

    # -- umqtt.simple API ----------------------------------------------------------------

    def set_callback(self, f: Callable[[bytes, bytes], None]) -> None:
        """f(topic: bytes, msg: bytes) is called for each received message."""
        self._callback = f

    def set_last_will(
        self, topic: bytes | str, msg: bytes | str, retain: bool = False, qos: int = 0
    ) -> None:
        """Message the broker publishes if this client vanishes."""
        self._will = (_text(topic), _bytes(msg), retain, qos)

    def connect(self, clean_session: bool = True, timeout: float | None = None) -> bool:
        """Connects and waits for CONNACK; returns whether the broker kept a session."""
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        if self.user is not None:
            client.username_pw_set(self.user, self.password)
        if self.ssl is not None:
            client.tls_set_context(self.ssl)
        if self._will is not None:
            topic, msg, retain, qos = self._will
            client.will_set(topic, msg, qos=qos, retain=retain)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_publish = self._on_ack
        client.on_subscribe = self._on_subscribe
        self._paho = client
        self._connack = None
        try:
            client.connect(self.server, self.port, keepalive=self.keepalive or 60)
        except OSError:
            self._paho = None
            raise
        except Exception as error:  # paho raises ValueError/ssl errors for bad settings
            self._paho = None
            raise OSError(str(error)) from error
        no_delay(client.socket())
        self._wait(lambda: self._connack is not None, "CONNACK")
        assert self._connack is not None
        session_present, code = self._connack
        if code != 0:
            self._paho = None
            raise MQTTException(code)
        return session_present

    def disconnect(self) -> None:
        """Sends DISCONNECT and closes the socket."""
        client, self._paho = self._paho, None
        if client is not None:
            client.disconnect()
            client.loop(0.05)

    def ping(self) -> None:
        """Keep-alive: paho sends PINGREQ itself when due; here we only pump the socket."""
        self._pump(0)

    def publish(self, topic: bytes | str, msg: bytes, retain: bool = False, qos: int = 0) -> None:
        """Publishes and, for QoS 1, waits for PUBACK (umqtt blocks the same way)."""
        if not isinstance(msg, (bytes, bytearray)):
            # umqtt frames with len(msg): a str with non-ASCII characters breaks the packet.
            raise TypeError("publish() takes the payload as bytes")
        info = self._client().publish(_text(topic), bytes(msg), qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise OSError(f"publish failed: {paho.error_string(info.rc)}")
        if qos:
            self._wait(lambda: info.mid in self._acked, "PUBACK")
            self._acked.discard(info.mid)

    def subscribe(self, topic: bytes | str, qos: int = 0) -> None:
        """Subscribes and waits for SUBACK."""
        rc, mid = self._client().subscribe(_text(topic), qos=qos)
        if rc != paho.MQTT_ERR_SUCCESS:
            raise OSError(f"subscribe failed: {paho.error_string(rc)}")
        self._wait(lambda: mid in self._acked, "SUBACK")
        self._acked.discard(mid)

    def wait_msg(self) -> int | None:
        """Blocks until one message was delivered to the callback."""
        while not self._inbox:
            self._pump(0.1)
        return self._deliver()

    def check_msg(self) -> int | None:
        """Delivers one waiting message, if any, without blocking."""
        if not self._inbox:
            self._pump(0)
        return self._deliver() if self._inbox else None

    # -- paho plumbing ---------------------------------------------------------------------

    def _client(self) -> paho.Client:
        if self._paho is None:
            raise OSError("not connected")
        return self._paho

    def _pump(self, timeout: float) -> None:
        rc = self._client().loop(timeout)
        if rc != paho.MQTT_ERR_SUCCESS:
            self._paho = None
            raise OSError(f"connection lost: {paho.error_string(rc)}")

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while not done():
            if time.monotonic() > deadline:
                raise OSError(f"timed out waiting for {what}")
            self._pump(0.05)

    def _deliver(self) -> int | None:
        message = self._inbox.popleft()
        if (
            publish_packet_bytes(message.topic, len(message.payload))
            > contract.TLS_RECORD_PLAINTEXT_BYTES
        ):
            # The ESP8266's axTLS cannot take a TLS record this large: the connection dies
            # before the firmware sees the message, and nothing is acknowledged.
            client, self._paho = self._client(), None
            sock = client.socket()
            if sock is not None:
                sock.close()
            raise OSError(-257, "RECORD_OVERFLOW")
        if self._callback is not None:
            self._callback(message.topic.encode(), bytes(message.payload))
        if message.qos:
            self._client().ack(message.mid, message.qos)  # after the app saw it, as umqtt
        return None

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, *_: Any
    ) -> None:
        self._connack = (bool(flags.session_present), int(reason.value))

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        self._inbox.append(message)

    def _on_ack(self, client: paho.Client, userdata: Any, mid: int, *_: Any) -> None:
        self._acked.add(mid)

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, *_: Any) -> None:
        self._acked.add(mid)


def publish_packet_bytes(topic: str, payload_bytes: int) -> int:
    """Size of a QoS 1 PUBLISH packet: fixed header, remaining length, topic, packet id."""
    remaining = 2 + len(topic.encode()) + 2 + payload_bytes
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else 3
    return 1 + length_bytes + remaining


def _text(topic: bytes | str) -> str:
    return topic.decode() if isinstance(topic, bytes) else topic


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value
