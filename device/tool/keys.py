"""The device's identity, made locally: an RSA-2048 key and a CSR that AWS IoT signs.

The private key never leaves this machine except to the board: it is written with mode
0600 in a git-ignored folder, `.device-keys/{env}/{thing}/`. The CSR is public: it is
committed as `devices/{env}/{thing}.csr.pem` (see `device/tool/fleet.py`), and the stack
registers the certificate from it (`AWS::IoT::Certificate`, `CertificateSigningRequest`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from device.tool.errors import NoCertificate, UsageError

KEY_SIZE = 2048  # what the ESP8266's axTLS handles; AWS IoT accepts 2048 and up
KEY_FILE = "device.key.pem"
PREVIOUS_KEY_FILE = "previous.key.pem"
"""The key being replaced during a certificate rotation (the board still uses it)."""
PRIVATE_MODE = 0o600
DIRECTORY_MODE = 0o700


@dataclass(frozen=True)
class DeviceKey:
    """One device's key file, its CSR (PEM) and whether `create` made a new key."""

    key: Path
    csr_pem: str
    new_key: bool


def device_directory(keys_root: Path, env: str, thing: str) -> Path:
    """`.device-keys/{env}/{thing}`: one folder per device and environment."""
    return keys_root / env / thing


def write_private(path: Path, data: bytes) -> None:
    """Writes `data` so that it is never readable by others, not even for a moment.

    The file is created 0600 under a temporary name, then renamed over `path`.
    """
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    temporary.replace(path)
    path.chmod(PRIVATE_MODE)  # a pre-existing file keeps its mode through the rename


def make_private_directory(directory: Path) -> None:
    """Creates `directory` (and parents) readable by the owner only."""
    directory.mkdir(parents=True, exist_ok=True, mode=DIRECTORY_MODE)
    directory.chmod(DIRECTORY_MODE)


def build_csr(key: rsa.RSAPrivateKey, thing: str) -> x509.CertificateSigningRequest:
    """A CSR for `thing`, signed with its key (SHA-256). AWS IoT ignores the subject, but a
    common name equal to the thing name makes the certificate recognisable in the console."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, thing)])
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def create(directory: Path, thing: str, *, new_key: bool = False) -> DeviceKey:
    """Makes the device's key (unless one exists and `new_key` is false) and its CSR.

    Keeping an existing key keeps the certificate the stack already registered valid.
    """
    make_private_directory(directory)
    key_path = directory / KEY_FILE
    created = new_key or not key_path.exists()
    if created:
        key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)
        write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),  # the board has no way to type a passphrase
            ),
        )
    else:
        key = load_key(key_path)
    csr = build_csr(key, thing).public_bytes(serialization.Encoding.PEM).decode()
    return DeviceKey(key=key_path, csr_pem=csr, new_key=created)


def csr_matches_key(csr_pem: str, key: rsa.RSAPrivateKey) -> bool:
    """True when the CSR was made for this key's public half."""
    public = x509.load_pem_x509_csr(csr_pem.encode()).public_key()
    return isinstance(public, rsa.RSAPublicKey) and _public_der(public) == _public_der(
        key.public_key()
    )


def _public_der(public_key: rsa.RSAPublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_key(path: Path) -> rsa.RSAPrivateKey:
    """Reads a device key; a missing or foreign file is a `NoCertificate` naming `keys`."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise NoCertificate(f"No device key at {path}.") from None
    except (ValueError, TypeError) as error:
        raise UsageError(f"{path} is not an unencrypted PEM private key ({error}).") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UsageError(f"{path} is not an RSA key.")
    return key


def key_der(key: rsa.RSAPrivateKey) -> bytes:
    """The key as DER PKCS#1, the form MicroPython's `SSLContext.load_cert_chain` takes on
    the ESP8266 (axTLS) and on mbedTLS ports."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def certificate_der(pem: str) -> bytes:
    """A PEM certificate (from AWS IoT, or the root CA) as DER."""
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def certificate_matches_key(pem: str, key: rsa.RSAPrivateKey) -> bool:
    """True when the certificate was issued for this key's public half."""
    public = x509.load_pem_x509_certificate(pem.encode()).public_key()
    return isinstance(public, rsa.RSAPublicKey) and _public_der(public) == _public_der(
        key.public_key()
    )
