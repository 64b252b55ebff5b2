"""SNS message signatures (SignatureVersion 2: RSA PKCS#1 v1.5 over SHA-256).

The server makes an RSA key and a self-signed certificate on first start (kept in
``<data-dir>/sns/``, so receivers that cache the certificate keep working) and
serves the certificate at each message's ``SigningCertURL``.

How a receiver verifies a message (as for Amazon SNS):

1. Fetch ``SigningCertURL`` over a channel you trust (check that the URL points at
   your OpenBatch server, as you would check for ``sns.<region>.amazonaws.com``), or
   pin the certificate once.
2. Build the string to sign from the message's fields, each as ``name\\nvalue\\n``, in
   this order and skipping absent ones:
   ``Notification``: Message, MessageId, Subject, Timestamp, TopicArn, Type;
   ``SubscriptionConfirmation`` / ``UnsubscribeConfirmation``: Message, MessageId,
   SubscribeURL, Timestamp, Token, TopicArn, Type.
3. Base64-decode ``Signature`` and verify it against that string with the
   certificate's public key, PKCS#1 v1.5 padding and SHA-256 (``SignatureVersion`` 2).
"""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

CERT_FILE = "SimpleNotificationService-openbatch.pem"
_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")


def string_to_sign(message: dict[str, Any]) -> str:
    fields = _NOTIFICATION_FIELDS if message.get("Type") == "Notification" else _CONFIRMATION_FIELDS
    return "".join(f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None)


class Signer:
    """Loads or makes the key on first use: most servers never sign anything, and an RSA key takes ~0.5 s."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key: rsa.RSAPrivateKey | None = None
        self._certificate_pem = b""

    @property
    def key(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            self._load()
        assert self._key is not None
        return self._key

    @property
    def certificate_pem(self) -> bytes:
        if self._key is None:
            self._load()
        return self._certificate_pem

    def _load(self) -> None:
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = directory / "signing-key.pem", directory / CERT_FILE
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, rsa.RSAPrivateKey):
                raise ValueError(f"{key_path} is not an RSA key")
            self._key, self._certificate_pem = key, cert_path.read_bytes()
            return
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.openbatch.local")])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        tmp = key_path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        # The certificate first, then the key: a crash in between leaves no key, so both are made again.
        cert_path.write_bytes(pem)
        tmp.replace(key_path)
        self._key, self._certificate_pem = key, pem

    def sign(self, message: dict[str, Any]) -> str:
        data = string_to_sign(message).encode()
        return base64.b64encode(self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(message: dict[str, Any], certificate_pem: bytes) -> bool:
    """Check a message's signature the way a receiver does (used by tests and documented above)."""
    from cryptography.exceptions import InvalidSignature

    public_key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    if not isinstance(public_key, rsa.RSAPublicKey) or message.get("SignatureVersion") != "2":
        return False
    try:
        public_key.verify(
            base64.b64decode(message["Signature"]),
            string_to_sign(message).encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, KeyError, ValueError):
        return False
    return True
