"""Email delivery's SMTP options against a real SMTP server (aiosmtpd): STARTTLS and AUTH."""

from __future__ import annotations

import datetime
import ipaddress
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from openbatch.cli.background import free_port
from openbatch.events.delivery import SmtpSettings


def _certificate(directory: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class Handler:
    def __init__(self) -> None:
        self.received: list[tuple[Any, bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        self.received.append((session.authenticated, envelope.content))
        return "250 OK"


def _authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"ops", b"s3cret")
    return AuthResult(success=ok)


def test_starttls_and_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert_path, key_path = _certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert_path, key_path)
    # The client trusts the system's CAs (OpenSSL reads SSL_CERT_FILE): here, this test's certificate.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))
    handler = Handler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=_authenticate,
        auth_require_tls=True,
    )
    controller.start()
    try:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "openbatch@localhost", "ops@example.com", "hi"
        message.set_content("hello")
        settings = SmtpSettings(url=f"smtp://ops:s3cret@127.0.0.1:{port}", starttls=True)
        with settings.connect() as client:
            client.send_message(message)
        assert handler.received and handler.received[0][0] is True
        assert b"hello" in handler.received[0][1]
        # Without STARTTLS the server refuses to go on (it requires TLS before anything else).
        with pytest.raises(smtplib.SMTPException), SmtpSettings(url=f"smtp://127.0.0.1:{port}").connect() as plain:
            plain.send_message(message)
        with pytest.raises(ValueError, match="smtp://host:port"):
            SmtpSettings(url="http://127.0.0.1:25").connect()
    finally:
        controller.stop()
