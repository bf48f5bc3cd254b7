"""One shard of the fleet: a nested stack with the things, certificates and bindings of the
devices whose thing name hashes to it.

CloudFormation allows 500 resources per stack; a device costs 4 (thing, certificate and
its two attachments), 3 more while its certificate is rotated and 1 more when the stack
points its Twilio number at the webhook. Spread over `device_shards` nested stacks by a
hash of the thing name, a device always lands in the same shard, so adding or removing one
never moves another device's resources.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from aws_cdk import CustomResource, NestedStack, aws_iot
from constructs import Construct

from stacks.device_files import csr_fingerprint
from stacks.twilio_number import RESOURCE_TYPE as TWILIO_NUMBER_RESOURCE_TYPE

BINDINGS_RESOURCE_TYPE = "Custom::DeviceBindings"


def shard_of(thing: str, shard_count: int) -> int:
    """The shard of `thing`: stable for a given count (SHA-256, not Python's salted hash)."""
    digest = hashlib.sha256(thing.encode()).digest()
    return int.from_bytes(digest[:8], "big") % shard_count


def shard_id(shard: int) -> str:
    """The nested stack's construct id: `Shard07`."""
    return f"Shard{shard:02d}"


@dataclass(frozen=True, kw_only=True)
class NumberWebhookSettings:
    """Set when the stack points each bound number's SMS webhook at itself."""

    service_token: str
    webhook_url: str
    fallback_url: str | None


class DeviceShard(NestedStack):
    """Things, certificates (one per committed CSR) and attachments of some devices, and
    the custom resource that writes their bindings to the bindings table."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment_name: str,
        devices: Mapping[str, str],
        csrs: Mapping[str, Sequence[str]],
        policy_name: str,
        bindings_table_name: str,
        bindings_service_token: str,
        number_webhook: NumberWebhookSettings | None = None,
    ) -> None:
        """`devices`: thing -> number; `csrs`: thing -> its PEM CSR(s), current first."""
        super().__init__(
            scope, construct_id, description=f"Devices of {environment_name}, {construct_id}"
        )
        self.things: dict[str, aws_iot.CfnThing] = {}
        self.certificates: dict[str, list[aws_iot.CfnCertificate]] = {}
        for thing_name in sorted(devices):
            # One scope per device: its resources' logical ids hash its own path, so they
            # never collide (`a-b` and `ab`) and never change when other devices come and go.
            device = Construct(self, f"Device-{thing_name}")
            # CloudFormation has no thing-type property on AWS::IoT::Thing; the environment
            # attribute makes the fleet searchable instead.
            thing = aws_iot.CfnThing(
                device,
                "Thing",
                thing_name=thing_name,
                attribute_payload=aws_iot.CfnThing.AttributePayloadProperty(
                    attributes={"environment": environment_name}
                ),
            )
            self.things[thing_name] = thing
            self.certificates[thing_name] = []
            for csr in csrs[thing_name]:
                # Named after the CSR, so a rotation adds a certificate beside the current
                # one instead of replacing it: the board stays online until it is reflashed.
                fingerprint = csr_fingerprint(csr)
                # AWS IoT signs the CSR: the private key never leaves the developer's machine.
                certificate = aws_iot.CfnCertificate(
                    device,
                    f"Certificate-{fingerprint}",
                    status="ACTIVE",
                    certificate_signing_request=csr,
                )
                aws_iot.CfnThingPrincipalAttachment(
                    device,
                    f"ThingCertificate-{fingerprint}",
                    thing_name=thing.ref,
                    principal=certificate.attr_arn,
                )
                aws_iot.CfnPolicyPrincipalAttachment(
                    device,
                    f"PolicyCertificate-{fingerprint}",
                    policy_name=policy_name,
                    principal=certificate.attr_arn,
                )
                self.certificates[thing_name].append(certificate)
            if number_webhook is not None:
                CustomResource(
                    device,
                    "NumberWebhook",
                    service_token=number_webhook.service_token,
                    resource_type=TWILIO_NUMBER_RESOURCE_TYPE,
                    properties={
                        "PhoneNumber": devices[thing_name],
                        "SmsUrl": number_webhook.webhook_url,
                        "SmsFallbackUrl": number_webhook.fallback_url or "",
                    },
                )
        self.bindings = CustomResource(
            self,
            "Bindings",
            service_token=bindings_service_token,
            resource_type=BINDINGS_RESOURCE_TYPE,
            properties={
                "TableName": bindings_table_name,
                "Shard": construct_id,
                "Bindings": dict(sorted(devices.items())),
            },
        )
