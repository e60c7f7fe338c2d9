"""Sending: e-mail over SMTP, and HTTP requests for the webhook and the ping.

Everything here treats the config's URLs and hosts as untrusted and every server as possibly
hostile or broken:

- SMTP: ``starttls`` (STARTTLS required: a server that does not offer it gets nothing, the
  password is never sent in clear), ``tls`` (implicit TLS) or ``none`` (no login allowed, the
  config refuses it); certificates are verified against the system's trust store
  (``SSL_CERT_FILE`` may point at another bundle); every network step has a timeout.
- HTTP: http and https only; the webhook's POST follows no redirect (a POST turned into a GET
  would look delivered while the data was dropped); the ping's GET follows at most
  ``MAX_REDIRECTS`` redirects, each to http or https only; at most ``MAX_BODY`` bytes of a
  response are read and none of it is shown; a whole request has a deadline.
- Secrets: the SMTP password comes from the environment variable the config names, only at
  send time. Error texts are built here from codes and short server replies, with the
  password (and its base64 forms, as AUTH sends it) replaced by ``***``; a URL is shown as
  ``scheme://host/…`` because its path often is a token.

Every failure is a :class:`SendError` whose ``str()`` is safe to log and print.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from tui import __version__
from tui.core import clock
from tui.core.config import NotifyConfig, http_url
from tui.core.model import JSONObject

log = logging.getLogger("report_keeper.notify")

SMTP_TIMEOUT = 20.0  # seconds, per network step
HTTP_TIMEOUT = 10.0  # seconds, per network step
HTTP_DEADLINE = 30.0  # seconds, a whole request with its redirects
MAX_REDIRECTS = 3
MAX_BODY = 64 * 1024
USER_AGENT = f"report-keeper/{__version__}"


class SendError(Exception):
    """A send failed; ``str()`` says what happened, with no secret in it."""


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


def sender(cfg: NotifyConfig) -> str:
    return cfg.email_from or f"report-keeper@{socket.getfqdn() or 'localhost'}"


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


def send_email(cfg: NotifyConfig, subject: str, body: str, *, timeout: float = SMTP_TIMEOUT) -> str:
    """Send one plain-text e-mail; returns a short description of what was done."""
    host, port, security = cfg.smtp_host or "", cfg.port, cfg.smtp_security
    password = smtp_password(cfg)
    secrets = _secret_forms(cfg.smtp_username, password)
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender(cfg)
    msg["To"] = ", ".join(cfg.email_to)
    msg["Date"] = format_datetime(clock.now())
    msg["Message-ID"] = make_msgid(domain="report-keeper.invalid")
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body)
    where = f"{host} port {port}"
    context = ssl.create_default_context()
    try:
        if security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            smtp = smtplib.SMTP(host, port, timeout=timeout)
        with smtp:
            smtp.ehlo()
            if security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise SendError(f"{where} does not offer STARTTLS; nothing was sent (the "
                                    "password and the alert are never sent unencrypted). Use "
                                    "smtp_security = \"tls\" if the server speaks TLS right away")
                smtp.starttls(context=context)
                smtp.ehlo()
            if cfg.smtp_username:
                smtp.login(cfg.smtp_username, password or "")
            refused = smtp.send_message(msg)
    except SendError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise SendError(f"{where} refused the login of '{_clean(cfg.smtp_username)}' "
                        f"({exc.smtp_code} {_clean(exc.smtp_error, secrets)}); check smtp_username "
                        f"and the password in {cfg.smtp_password_env}") from None
    except smtplib.SMTPNotSupportedError:
        raise SendError(f"{where} does not offer a login (AUTH) on this connection; check "
                        "smtp_security and smtp_username") from None
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({str(code) for code, _ in exc.recipients.values()})
        raise SendError(f"{where} refused every recipient (reply {', '.join(codes)}); check "
                        "email_to") from None
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
            raise SendError(f"{where} did not answer within {timeout:g} s") from None
        raise SendError(f"{where} closed the connection ({_clean(exc, secrets) or 'no reason given'})") from None
    except TimeoutError:
        raise SendError(f"{where} did not answer within {timeout:g} s") from None
    except smtplib.SMTPException as exc:
        raise SendError(f"sending through {where} failed ({_clean(exc, secrets)})") from None
    except OSError as exc:
        raise SendError(f"could not reach {where} ({_clean(exc.strerror or exc)}); check "
                        "smtp_host and smtp_port") from None
    done = f"e-mail to {len(cfg.email_to) - len(refused)} recipient(s) via {where}"
    if refused:
        done += f" ({len(refused)} refused by the server)"
    return done


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
            raise SendError(f"{show_url(req.full_url)} redirected to a refused address ({exc})") from None
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(context=ssl.create_default_context()),
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
    """One request; returns the HTTP status (2xx) or raises :class:`SendError`."""
    http_url(url)  # the config checked it; a caller-built URL (…/fail) is checked again
    data = None
    headers = {"User-Agent": USER_AGENT}
    if document is not None:
        data = json.dumps(document, ensure_ascii=False).encode("utf-8")
        headers["Content-Type"] = "application/json; charset=utf-8"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    shown = show_url(url)
    stop = time.monotonic() + deadline
    try:
        with _opener().open(req, timeout=timeout) as resp:
            read = 0
            while read < MAX_BODY:  # read a little so the server sees a normal client
                if time.monotonic() > stop:
                    break
                chunk = resp.read(min(8192, MAX_BODY - read))
                if not chunk:
                    break
                read += len(chunk)
            status = int(resp.status)
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
            raise SendError(f"{shown} did not answer within {timeout:g} s") from None
        text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
        raise SendError(f"could not reach {shown} ({_clean(text)})") from None
    except TimeoutError:
        raise SendError(f"{shown} did not answer within {timeout:g} s") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise SendError(f"the request to {shown} failed ({_clean(type(exc).__name__)})") from None
    if not 200 <= status < 300:
        raise SendError(f"{shown} answered HTTP {status}")
    return status


def fail_url(ping_url: str) -> str:
    """``ping_url`` with ``/fail`` added to its path (a query string stays at the end)."""
    parts = urlsplit(ping_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/fail"))
