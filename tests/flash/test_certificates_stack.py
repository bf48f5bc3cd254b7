"""The stack registers a certificate from each device's CSR; without one, synth warns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from contract import certificate_output_name
from device.tool import keys
from tests.conftest import Synthesized, synthesize

THINGS = ("prod-doorbell", "prod-reverser")


@pytest.fixture(scope="module")
def with_csr(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synthesized, Path]:
    """prod, with a CSR for prod-reverser only (prod-doorbell has no keys yet)."""
    keys_dir = tmp_path_factory.mktemp("device-keys")
    keys.create(keys.device_directory(keys_dir, "prod", "prod-reverser"), "prod-reverser")
    outdir = tmp_path_factory.mktemp("cdk-prod-csr")
    return synthesize("prod", outdir, device_keys_dir=str(keys_dir)), keys_dir


def one(found: dict[str, Any]) -> dict[str, Any]:
    assert len(found) == 1, found
    return next(iter(found.values()))


def test_a_device_with_a_csr_gets_an_active_certificate_from_it(
    with_csr: tuple[Synthesized, Path],
) -> None:
    synth, keys_dir = with_csr
    csr = (keys_dir / "prod" / "prod-reverser" / keys.CSR_FILE).read_text()
    certificate = one(synth.template.find_resources("AWS::IoT::Certificate"))
    assert certificate["Properties"] == {"CertificateSigningRequest": csr, "Status": "ACTIVE"}
    # The private key is never in the template.
    key = (keys_dir / "prod" / "prod-reverser" / keys.KEY_FILE).read_text()
    assert key.splitlines()[1] not in synth.template_path.read_text()


def test_the_certificate_is_attached_to_its_thing_and_to_the_policy(
    with_csr: tuple[Synthesized, Path],
) -> None:
    synth, _ = with_csr
    template = synth.template
    cert_id = next(iter(template.find_resources("AWS::IoT::Certificate")))
    thing_id = next(
        name
        for name, thing in template.find_resources("AWS::IoT::Thing").items()
        if thing["Properties"]["ThingName"] == "prod-reverser"
    )
    policy_id = next(iter(template.find_resources("AWS::IoT::Policy")))
    arn = {"Fn::GetAtt": [cert_id, "Arn"]}
    template.has_resource_properties(
        "AWS::IoT::ThingPrincipalAttachment", {"ThingName": {"Ref": thing_id}, "Principal": arn}
    )
    template.has_resource_properties(
        "AWS::IoT::PolicyPrincipalAttachment", {"PolicyName": {"Ref": policy_id}, "Principal": arn}
    )
    assert len(template.find_resources("AWS::IoT::ThingPrincipalAttachment")) == 1


def test_an_output_per_certificate_named_as_the_tool_reads_it(
    with_csr: tuple[Synthesized, Path],
) -> None:
    synth, _ = with_csr
    cert_id = next(iter(synth.template.find_resources("AWS::IoT::Certificate")))
    name = certificate_output_name("prod-reverser")
    assert name == "CertificateProdReverser"
    assert synth.template_json["Outputs"][name]["Value"] == {"Ref": cert_id}
    assert certificate_output_name("prod-doorbell") not in synth.template_json["Outputs"]


@pytest.mark.parametrize("thing", ["dev-reverser", "a_b:c-D", "x", "A1-b2"])
def test_output_names_are_letters_and_digits(thing: str) -> None:
    assert certificate_output_name(thing).isalnum()


def test_a_device_without_a_csr_is_named_in_a_synth_warning(
    with_csr: tuple[Synthesized, Path],
) -> None:
    synth, _ = with_csr
    Annotations.from_stack(synth.stack).has_warning(
        "*",
        Match.string_like_regexp(
            r"Device 'prod-doorbell' has no certificate yet: run .*device\.tool keys "
            r"--env prod --thing prod-doorbell"
        ),
    )
    warnings = Annotations.from_stack(synth.stack).find_warning("*", Match.any_value())
    texts = [str(w.entry.data) for w in warnings]
    assert any("prod-doorbell" in t for t in texts)
    assert not any("prod-reverser" in t for t in texts)


def test_synth_without_any_csr_still_works(synthesized: dict[str, Synthesized]) -> None:
    for synth in synthesized.values():
        assert synth.template.find_resources("AWS::IoT::Certificate") == {}
