"""AWS IoT resources for the devices: thing type, one thing per device, the device policy,
and a certificate per device that has a CSR (made locally by `python -m device.tool keys`)."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Annotations, Aws, Stack, aws_iot
from constructs import Construct

from contract import certificate_output_name, inbound_topic, outbound_topic

# IoT policy variable: the thing name of the certificate the connection authenticated with.
THING_VARIABLE = "${iot:Connection.Thing.ThingName}"


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
        csrs: Mapping[str, str] | None = None,
    ) -> None:
        """`csrs`: thing name -> PEM certificate signing request, for the devices that have
        one. Each gets an ACTIVE certificate attached to its thing and to the policy; the
        others get a synth warning naming the `keys` command."""
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
            # CloudFormation has no thing-type property on AWS::IoT::Thing;
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

        self.certificates: dict[str, aws_iot.CfnCertificate] = {}
        csrs = csrs or {}
        names = [certificate_output_name(t) for t in devices]
        if len(set(names)) != len(names):
            raise ValueError(
                "Two thing names differ only in punctuation; their certificate outputs "
                f"would collide: {sorted(devices)}"
            )
        for thing_name, thing in self.things.items():
            csr = csrs.get(thing_name)
            if csr is None:
                Annotations.of(thing).add_warning_v2(
                    "text-device:no-certificate",
                    f"Device {thing_name!r} has no certificate yet: run `.venv/bin/python -m "
                    f"device.tool keys --env {environment_name} --thing {thing_name}` and "
                    "synthesize or deploy again.",
                )
                continue
            # AWS IoT signs the CSR: the private key never leaves the developer's machine.
            certificate = aws_iot.CfnCertificate(
                self,
                f"Certificate-{thing_name}",
                status="ACTIVE",
                certificate_signing_request=csr,
            )
            aws_iot.CfnThingPrincipalAttachment(
                self,
                f"ThingCertificate-{thing_name}",
                thing_name=thing.ref,
                principal=certificate.attr_arn,
            )
            aws_iot.CfnPolicyPrincipalAttachment(
                self,
                f"PolicyCertificate-{thing_name}",
                policy_name=self.policy.ref,
                principal=certificate.attr_arn,
            )
            self.certificates[thing_name] = certificate

    def inbound_topic_arns(self) -> list[str]:
        """ARNs of the configured devices' inbound topics, for the publisher's IAM policy.

        Listed one by one rather than `topic/{prefix}/*/inbound`: IAM's `*` also matches
        across `/`, and the devices are known at synth time.
        """
        stack = Stack.of(self)
        return [
            f"arn:{Aws.PARTITION}:iot:{stack.region}:{stack.account}:topic/"
            f"{inbound_topic(self.topic_prefix, thing)}"
            for thing in sorted(self.things)
        ]
