"""A real MQTT broker (Debian's mosquitto) on loopback, with mutual TLS like AWS IoT Core.

Clients authenticate with certificates from `LocalCA`; the certificate's common name is the
MQTT user name, and an ACL gives each device the same topics the IoT policy gives it:
read its own inbound topic, write its own outbound and shadow topics, and its own jobs and
streams topics (the lines are derived from the synthesized IoT policy, see
`acl_from_iot_policy`). The cloud side (the
IoT data stand-in and the rules-engine router) connects as user `cloud`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from loop.certs import Identity, LocalCA, tls_context
from loop.processes import child_command, child_options, free_port, stop_process

CLOUD_USER = "cloud"
SESSION_EXPIRY_HOURS = 1
THING_VARIABLE = "${iot:Connection.Thing.ThingName}"


def mosquitto_binary() -> str:
    """Path of the mosquitto executable, or a clear error saying how to install it."""
    found = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()),
        None,
    )
    if found is None:
        raise RuntimeError("mosquitto not found: install it with `sudo apt-get install mosquitto`")
    return found


def acl_from_iot_policy(document: Mapping[str, Any], resolve: Callable[[Any], str]) -> list[str]:
    """mosquitto ACL patterns that grant what an AWS IoT policy grants a device.

    `iot:Receive` on `topic/T` becomes `pattern read T`, `iot:Publish` `pattern write T`,
    with the policy variable `${iot:Connection.Thing.ThingName}` as mosquitto's `%u` (the
    certificate's common name, which is the thing name here). Subscribing needs no line of
    its own: mosquitto checks reads on delivery. `resolve` turns a resource into a string.
    """
    modes = {"iot:Receive": "read", "iot:Publish": "write"}
    lines: list[str] = []
    for statement in document["Statement"]:
        if statement.get("Effect") != "Allow":
            raise ValueError("only Allow statements can be expressed as mosquitto patterns")
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        raw = (
            statement["Resource"]
            if isinstance(statement["Resource"], list)
            else [statement["Resource"]]
        )
        for action in actions:
            if action not in modes:
                continue
            for resource in raw:
                arn = resolve(resource)
                topic = arn.split(":topic/", 1)[1]
                # A `*` level (one job or stream id) is mosquitto's one-level wildcard `+`.
                levels = topic.replace(THING_VARIABLE, "%u").split("/")
                pattern = "/".join("+" if level == "*" else level for level in levels)
                lines.append(f"pattern {modes[action]} {pattern}")
    return lines


class Broker(contextlib.AbstractContextManager["Broker"]):
    """Runs mosquitto with TLS client authentication and per-device ACLs until closed."""

    def __init__(self, directory: Path, device_acl: Sequence[str]) -> None:
        """`device_acl`: mosquitto ACL lines (`pattern read|write TOPIC`, `%u` = the thing)
        for every device, usually `acl_from_iot_policy` of the stack's device policy."""
        self.directory = directory
        self.ca = LocalCA(directory / "pki")
        self.port = free_port()
        server = self.ca.issue("localhost", server=True)
        acl = directory / "acl"
        # `#` does not match topics that start with `$`: AWS's reserved `$aws/...` topics
        # (jobs, streams) need their own line.
        acl.write_text(
            f"user {CLOUD_USER}\ntopic readwrite #\ntopic readwrite $aws/#\n\n"
            + "\n".join(device_acl)
            + "\n"
        )
        config = directory / "mosquitto.conf"
        # Run as ourselves: as root mosquitto drops to user `mosquitto`, which cannot read
        # certificates in a private temporary folder.
        user = pwd.getpwuid(os.getuid()).pw_name
        config.write_text(
            "\n".join(
                [
                    f"user {user}",
                    "per_listener_settings true",
                    "persistence false",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "max_queued_messages 10000",
                    # AWS IoT's default: a persistent session outlives a disconnect by 1 hour.
                    # mosquitto counts this in hours at the least, so tests that need it gone
                    # sooner end it themselves (`expire_session`).
                    f"persistent_client_expiration {SESSION_EXPIRY_HOURS}h",
                    "set_tcp_nodelay true",  # small MQTT packets: no Nagle delay
                    f"listener {self.port} 127.0.0.1",
                    f"cafile {self.ca.cert_path}",
                    f"certfile {server.cert}",
                    f"keyfile {server.key}",
                    "require_certificate true",
                    "use_identity_as_username true",
                    f"acl_file {acl}",
                    "",
                ]
            )
        )
        self._log = (directory / "mosquitto.log").open("wb")
        self._process = subprocess.Popen(
            child_command([mosquitto_binary(), "-c", str(config)]),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            **child_options(),
        )
        self._wait_until_listening()

    def _wait_until_listening(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                log = (self.directory / "mosquitto.log").read_text(errors="replace")
                raise RuntimeError(f"mosquitto exited: {log[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def expire_session(self, client_id: str) -> None:
        """Ends `client_id`'s persistent session now, as its expiry would: its subscriptions
        and queued messages are gone. (A clean-session connection with the same client id
        discards the session, per MQTT 3.1.1; the client must be offline.)"""
        context = tls_context(str(self.ca.cert_path), self.identity(CLOUD_USER))
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=True,
            protocol=paho.MQTTv311,
        )
        client.tls_set_context(context)
        client.connect("127.0.0.1", self.port, keepalive=30)
        try:
            deadline = time.monotonic() + 10
            while not client.is_connected():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"could not end the session of {client_id}")
                client.loop(0.05)
        finally:
            client.disconnect()
            client.loop(0.05)

    def identity(self, user: str) -> Identity:
        """A client certificate whose common name (MQTT user) is `user`."""
        return self.ca.issue(user)

    def close(self) -> None:
        """Stops the broker and waits for it."""
        stop_process(self._process)
        self._log.close()

    def __exit__(self, *exc: object) -> None:
        self.close()
