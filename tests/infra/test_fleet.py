"""The fleet's layout: committed CSRs, shards, rotation, and synth from a fresh clone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from device.tool import fleet, keys
from stacks.device_files import DEVICES_ROOT, MissingCsr, read_csrs, split_csrs
from stacks.device_shard import shard_of
from tests.conftest import ROOT, Synthesized, synthesize


def nested_templates(outdir: Path) -> dict[str, dict[str, Any]]:
    """The shards' templates by file name (the name hashes the shard's path: stable)."""
    return {p.name: json.loads(p.read_text()) for p in outdir.glob("*.nested.template.json")}


def all_resources(outdir: Path) -> dict[str, dict[str, Any]]:
    """Every resource of every shard, by `file/logical id`."""
    return {
        f"{name}/{logical_id}": resource
        for name, template in nested_templates(outdir).items()
        for logical_id, resource in template["Resources"].items()
    }


def of_type(outdir: Path, type_name: str) -> dict[str, dict[str, Any]]:
    return {k: r for k, r in all_resources(outdir).items() if r["Type"] == type_name}


def test_every_committed_device_gets_a_certificate_from_its_committed_csr(
    synthesized: dict[str, Synthesized],
) -> None:
    for env, synth in synthesized.items():
        outdir = synth.template_path.parent
        bindings = json.loads((DEVICES_ROOT / env / "devices.json").read_text())
        csrs = read_csrs(env, sorted(bindings))
        certificates = of_type(outdir, "AWS::IoT::Certificate")
        assert sorted(
            c["Properties"]["CertificateSigningRequest"] for c in certificates.values()
        ) == (sorted(csr for blocks in csrs.values() for csr in blocks))
        assert all(c["Properties"]["Status"] == "ACTIVE" for c in certificates.values())
        things = of_type(outdir, "AWS::IoT::Thing")
        assert sorted(t["Properties"]["ThingName"] for t in things.values()) == sorted(bindings)
        # The template never holds a private key.
        text = "".join(p.read_text() for p in outdir.glob("*.template.json"))
        assert "PRIVATE KEY" not in text


def test_each_certificate_is_attached_to_its_thing_and_to_the_device_policy(
    synthesized: dict[str, Synthesized],
) -> None:
    synth = synthesized["prod"]
    parent = synth.template_json["Resources"]
    policy_id = next(k for k, r in parent.items() if r["Type"] == "AWS::IoT::Policy")
    shards = [r for r in parent.values() if r["Type"] == "AWS::CloudFormation::Stack"]
    assert len(shards) == len(nested_templates(synth.template_path.parent)) == 2
    for shard in shards:  # the parent's policy is handed to each shard as a parameter
        assert {"Ref": policy_id} in shard["Properties"]["Parameters"].values()
    for name, template in nested_templates(synth.template_path.parent).items():
        resources = template["Resources"]
        (certificate,) = [k for k, r in resources.items() if r["Type"] == "AWS::IoT::Certificate"]
        (thing,) = [k for k, r in resources.items() if r["Type"] == "AWS::IoT::Thing"]
        arn = {"Fn::GetAtt": [certificate, "Arn"]}
        (to_thing,) = [
            r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::IoT::ThingPrincipalAttachment"
        ]
        (to_policy,) = [
            r["Properties"]
            for r in resources.values()
            if r["Type"] == "AWS::IoT::PolicyPrincipalAttachment"
        ]
        assert to_thing == {"ThingName": {"Ref": thing}, "Principal": arn}, name
        assert to_policy["Principal"] == arn
        assert "DevicePolicy" in to_policy["PolicyName"]["Ref"]
        assert to_policy["PolicyName"]["Ref"] in template["Parameters"]


def test_devices_land_in_the_shard_their_name_hashes_to(
    synthesized: dict[str, Synthesized],
) -> None:
    synth = synthesized["prod"]
    for name, template in nested_templates(synth.template_path.parent).items():
        shard = int(name.split("Shard")[1][:2])
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::IoT::Thing":
                assert shard_of(resource["Properties"]["ThingName"], 32) == shard


def copy_devices(tmp_path: Path) -> Path:
    root = tmp_path / "devices"
    shutil.copytree(DEVICES_ROOT, root)
    return root


def test_a_listed_device_without_a_csr_fails_synth_with_the_command_to_run(
    tmp_path: Path,
) -> None:
    root = copy_devices(tmp_path)
    (root / "prod" / "prod-doorbell.csr.pem").unlink()
    with pytest.raises(SystemExit) as failure:
        synthesize("prod", tmp_path / "out", devices_dir=str(root))
    message = str(failure.value.code)
    assert "Device 'prod-doorbell' of prod has no certificate signing request" in message
    assert ".venv/bin/python -m device.tool keys --env prod --thing prod-doorbell" in message
    with pytest.raises(MissingCsr):
        read_csrs("prod", ["prod-doorbell"], root)


def test_a_rotation_adds_a_certificate_beside_the_current_one_and_finish_removes_it(
    tmp_path: Path, synthesized: dict[str, Synthesized]
) -> None:
    root = copy_devices(tmp_path)
    devices = fleet.Fleet(env="dev", devices_root=root, keys_root=tmp_path / "keys")
    thing = "dev-reverser"
    # This machine "made" the committed CSR: give it the matching key for the test.
    old = keys.create(devices.key_directory(thing), thing)
    devices.write_csrs(thing, [old.csr_pem])
    before = synthesize("dev", tmp_path / "before", devices_dir=str(root))
    fleet.rotate(devices, thing)
    assert len(devices.csrs(thing)) == 2 and devices.csrs(thing)[0] == old.csr_pem
    during = synthesize("dev", tmp_path / "during", devices_dir=str(root))
    fleet.finish_rotation(devices, thing)
    after = synthesize("dev", tmp_path / "after", devices_dir=str(root))

    def certificates(synth: Synthesized) -> dict[str, str]:
        found = of_type(synth.template_path.parent, "AWS::IoT::Certificate")
        return {k: r["Properties"]["CertificateSigningRequest"] for k, r in found.items()}

    first, both, last = certificates(before), certificates(during), certificates(after)
    assert len(first) == 1 and len(both) == 2 and len(last) == 1
    # The current certificate keeps its logical id (never replaced) while the new one is
    # added; finishing removes the old one and keeps the new one's id.
    assert first.items() <= both.items() and last.items() <= both.items()
    assert first.keys().isdisjoint(last.keys())
    (new_csr,) = last.values()
    assert new_csr == devices.csrs(thing)[0] != old.csr_pem
    assert (devices.key_directory(thing) / keys.KEY_FILE).exists()
    assert not (devices.key_directory(thing) / keys.PREVIOUS_KEY_FILE).exists()
    assert len(list((tmp_path / "keys" / "dev" / fleet.ARCHIVE).iterdir())) == 1


def test_split_csrs_reads_one_or_two_requests_and_nothing_else() -> None:
    one = (DEVICES_ROOT / "dev" / "dev-reverser.csr.pem").read_text()
    assert split_csrs(one) == [one]
    assert split_csrs(one + one.replace("\n", "\r\n")) == [one, one]
    assert split_csrs("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n") == []


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def synthesize_in(checkout: Path, outdir: Path) -> dict[str, bytes]:
    """`dev` synthesized by `checkout`'s own app.py, in a child process: every template."""
    script = (
        "import sys; from pathlib import Path; from loop.stack import synthesize; "
        "synthesize('dev', Path(sys.argv[1]))"
    )
    subprocess.run([sys.executable, "-c", script, str(outdir)], cwd=checkout, check=True)
    return {p.name: p.read_bytes() for p in sorted(outdir.glob("*.template.json"))}


def test_a_fresh_clone_without_device_keys_synthesizes_the_same_templates(tmp_path: Path) -> None:
    """The machine that made a device's key and a fresh clone (CI, a teammate) deploy the
    same template: nothing read at synth is git-ignored."""
    origin = tmp_path / "origin"
    tracked = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (origin / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, origin / name)
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "device.tool",
            "add",
            "--env",
            "dev",
            "--thing",
            "dev-extra",
            "--number",
            "+15555550999",
        ],
        cwd=origin,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    assert (origin / ".device-keys" / "dev" / "dev-extra" / keys.KEY_FILE).is_file()
    git(origin, "init", "-q")
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "fleet")
    git(tmp_path, "clone", "-q", str(origin), "clone")
    clone = tmp_path / "clone"
    assert not (clone / ".device-keys").exists()
    assert (clone / "devices" / "dev" / "dev-extra.csr.pem").is_file()

    on_origin = synthesize_in(origin, tmp_path / "out-origin")
    on_clone = synthesize_in(clone, tmp_path / "out-clone")
    assert len(on_origin) >= 3  # the stack and the shards of dev-reverser and dev-extra
    assert on_clone == on_origin
