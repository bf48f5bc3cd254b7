"""Fixtures for over-the-air updates: a real mosquitto whose device ACL comes from the
synthesized IoT policy, the local IoT Jobs model on it, and MQTT clients as devices."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from loop.broker import CLOUD_USER, Broker, acl_from_iot_policy
from loop.certs import tls_context
from loop.cloud import CloudClient
from loop.iot_jobs import LocalIotJobs
from loop.processes import no_delay
from tests.conftest import Synthesized
from tests.infra.test_stack import resolve_join

THING = "dev-reverser"
OTHER = "dev-other"
BUCKET = "textdevice-dev-otaupdatesfiles"


def device_policy(synth: Synthesized) -> dict[str, Any]:
    """The synthesized device IoT policy document."""
    [policy] = [
        r["Properties"]["PolicyDocument"]
        for r in synth.template_json["Resources"].values()
        if r["Type"] == "AWS::IoT::Policy"
    ]
    document: dict[str, Any] = policy
    return document


@pytest.fixture(scope="session")
def broker(
    tmp_path_factory: pytest.TempPathFactory, synthesized: dict[str, Synthesized]
) -> Iterator[Broker]:
    """mosquitto with mutual TLS; devices get exactly what the dev stack's policy grants."""
    acl = acl_from_iot_policy(device_policy(synthesized["dev"]), resolve_join)
    with Broker(Path(tmp_path_factory.mktemp("ota-broker")), acl) as running:
        yield running


@pytest.fixture
def cloud(broker: Broker) -> Iterator[CloudClient]:
    """The cloud side's connection (user `cloud`)."""
    context = tls_context(str(broker.ca.cert_path), broker.identity(CLOUD_USER))
    client = CloudClient(broker.port, context, "local-iot-jobs")
    yield client
    client.close()


@pytest.fixture
def jobs(cloud: CloudClient) -> Iterator[LocalIotJobs]:
    """The local AWS IoT Jobs + file delivery model for two things."""
    model = LocalIotJobs(cloud, things=[THING, OTHER], bucket=BUCKET)
    yield model
    model.close()


class Device:
    """A paho client connected as `thing` (its certificate's common name)."""

    def __init__(self, broker: Broker, thing: str) -> None:
        self.thing = thing
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=thing,
            protocol=paho.MQTTv311,
        )
        self.client.tls_set_context(tls_context(str(broker.ca.cert_path), broker.identity(thing)))
        connected = threading.Event()
        self.client.on_connect = lambda *args: connected.set()
        self.client.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.client.connect("127.0.0.1", broker.port, keepalive=30)
        no_delay(self.client.socket())
        self.client.loop_start()
        assert connected.wait(10)
        self.prefix = f"$aws/things/{thing}"

    def subscribe(self, *topics: str) -> None:
        """Subscribes (QoS 1) to topics under `$aws/things/{thing}/` and waits for SUBACK."""
        done = threading.Event()
        granted: list[Any] = []

        def on_subscribe(client: Any, userdata: Any, mid: Any, codes: Any, props: Any) -> None:
            granted.extend(codes)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe([(f"{self.prefix}/{t}", 1) for t in topics])
        assert done.wait(10)
        assert all(not getattr(code, "is_failure", False) for code in granted), granted

    def publish(self, topic: str, message: Any) -> None:
        """Publishes JSON (or raw bytes) to `$aws/things/{thing}/{topic}`."""
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.client.publish(f"{self.prefix}/{topic}", payload, qos=1).wait_for_publish(10)

    def next(self, timeout: float = 5.0) -> tuple[str, Any]:
        """The next message: (topic under the thing's prefix, parsed JSON)."""
        topic, payload = self.messages.get(timeout=timeout)
        return topic.removeprefix(self.prefix + "/"), json.loads(payload)

    def nothing(self, wait: float = 0.3) -> bool:
        """No message arrives within `wait` seconds."""
        try:
            self.messages.get(timeout=wait)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        """Disconnects."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def device(broker: Broker) -> Iterator[Device]:
    """A device connected as THING."""
    connected = Device(broker, THING)
    yield connected
    connected.close()
