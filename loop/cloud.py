"""The cloud side of the local loop: IoT data `Publish` and the topic-rule router.

`IotDataStandIn` answers boto3's `iot-data` `Publish` call (`POST /topics/{topic}?qos=N`)
on loopback and publishes to the broker, so the receive handler runs unchanged with only
`AWS_ENDPOINT_URL_IOT_DATA` set. `RuleRouter` plays the IoT rules engine for the outbound
rule: it takes the rule's SQL from the synthesized template, subscribes to its topic filter,
builds the event the rule would build and invokes the send function asynchronously, with
Lambda's retry-then-dead-letter behaviour.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from loop.lambda_runtime import LambdaError, LocalFunction
from loop.processes import no_delay

RULE_SQL = re.compile(
    r"^SELECT\s+(?P<select>.+?)\s+FROM\s+'(?P<topic>[^']+)'(?:\s+WHERE\s+(?P<where>.+))?$",
    re.IGNORECASE | re.DOTALL,
)
TOPIC_FUNCTION = re.compile(r"^topic\((\d+)\)\s+AS\s+(\w+)$", re.IGNORECASE)
FIELD = re.compile(r"^[A-Za-z_]\w*$")


class CloudClient:
    """A paho client with its own network thread, connected as the broker's `cloud` user."""

    def __init__(self, port: int, context: ssl.SSLContext, client_id: str) -> None:
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv311,
        )
        self.client.tls_set_context(context)
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.connect("127.0.0.1", port, keepalive=30)
        no_delay(self.client.socket())
        self.client.loop_start()
        if not connected.wait(10):
            raise RuntimeError(f"{client_id} could not connect to the local broker")

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Publishes and waits until the broker acknowledged (QoS 1)."""
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=10)
        if not info.is_published():
            raise OSError(f"publish to the local broker failed: {paho.error_string(info.rc)}")

    def close(self) -> None:
        """Disconnects and stops the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


class IotDataStandIn:
    """HTTP server speaking the `iot-data` Publish API, publishing to the local broker."""

    def __init__(
        self, cloud: CloudClient, on_publish: Callable[[str, bytes], None] | None = None
    ) -> None:
        self.cloud = cloud
        self.on_publish = on_publish
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # one small reply, sent at once

            def do_POST(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                if not url.path.startswith("/topics/"):
                    self._reply(404, {"message": f"no such API: {url.path}"})
                    return
                topic = urllib.parse.unquote(url.path.removeprefix("/topics/"))
                qos = int(urllib.parse.parse_qs(url.query).get("qos", ["0"])[0])
                payload = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    stand_in.cloud.publish(topic, payload, qos)
                except OSError as error:
                    self._reply(503, {"message": str(error)})
                    return
                if stand_in.on_publish is not None:
                    stand_in.on_publish(topic, payload)
                self._reply(200, {})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the demo prints its own hops

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops serving."""
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class RuleQuery:
    """The subset of IoT SQL the outbound rule uses: `SELECT *|a, b, topic(N) AS x FROM 'f'`."""

    topic_filter: str
    select_all: bool
    fields: tuple[str, ...]
    topic_fields: tuple[tuple[str, int], ...]

    @classmethod
    def parse(cls, sql: str) -> RuleQuery:
        """Parses the rule's SQL; refuses what this stand-in cannot evaluate faithfully."""
        match = RULE_SQL.match(sql.strip())
        if match is None:
            raise ValueError(f"unsupported rule SQL: {sql!r}")
        if match.group("where"):
            raise ValueError("the local router does not evaluate WHERE clauses")
        select_all = False
        fields: list[str] = []
        topic_fields: list[tuple[str, int]] = []
        for item in (part.strip() for part in match.group("select").split(",")):
            if item == "*":
                select_all = True
            elif topic := TOPIC_FUNCTION.match(item):
                topic_fields.append((topic.group(2), int(topic.group(1))))
            elif FIELD.match(item):
                fields.append(item)
            else:
                raise ValueError(f"unsupported SELECT item: {item!r}")
        return cls(match.group("topic"), select_all, tuple(fields), tuple(topic_fields))

    def event(self, topic: str, payload: bytes) -> dict[str, Any]:
        """The event the rule hands its Lambda action (raises ValueError if not JSON)."""
        source = json.loads(payload.decode("utf-8"))
        if not isinstance(source, dict):
            raise ValueError("payload is not a JSON object")
        # Listed fields the payload lacks are left out, as IoT SQL leaves out undefined.
        document = dict(source) if self.select_all else {}
        document.update({name: source[name] for name in self.fields if name in source})
        levels = topic.split("/")
        for name, level in self.topic_fields:
            document[name] = levels[level - 1] if level <= len(levels) else None
        return document


class RuleRouter:
    """Routes every message matching the rule to `function`, as an async invoke would."""

    def __init__(
        self,
        cloud: CloudClient,
        query: RuleQuery,
        function: LocalFunction,
        *,
        retry_attempts: int,
        retry_delay_s: float,
        on_failure: Callable[[dict[str, Any], LambdaError], None],
        on_rule_error: Callable[[str, bytes, str], None],
        on_success: Callable[[dict[str, Any], Any], None] | None = None,
        on_match: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.query = query
        self.function = function
        self.retry_attempts = retry_attempts
        self.retry_delay_s = retry_delay_s
        self.on_failure = on_failure
        self.on_rule_error = on_rule_error
        self.on_success = on_success
        self.on_match = on_match
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rule")
        cloud.client.message_callback_add(query.topic_filter, self._on_message)
        cloud.client.subscribe(query.topic_filter, qos=1)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        if self.on_match is not None:
            self.on_match(message.topic, bytes(message.payload))
        try:
            event = self.query.event(message.topic, bytes(message.payload))
        except (ValueError, UnicodeDecodeError) as error:
            self.on_rule_error(message.topic, bytes(message.payload), str(error))
            return
        self._pool.submit(self._invoke_async, event)

    def _invoke_async(self, event: dict[str, Any]) -> None:
        for attempt in range(1 + self.retry_attempts):
            try:
                result = self.function.invoke(event)
            except LambdaError as error:
                if attempt == self.retry_attempts:
                    self.on_failure(event, error)
                    return
                time.sleep(self.retry_delay_s * (attempt + 1))
            else:
                if self.on_success is not None:
                    self.on_success(event, result)
                return

    def close(self) -> None:
        """Waits for invocations under way, then stops."""
        self._pool.shutdown(wait=True)
