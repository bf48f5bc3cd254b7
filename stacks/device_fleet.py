"""AWS IoT resources for the devices: thing type, one thing per device, the device policy."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, Stack, aws_iot
from constructs import Construct

# IoT policy variable: the thing name of the certificate the connection authenticated with.
THING_VARIABLE = "${iot:Connection.Thing.ThingName}"


def inbound_topic(prefix: str, thing: str) -> str:
    """The topic a device receives its SMS on."""
    return f"{prefix}/{thing}/inbound"


def outbound_topic(prefix: str, thing: str) -> str:
    """The topic a device publishes its replies on."""
    return f"{prefix}/{thing}/outbound"


class DeviceFleet(Construct):
    """Things and the one policy that confines each device to its own client id and topics.

    The policy uses `${iot:Connection.Thing.ThingName}`, so a certificate attached to thing A
    can connect only as client id A, subscribe only to A's inbound topic and publish only to
    A's outbound topic and A's shadow: one stolen device cannot read or spend another's SMS.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment_name: str,
        topic_prefix: str,
        devices: Mapping[str, str],
    ) -> None:
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
        self.things: dict[str, aws_iot.CfnThing] = {}
        for thing_name in devices:
            # CloudFormation has no thing-type property on AWS::IoT::Thing (see DESIGN.md);
            # the environment attribute makes the fleet searchable instead.
            self.things[thing_name] = aws_iot.CfnThing(
                self,
                f"Thing-{thing_name}",
                thing_name=thing_name,
                attribute_payload=aws_iot.CfnThing.AttributePayloadProperty(
                    attributes={"environment": environment_name}
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
                ],
            },
        )

    def inbound_topic_arn_pattern(self) -> str:
        """ARN of every device's inbound topic, for the publisher's IAM policy."""
        stack = Stack.of(self)
        return (
            f"arn:{Aws.PARTITION}:iot:{stack.region}:{stack.account}:topic/"
            f"{inbound_topic(self.topic_prefix, '*')}"
        )
