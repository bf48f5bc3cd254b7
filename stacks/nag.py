"""cdk-nag acknowledgements, each with the specific reason the finding does not apply."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct

PACK = "AwsSolutions"


def acknowledge(construct: IConstruct, finding: str, reason: str) -> None:
    """Acknowledges one AwsSolutions finding (`AwsSolutions-IAM5[Resource::...]`) on a construct."""
    Validations.of(construct).acknowledge(Acknowledgment(id=f"{PACK}::{finding}", reason=reason))
