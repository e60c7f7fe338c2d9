"""Sending: e-mail over SMTP, and HTTP requests for the webhook and the ping.

Everything here treats the config's URLs and hosts as untrusted and every server as possibly
hostile or broken:

- SMTP: ``starttls`` (STARTTLS required: a server that does not offer it gets nothing, the
  password is never sent in clear), ``tls`` (implicit TLS) or ``none`` (no login allowed, the
  config refuses it); certificates are verified against the system's trust store
  (``SSL_CERT_FILE`` may point at another bundle); every network step has a timeout.
- HTTP: http and https only; the webhook's POST follows no redirect (a POST turned into a GET
  would look delivered while the data was dropped); the ping's GET follows at most
  ``MAX_REDIRECTS`` redirects, each to http or https on the same host, without reading the
  redirect's body; at most ``MAX_BODY`` bytes of a response are read and none of it is shown;
  a 2xx status is the receiver's answer, whatever happens to the body after it.
- Deadlines: a per-step timeout never fires against a server that sends one byte at a time
  (an SMTP tarpit, a slow-loris webhook), so each e-mail exchange and each HTTP request also
  has a deadline for the whole of it; when it passes, :class:`_Deadline` shuts the
  connection down and the send fails with a clear message (cron is never held for hours).
  The deadline makes the connection itself: the name lookup (a hung name server has no
  socket to shut down) is waited for only as long as the deadline has left, and a proxy's
  CONNECT is within it too.
- Secrets: the SMTP password comes from the environment variable the config names, only at
  send time. Error texts are built here from codes and short server replies, with the
  password (and its base64 forms, as AUTH sends it) replaced by ``***``; a URL is shown as
  ``scheme://host/…`` because its path often is a token.

Every failure is a :class:`SendError` whose ``str()`` is safe to log and print.
"""

from __future__ import annotations

import base64
import hmac
import http.client
import json
import logging
import os
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from types import TracebackType
from typing import IO, TYPE_CHECKING, TypeVar, overload
from urllib.parse import urlsplit, urlunsplit

from tui import __version__
from tui.core import clock
from tui.core.config import NotifyConfig, http_url
from tui.core.model import JSONObject
from tui.core.names import escape_name

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = logging.getLogger("report_keeper.notify")
_T = TypeVar("_T")

SMTP_TIMEOUT = 20.0  # seconds, per network step
SMTP_DEADLINE = 60.0  # seconds, one whole e-mail exchange (connect to goodbye)
HTTP_TIMEOUT = 10.0  # seconds, per network step
HTTP_DEADLINE = 30.0  # seconds, a whole request with its redirects
MAX_REDIRECTS = 3
MAX_BODY = 64 * 1024
USER_AGENT = f"report-keeper/{__version__}"


class SendError(Exception):
    """A send failed; ``str()`` says what happened, with no secret in it. ``unanswered``: the
    server did not answer in time (a timeout or the deadline), as opposed to refusing."""

    def __init__(self, message: str, *, unanswered: bool = False) -> None:
        super().__init__(message)
        self.unanswered = unanswered


def show_url(url: str) -> str:
    """``https://host/…``: where a request went, without a path that may be a token."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an invalid URL)"
    return f"{parts.scheme}://{host}{port}/…"


def _clean(reply: object, secrets: tuple[str, ...] = (), limit: int = 160) -> str:
    """A server's reply made printable, short, and free of the given secrets."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = "".join(c if c.isprintable() else " " for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Deadline:
    """Shuts down every connection of one exchange once ``seconds`` have passed.

    Used as a context manager around the exchange; :meth:`watch` registers each socket as
    soon as it is connected (before any TLS handshake). It keeps a duplicate of the socket's
    descriptor, so shutting the connection down never touches a descriptor the exchange has
    closed (and the system may have reused) meanwhile; the blocked read then returns at once.
    Whatever error the cut causes in the exchange leaves the block as ``SendError(too_slow)``.
    """

    def __init__(self, seconds: float, too_slow: str) -> None:
        self.seconds = seconds
        self.too_slow = too_slow  # the failure an error caused by the cut becomes
        self.expired = False
        self._stop = time.monotonic() + seconds
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="send-deadline", daemon=True)

    def __enter__(self) -> _Deadline:
        self._stop = time.monotonic() + self.seconds
        self._thread.start()
        return self

    def remaining(self) -> float:
        return max(0.0, self._stop - time.monotonic())

    def bounded(self, call: Callable[[], _T], what: str, limit: float | None = None) -> _T:
        """``call()`` (a name lookup: no socket to cut) in a thread, waited for at most the
        time left. When the time is up the lookup is left to finish on its own (a daemon
        thread; the resolver gives up in the end) and the send fails now."""
        box: list[_T] = []
        error: list[Exception] = []
        done = threading.Event()

        def run() -> None:
            try:
                box.append(call())
            except Exception as exc:  # noqa: BLE001 - raised again in the caller's thread
                error.append(exc)
            finally:
                done.set()

        threading.Thread(target=run, name="send-lookup", daemon=True).start()
        wait = self.remaining() if limit is None else min(limit, self.remaining())
        if not done.wait(wait):
            raise SendError(f"{what} did not finish within {self.seconds:g} s (the name server "
                            "does not answer); nothing was sent", unanswered=True)
        if error:
            raise error[0]
        return box[0]

    def connect(self, address: tuple[str, int], timeout: float | None = None,
                source_address: tuple[str, int] | None = None) -> socket.socket:
        """``socket.create_connection`` inside the deadline: the name lookup is bounded by
        the time left, and the socket is watched from before its connect, so whatever comes
        next (a proxy's CONNECT, a TLS handshake, a greeting) is under the deadline."""
        host, port = address
        infos = self.bounded(lambda: socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM),
                             f"looking up {host}")
        last: OSError | None = None
        for family, kind, proto, _, where in infos:
            if self.remaining() <= 0:
                break
            sock = socket.socket(family, kind, proto)
            try:
                step = self.remaining() if timeout is None else min(timeout, self.remaining())
                sock.settimeout(step)
                if source_address:
                    sock.bind(source_address)
                self.watch(sock)
                sock.connect(where)
                sock.settimeout(timeout)
                return sock
            except OSError as exc:
                last = exc
                sock.close()
        if last is not None and not self.expired and self.remaining() > 0:
            raise last
        raise SendError(f"connecting to {host} did not finish within {self.seconds:g} s; nothing was "
                        "sent", unanswered=True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()
        self._thread.join()
        with self._lock:
            for sock in self._socks:
                sock.close()
            self._socks.clear()
        if self.expired and isinstance(exc, Exception) and not isinstance(exc, SendError):
            raise SendError(self.too_slow, unanswered=True) from None

    def watch(self, sock: socket.socket) -> socket.socket:
        dup = sock.dup()
        with self._lock:
            self._socks.append(dup)
            if self.expired:  # connected after the deadline: cut at once
                _cut(dup)
        return sock

    def _run(self) -> None:
        if self._done.wait(self.seconds):
            return
        with self._lock:
            self.expired = True
            for sock in self._socks:
                _cut(sock)


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed by the other side
        pass


def _secret_forms(username: str | None, password: str | None) -> tuple[str, ...]:
    """The password as it may travel: plain, base64 (AUTH LOGIN), base64 of AUTH PLAIN."""
    if not password:
        return ()
    forms = [password, base64.b64encode(password.encode()).decode()]
    if username:
        forms.append(base64.b64encode(f"\0{username}\0{password}".encode()).decode())
    return tuple(forms)


# --------------------------------------------------------------------------------------------
# E-mail


def sender(cfg: NotifyConfig, watch: _Deadline) -> str:
    return cfg.email_from or f"report-keeper@{_local_name(watch)}"


def smtp_password(cfg: NotifyConfig) -> str | None:
    """The SMTP password from the environment variable the config names (None: no login)."""
    if not cfg.smtp_username:
        return None
    name = cfg.smtp_password_env or ""
    value = os.environ.get(name, "")
    if not value:
        raise SendError(
            f"the environment variable {name} (smtp_password_env) is not set or empty, so there "
            "is no SMTP password; set it where report-keeper runs (see README: Alerts)"
        )
    return value


class _Utf8(str):
    """Text that smtplib's AUTH encodes as UTF-8: it asks for ASCII, so a password such as
    "Bibliothèque-2026" raised UnicodeEncodeError; PLAIN is UTF-8 by its RFC (4616), and
    servers take LOGIN and CRAM-MD5 secrets as UTF-8 too."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return str.encode(self, "utf-8", errors)


def _local_name(watch: _Deadline) -> str:
    """The name this machine gives in EHLO, as smtplib finds it (its fully qualified name),
    but looked up within the deadline and only once per process; ``[127.0.0.1]``-style
    address literals are what smtplib falls back to as well."""
    if not _LOCAL_NAME:
        try:
            fqdn = watch.bounded(socket.getfqdn, "looking up this machine's own name", LOCAL_NAME_WAIT)
        except SendError:  # a hung name server: the relay may be an address and still work
            fqdn = ""
        _LOCAL_NAME.append(fqdn if "." in fqdn else "localhost.localdomain")
    return _LOCAL_NAME[0]


_LOCAL_NAME: list[str] = []
LOCAL_NAME_WAIT = 5.0  # seconds; the rest of the deadline is left to the exchange itself


class _SMTP(smtplib.SMTP):
    """smtplib's client whose connection a :class:`_Deadline` makes and watches (the host's
    lookup included); with ``tls`` it speaks TLS right away (as ``smtplib.SMTP_SSL`` does)."""

    def __init__(self, watch: _Deadline, tls: ssl.SSLContext | None, timeout: float) -> None:
        self._watch = watch
        self._tls = tls
        # no host: connect() is called by the exchange; smtplib would look this machine's
        # name up here, outside any deadline
        super().__init__(timeout=timeout, local_hostname=_local_name(watch))

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        self._host = host  # STARTTLS checks the certificate against it (smtplib sets it only in __init__)
        sock = self._watch.connect((host, port), timeout)  # no source_address: never set here
        if self._tls is not None:
            return self._tls.wrap_socket(sock, server_hostname=host)
        return sock

    def auth_plain(self, challenge: ReadableBuffer | None = None) -> str:
        return _Utf8(super().auth_plain(challenge))

    def auth_login(self, challenge: ReadableBuffer | None = None) -> str:
        return _Utf8(super().auth_login(challenge))

    @overload
    def auth_cram_md5(self, challenge: None = None) -> None: ...
    @overload
    def auth_cram_md5(self, challenge: ReadableBuffer) -> str: ...
    def auth_cram_md5(self, challenge: ReadableBuffer | None = None) -> str | None:
        if challenge is None:
            return None  # smtplib's contract: CRAM-MD5 has no initial response
        digest = hmac.HMAC(self.password.encode("utf-8"), challenge, "md5").hexdigest()
        return _Utf8(f"{self.user} {digest}")


def _exchange(smtp: _SMTP, cfg: NotifyConfig, msg: EmailMessage, to: list[str], password: str | None,
              where: str) -> dict[str, tuple[int, bytes]]:
    """Greeting to goodbye; returns the recipients the server refused (some, not all)."""
    host = cfg.smtp_host or ""
    if host.startswith("["):  # an address literal: the address itself is what is connected to
        host = host[1:-1]
    code, reply = smtp.connect(host, cfg.port)
    if code != 220:
        raise smtplib.SMTPConnectError(code, reply)
    smtp.ehlo()
    if cfg.smtp_security == "starttls":
        if not smtp.has_extn("starttls"):
            raise SendError(f"{where} does not offer STARTTLS; nothing was sent (the "
                            "password and the alert are never sent unencrypted). Use "
                            "smtp_security = \"tls\" if the server speaks TLS right away")
        smtp.starttls(context=ssl.create_default_context())
        smtp.ehlo()
    if cfg.smtp_username:
        if not smtp.has_extn("auth"):
            raise SendError(f"{where} does not offer a login (AUTH) on this connection; check "
                            "smtp_security and smtp_username")
        smtp.login(cfg.smtp_username, password or "")
    try:
        refused = smtp.send_message(msg, to_addrs=to)
    except smtplib.SMTPNotSupportedError:  # the only one send_message raises: SMTPUTF8
        raise SendError(f"an address in email_to or email_from has letters beyond ASCII, and {where} "
                        "does not accept such addresses (it does not offer SMTPUTF8); use an "
                        "ASCII address") from None
    except smtplib.SMTPSenderRefused as exc:
        if exc.smtp_code != 530:
            raise
        # 530: "must issue STARTTLS first" or "authentication required"
        fix = ('set smtp_security = "starttls"' if cfg.smtp_security == "none"
               else "set smtp_username and smtp_password_env")
        raise SendError(f"{where} wants encryption or a login before it takes a message "
                        f"({exc.smtp_code} {_clean(exc.smtp_error)}); {fix}") from None
    # The server has the message now. What it answers to the goodbye changes nothing: a
    # failure here must not make a delivered alert "not sent" (it would go out on every run).
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    return refused


@dataclass(frozen=True)
class Refused:
    """A recipient the server refused at RCPT: it did not get the message."""

    address: str
    code: int
    reply: str  # cleaned, short

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    def __str__(self) -> str:
        why = ("refused for now" if self.temporary
               else "refused: check the address in email_to")
        return f"{_clean(self.address)} ({self.code} {self.reply}; {why})"


@dataclass(frozen=True)
class EmailReceipt:
    """What the server took: ``accepted`` got the message, ``refused`` did not (some of the
    recipients may be refused while the others get it; none accepted is a ``SendError``)."""

    accepted: tuple[str, ...]
    refused: tuple[Refused, ...]
    where: str

    def __str__(self) -> str:
        return f"e-mail to {len(self.accepted)} recipient(s) via {self.where}"

    def refusal(self) -> str:
        """The failure of the refused recipients, each with the server's reply."""
        return refusal_text(self.where, self.refused, sent=True)


def refusal_text(where: str, refused: Sequence[Refused], *, sent: bool) -> str:
    who = "; ".join(str(r) for r in refused)
    if sent:
        return f"{where} refused {len(refused)} recipient(s), who did not get it: {who}"
    return f"{where} refused the recipient(s), so nobody got it: {who}"


def _refusals(refused: dict[str, tuple[int, bytes]], secrets: tuple[str, ...]) -> tuple[Refused, ...]:
    return tuple(Refused(address, code, _clean(reply, secrets, limit=100))
                 for address, (code, reply) in refused.items())


def send_email(cfg: NotifyConfig, subject: str, body: str, *, to: Sequence[str] | None = None,
               timeout: float = SMTP_TIMEOUT, deadline: float | None = None) -> EmailReceipt:
    """Send one plain-text e-mail to ``to`` (default: every address of ``email_to``); returns
    who got it and who was refused, or raises :class:`SendError` when nobody got it.

    ``timeout``: per network step; ``deadline``: the whole exchange (default ``SMTP_DEADLINE``).
    """
    recipients = list(cfg.email_to if to is None else to)
    host, port, security = cfg.smtp_host or "", cfg.port, cfg.smtp_security
    limit = SMTP_DEADLINE if deadline is None else deadline
    password = smtp_password(cfg)
    secrets = _secret_forms(cfg.smtp_username, password)
    msg = EmailMessage()
    # A header is one line: whatever the caller's text holds (a line break, a Unicode line
    # separator), it is written escaped, so it can neither add a header nor stop the send.
    msg["Subject"] = escape_name(subject)
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(clock.now())
    msg["Message-ID"] = make_msgid(domain="report-keeper.invalid")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    where = f"{host} port {port}"
    # Loading the system's certificates takes tens of milliseconds: only for implicit TLS
    # here (STARTTLS makes its own context when the server has agreed to it).
    context = ssl.create_default_context() if security == "tls" else None
    try:
        with _Deadline(limit, f"{where} did not finish within {limit:g} s (it answers too slowly); "
                       "the e-mail was not sent") as watch:
            msg["From"] = sender(cfg, watch)
            smtp = _SMTP(watch, context, timeout)
            try:
                refused = _exchange(smtp, cfg, msg, recipients, password, where)
            finally:
                smtp.close()
    except SendError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise SendError(f"{where} refused the login of '{_clean(cfg.smtp_username)}' "
                        f"({exc.smtp_code} {_clean(exc.smtp_error, secrets)}); check smtp_username "
                        f"and the password in {cfg.smtp_password_env}") from None
    except smtplib.SMTPNotSupportedError as exc:
        raise SendError(f"{where} does not support what sending needs ({_clean(exc)})") from None
    except smtplib.SMTPRecipientsRefused as exc:  # every one, or a 421 on the way: nothing sent
        raise SendError(refusal_text(where, _refusals(exc.recipients, secrets), sent=False)) from None
    except smtplib.SMTPSenderRefused as exc:
        raise SendError(f"{where} refused the sender {_clean(exc.sender)} ({exc.smtp_code} "
                        f"{_clean(exc.smtp_error, secrets)}); check email_from") from None
    except smtplib.SMTPResponseException as exc:
        raise SendError(f"{where} answered {exc.smtp_code} {_clean(exc.smtp_error, secrets)}") from None
    except ssl.SSLCertVerificationError as exc:
        raise SendError(f"the TLS certificate of {where} could not be verified "
                        f"({_clean(exc.verify_message)}); nothing was sent") from None
    except ssl.SSLError as exc:
        raise SendError(f"TLS with {where} failed ({_clean(exc.reason or exc)}); check "
                        "smtp_security and smtp_port") from None
    except ConnectionRefusedError:
        raise SendError(f"could not reach {where} (connection refused); check smtp_host and "
                        "smtp_port") from None
    except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
        if "timed out" in str(exc):  # smtplib reports a read timeout as a disconnection
            raise SendError(f"{where} did not answer within {timeout:g} s", unanswered=True) from None
        raise SendError(f"{where} closed the connection ({_clean(exc, secrets) or 'no reason given'})") from None
    except TimeoutError:
        raise SendError(f"{where} did not answer within {timeout:g} s", unanswered=True) from None
    except smtplib.SMTPException as exc:
        raise SendError(f"sending through {where} failed ({_clean(exc, secrets)})") from None
    except OSError as exc:
        raise SendError(f"could not reach {where} ({_clean(exc.strerror or exc)}); check "
                        "smtp_host and smtp_port") from None
    except UnicodeError:  # a text smtplib could not encode; no part of it is shown
        raise SendError(f"sending through {where} failed: smtp_username, the password in "
                        f"{cfg.smtp_password_env} or an address holds text the server exchange "
                        "cannot carry") from None
    return EmailReceipt(accepted=tuple(r for r in recipients if r not in refused),
                        refused=_refusals(refused, secrets), where=where)


# --------------------------------------------------------------------------------------------
# HTTP


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Redirects for GET only, at most ``MAX_REDIRECTS``, each to http or https."""

    max_redirections = MAX_REDIRECTS
    max_repeats = 1  # the same address twice is a loop

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: http.client.HTTPMessage, newurl: str) -> urllib.request.Request | None:
        if req.get_method() != "GET":
            return None  # urllib then raises the 3xx as an HTTPError
        try:
            http_url(newurl)
        except (TypeError, ValueError) as exc:
            fp.close()
            raise SendError(f"{show_url(req.full_url)} redirected to a refused address ({exc})") from None
        # Only on the host the config names (any port, http or https): a server must not be
        # able to point our requests at a host of its choosing (an internal address, say).
        if (urlsplit(newurl).hostname or "").lower() != (urlsplit(req.full_url).hostname or "").lower():
            fp.close()
            raise SendError(f"{show_url(req.full_url)} redirected to another host "
                            f"({show_url(newurl)}), which is not followed; set the final address "
                            "in ping_url")
        # urllib reads the whole body of a redirect before it follows it; closed, there is
        # nothing left to read (a server could send gigabytes behind a 302).
        fp.close()
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Watched(http.client.HTTPConnection):
    """A connection that a :class:`_Deadline` makes and watches: the lookup of the host (or
    the proxy), the connect, a proxy's CONNECT and the TLS handshake are all within it."""

    def watch_with(self, deadline: _Deadline) -> None:
        self._create_connection = deadline.connect


class _HTTPS(http.client.HTTPSConnection, _Watched):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, watch: _Deadline) -> None:
        super().__init__()
        self._watch = watch

    def _connection(self, host: str, /, *, port: int | None = None, timeout: float = HTTP_TIMEOUT,
                    source_address: tuple[str, int] | None = None,
                    blocksize: int = 8192) -> http.client.HTTPConnection:
        conn = _Watched(host, port, timeout, source_address, blocksize)
        conn.watch_with(self._watch)
        return conn

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    """https, with the TLS context made at its first connection: loading the system's
    certificates takes tens of milliseconds, which a request over http never needs."""

    def __init__(self, watch: _Deadline) -> None:
        # not HTTPSHandler's own __init__: from Python 3.12 on it makes a default context
        urllib.request.AbstractHTTPHandler.__init__(self)
        self._context = None  # what HTTPSHandler would hold; https_open below never reads it
        self._check_hostname = None
        self._watch = watch
        self._tls: ssl.SSLContext | None = None

    def _connection(self, host: str, /, *, port: int | None = None, timeout: float = HTTP_TIMEOUT,
                    source_address: tuple[str, int] | None = None,
                    blocksize: int = 8192) -> http.client.HTTPConnection:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        conn = _HTTPS(host, port, timeout=timeout, source_address=source_address, context=self._tls,
                      blocksize=blocksize)
        conn.watch_with(self._watch)
        return conn

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(self._connection, req)


def _opener(watch: _Deadline) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.ProxyHandler(),
        _HTTPHandler(watch),
        _HTTPSHandler(watch),
        _Redirects(),
        urllib.request.HTTPDefaultErrorHandler(),  # a non-2xx answer raises HTTPError
        urllib.request.HTTPErrorProcessor(),
    ]
    opener = urllib.request.OpenerDirector()
    for h in handlers:
        opener.add_handler(h)
    return opener


def http_request(url: str, *, method: str = "GET", document: JSONObject | None = None,
                 timeout: float = HTTP_TIMEOUT, deadline: float = HTTP_DEADLINE) -> int:
    """One request; returns the HTTP status (2xx) or raises :class:`SendError`.

    ``timeout``: per network step; ``deadline``: the whole request with its redirects.
    """
    http_url(url)  # the config checked it; a caller-built URL (…/fail) is checked again
    data = None
    headers = {"User-Agent": USER_AGENT}
    if document is not None:
        data = json.dumps(document, ensure_ascii=False).encode("utf-8")
        headers["Content-Type"] = "application/json; charset=utf-8"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    shown = show_url(url)
    try:
        with _Deadline(deadline, f"{shown} did not finish within {deadline:g} s (it answers too slowly)") as watch:
            status = _exchange_http(watch, req, timeout)
    except SendError:
        raise
    except urllib.error.HTTPError as exc:
        code = exc.code
        exc.close()
        if 300 <= code < 400:
            why = ("a POST follows no redirect: set the final address in the config" if method == "POST"
                   else f"at most {MAX_REDIRECTS} redirects, to http:// or https:// only, are followed")
            raise SendError(f"{shown} answered with a redirect (HTTP {code}) that was not "
                            f"followed; {why}") from None
        raise SendError(f"{shown} answered HTTP {code} {_clean(exc.reason, limit=60)}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise SendError(f"the TLS certificate of {shown} could not be verified "
                            f"({_clean(reason.verify_message)})") from None
        if isinstance(reason, (TimeoutError, socket.timeout)):
            raise SendError(f"{shown} did not answer within {timeout:g} s", unanswered=True) from None
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise SendError(f"could not reach {shown} ({_clean(text)})") from None
    except TimeoutError:
        raise SendError(f"{shown} did not answer within {timeout:g} s", unanswered=True) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise SendError(f"the request to {shown} failed ({_clean(type(exc).__name__)})") from None
    if not 200 <= status < 300:
        raise SendError(f"{shown} answered HTTP {status}")
    return status


def _exchange_http(watch: _Deadline, req: urllib.request.Request, timeout: float) -> int:
    with _opener(watch).open(req, timeout=timeout) as resp:
        status = int(resp.status)
        # The status is the receiver's answer. The body is read only a little, so the server
        # sees a normal client; whatever happens to it (a reset, a byte at a time until the
        # deadline cuts it) does not undo a 2xx, which would send the alert again next run.
        read = 0
        try:
            while read < MAX_BODY:
                chunk = resp.read(min(8192, MAX_BODY - read))
                if not chunk:
                    break
                read += len(chunk)
        except (OSError, ValueError, http.client.HTTPException):
            pass
    return status


def fail_url(ping_url: str) -> str:
    """``ping_url`` with ``/fail`` added to its path (a query string stays at the end)."""
    parts = urlsplit(ping_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))
