"""Real SMTP and HTTP servers on 127.0.0.1 for the alert tests.

- ``SmtpServer``: aiosmtpd with STARTTLS or implicit TLS (a throwaway self-signed
  certificate made here, for 127.0.0.1), AUTH LOGIN/PLAIN against one user and password,
  recording every message it accepts and every login attempt.
- ``HttpServer``: ``http.server`` in a thread, recording every request (method, path,
  headers, body); ``responses`` maps a path to a status (and ``Location`` for redirects).
- ``self_signed_cert(dir)``: key and certificate files valid for 127.0.0.1 and localhost;
  pointing ``SSL_CERT_FILE`` at the certificate makes the client trust it (nothing else is
  changed in the client: the production code verifies certificates as it always does).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.fixtures_sshd import free_port


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files of a self-signed CA-style certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "report-keeper test server")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
        ]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False,
        ), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: email.message.Message
    authenticated_as: str | None

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        return self.message.get_content()


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.server.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), msg, login))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on 127.0.0.1. ``security``: "starttls" | "tls" | "none"."""

    def __init__(self, workdir: Path, *, security: str = "starttls", username: str | None = "reports",
                 password: str = "s3cret-Pass word") -> None:
        self.security = security
        self.username = username
        self.password = password
        self.messages: list[Received] = []
        self.logins: list[tuple[str, bool]] = []
        self.port = free_port()
        context = None
        if security != "none":
            self.cert, key = self_signed_cert(workdir / "tls")
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert, key)
        kwargs: dict[str, Any] = {}
        if username is not None:
            # aiosmtpd only knows STARTTLS as "TLS"; with implicit TLS the whole session is encrypted
            kwargs.update(authenticator=self._authenticate, auth_require_tls=security == "starttls")
        if security == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        self.controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port,
            ssl_context=context if security == "tls" else None, **kwargs,
        )

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        ok = login == self.username and auth_data.password.decode() == self.password
        self.logins.append((login, ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def notify_table(self, *, to: str = "circ-team@example.edu", env: str = "RK_SMTP_PASSWORD") -> str:
        lines = [
            f'email_to = ["{to}"]',
            'email_from = "report-keeper@example.edu"',
            'smtp_host = "127.0.0.1"',
            f"smtp_port = {self.port}",
            f'smtp_security = "{self.security}"',
        ]
        if self.username is not None:
            lines += [f'smtp_username = "{self.username}"', f'smtp_password_env = "{env}"']
        return "\n".join(lines) + "\n"


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class HttpServer:
    """A recording HTTP server on 127.0.0.1 in a thread."""

    requests: list[Request] = field(default_factory=list)
    responses: dict[str, tuple[int, str | None]] = field(default_factory=dict)
    port: int = 0

    def start(self) -> HttpServer:
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.requests.append(Request(self.command, self.path, dict(self.headers), body))
                status, location = recorder.responses.get(self.path.split("?")[0], (200, None))
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                payload = b"OK"
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        # shutdown() waits for the loop to see its request, which it looks for once per
        # poll_interval: at the default (0.5 s) every test using this server ended half a
        # second later
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def posts(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == "POST" and r.path == path]

    def gets(self, path: str | None = None) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and (path is None or r.path == path)]
