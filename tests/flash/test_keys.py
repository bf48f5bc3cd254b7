"""`keys`: an RSA-2048 key and a signed CSR, made locally, readable by the owner only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from device.tool import keys
from device.tool.cli import main
from tests.flash.conftest import ENV, THING


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_command_makes_a_2048_bit_key_and_a_csr_signed_by_it(
    tmp_path: Path, devices_dir: Path
) -> None:
    argv = ["keys", "--env", ENV, "--thing", THING, "--keys-dir", str(tmp_path)]
    assert main([*argv, "--devices-dir", str(devices_dir)]) == 0
    directory = tmp_path / ENV / THING
    key = serialization.load_pem_private_key((directory / "device.key.pem").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    # The CSR is public: it is written where it is committed, not beside the key.
    assert sorted(p.name for p in directory.iterdir()) == ["device.key.pem"]
    csr = x509.load_pem_x509_csr((devices_dir / ENV / f"{THING}.csr.pem").read_bytes())
    assert csr.is_signature_valid
    public = csr.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.public_numbers() == key.public_key().public_numbers()
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == THING
    # Verify the signature explicitly too: SHA-256 with PKCS#1 v1.5, as AWS IoT expects.
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    key.public_key().verify(
        csr.signature, csr.tbs_certrequest_bytes, padding.PKCS1v15(), csr.signature_hash_algorithm
    )


def test_the_key_is_mode_0600_in_a_0700_folder(tmp_path: Path) -> None:
    made = keys.create(tmp_path / ENV / THING, THING)
    assert mode(made.key) == 0o600
    assert mode(made.key.parent) == 0o700
    assert keys.csr_matches_key(made.csr_pem, keys.load_key(made.key))


def test_an_existing_key_is_kept_so_the_deployed_certificate_stays_valid(tmp_path: Path) -> None:
    first = keys.create(tmp_path, THING)
    before = first.key.read_bytes()
    second = keys.create(tmp_path, THING)
    assert (first.new_key, second.new_key) == (True, False)
    assert second.key.read_bytes() == before
    replaced = keys.create(tmp_path, THING, new_key=True)
    assert replaced.new_key and replaced.key.read_bytes() != before
    assert mode(replaced.key) == 0o600


def test_a_widened_key_file_is_narrowed_again(tmp_path: Path) -> None:
    made = keys.create(tmp_path, THING)
    made.key.chmod(0o644)
    keys.write_private(made.key, made.key.read_bytes())
    assert mode(made.key) == 0o600


def test_keys_refuses_a_thing_the_environment_does_not_have(
    tmp_path: Path, devices_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["keys", "--env", ENV, "--thing", "nope", "--keys-dir", str(tmp_path)]
    assert main([*argv, "--devices-dir", str(devices_dir)]) == 2
    assert "'nope' is not a device of dev" in capsys.readouterr().err
    assert not (tmp_path / ENV / "nope").exists()


def test_key_der_is_pkcs1_and_certificate_der_round_trips(tmp_path: Path) -> None:
    made = keys.create(tmp_path, THING)
    key = keys.load_key(made.key)
    der = keys.key_der(key)
    assert der[:2] == b"\x30\x82"  # an ASN.1 SEQUENCE: PKCS#1 RSAPrivateKey
    loaded = serialization.load_der_private_key(der, None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.private_numbers() == key.private_numbers()
    ca = (Path(keys.__file__).parent / "AmazonRootCA1.pem").read_text()
    assert x509.load_der_x509_certificate(keys.certificate_der(ca)).subject.rfc4514_string() == (
        "CN=Amazon Root CA 1,O=Amazon,C=US"
    )


def test_the_shipped_root_ca_is_amazon_root_ca_1() -> None:
    pem = (Path(keys.__file__).parent / "AmazonRootCA1.pem").read_bytes()
    fingerprint = x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()
    assert fingerprint == "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e"
