"""The whole system on one machine: Twilio webhook -> device -> Twilio, offline.

`LocalLoop` starts, from the synthesized stack of an environment:

- a real MQTT broker (mosquitto) with mutual TLS and per-device ACLs, like AWS IoT Core;
- moto's server for Secrets Manager, DynamoDB and SQS, with the template's tables, queues and
  the Twilio secret;
- a stand-in for IoT data `Publish` that publishes to the broker;
- API Gateway's `POST /message` over HTTP (the template's VTL and integration responses);
- the receive and send Lambdas' real handlers, in their own processes, with the
  environment the template gives them (boto3 pointed at loopback by `AWS_ENDPOINT_URL_*`);
- the outbound topic rule (its SQL from the template), invoking the send Lambda
  asynchronously with the template's retry count and on-failure queue;
- Prism serving Twilio's OpenAPI contract, behind a proxy that records what Twilio got and
  can inject Twilio's failures;
- each configured device's firmware (`device/board/`) on the host.

Everything it starts, `close()` stops (it is a context manager).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twilio.request_validator import RequestValidator

from loop.apigw_vtl import HttpResponse
from loop.aws_local import REGION, LocalResources, MotoServer, find_by_path
from loop.broker import CLOUD_USER, Broker, acl_from_iot_policy
from loop.certs import tls_context
from loop.cloud import CloudClient, IotDataStandIn, RuleQuery, RuleRouter
from loop.device_host import HostDevice
from loop.lambda_runtime import LambdaError, LocalFunction
from loop.prism import TEST_ACCOUNT_SID, FaultProxy, PrismServer
from loop.stack import ROOT, cdk_context, synthesized_template
from loop.webhook_server import WebhookEndpoint
from stacks.settings import EnvironmentSettings, parse_environment

SENDER_PHONE = "+15551234567"  # the person texting the device (a reserved 555 number)
LOAD_CAPS = {"send_limit_per_minute": 1000, "send_limit_per_day": 100_000}
"""Send caps for a loop that answers hundreds of texts a minute (load tests, benchmarks):
the defaults (10 a minute, 200 a day per device) would refuse most of the replies."""


def mask(number: str) -> str:
    """A phone number as the logs show it: country code and last two digits."""
    return number[:2] + "•" * max(0, len(number) - 4) + number[-2:] if number else number


@dataclass
class Hop:
    """One step of a message through the loop, with its time since the loop's clock start."""

    at: float
    where: str
    what: str


@dataclass
class TwilioRequest:
    """A Messages API request the mock Twilio answered."""

    status: int | None
    """What the send Lambda got back (None: no answer, a hang or a lost reply)."""
    fault: str | None
    form: dict[str, list[str]]
    accepted: bool
    """Twilio would have sent this message."""


@dataclass
class Trace:
    """Hops recorded by the loop, printed as they happen when `echo` is set."""

    echo: Callable[[str], None] | None = None
    hops: list[Hop] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def restart(self) -> None:
        """Forgets the hops and restarts the clock (a new text)."""
        with self._lock:
            self.started = time.monotonic()
            self.hops.clear()

    def add(self, where: str, what: str) -> None:
        """Records one hop, stamped with the time since the clock's start."""
        with self._lock:
            hop = Hop(time.monotonic() - self.started, where, what)
            self.hops.append(hop)
        if self.echo is not None:
            self.echo(f"{hop.at * 1000:8.1f} ms  {where:<22} {what}")


class LocalLoop:
    """Starts the local loop for environment `env`; use as a context manager."""

    def __init__(
        self,
        workdir: Path,
        *,
        env: str = "dev",
        echo: Callable[[str], None] | None = None,
        retry_delay_s: float = 0.2,
        receive_concurrency: int = 4,
        send_concurrency: int = 4,
        settings: Mapping[str, Any] | None = None,
    ) -> None:
        """`settings`: changes to the environment's `cdk.json` settings (a load test's caps)."""
        self.workdir = workdir
        self.trace = Trace(echo=echo)
        self.received: dict[str, list[dict[str, Any]]] = {}
        """Per thing, every message its app was handed, in order."""
        self.published: list[tuple[str, bytes]] = []
        """Every IoT data Publish the receive Lambda made."""
        self._closers: list[Callable[[], None]] = []
        try:
            self._start(env, retry_delay_s, receive_concurrency, send_concurrency, settings or {})
        except BaseException:
            self.close()
            raise

    # -- start and stop ------------------------------------------------------------------

    def _start(
        self,
        env: str,
        retry_delay_s: float,
        receive_n: int,
        send_n: int,
        overrides: Mapping[str, Any],
    ) -> None:
        workdir = self.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.settings: EnvironmentSettings = parse_environment(
            env, {**cdk_context()["environments"][env], **overrides}
        )
        self.template = synthesized_template(env, workdir / "cdk.out", overrides)
        resources = self.template["Resources"]

        self.moto = MotoServer()
        self._closers.append(self.moto.close)
        self.aws = LocalResources(self.moto, self.template)
        secret = next(r for r in resources.values() if r["Type"] == "AWS::SecretsManager::Secret")
        self.auth_token = secrets.token_hex(16)
        self.aws.put_secret(
            secret["Properties"]["Name"],
            {"account_sid": TEST_ACCOUNT_SID, "auth_token": self.auth_token},
        )

        policy = next(r for r in resources.values() if r["Type"] == "AWS::IoT::Policy")
        self.device_acl = acl_from_iot_policy(
            policy["Properties"]["PolicyDocument"], lambda value: str(self.aws.resolve(value))
        )
        self.broker = Broker(workdir / "broker", self.device_acl)
        self._closers.append(self.broker.close)
        cloud_tls = tls_context(str(self.broker.ca.cert_path), self.broker.identity(CLOUD_USER))
        self.cloud = CloudClient(self.broker.port, cloud_tls, "local-iot-core")
        self._closers.append(self.cloud.close)

        self.iot_data = IotDataStandIn(self.cloud, on_publish=self._on_inbound_publish)
        self._closers.append(self.iot_data.close)

        self.prism = PrismServer().start()
        self._closers.append(self.prism.stop)
        self.twilio = FaultProxy(self.prism.url).start()
        self._closers.append(self.twilio.stop)

        endpoints = {
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.moto.url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.moto.url,
            "AWS_ENDPOINT_URL_SQS": self.moto.url,
            # boto3 names the variable after the service id, "IoT Data Plane".
            "AWS_ENDPOINT_URL_IOT_DATA_PLANE": self.iot_data.url,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        }
        receive_id = find_by_path(
            self.template, "AWS::Lambda::Function", "Receive/Function/Resource"
        )
        send_id = find_by_path(self.template, "AWS::Lambda::Function", "Send/Function/Resource")
        self.receive = LocalFunction(
            "receive",
            ROOT / "lambdas" / "receive",
            resources[receive_id]["Properties"]["Handler"],
            {**self.aws.function_environment(receive_id), **endpoints},
            log_path=workdir / "receive.log",
            concurrency=receive_n,
        )
        self._closers.append(self.receive.close)
        self.send = LocalFunction(
            "send",
            ROOT / "lambdas" / "send",
            resources[send_id]["Properties"]["Handler"],
            {
                **self.aws.function_environment(send_id),
                **endpoints,
                "LOCAL_TWILIO_URL": self.twilio.url,
            },
            log_path=workdir / "send.log",
            concurrency=send_n,
            setup="loop.local_twilio:install",
        )
        self._closers.append(self.send.close)

        self.webhook = WebhookEndpoint(self.template, self.receive, on_response=self._on_webhook)
        self._closers.append(self.webhook.close)

        invoke_config = next(
            r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        )
        failure_queue = invoke_config["DestinationConfig"]["OnFailure"]["Destination"]
        self.dead_letter_queue_id = failure_queue["Fn::GetAtt"][0]
        rule = next(r for r in resources.values() if r["Type"] == "AWS::IoT::TopicRule")
        payload = rule["Properties"]["TopicRulePayload"]
        self.rule_error_queue_id = payload["ErrorAction"]["Sqs"]["QueueUrl"]["Ref"]
        self.rule_sql = payload["Sql"]
        self.router = RuleRouter(
            self.cloud,
            RuleQuery.parse(self.rule_sql),
            self.send,
            retry_attempts=int(invoke_config["MaximumRetryAttempts"]),
            retry_delay_s=retry_delay_s,
            on_failure=self._dead_letter,
            on_rule_error=self._rule_error,
            on_success=self._on_sent,
            on_match=self._on_outbound,
        )
        self._closers.append(self.router.close)

        self.refused_queue_id = find_by_path(
            self.template, "AWS::SQS::Queue", "OutboundPolicy/RefusedQueue/Resource"
        )
        self.contacts_table = find_by_path(
            self.template, "AWS::DynamoDB::Table", "Contacts/Table/Resource"
        )
        self.receive.warm_up()
        self.send.warm_up()

        self.devices: dict[str, HostDevice] = {}
        for thing in self.settings.devices:
            self.start_device(thing)

    def close(self) -> None:
        """Stops everything that was started, newest first."""
        for device in list(getattr(self, "devices", {}).values()):
            device.stop()
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception as error:  # keep stopping the rest
                print(f"local loop: stopping {closer!r} failed: {error}")

    def __enter__(self) -> LocalLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- devices -------------------------------------------------------------------------

    def start_device(self, thing: str) -> HostDevice:
        """Boots `thing`'s firmware (again); its broker session survives a stop."""
        identity = self.broker.identity(thing)
        device = HostDevice(
            thing=thing,
            port=self.broker.port,
            ca_file=self.broker.ca.cert_path,
            cert_file=identity.cert,
            key_file=identity.key,
            topic_prefix=self.settings.topic_prefix,
            handle=self._device_app(thing),
            log=lambda line: self.trace.add("device", line),
        )
        self.devices[thing] = device.start()
        device.wait_connected()
        return device

    def stop_device(self, thing: str) -> None:
        """Powers the board off (clean disconnect; the broker keeps its QoS 1 messages)."""
        self.devices.pop(thing).stop()

    def _device_app(self, thing: str) -> Callable[[dict[str, Any]], Any]:
        from loop.device_host import board_app

        app = board_app()

        received = self.received.setdefault(thing, [])

        def handle(message: dict[str, Any]) -> Any:
            received.append(message)
            self.trace.add(f"device {thing}", f"app got {message['Body']!r}")
            return app.handle(message)

        return handle

    # -- texting the device --------------------------------------------------------------

    def number_of(self, thing: str | None = None) -> str:
        """The Twilio number bound to `thing` (default: the first device)."""
        thing = thing or next(iter(self.settings.devices))
        return self.settings.devices[thing]

    def webhook_form(
        self,
        body: str,
        *,
        to: str | None = None,
        sender: str = SENDER_PHONE,
        media: list[tuple[str, str]] = (),  # type: ignore[assignment]
        message_sid: str | None = None,
    ) -> list[tuple[str, str]]:
        """The form Twilio posts for an incoming SMS/MMS."""
        form = [
            ("ToCountry", "US"),
            ("ToState", "CA"),
            ("SmsMessageSid", message_sid or "SM" + secrets.token_hex(16)),
            ("NumMedia", str(len(media))),
            ("ToCity", ""),
            ("FromZip", ""),
            ("SmsSid", ""),
            ("FromState", "CA"),
            ("SmsStatus", "received"),
            ("FromCity", ""),
            ("Body", body),
            ("FromCountry", "US"),
            ("To", to or self.number_of()),
            ("ToZip", ""),
            ("NumSegments", "1"),
            ("MessageSid", ""),
            ("AccountSid", TEST_ACCOUNT_SID),
            ("From", sender),
            ("ApiVersion", "2010-04-01"),
        ]
        sid = form[2][1]
        form = [(k, sid if k in ("SmsSid", "MessageSid") else v) for k, v in form]
        for index, (url, content_type) in enumerate(media):
            form.append((f"MediaUrl{index}", url))
            form.append((f"MediaContentType{index}", content_type))
        return form

    def signature(self, form: list[tuple[str, str]], url: str | None = None) -> str:
        """X-Twilio-Signature for posting `form` to the webhook's public URL."""
        validator = RequestValidator(self.auth_token)
        params: dict[str, str] = {}
        for key, value in form:
            params.setdefault(key, value)
        return str(validator.compute_signature(url or self.webhook.public_url, params))

    def post_webhook(
        self,
        form: list[tuple[str, str]],
        *,
        signature: str | None = None,
        content_type: str = "application/x-www-form-urlencoded",
        raw_body: bytes | None = None,
    ) -> HttpResponse:
        """POSTs to the local API as Twilio would (signed unless `signature` is given)."""
        body = raw_body if raw_body is not None else urllib.parse.urlencode(form).encode()
        headers = {
            "Content-Type": content_type,
            "X-Twilio-Signature": signature if signature is not None else self.signature(form),
            "User-Agent": "TwilioProxy/1.1",
        }
        # http://127.0.0.1 only: the URL is the local endpoint's own.
        request = urllib.request.Request(self.webhook.url, data=body, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                text = response.read().decode()
                return HttpResponse(response.status, dict(response.headers.items()), text)
        except urllib.error.HTTPError as error:
            text = error.read().decode()
            return HttpResponse(error.code, dict(error.headers.items()), text)

    def text(self, body: str, **kwargs: Any) -> HttpResponse:
        """A person texts the device: Twilio signs and posts the webhook."""
        form = self.webhook_form(body, **kwargs)
        self.trace.add("phone → Twilio", f"{body!r} from {mask(SENDER_PHONE)}")
        return self.post_webhook(form)

    # -- what Twilio and the queues got --------------------------------------------------

    def twilio_requests(self) -> list[TwilioRequest]:
        """Every Messages API request the mock Twilio answered, in order."""
        found = []
        for exchange in list(self.twilio.exchanges):
            if exchange.method == "POST" and exchange.path.split("?")[0].endswith("/Messages.json"):
                form = urllib.parse.parse_qs(exchange.body, keep_blank_values=True)
                found.append(
                    TwilioRequest(
                        exchange.client_status, exchange.fault, form, exchange.accepted_message
                    )
                )
        return found

    def sent_messages(self) -> list[dict[str, str]]:
        """The messages Twilio accepted (would send): To, From, Body, MediaUrl."""
        return [
            {key.removesuffix("[]"): values[0] for key, values in request.form.items()}
            for request in self.twilio_requests()
            if request.accepted
        ]

    def wait_for(
        self, condition: Callable[[], object], timeout: float = 20.0, poll: float = 0.02
    ) -> bool:
        """Polls `condition` every `poll` s until truthy or `timeout`; returns whether it was."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(poll)
        return bool(condition())

    def dead_letters(self) -> list[dict[str, Any]]:
        """Messages in the send Lambda's dead-letter queue (read without deleting)."""
        return self.aws.queue_messages(self.dead_letter_queue_id)

    def refused(self) -> list[dict[str, Any]]:
        """Messages the outbound policy refused (read without deleting)."""
        return self.aws.queue_messages(self.refused_queue_id)

    def remember_contact(
        self,
        number: str = SENDER_PHONE,
        *,
        thing: str | None = None,
        at: float | None = None,
        opted_out: bool = False,
    ) -> None:
        """Writes the Contacts item the receive Lambda keeps for `number` texting `thing`
        (default: the first device): it texted at `at` (default now), opted out or not."""
        thing = thing or next(iter(self.settings.devices))
        moment = time.time() if at is None else at
        self.moto.client("dynamodb").put_item(
            TableName=self.aws.refs[self.contacts_table],
            Item={
                "pk": {"S": f"{thing}#{number}"},
                "last_inbound_at": {"N": str(int(moment))},
                "opted_out": {"BOOL": opted_out},
            },
        )

    def rule_errors(self) -> list[dict[str, Any]]:
        """Messages the rule could not deliver (its error action's queue)."""
        return self.aws.queue_messages(self.rule_error_queue_id)

    # -- hop hooks -----------------------------------------------------------------------

    def _on_webhook(self, response: HttpResponse, seconds: float) -> None:
        self.trace.add(
            "API Gateway → Twilio",
            f"{response.status} {response.headers.get('Content-Type', '')} "
            f"{response.body[:60]!r} ({seconds * 1000:.0f} ms)",
        )

    def _on_inbound_publish(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, payload))
        self.trace.add("receive → IoT", f"published QoS 1 to {topic} ({len(payload)} bytes)")

    def _on_outbound(self, topic: str, payload: bytes) -> None:
        self.trace.add("IoT rule matched", f"{topic} ({len(payload)} bytes)")

    def _on_sent(self, event: Mapping[str, Any], result: Any) -> None:
        self.trace.add("send → Twilio", f"thing {event.get('thing')}: {json.dumps(result)[:80]}")

    def _dead_letter(self, event: dict[str, Any], error: LambdaError) -> None:
        """Lambda's on-failure destination record, into the template's queue."""
        record = {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(),
            "requestContext": {
                "requestId": secrets.token_hex(8),
                "functionArn": f"arn:aws:lambda:{REGION}:123456789012:function:send",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": int(self.router.retry_attempts) + 1,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": error.error_message, "errorType": error.error_type},
        }
        self.aws.send_to_queue(self.dead_letter_queue_id, record)
        self.trace.add("send → dead letters", f"after {self.router.retry_attempts + 1} attempts")

    def _rule_error(self, topic: str, payload: bytes, reason: str) -> None:
        """The rule's SQS error action: what it could not hand to the send Lambda."""
        import base64

        record = {
            "ruleName": "OutboundRule",
            "topic": topic,
            "base64OriginalPayload": base64.b64encode(payload).decode(),
            "failures": [{"failedAction": "LambdaAction", "errorMessage": reason}],
        }
        self.aws.send_to_queue(self.rule_error_queue_id, record)
        self.trace.add("rule → error queue", reason)
