"""What the board needs from AWS: the stack's outputs, the ATS endpoint, the certificate.

Read-only calls (CloudFormation DescribeStacks, IoT ListThingPrincipals,
DescribeCertificate and DescribeEndpoint); every failure becomes a `ToolError` that names
the fix. The certificate is the one attached to the thing that was issued for the local
key: during a rotation the thing has two, and the board gets the new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    TokenRetrievalError,
)

import contract
from device.tool.errors import NoAwsCredentials, NoCertificate, StackNotDeployed, ToolError

REJECTED_CREDENTIALS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "AccessDeniedException",
    }
)
NOT_DEPLOYED_STATUSES = frozenset({"ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_COMPLETE"})


@dataclass(frozen=True)
class CloudDevice:
    """One device's view of its deployed environment."""

    endpoint: str
    certificate_id: str
    certificate_pem: str
    topic_prefix: str


def _credentials_error(error: Exception) -> NoAwsCredentials:
    return NoAwsCredentials(
        f"No usable AWS credentials ({error}). Configure them (`aws configure`, "
        "`AWS_PROFILE=...` or `aws sso login`) for the account the stack is deployed in."
    )


def _call(method: Any, **kwargs: Any) -> dict[str, Any]:
    """Calls one boto3 method, turning credential problems into `NoAwsCredentials`."""
    try:
        result: dict[str, Any] = method(**kwargs)
    except (NoCredentialsError, PartialCredentialsError, TokenRetrievalError) as error:
        raise _credentials_error(error) from None
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in REJECTED_CREDENTIALS:
            raise _credentials_error(error) from None
        raise
    except NoRegionError as error:  # the region always comes from cdk.json; belt and braces
        raise ToolError(str(error)) from None
    return result


def read_stack_outputs(
    cloudformation: Any, *, env: str, stack_name: str, region: str
) -> dict[str, str]:
    """The outputs of the deployed stack; `StackNotDeployed` if it is missing or unusable.

    Raises botocore's `ClientError`/`BotoCoreError` for other failures (callers word them).
    """
    deploy = f"make deploy ENV={env}"
    try:
        stacks = _call(cloudformation.describe_stacks, StackName=stack_name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            raise StackNotDeployed(
                f"Stack {stack_name} is not deployed in {region}: run `{deploy}` first."
            ) from None
        raise
    stack = stacks[0]
    status = stack.get("StackStatus", "")
    if status in NOT_DEPLOYED_STATUSES or status.endswith("_IN_PROGRESS"):
        raise StackNotDeployed(
            f"Stack {stack_name} in {region} is {status}: run `{deploy}` and wait for it."
        )
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def fetch_device(
    *,
    env: str,
    stack_name: str,
    region: str,
    thing: str,
    is_for_key: Callable[[str], bool],
    session: boto3.Session | None = None,
) -> CloudDevice:
    """Reads what `thing` needs from the deployed stack of `env` in `region`; the
    certificate is the active one attached to `thing` for which `is_for_key(pem)` holds."""
    session = session or boto3.Session(region_name=region)
    cloudformation = session.client("cloudformation", region_name=region)
    iot = session.client("iot", region_name=region)
    deploy = f"make deploy ENV={env}"
    try:
        outputs = read_stack_outputs(cloudformation, env=env, stack_name=stack_name, region=region)
        try:
            principals = _call(iot.list_thing_principals, thingName=thing)["principals"]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            raise StackNotDeployed(
                f"Thing {thing!r} is not in the deployed stack {stack_name}: run `{deploy}` "
                "after adding it."
            ) from None
        certificates = [
            _call(iot.describe_certificate, certificateId=arn.rsplit("/", 1)[-1])[
                "certificateDescription"
            ]
            for arn in principals
            if ":cert/" in arn
        ]
        if not certificates:
            raise NoCertificate(
                f"Device {thing!r} has no certificate in {stack_name}: run `{deploy}`."
            )
        mine = [c for c in certificates if is_for_key(c["certificatePem"])]
        if not mine:
            raise NoCertificate(
                f"No certificate of {thing!r} is for the key on this machine: the key was "
                f"replaced after the last deploy. Commit its CSR and run `{deploy}`."
            )
        certificate = mine[0]
        if certificate.get("status") != "ACTIVE":
            raise NoCertificate(
                f"The certificate of {thing!r} is {certificate.get('status')}, not ACTIVE: "
                f"run `{deploy}`."
            )
        endpoint = _call(iot.describe_endpoint, endpointType="iot:Data-ATS")["endpointAddress"]
    except ClientError as error:
        raise ToolError(f"AWS refused a read of {stack_name} in {region}: {error}") from None
    except BotoCoreError as error:
        raise ToolError(f"Could not reach AWS in {region}: {error}") from None
    return CloudDevice(
        endpoint=endpoint,
        certificate_id=certificate["certificateId"],
        certificate_pem=certificate["certificatePem"],
        topic_prefix=outputs.get(contract.TOPIC_PREFIX_OUTPUT, contract.DEFAULT_TOPIC_PREFIX),
    )
