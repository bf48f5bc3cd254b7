"""AWS APIs on loopback for the local loop: moto's server mode, provisioned from the template.

The handlers keep their boto3 code; only `AWS_ENDPOINT_URL_*` differs. Tables, queues and the
secret are created from the synthesized template (their key schemas, names and references),
so a Lambda's environment resolves to local resources exactly as CloudFormation would
resolve it to real ones.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import urllib.request
from collections.abc import Mapping
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from loop.processes import free_port

REGION = "eu-west-1"
ACCOUNT = "123456789012"  # moto's default account
API_ID = "local0api"  # the REST API's id in URLs built from the template
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


_WRITE_LOCK = threading.RLock()
_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items")


def atomic_dynamodb_writes() -> None:
    """Makes moto's DynamoDB apply each write atomically, as DynamoDB does.

    DynamoDB evaluates a write's condition and applies it as one step, so concurrent
    conditional writes (the send caps' counters) never both pass; moto reads, checks and
    writes without a lock. Wrapping its writes in one lock restores the guarantee. Safe to
    call more than once.
    """
    from moto.dynamodb.models import DynamoDBBackend

    for name in _WRITES:
        original = getattr(DynamoDBBackend, name)
        if getattr(original, "atomic", False):
            continue

        def atomic(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with _WRITE_LOCK:
                return _original(self, *args, **kwargs)

        atomic.atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, atomic)


class MotoServer:
    """moto in server mode on 127.0.0.1 (Secrets Manager, DynamoDB, SQS...)."""

    def __init__(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs each call
        atomic_dynamodb_writes()
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.url = f"http://127.0.0.1:{self.port}"
        # moto's backends live in the process, not the server: a loop started after another
        # one in the same process (a second test module) must not find the first's tables.
        reset = f"{self.url}/moto-api/reset"
        request = urllib.request.Request(reset, method="POST")  # noqa: S310 (loopback)
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310 (loopback URL)
            pass

    def _connection(self) -> dict[str, str]:
        """Where and as whom boto3 talks to this server."""
        return {
            "endpoint_url": self.url,
            "region_name": REGION,
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        }

    def client(self, service: str) -> Any:
        """A boto3 client of this server."""
        client: Any = boto3.client(service, **self._connection())  # type: ignore[call-overload]
        return client

    def resource(self, service: str) -> Any:
        """A boto3 resource of this server (DynamoDB tables)."""
        resource: Any = boto3.resource(service, **self._connection())  # type: ignore[call-overload]
        return resource

    def close(self) -> None:
        """Empties moto and stops the server: moto's state belongs to the process, so the
        next loop started in it (another test module's) would find this one's tables."""
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            connection.request("POST", "/moto-api/reset")
            connection.getresponse().read()
            connection.close()
        finally:
            self._server.stop()


class LocalResources:
    """What the template's `Ref` and `Fn::GetAtt` resolve to, once created in moto."""

    def __init__(self, moto: MotoServer, template: Mapping[str, Any]) -> None:
        self.moto = moto
        self.template = template
        self.refs: dict[str, str] = {}
        self.arns: dict[str, str] = {}
        self.queue_urls: dict[str, str] = {}
        dynamodb = moto.client("dynamodb")
        self._sqs = sqs = moto.client("sqs")  # kept: the loop reads and writes queues often
        for logical_id, resource in template["Resources"].items():
            properties = resource.get("Properties", {})
            if resource["Type"] == "AWS::DynamoDB::Table":
                dynamodb.create_table(
                    TableName=logical_id,
                    KeySchema=properties["KeySchema"],
                    AttributeDefinitions=properties["AttributeDefinitions"],
                    BillingMode="PAY_PER_REQUEST",
                    **(
                        {"LocalSecondaryIndexes": properties["LocalSecondaryIndexes"]}
                        if "LocalSecondaryIndexes" in properties
                        else {}
                    ),
                )
                self.refs[logical_id] = logical_id
                self.arns[logical_id] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{logical_id}"
            elif resource["Type"] == "AWS::SQS::Queue":
                url = sqs.create_queue(QueueName=logical_id)["QueueUrl"]
                self.refs[logical_id] = url
                self.queue_urls[logical_id] = url
                self.arns[logical_id] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{logical_id}"

    def _other_ref(self, logical_id: str) -> str:
        resource = self.template["Resources"][logical_id]
        if resource["Type"] == "AWS::ApiGateway::RestApi":
            return API_ID
        if resource["Type"] == "AWS::ApiGateway::Stage":
            return str(resource["Properties"]["StageName"])
        raise KeyError(f"cannot resolve Ref {logical_id} ({resource['Type']}) locally")

    def put_secret(self, name: str, value: Mapping[str, str]) -> None:
        """Creates the secret the template declares, holding `value` (as put-secret-value would)."""
        self.moto.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(value))

    def resolve(self, value: Any) -> Any:
        """A template value with `Ref`, `Fn::GetAtt` (Arn) and `Fn::Join` resolved locally."""
        if isinstance(value, dict):
            if "Ref" in value:
                name = value["Ref"]
                pseudo = {
                    "AWS::Region": REGION,
                    "AWS::AccountId": ACCOUNT,
                    "AWS::Partition": "aws",
                    "AWS::URLSuffix": "amazonaws.com",
                }
                if name in pseudo:
                    return pseudo[name]
                if name in self.refs:
                    return self.refs[name]
                return self._other_ref(name)
            if "Fn::GetAtt" in value:
                logical_id, attribute = value["Fn::GetAtt"]
                if attribute == "Arn":
                    return self.arns[logical_id]
                raise KeyError(f"cannot resolve Fn::GetAtt {logical_id}.{attribute} locally")
            if "Fn::Join" in value:
                separator, parts = value["Fn::Join"]
                return str(separator).join(str(self.resolve(part)) for part in parts)
        return value

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """A Lambda function's environment variables, resolved."""
        properties = self.template["Resources"][logical_id]["Properties"]
        variables = properties.get("Environment", {}).get("Variables", {})
        return {name: str(self.resolve(value)) for name, value in variables.items()}

    def send_to_queue(self, logical_id: str, record: Mapping[str, Any]) -> None:
        """Puts `record`, as JSON, in the template's queue `logical_id`."""
        self._sqs.send_message(QueueUrl=self.queue_urls[logical_id], MessageBody=json.dumps(record))

    def queue_messages(self, logical_id: str) -> list[dict[str, Any]]:
        """Every message waiting in a queue, each once (bodies parsed as JSON where JSON).

        Messages are peeked: received with a short visibility timeout, then made visible
        again, so the queue still holds them for the next reader.
        """
        sqs = self._sqs
        url = self.queue_urls[logical_id]
        seen: dict[str, dict[str, Any]] = {}
        handles: list[str] = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30
            ).get("Messages", [])
            if not batch:
                break
            for message in batch:
                handles.append(message["ReceiptHandle"])
                try:
                    seen[message["MessageId"]] = json.loads(message["Body"])
                except json.JSONDecodeError:
                    seen[message["MessageId"]] = {"raw": message["Body"]}
        for handle in handles:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
        return list(seen.values())


def find_by_path(template: Mapping[str, Any], type_name: str, path_suffix: str) -> str:
    """The logical id of the resource of `type_name` whose CDK path ends with `path_suffix`."""
    for logical_id, resource in template["Resources"].items():
        path = resource.get("Metadata", {}).get("aws:cdk:path", "")
        if resource["Type"] == type_name and path.endswith(path_suffix):
            return str(logical_id)
    raise KeyError(f"no {type_name} at */{path_suffix} in the template")
