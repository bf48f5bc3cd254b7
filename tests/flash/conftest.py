"""Fixtures for the flash tool: device keys, a deployed stack in moto, firmware images."""

from __future__ import annotations

import datetime
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from moto import mock_aws

import contract
from device.tool import keys
from stacks.device_files import DEVICES_ROOT

ENV = "dev"
THING = "dev-reverser"
REGION = "eu-west-1"
STACK = "TextDevice-dev"


@dataclass(frozen=True)
class Deployed:
    """A stack as `make deploy` leaves it, in moto."""

    keys_dir: Path
    certificate_id: str
    certificate_pem: str
    endpoint: str


def sign_csr(csr_pem: bytes) -> str:
    """Issue a certificate for the CSR's key, as AWS IoT does (here with a throwaway CA)."""
    csr = x509.load_pem_x509_csr(csr_pem)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test IoT CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_name)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(ca_key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate.public_bytes(Encoding.PEM).decode()


def stack_template(outputs: dict[str, str]) -> str:
    """A minimal template whose outputs mimic TextDeviceStack's."""
    return json.dumps(
        {
            "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {name: {"Value": value} for name, value in outputs.items()},
        }
    )


@pytest.fixture
def aws(aws_env: None) -> Iterator[None]:
    """moto for every AWS call, with the shared fake credentials (region REGION)."""
    with mock_aws():
        yield


@pytest.fixture
def devices_dir(tmp_path: Path) -> Path:
    """A copy of the repository's `devices/`, for commands that write CSRs or bindings."""
    copy = tmp_path / "devices"
    shutil.copytree(DEVICES_ROOT, copy)
    return copy


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    """A `.device-keys` folder with the dev device's key."""
    root = tmp_path / "device-keys"
    keys.create(keys.device_directory(root, ENV, THING), THING)
    return root


def register(csr_pem: bytes, thing: str = THING) -> tuple[str, str]:
    """What a deploy does for one CSR: an ACTIVE certificate attached to the thing.
    Returns the certificate's id and PEM."""
    iot = boto3.client("iot", region_name=REGION)
    pem = sign_csr(csr_pem)
    registered = iot.register_certificate_without_ca(certificatePem=pem, status="ACTIVE")
    iot.attach_thing_principal(thingName=thing, principal=registered["certificateArn"])
    return registered["certificateId"], pem


def deploy(keys_dir: Path, *, with_certificate: bool = True) -> Deployed:
    """Creates what `make deploy` would: the thing, its certificate (from the CSR), the stack."""
    iot = boto3.client("iot", region_name=REGION)
    iot.create_thing(thingName=THING)
    directory = keys.device_directory(keys_dir, ENV, THING)
    csr = keys.create(directory, THING).csr_pem.encode()
    certificate_id, pem = "", sign_csr(csr)
    if with_certificate:
        certificate_id, pem = register(csr)
    outputs = {
        contract.DEVICE_COUNT_OUTPUT: "1",
        contract.TOPIC_PREFIX_OUTPUT: contract.DEFAULT_TOPIC_PREFIX,
        contract.DEVICE_POLICY_NAME_OUTPUT: "policy",
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=STACK, TemplateBody=stack_template(outputs)
    )
    endpoint = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    return Deployed(keys_dir, certificate_id, pem, endpoint)


@pytest.fixture
def deployed(aws: None, keys_dir: Path) -> Deployed:
    """The dev stack deployed with the device's certificate."""
    return deploy(keys_dir)


@pytest.fixture
def wifi(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wi-Fi settings in the environment."""
    monkeypatch.setenv("WIFI_SSID", "home-network")
    monkeypatch.setenv("WIFI_PASSWORD", "correct horse battery")


def firmware_image(path: Path, chip: str) -> Path:
    """A tiny, valid-looking firmware image for `chip` (esp8266 or esp32)."""
    from esptool.bin_image import ESP32FirmwareImage, ESP8266ROMFirmwareImage, ImageSegment

    segment = ImageSegment(0x40100000 if chip == "esp8266" else 0x40080000, b"\0" * 64)
    segment.name = ".text"
    image = ESP8266ROMFirmwareImage() if chip == "esp8266" else ESP32FirmwareImage()
    image.entrypoint = segment.addr
    image.segments = [segment]
    image.save(str(path))
    # esptool names ESP8266 v1 images after their load address
    written = path.parent / f"{path.name}0x00000.bin"
    if written.exists():
        written.rename(path)
    return path
