"""AWS IoT resources for the devices: thing type, the device policy, and the devices
themselves spread over nested stacks (`stacks/device_shard.py`), each with a certificate
per CSR committed in `devices/{env}/`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Aws, Stack, aws_iot
from constructs import Construct

from contract import ack_topic, inbound_topic, outbound_topic, redeliver_topic
from stacks.device_bindings import DeviceBindings
from stacks.device_shard import DeviceShard, NumberWebhookSettings, shard_id, shard_of
from stacks.ota_updates import device_jobs_statements

# IoT policy variable: the thing name of the certificate the connection authenticated with.
THING_VARIABLE = "${iot:Connection.Thing.ThingName}"


class DeviceFleet(Construct):
    """Things and the one policy that confines each device to its own client id and topics.

    The policy uses `${iot:Connection.Thing.ThingName}`, so a certificate attached to thing A
    can connect only as client id A, subscribe only to A's inbound topic and publish only to
    A's outbound, mailbox-request (ack, redeliver) and shadow topics, and use only A's jobs and
    streams topics (updates over the air): one stolen device cannot read, confirm or spend
    another's SMS, or fetch its app.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment_name: str,
        topic_prefix: str,
        devices: Mapping[str, str],
        csrs: Mapping[str, Sequence[str]],
        shard_count: int,
        bindings: DeviceBindings,
        number_webhook: NumberWebhookSettings | None = None,
    ) -> None:
        """`devices`: thing -> number; `csrs`: thing -> its PEM CSR(s) (every device has
        one: app.py fails synth otherwise). Each CSR gets an ACTIVE certificate attached to
        its thing and to the policy, in the device's shard."""
        super().__init__(scope, construct_id)
        self.topic_prefix = topic_prefix
        self.thing_type = aws_iot.CfnThingType(
            self,
            "ThingType",
            thing_type_name=f"text-device-{environment_name}",
            thing_type_properties=aws_iot.CfnThingType.ThingTypePropertiesProperty(
                thing_type_description="A board that receives and sends SMS over MQTT",
                searchable_attributes=["environment"],
            ),
        )
        stack = Stack.of(self)

        def arn(resource: str) -> str:
            return f"arn:{Aws.PARTITION}:iot:{stack.region}:{stack.account}:{resource}"

        own_inbound = inbound_topic(topic_prefix, THING_VARIABLE)
        own_outbound = outbound_topic(topic_prefix, THING_VARIABLE)
        self.policy = aws_iot.CfnPolicy(
            self,
            "DevicePolicy",
            policy_document={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "ConnectAsOwnThingOnly",
                        "Effect": "Allow",
                        "Action": "iot:Connect",
                        "Resource": arn(f"client/{THING_VARIABLE}"),
                        "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
                    },
                    {
                        "Sid": "SubscribeOwnInbound",
                        "Effect": "Allow",
                        "Action": "iot:Subscribe",
                        "Resource": arn(f"topicfilter/{own_inbound}"),
                    },
                    {
                        "Sid": "ReceiveOwnInbound",
                        "Effect": "Allow",
                        "Action": "iot:Receive",
                        "Resource": arn(f"topic/{own_inbound}"),
                    },
                    {
                        "Sid": "PublishOwnOutboundAndShadow",
                        "Effect": "Allow",
                        "Action": "iot:Publish",
                        "Resource": [
                            arn(f"topic/{own_outbound}"),
                            arn(f"topic/$aws/things/{THING_VARIABLE}/shadow/update"),
                        ],
                    },
                    {
                        "Sid": "PublishOwnMailboxRequests",
                        "Effect": "Allow",
                        "Action": "iot:Publish",
                        "Resource": [
                            arn(f"topic/{ack_topic(topic_prefix, THING_VARIABLE)}"),
                            arn(f"topic/{redeliver_topic(topic_prefix, THING_VARIABLE)}"),
                        ],
                    },
                    # Over-the-air updates: the device's own jobs and streams topics.
                    *device_jobs_statements(arn, THING_VARIABLE),
                ],
            },
        )

        by_shard: dict[int, dict[str, str]] = {}
        for thing_name, number in devices.items():
            by_shard.setdefault(shard_of(thing_name, shard_count), {})[thing_name] = number
        # Only shards with devices exist: CloudFormation refuses a stack without resources.
        self.shards: dict[int, DeviceShard] = {
            shard: DeviceShard(
                self,
                shard_id(shard),
                environment_name=environment_name,
                devices=members,
                csrs={thing: csrs[thing] for thing in members},
                policy_name=self.policy.ref,
                bindings_table_name=bindings.table.table_name,
                bindings_service_token=bindings.service_token,
                number_webhook=number_webhook,
            )
            for shard, members in sorted(by_shard.items())
        }
        self.things = {t: r for s in self.shards.values() for t, r in s.things.items()}
        self.certificates = {t: c for s in self.shards.values() for t, c in s.certificates.items()}

    def inbound_topic_arn(self) -> str:
        """The ARN that covers every device's inbound topic, for the publisher's IAM policy.

        A wildcard bounded by the prefix, `topic/{prefix}/*/inbound`, instead of one ARN per
        device: the list grew the policy by 65 characters a device, past IAM's 6,144 at 94.
        (IAM's `*` also matches across `/`; no device subscribes to such a topic: the
        device policy allows each one only `{prefix}/{its thing}/inbound`.)
        """
        stack = Stack.of(self)
        return (
            f"arn:{Aws.PARTITION}:iot:{stack.region}:{stack.account}:topic/"
            f"{inbound_topic(self.topic_prefix, '*')}"
        )
