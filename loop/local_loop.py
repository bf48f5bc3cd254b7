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
- the mailbox: its device-request Lambda behind the ack and redeliver rules, and its
  sweeper, run by `mailbox.sweep()` (`loop/mailbox_local.py`);
- Prism serving Twilio's OpenAPI contract, behind a proxy that keeps the messages Twilio
  accepted (`loop.twilio_proxy`; tests pass one that also injects Twilio's failures);
- AWS IoT Jobs and MQTT-based file delivery (`loop.iot_jobs`), so `update_app` updates a
  running board over the air with `python -m device.tool ota`'s own code;
- each configured device's firmware (`device/board/`) on the host, its flash a folder of
  the work folder (`flash/{thing}/`).

Everything it starts, `close()` stops (it is a context manager).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import contract
from device.tool.ota import update_devices
from loop import bindings
from loop.api_stage import ProxyRoute, StageThrottle
from loop.apigw_vtl import HttpResponse
from loop.aws_local import REGION, LocalResources, MotoServer, find_by_path
from loop.broker import CLOUD_USER, Broker, acl_from_iot_policy
from loop.certs import tls_context
from loop.cloud import CloudClient, IotDataStandIn, RuleQuery, RuleRouter
from loop.device_host import HostDevice
from loop.failure_records import rule_error_record
from loop.iot_jobs import ACCOUNT, LocalIotJobs
from loop.lambda_runtime import LambdaError, LocalFunction
from loop.mailbox_local import LocalMailbox
from loop.prism_server import PrismServer
from loop.stack import ROOT, cdk_context, synthesized_template
from loop.trace import Trace, mask
from loop.twilio_loopback import TEST_ACCOUNT_SID
from loop.twilio_proxy import TwilioProxy
from loop.twilio_webhook import SENDER_PHONE, TwilioWebhook
from loop.webhook_server import WebhookEndpoint
from stacks.device_files import DEVICES_ROOT, load_settings
from stacks.settings import EnvironmentSettings

LOAD_CAPS = {"send_limit_per_minute": 1000, "send_limit_per_day": 100_000}
"""Send caps for a loop that answers hundreds of texts a minute (load tests, benchmarks):
the defaults (10 a minute, 200 a day per device) would refuse most of the replies."""

OTA_BUCKET = "local-ota"
"""The update bucket of the local IoT Jobs model."""


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
        twilio_proxy: Callable[[str], TwilioProxy] = TwilioProxy,
        settings: Mapping[str, Any] | None = None,
        devices_dir: Path | None = None,
        mailbox_environment: Mapping[str, str] | None = None,
        throttle: bool = False,
    ) -> None:
        """`settings`: changes to the environment's `cdk.json` settings (a load test's caps);
        `devices_dir`: another fleet than the committed `devices/` (a test's);
        `mailbox_environment`: variables set on the mailbox Lambdas over the template's
        (a test shortens `MAILBOX_RETENTION_SECONDS`); `throttle`: apply the stage's
        throttle (429 beyond its burst and rate), off by default so load tests measure the
        pipeline rather than the stage limit."""
        self.workdir = workdir
        self._twilio_proxy = twilio_proxy
        self._mailbox_environment = mailbox_environment
        self.throttle = throttle
        self.trace = Trace(echo=echo)
        self.received: dict[str, list[dict[str, Any]]] = {}
        """Per thing, every message its app was handed, in order."""
        self.published: list[tuple[str, bytes]] = []
        """Every IoT data Publish the receive Lambda made."""
        self._closers: list[Callable[[], None]] = []
        try:
            self._start(
                env,
                retry_delay_s,
                receive_concurrency,
                send_concurrency,
                settings or {},
                devices_dir,
            )
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
        devices_dir: Path | None,
    ) -> None:
        workdir = self.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        environments = cdk_context()["environments"]
        environments[env] = {**environments[env], **overrides}
        self.settings: EnvironmentSettings = load_settings(
            env, environments, devices_dir or DEVICES_ROOT
        )
        self.template = synthesized_template(
            env, workdir / "cdk.out", environments=environments, devices_dir=devices_dir
        )
        resources = self.template["Resources"]

        self.moto = MotoServer()
        self._closers.append(self.moto.close)
        self.aws = LocalResources(self.moto, self.template)
        secret = next(r for r in resources.values() if r["Type"] == "AWS::SecretsManager::Secret")
        self.twilio_secret_name: str = secret["Properties"]["Name"]
        self.auth_token = secrets.token_hex(16)
        self.aws.put_secret(
            self.twilio_secret_name,
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
        self.twilio = self._twilio_proxy(self.prism.url).start()
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
        # What the shards' custom resources write on deploy: the number <-> thing bindings.
        bindings_table = self.aws.function_environment(receive_id)[contract.BINDINGS_TABLE_VARIABLE]
        bindings.fill(
            self.moto.resource("dynamodb").Table(bindings_table),
            *bindings.shard_bindings(workdir / "cdk.out"),
        )
        self.receive = LocalFunction(
            "receive",
            ROOT / "lambdas",
            resources[receive_id]["Properties"]["Handler"],
            {**self.aws.function_environment(receive_id), **endpoints},
            log_path=workdir / "receive.log",
            concurrency=receive_n,
        )
        self._closers.append(self.receive.close)
        self.send = LocalFunction(
            "send",
            ROOT / "lambdas",
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

        proxy_routes = {}
        if self.settings.status_callback:
            status_id = find_by_path(
                self.template, "AWS::Lambda::Function", "StatusCallback/Handler/Function/Resource"
            )
            self.status = LocalFunction(
                "status",
                ROOT / "lambdas",
                resources[status_id]["Properties"]["Handler"],
                {**self.aws.function_environment(status_id), **endpoints},
                log_path=workdir / "status.log",
                concurrency=1,
            )
            self._closers.append(self.status.close)
            proxy_routes["status"] = ProxyRoute(self.status, "/status")
        self.webhook = WebhookEndpoint(
            self.template,
            self.receive,
            on_response=self._on_webhook,
            throttle=StageThrottle.from_template(self.template) if self.throttle else None,
            proxy_routes=proxy_routes,
        )
        self._closers.append(self.webhook.close)
        self.twilio_webhook = TwilioWebhook(
            self.webhook.url, self.webhook.public_url, self.auth_token
        )

        invoke_config = next(
            r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        )
        failure_queue = invoke_config["DestinationConfig"]["OnFailure"]["Destination"]
        self.dead_letter_queue_id = failure_queue["Fn::GetAtt"][0]
        rule = resources[find_by_path(self.template, "AWS::IoT::TopicRule", "OutboundRule")]
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
        self.mailbox = LocalMailbox(
            template=self.template,
            aws=self.aws,
            cloud=self.cloud,
            endpoints=endpoints,
            workdir=workdir,
            retry_delay_s=retry_delay_s,
            on_event=self.trace.add,
            on_rule_error=self._rule_error,
            environment_overrides=self._mailbox_environment,
        )
        self._closers.append(self.mailbox.close)

        self.iot_jobs = LocalIotJobs(self.cloud, things=self.settings.devices, bucket=OTA_BUCKET)
        self._closers.append(self.iot_jobs.close)

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
            root=self.workdir / "flash" / thing,
            topic_prefix=self.settings.topic_prefix,
            observe=self._observer(thing),
            log=lambda line: self.trace.add("device", line),
        )
        self.devices[thing] = device.start()
        device.wait_connected()
        return device

    def stop_device(self, thing: str) -> None:
        """Powers the board off (clean disconnect; the broker keeps its QoS 1 messages)."""
        self.devices.pop(thing).stop()

    def expire_session(self, thing: str) -> None:
        """The broker forgets `thing`'s session, as when it stayed away past the expiry."""
        self.broker.expire_session(thing)
        self.trace.add("broker", f"session of {thing} expired")

    def pending(self, thing: str) -> list[dict[str, Any]]:
        """The messages waiting in `thing`'s mailbox (the stored payloads, oldest first)."""
        table = find_by_path(self.template, "AWS::DynamoDB::Table", "Mailbox/Table/Resource")
        items = self.moto.client("dynamodb").query(
            TableName=self.aws.refs[table],
            IndexName=contract.MAILBOX_BY_ARRIVAL,
            KeyConditionExpression=f"{contract.MAILBOX_THING} = :thing",
            ExpressionAttributeValues={":thing": {"S": thing}},
        )["Items"]
        return [json.loads(contract.MailboxEntry.from_item(item).payload) for item in items]

    def _observer(self, thing: str) -> Callable[[dict[str, Any]], None]:
        received = self.received.setdefault(thing, [])

        def observe(message: dict[str, Any]) -> None:
            received.append(message)
            self.trace.add(f"device {thing}", f"app got {message['Body']!r}")

        return observe

    def start_update(
        self,
        sources: Path,
        thing: str | None = None,
        *,
        timeout_s: float = 60.0,
        echo: Callable[[str], None] = print,
    ) -> Future[int]:
        """Starts updating `thing`'s app (default: the first device) over the air with the
        app in `sources` (a folder like `device/board/`), as `make ota` does against AWS.

        The result is the tool's exit status (0: the board runs the new app). It comes once
        the board has judged the new app: after its first message (or a quiet probation
        window), so text the board meanwhile. Ships source (`--source`): the board runs
        under CPython here.
        """
        thing = thing or next(iter(self.settings.devices))
        outputs = {
            contract.OTA_BUCKET_OUTPUT: OTA_BUCKET,
            contract.OTA_STREAM_ROLE_OUTPUT: f"arn:aws:iam::{ACCOUNT}:role/local-ota-stream",
        }
        worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ota")
        update = worker.submit(
            update_devices,
            env=self.settings.name,
            things=[thing],
            outputs=outputs,
            api=self.iot_jobs,
            timeout_s=timeout_s,
            poll_s=0.05,
            sources=sources,
            ship_source=True,
            echo=echo,
        )
        worker.shutdown(wait=False)
        return update

    # -- texting the device --------------------------------------------------------------

    def number_of(self, thing: str | None = None) -> str:
        """The Twilio number bound to `thing` (default: the first device)."""
        thing = thing or next(iter(self.settings.devices))
        return self.settings.devices[thing]

    def text(self, body: str, **kwargs: Any) -> HttpResponse:
        """A person texts the device (`TwilioWebhook.form`'s keywords; `to` defaults to the
        first device's number): Twilio signs and posts the webhook."""
        form = self.twilio_webhook.form(body, **{"to": self.number_of(), **kwargs})
        self.trace.add("phone → Twilio", f"{body!r} from {mask(SENDER_PHONE)}")
        return self.twilio_webhook.post(form)

    # -- waiting and what the queues got ---------------------------------------------------------

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

    def twilio_secret(self) -> dict[str, str]:
        """The Twilio secret's current value (the Lambdas read it through their cache)."""
        answer = self.moto.client("secretsmanager").get_secret_value(
            SecretId=self.twilio_secret_name
        )
        value: dict[str, str] = json.loads(answer["SecretString"])
        return value

    def put_twilio_secret(self, value: Mapping[str, str]) -> None:
        """A new value of the Twilio secret, as `aws secretsmanager put-secret-value` puts it
        (a token rotation's steps)."""
        self.moto.client("secretsmanager").put_secret_value(
            SecretId=self.twilio_secret_name, SecretString=json.dumps(dict(value))
        )

    def remember_contact(
        self,
        number: str = SENDER_PHONE,
        *,
        thing: str | None = None,
        at: float | None = None,
        opted_out: bool = False,
    ) -> None:
        """Writes the Contacts item the receive Lambda keeps for `number` texting `thing`
        (default: the first device): it texted at `at` (default now), opted out or not.

        The receive Lambda writes it for every text the loop delivers; this seeds a contact
        no text made (another device's number, an old text, an opt-out) for policy tests."""
        thing = thing or next(iter(self.settings.devices))
        moment = time.time() if at is None else at
        self.moto.client("dynamodb").put_item(
            TableName=self.aws.refs[self.contacts_table],
            Item={
                contract.CONTACT_KEY_ATTRIBUTE: {"S": contract.contact_key(thing, number)},
                contract.LAST_INBOUND_ATTRIBUTE: {"N": str(int(moment))},
                contract.OPTED_OUT_ATTRIBUTE: {"BOOL": opted_out},
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
        attempts = self.router.retry_attempts + 1
        record = contract.dead_letter_record(
            event,
            condition=contract.RETRIES_EXHAUSTED,
            request_id=secrets.token_hex(8),
            function_arn=f"arn:aws:lambda:{REGION}:123456789012:function:send",
            error={"errorMessage": error.error_message, "errorType": error.error_type},
            invoke_count=attempts,
            function_error="Unhandled",
        )
        self.aws.send_to_queue(self.dead_letter_queue_id, record)
        self.trace.add("send → dead letters", f"after {attempts} attempts")

    def _rule_error(self, topic: str, payload: bytes, reason: str) -> None:
        """The rule's SQS error action: what it could not hand to the send Lambda."""
        record = rule_error_record("OutboundRule", topic, payload, reason)
        self.aws.send_to_queue(self.rule_error_queue_id, record)
        self.trace.add("rule → error queue", reason)
