"""Receivers that misbehave, and names that try to get into an alert's headers.

Every server here is a scripted socket server on 127.0.0.1 that does exactly one bad thing
(answers one byte at a time, streams an endless body behind a redirect, refuses QUIT after it
accepted the message...). What is asserted is the outcome: the send ends (it is run in a
thread that is waited for generously, so a hang fails the test instead of hanging it), with a
clear ``SendError`` or a success, and what a server accepted counts as sent so the next run
does not send it again.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time as time_
import tomllib
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.fixtures_sshd import free_port
from tests.notify_servers import HttpServer, SmtpServer
from tui.core import status as st
from tui.core.config import NotifyConfig, parse_config
from tui.core.health import evaluate
from tui.core.model import Delivery
from tui.notify import channels, dispatch
from tui.notify.channels import EmailReceipt, SendError, http_request, send_email

PASSWORD = "s3cret-Pass word"
TZ = ZoneInfo("America/Chicago")
#: How long a test waits for a send that should end within a few seconds: generous, so a
#: loaded machine never fails it; a send without a deadline would take hours.
BOUND = 90.0
#: The deadline given to a send that only a cut can end (a tarpit, a name server that never
#: answers): nothing in it has to succeed first, so one second proves the cut as the
#: product's own deadlines (60 s, 30 s: ``test_the_documented_deadlines``) would, in a test
#: that waits one second instead of a minute.
CUT = 1
#: The deadline of a request whose "200" must arrive before the cut (the status line comes at
#: once, then a tarpit): its own part (a TLS context, the connect, the request, the status
#: line) has to fit with a wide margin on a loaded machine. It takes well under 0.2 s at a
#: load of 8 on 2 cores, and 1.3 s at worst with four more busy processes on top.
CUT_AFTER_THE_ANSWER = 2


class Scripted:
    """A TCP server on 127.0.0.1 that hands each connection to ``serve(conn, stop)`` in a thread."""

    def __init__(self, serve: Callable[[socket.socket, threading.Event], None]) -> None:
        self.serve = serve
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._one, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                self.serve(conn, self.stop)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        try:  # wakes the accept loop now, not at its next timeout
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:  # closed already (a test may close it before the fixture does)
            pass
        self.listener.close()
        self.thread.join(5)
        for t in self.threads:
            t.join(5)


@pytest.fixture
def scripted(monkeypatch) -> Iterator[Callable[..., Scripted]]:
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    started: list[Scripted] = []

    def make(serve: Callable[[socket.socket, threading.Event], None]) -> Scripted:
        server = Scripted(serve)
        started.append(server)
        return server

    yield make
    for s in started:
        s.close()


def bounded(call: Callable[[], Any]) -> dict[str, Any]:
    """Run ``call`` in a thread; fail (instead of hanging) when it does not end within BOUND."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(BOUND)
    assert not t.is_alive(), f"the send was still waiting after {BOUND:g} s"
    return box


def dribble(conn: socket.socket, data: bytes, stop: threading.Event, every: float = 0.25) -> None:
    """Send ``data`` one byte at a time, ``every`` seconds apart (never a silence long enough
    for a per-step timeout), until it is all sent or the test ends."""
    for i in range(len(data)):
        if stop.wait(every):
            return
        conn.sendall(data[i:i + 1])


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


# ------------------------------------------------------------------------------ HTTP


@pytest.mark.parametrize("where", ["status line", "headers"])
def test_a_webhook_answering_one_byte_at_a_time_is_cut_at_the_deadline(scripted, where):
    """A per-step timeout alone never fires when every byte comes within it: the whole
    request has a deadline, so cron is not held for hours. Cut in the status line, the send
    failed (tried again next run); cut in the headers after "200 OK", the receiver has said
    it has the message."""
    head = b"HTTP/1.1 200 OK\r\n" if where == "headers" else b""
    tail = b"X-Slow: " + b"a" * 100000 if where == "headers" else b"HTTP/1.1 200 OK" + b" " * 100000

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        conn.sendall(head)
        dribble(conn, tail, stop)

    server = scripted(serve)
    deadline = CUT_AFTER_THE_ANSWER if where == "headers" else CUT
    box = bounded(lambda: http_request(f"http://127.0.0.1:{server.port}/hook", method="POST",
                                       document={"a": 1}, timeout=2, deadline=deadline))
    if where == "headers":
        assert box.get("value") == 200, box
    else:
        assert isinstance(box.get("error"), SendError), box
        assert f"did not finish within {CUT} s" in str(box["error"])


@pytest.mark.parametrize("how", ["dribbles", "resets"])
def test_a_webhook_that_answered_2xx_has_its_message(scripted, how):
    """The status line is the receiver's answer; what it does with the body after a 2xx (send
    it one byte at a time, reset the connection) does not make a delivered alert "failed",
    which would send it again on every run."""

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nok")
        if how == "resets":
            # A reset discards what the client has not read yet: reset once it has had ample
            # time to read the status line (a reset before it is rightly a failure).
            stop.wait(1.0)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return  # closed with linger 0: a reset
        dribble(conn, b"x" * 100000, stop)

    server = scripted(serve)
    box = bounded(lambda: http_request(f"http://127.0.0.1:{server.port}/hook", method="POST",
                                       document={"a": 1}, timeout=2, deadline=CUT_AFTER_THE_ANSWER))
    assert box.get("value") == 200, box


def test_a_redirect_with_an_endless_body_is_not_read(scripted):
    """The ping follows a redirect; urllib reads the whole body of a redirect response before
    it follows it. An endless one must not be read (memory, time)."""
    cap = 64 * 1024 * 1024
    sent: list[int] = []
    paths: list[bytes] = []

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        request = _read_request(conn)
        paths.append(request.split(b" ")[1] if request else b"")
        if paths[-1] == b"/next":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 10737418240\r\n\r\n")
        total = 0
        block = b"x" * 65536
        try:
            while total < cap and not stop.is_set():
                conn.sendall(block)
                total += len(block)
        except OSError:
            pass
        sent.append(total)

    server = scripted(serve)
    box = bounded(lambda: http_request(f"http://127.0.0.1:{server.port}/ping", timeout=5, deadline=60))
    assert box.get("value") == 200, box
    assert paths == [b"/ping", b"/next"]
    server.close()
    assert sent and sent[0] < cap // 2, sent  # hung up on it, not read to the end


# ------------------------------------------------------------------------------ SMTP


def _plain(port: int) -> NotifyConfig:
    return NotifyConfig(email_to=("circ-team@example.edu",), email_from="report-keeper@example.edu",
                        smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")


def smtp_script(*, greeting: bytes = b"220 test ESMTP\r\n", data_reply: bytes = b"250 queued\r\n",
                quit_reply: bytes | None = b"221 bye\r\n", cut_in_data: bool = False,
                received: list[bytes] | None = None, holds: Sequence[threading.Event | None] = (),
                in_data: threading.Event | None = None, rcpt_replies: dict[str, bytes] | None = None,
                envelopes: list[list[str]] | None = None) -> Callable[[socket.socket, threading.Event], None]:
    """A small SMTP server that plays by the book except where told otherwise. Connection n
    waits for ``holds[n]`` (if any) before it answers the message's end; ``in_data`` is set
    once a message has been read; only a message it answered is counted in ``received``.
    ``rcpt_replies``: the answer to RCPT for an address (read at each RCPT, so a test may
    change it between runs), else 250; ``envelopes``: the accepted recipients of each message
    it answered."""
    lock = threading.Lock()
    count = [0]

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        with lock:
            n = count[0]
            count[0] += 1
        hold = holds[n] if n < len(holds) else None
        accepted: list[str] = []
        f = conn.makefile("rwb")
        f.write(greeting)
        f.flush()
        for line in f:
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                f.write(b"250-test\r\n250 8BITMIME\r\n")
            elif verb == b"RCPT":
                address = line.decode().split("<", 1)[1].split(">", 1)[0]
                reply = (rcpt_replies or {}).get(address)
                if reply is None:
                    accepted.append(address)
                f.write(reply or b"250 ok\r\n")
            elif verb == b"RSET":
                accepted.clear()
                f.write(b"250 ok\r\n")
            elif verb == b"DATA":
                f.write(b"354 go ahead\r\n")
                f.flush()
                message = b""
                for body_line in f:
                    if cut_in_data and len(message) > 20:
                        conn.shutdown(socket.SHUT_RDWR)
                        return
                    if body_line == b".\r\n":
                        break
                    message += body_line
                if in_data is not None:
                    in_data.set()
                if hold is not None:
                    while not hold.wait(0.1):
                        if stop.is_set():
                            return
                if received is not None:
                    received.append(message)
                if envelopes is not None:
                    envelopes.append(list(accepted))
                accepted.clear()
                f.write(data_reply)
            elif verb == b"QUIT":
                if quit_reply is not None:
                    f.write(quit_reply)
                    f.flush()
                return
            else:
                f.write(b"250 ok\r\n")
            f.flush()

    return serve


def test_an_smtp_tarpit_is_cut_at_the_deadline(scripted, monkeypatch):
    """A server that greets one byte at a time (an SMTP tarpit) never trips the 20 s per-step
    timeout; the whole exchange has a deadline."""
    monkeypatch.setattr(channels, "SMTP_DEADLINE", CUT, raising=False)

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        dribble(conn, b"220-hold on\r\n" * 10000, stop)

    server = scripted(serve)
    box = bounded(lambda: send_email(_plain(server.port), "s", "b\n", timeout=2))
    assert isinstance(box.get("error"), SendError), box
    assert f"did not finish within {CUT} s" in str(box["error"])


@pytest.mark.parametrize("quit_reply", [b"500 what?\r\n", b"421 going down\r\n"])
def test_a_message_accepted_is_sent_whatever_the_server_says_to_quit(scripted, quit_reply):
    """Once the server answered 250 to the message, it has it; a bad answer to the goodbye
    must not make it "not sent", which would send it again on every run."""
    received: list[bytes] = []
    server = scripted(smtp_script(quit_reply=quit_reply, received=received))
    box = bounded(lambda: send_email(_plain(server.port), "subject", "body\n", timeout=10))
    assert "1 recipient" in str(box.get("value", "")), box
    assert len(received) == 1


@pytest.mark.parametrize("script, expected", [
    (dict(data_reply=b"451 4.3.0 try again later\r\n"), "answered 451 4.3.0 try again later"),
    (dict(data_reply=b"554 5.7.1 rejected\r\n"), "answered 554 5.7.1 rejected"),
    (dict(cut_in_data=True), "closed the connection"),
    (dict(greeting=b"421 4.3.2 busy, come back later\r\n"), "421"),
])
def test_an_smtp_server_refusing_or_breaking_off_is_a_clear_failure(scripted, script, expected):
    server = scripted(smtp_script(**script))
    box = bounded(lambda: send_email(_plain(server.port), "subject", "body\n", timeout=10))
    assert isinstance(box.get("error"), SendError), box
    assert expected in str(box["error"])


def test_a_server_that_wants_starttls_the_config_did_not_ask_for(tmp_path, monkeypatch):
    """smtp_security = "none" against a server that insists on STARTTLS: the message says
    which setting to change, not "check email_from"."""
    server = SmtpServer(tmp_path / "smtp", security="starttls", username=None).start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))
        with pytest.raises(SendError) as err:
            send_email(_plain(server.port), "s", "b\n", timeout=10)
    finally:
        server.stop()
    text = str(err.value)
    assert "530" in text and 'smtp_security = "starttls"' in text and "email_from" not in text
    assert server.messages == []


# ------------------------------------------------------------------------------ content


def test_a_subject_with_line_breaks_cannot_add_a_header(tmp_path):
    """Whatever text reaches send_email, a line break in the subject never starts a header of
    its own (a Bcc would send the alert elsewhere), and the message still goes out."""
    server = SmtpServer(tmp_path / "smtp", security="none", username=None).start()
    try:
        for subject in ("missing 'x'\r\nBcc: evil@example.org", "missing 'x'\u2028Bcc: evil@example.org",
                        "missing 'x'\nX-Injected: 1"):
            send_email(_plain(server.port), subject, "body\n", timeout=10)
    finally:
        server.stop()
    assert len(server.messages) == 3
    for m in server.messages:
        assert m.rcpt_tos == ["circ-team@example.edu"]
        assert m.message["Bcc"] is None and m.message["X-Injected"] is None
        assert m.subject.startswith("missing 'x'") and "\n" not in m.subject and "\r" not in m.subject


HOSTILE_REPORT = "Loans\u2028Bcc: evil@example.org\u2029\x1b[31m"


def test_a_server_file_name_with_a_line_separator_reaches_every_channel(tmp_path, monkeypatch):
    """A server may name a file with U+2028 (LINE SEPARATOR): it is no control character, so
    the name is accepted, and with no [[report]] configured its base name is a report's name.
    Before, the e-mail subject holding it could not even be built: every alert of the profile
    failed on every run, the webhook's included. Now both channels deliver, the name escaped."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    smtp = SmtpServer(tmp_path / "smtp", security="none", username=None).start()
    http = HttpServer().start()
    try:
        text = f"""
[profile.default]
host = "127.0.0.1"
timezone = "America/Chicago"
ledger = "{tmp_path / 'ledger.sqlite3'}"
[profile.default.notify]
email_to = ["circ-team@example.edu"]
email_from = "report-keeper@example.edu"
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
smtp_security = "none"
webhook_url = "{http.url('/hook')}"
"""
        profile = parse_config(tomllib.loads(text)).profile()
        report = HOSTILE_REPORT.replace("\x1b", "")  # the name the server may really send
        deliveries = []
        for i in range(10):  # daily until Sat 21 Nov, then nothing
            at = datetime.combine(date(2026, 11, 12) + timedelta(days=i), time(7, 5), tzinfo=TZ)
            deliveries.append(Delivery(name=f"{report}_{at:%Y%m%d_%H%M%S}.xlsx", report=report,
                                       delivered_at=at, size=10, mtime=at, first_seen=at, last_seen=at,
                                       on_server=True, downloaded_at=at, verification="ok", rows=5))
        health = evaluate(profile, deliveries, now=datetime(2026, 11, 24, 10, tzinfo=TZ))
        assert any(p.kind == "missing" for r in health.reports for p in r.problems)
        doc = dispatch.after_check(profile, health, offline=True)
    finally:
        smtp.stop()
        http.stop()
    assert doc["failed"] == [], doc
    assert [s["channel"] for s in doc["sent"]] == ["email", "webhook"]
    [m] = smtp.messages
    assert m.rcpt_tos == ["circ-team@example.edu"] and m.message["Bcc"] is None
    assert "\\u2028Bcc: evil@example.org\\u2029" in m.subject
    assert "\u2028" not in m.body and "\u2029" not in m.body
    [hook] = http.posts("/hook")
    sent = hook.json()  # valid JSON
    assert sent["new"][0]["report"] == report  # the JSON has the name as it is
    json.dumps(sent)


# ------------------------------------------------------------------------------ config values


def test_a_password_with_letters_beyond_ascii_logs_in(tmp_path, monkeypatch):
    """smtplib sends AUTH as ASCII only: a password like "Bibliothèque-2026" made it raise a
    bare UnicodeEncodeError, which stopped every channel of the run, on every run. PLAIN is
    UTF-8 (RFC 4616): the login works."""
    password = "Bibliothèque-2026"
    server = SmtpServer(tmp_path / "smtp", security="tls", password=password).start()
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))
        monkeypatch.setenv("RK_SMTP_PASSWORD", password)
        cfg = NotifyConfig(email_to=("circ-team@example.edu",), email_from="report-keeper@example.edu",
                           smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="tls",
                           smtp_username="reports", smtp_password_env="RK_SMTP_PASSWORD")
        box = bounded(lambda: send_email(cfg, "s", "b\n", timeout=10))
    finally:
        server.stop()
    assert "1 recipient" in str(box.get("value", "")), box
    assert server.logins == [("reports", True)]
    assert [m.authenticated_as for m in server.messages] == ["reports"]


def test_cram_md5_with_a_password_beyond_ascii(scripted, monkeypatch):
    """smtplib prefers CRAM-MD5 when offered; its secret is the password's UTF-8 bytes too."""
    import base64
    import hmac

    password = "Bibliothèque-2026"
    challenge = b"<1896.697170952@127.0.0.1>"
    answers: list[bytes] = []

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        f = conn.makefile("rwb")
        f.write(b"220 test ESMTP\r\n")
        f.flush()
        for line in f:
            verb = line[:4].upper()
            if verb == b"EHLO":
                f.write(b"250-test\r\n250 AUTH CRAM-MD5\r\n")
            elif verb == b"AUTH":
                f.write(b"334 " + base64.b64encode(challenge) + b"\r\n")
                f.flush()
                answer = base64.b64decode(f.readline().strip())
                answers.append(answer)
                good = b"reports " + hmac.HMAC(password.encode(), challenge, "md5").hexdigest().encode()
                f.write(b"235 ok\r\n" if answer == good else b"535 no\r\n")
            elif verb == b"DATA":
                f.write(b"354 go\r\n")
                f.flush()
                for body_line in f:
                    if body_line == b".\r\n":
                        break
                f.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                f.write(b"221 bye\r\n")
                f.flush()
                return
            else:
                f.write(b"250 ok\r\n")
            f.flush()

    server = scripted(serve)
    monkeypatch.setenv("RK_SMTP_PASSWORD", password)
    # the config refuses a login over "none"; the channel itself is what is tested here
    cfg = NotifyConfig(email_to=("circ-team@example.edu",), email_from="report-keeper@example.edu",
                       smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none",
                       smtp_username="reports", smtp_password_env="RK_SMTP_PASSWORD")
    box = bounded(lambda: send_email(cfg, "s", "b\n", timeout=10))
    assert "1 recipient" in str(box.get("value", "")), box
    assert len(answers) == 1


def test_an_address_beyond_ascii_is_not_called_a_login_problem(scripted):
    """An address such as "bibliothèque@example.edu" needs the server's SMTPUTF8; a server
    that does not offer it is named as the reason, not "does not offer a login (AUTH)"."""
    server = scripted(smtp_script())  # offers 8BITMIME, not SMTPUTF8
    cfg = NotifyConfig(email_to=("bibliothèque@example.edu",), email_from="report-keeper@example.edu",
                       smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none")
    box = bounded(lambda: send_email(cfg, "s", "b\n", timeout=10))
    text = str(box.get("error"))
    assert "SMTPUTF8" in text and "email_to" in text, box
    assert "AUTH" not in text and "login" not in text


def _alert_profile(tmp_path, notify: str, *, name: str = "default", ledger=None):
    """A profile of one daily report "Loans" (Chicago time) whose alerts go where ``notify``
    says; its ledger is ``ledger`` (default: one of its own in ``tmp_path``)."""
    text = f"""
[profile.{name}]
host = "127.0.0.1"
timezone = "America/Chicago"
ledger = "{ledger or tmp_path / f'{name}.sqlite3'}"
[[profile.{name}.report]]
name = "Loans"
schedule = "daily"
at = "07:00"
[profile.{name}.notify]
{notify}
"""
    return parse_config(tomllib.loads(text)).profile(name)


def _held_loans(at: datetime, *, verification: str = "ok", rows: int = 5) -> Delivery:
    """The report "Loans" delivered at ``at``, downloaded and verified as said."""
    return Delivery(name=f"Loans_{at:%Y%m%d_%H%M%S}.xlsx", report="Loans", delivered_at=at, size=10,
                    mtime=at, first_seen=at, last_seen=at, on_server=True, downloaded_at=at,
                    verification=st.VerifyStatus(verification), rows=rows)


def _stand_in_relay(cfg: NotifyConfig, subject: str, body: str, *, to: Sequence[str], **kw: Any) -> EmailReceipt:
    """A relay that takes every message (where a test is about something else)."""
    return EmailReceipt(accepted=tuple(to), refused=(), where="a stand-in relay")


def test_a_broken_channel_does_not_stop_the_other(tmp_path, monkeypatch, http_server_local):
    """Whatever goes wrong in one channel (here: a bug stood in for by an e-mail channel that
    raises something other than SendError), the other channel still gets the alert, and the
    broken one is reported and tried again on the next run."""
    http = http_server_local
    profile = _alert_profile(tmp_path, f"""email_to = ["circ-team@example.edu"]
smtp_host = "127.0.0.1"
smtp_port = 9
smtp_security = "none"
webhook_url = "{http.url('/hook')}"
""")
    deliveries = [_held_loans(datetime(2026, 11, 20, 7, 5, tzinfo=TZ))]
    health = evaluate(profile, deliveries, now=datetime(2026, 11, 24, 10, tzinfo=TZ))

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(dispatch, "send_email", broken)
    doc = dispatch.after_check(profile, health, offline=True)
    assert [(s["channel"], s["message"]) for s in doc["sent"]] == [("webhook", "alert")]
    assert [(f["channel"], f["error"]) for f in doc["failed"]] == [
        ("email", "unexpected error (RuntimeError); see the log")]
    assert len(http.posts("/hook")) == 1
    # the next run: the webhook was told, the e-mail is tried again
    monkeypatch.setattr(dispatch, "send_email", _stand_in_relay)
    doc = dispatch.after_check(profile, health, offline=True)
    assert [(s["channel"], s["message"]) for s in doc["sent"]] == [("email", "alert")]
    assert len(http.posts("/hook")) == 1


def test_an_smtp_host_written_as_an_address_literal(tmp_path):
    """The config accepts an address in brackets ("[127.0.0.1]", "[::1]", as SMTP writes
    address literals); the send then looked the brackets up as a host name and never reached
    the server. Brackets around something that is no address are refused where the config
    is read."""
    from tui.core.config import ConfigError, load_config

    server = SmtpServer(tmp_path / "smtp", security="none", username=None).start()
    path = tmp_path / "config.toml"
    try:
        path.write_text('[profile.default]\nhost = "h"\n[profile.default.notify]\n'
                        'email_to = ["circ-team@example.edu"]\nsmtp_host = "[127.0.0.1]"\n'
                        f'smtp_port = {server.port}\nsmtp_security = "none"\n')
        cfg = load_config(path).profile().notify
        box = bounded(lambda: send_email(cfg, "s", "b\n", timeout=10))
    finally:
        server.stop()
    assert "1 recipient" in str(box.get("value", "")), box
    assert len(server.messages) == 1
    for bad in ("[1.2.3]", "[::::]", "[]"):
        path.write_text('[profile.default]\nhost = "h"\n[profile.default.notify]\n'
                        f'email_to = ["circ-team@example.edu"]\nsmtp_host = "{bad}"\n')
        with pytest.raises(ConfigError, match="smtp_host"):
            load_config(path).profile()  # its own error: raised when it is picked


# ------------------------------------------------------------------------------ processes

_RUN_CHECK = '''
import json, sys, tomllib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from tui.core.config import parse_config
from tui.core.health import evaluate
from tui.core.model import Delivery
from tui.notify import dispatch

tz = ZoneInfo("America/Chicago")
with open(sys.argv[1]) as f:
    profile = parse_config(tomllib.loads(f.read())).profile()
deliveries = []
for i in range(6):  # daily until Fri 20 Nov, then nothing
    at = datetime(2026, 11, 15, 7, 5, tzinfo=tz) + timedelta(days=i)
    deliveries.append(Delivery(name=f"Loans_{at:%Y%m%d_%H%M%S}.xlsx", report="Loans", delivered_at=at,
                               size=10, mtime=at, first_seen=at, last_seen=at, on_server=True,
                               downloaded_at=at, verification="ok", rows=5))
health = evaluate(profile, deliveries, now=datetime(2026, 11, 23, 10, tzinfo=tz))
print(json.dumps(dispatch.after_check(profile, health, offline=True)), flush=True)
'''


def _process_config(tmp_path, port: int) -> list[str]:
    config = tmp_path / "config.toml"
    config.write_text(f"""
[profile.default]
host = "127.0.0.1"
timezone = "America/Chicago"
ledger = "{tmp_path / 'ledger.sqlite3'}"
[[profile.default.report]]
name = "Loans"
schedule = "daily"
at = "07:00"
[profile.default.notify]
email_to = ["circ-team@example.edu"]
email_from = "report-keeper@example.edu"
smtp_host = "127.0.0.1"
smtp_port = {port}
smtp_security = "none"
""")
    script = tmp_path / "run_check.py"
    script.write_text(_RUN_CHECK)
    return [sys.executable, str(script), str(config)]


def _counting_smtp(received: list[bytes], holds: list[threading.Event | None],
                   in_data: threading.Event) -> Callable[[socket.socket, threading.Event], None]:
    """SMTP by the book; connection n waits for ``holds[n]`` (if any) before it answers the
    message's end ("250"), and only a message it answered is counted as received."""
    return smtp_script(received=received, holds=holds, in_data=in_data)


def _run_here(command: list[str], monkeypatch, capsys) -> dict[str, Any]:
    """The run ``command`` starts, in this process (a run after the one a test is about)."""
    import runpy

    monkeypatch.setattr(sys, "argv", command[1:])
    capsys.readouterr()
    runpy.run_path(command[1], run_name="__main__")
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def _opened(pid: int, path: Path) -> bool:
    """Whether process ``pid`` has ``path`` open."""
    target = os.path.realpath(path)
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # it has ended
        return False
    for fd in fds:
        try:
            if os.readlink(fd) == target:
                return True
        except OSError:  # closed meanwhile
            continue
    return False


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition`` (looked at every 10 ms) for at most BOUND seconds."""
    stop = time_.monotonic() + BOUND
    while not condition():
        assert time_.monotonic() < stop, f"{what} after {BOUND:g} s"
        time_.sleep(0.01)


def test_two_overlapping_runs_send_one_alert(scripted, tmp_path):
    """Cron starts a second check while the first is still sending: one e-mail, not two, and
    the second run reports nothing failed."""
    received: list[bytes] = []
    release = threading.Event()
    in_data = threading.Event()
    server = scripted(_counting_smtp(received, [release], in_data))
    command = _process_config(tmp_path, server.port)
    with open(command[2]) as f:
        lock = dispatch.lock_path(parse_config(tomllib.loads(f.read())).profile())
    first = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert in_data.wait(BOUND), "the first run never reached the message"
        second = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            # The first run is in DATA; the message is answered once the second run is at the
            # notify lock (it has the lock's file open: it waits for the lock). Without a lock
            # the second run would send on its own (a second connection), or end.
            _until(lambda: _opened(second.pid, lock) or server.connections > 1 or second.poll() is not None,
                   "the second run never reached the notify lock")
            release.set()
            out1, _ = first.communicate(timeout=BOUND)
            out2, _ = second.communicate(timeout=BOUND)
        finally:
            second.kill()
    finally:
        first.kill()
        release.set()
    docs = [json.loads(out1), json.loads(out2)]
    assert len(received) == 1
    assert [[(s["channel"], s["message"]) for s in d["sent"]] for d in docs] == [[("email", "alert")], []]
    assert all(d["failed"] == [] for d in docs), docs


def test_a_run_killed_mid_send_loses_nothing(scripted, tmp_path, monkeypatch, capsys):
    """kill -9 while the server holds the message: nothing was recorded as told, the ledger is
    intact, the next run sends the alert, and the one after that sends nothing more."""
    received: list[bytes] = []
    never = threading.Event()
    in_data = threading.Event()
    server = scripted(_counting_smtp(received, [never], in_data))
    command = _process_config(tmp_path, server.port)
    doomed = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert in_data.wait(BOUND), "the run never reached the message"
    finally:
        doomed.kill()  # SIGKILL
        doomed.wait()
    with sqlite3.connect(tmp_path / "ledger.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM alerts").fetchone() == (0,)
    # the runs after it: in this process (the killed one was a process of its own)
    again = _run_here(command, monkeypatch, capsys)
    assert [(s["channel"], s["message"], s["new"]) for s in again["sent"]] == [("email", "alert", 1)]
    quiet = _run_here(command, monkeypatch, capsys)
    assert quiet["sent"] == [] and quiet["failed"] == []
    assert len(received) == 1  # the killed run's message was never answered, so never counted


def test_a_ping_is_not_redirected_to_another_host(http_server_local):
    """The ping follows a redirect only on the host the config names: a server cannot send
    report-keeper's requests to a host of its choosing (an internal address, say). The other
    host here is "localhost", which is this same test server, so a request that went there
    would be seen."""
    server = http_server_local
    server.responses["/ping"] = (302, f"http://localhost:{server.port}/elsewhere")
    with pytest.raises(SendError, match="redirected to another host") as err:
        http_request(server.url("/ping"), timeout=5)
    assert "ping_url" in str(err.value)
    assert server.gets("/elsewhere") == []
    server.responses["/ping"] = (302, server.url("/next"))  # the same host: followed
    assert http_request(server.url("/ping"), timeout=5) == 200
    assert [r.path for r in server.gets()][-1] == "/next"


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_webhook_busy_or_broken_is_a_clear_failure(http_server_local, status):
    """A 429 or 5xx (with or without Retry-After) fails the send with its code; the alert stays
    unsent in the memory and goes out on the next run (the run's schedule is the retry)."""
    server = http_server_local
    server.responses["/hook"] = (status, None)
    with pytest.raises(SendError, match=f"HTTP {status}"):
        http_request(server.url("/hook"), method="POST", document={"a": 1}, timeout=5)


@pytest.fixture
def http_server_local(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY",
                "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = HttpServer().start()
    yield server
    server.stop()


def test_a_webhook_over_https(tmp_path, monkeypatch, http_server_local, scripted):
    """https goes through the same watched connections: the certificate is verified (trusted
    here through SSL_CERT_FILE), a server with an untrusted one is refused, and a TLS server
    that answers one byte at a time is cut at the deadline."""
    import ssl

    from tests.notify_servers import self_signed_cert

    cert, key = self_signed_cert(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = http_server_local
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    url = f"https://127.0.0.1:{server.port}/hook"
    with pytest.raises(SendError, match="certificate .* could not be verified"):
        http_request(url, method="POST", document={"a": 1}, timeout=5)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert http_request(url, method="POST", document={"a": 1}, timeout=5) == 200
    assert server.posts("/hook")[-1].json() == {"a": 1}

    def slow_tls(conn: socket.socket, stop: threading.Event) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            _read_request(tls)
            dribble(tls, b"HTTP/1.1 200 OK" + b" " * 100000, stop)

    slow = scripted(slow_tls)
    box = bounded(lambda: http_request(f"https://127.0.0.1:{slow.port}/hook", method="POST",
                                       document={"a": 1}, timeout=2, deadline=CUT))
    assert f"did not finish within {CUT} s" in str(box.get("error")), box


def test_starttls_with_an_untrusted_certificate_sends_nothing(tmp_path, monkeypatch):
    """STARTTLS to a server whose certificate is not trusted: refused before the login, so
    neither the password nor the alert leaves in a connection an attacker could hold."""
    server = SmtpServer(tmp_path / "smtp", security="starttls", password=PASSWORD).start()
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("RK_SMTP_PASSWORD", PASSWORD)
    try:
        cfg = NotifyConfig(email_to=("circ-team@example.edu",), email_from="report-keeper@example.edu",
                           smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="starttls",
                           smtp_username="reports", smtp_password_env="RK_SMTP_PASSWORD")
        box = bounded(lambda: send_email(cfg, "s", "b\n", timeout=10))
    finally:
        server.stop()
    assert "certificate of 127.0.0.1 port" in str(box.get("error")), box
    assert server.logins == [] and server.messages == []


def test_a_slow_send_for_one_profile_does_not_hold_up_another_sharing_the_ledger(scripted, tmp_path, monkeypatch,
                                                                                http_server_local):
    """Profiles may share a ledger file. While profile A's e-mail waits on a slow server,
    profile B's run (another cron line) must not give up its own alerts as "left to" a run
    that is sending A's: the notify lock is the profile's, not the file's."""
    received: list[bytes] = []
    release = threading.Event()
    in_data = threading.Event()
    smtp = scripted(_counting_smtp(received, [release], in_data))
    hook = http_server_local
    ledger = tmp_path / "shared.sqlite3"

    a = _alert_profile(tmp_path, name="a", ledger=ledger, notify=f'email_to = ["circ-team@example.edu"]\nsmtp_host = "127.0.0.1"\n'
                     f'smtp_port = {smtp.port}\nsmtp_security = "none"\n')
    b = _alert_profile(tmp_path, name="b", ledger=ledger, notify=f'webhook_url = "{hook.url("/hook")}"\n')
    deliveries = [_held_loans(datetime(2026, 11, 20, 7, 5, tzinfo=TZ))]
    now = datetime(2026, 11, 24, 10, tzinfo=TZ)
    monkeypatch.setattr(dispatch, "LOCK_WAIT", 1.0)
    docs: dict[str, Any] = {}
    first = threading.Thread(target=lambda: docs.setdefault(
        "a", dispatch.after_check(a, evaluate(a, deliveries, now=now), offline=True)), daemon=True)
    first.start()
    try:
        assert in_data.wait(BOUND), "profile a's e-mail never reached the server"
        docs["b"] = dispatch.after_check(b, evaluate(b, deliveries, now=now), offline=True)
    finally:
        release.set()
        first.join(BOUND)
    assert [(s["channel"], s["message"]) for s in docs["b"]["sent"]] == [("webhook", "alert")], docs["b"]
    assert len(hook.posts("/hook")) == 1
    assert [(s["channel"], s["message"]) for s in docs["a"]["sent"]] == [("email", "alert")]


def test_profiles_of_one_run_do_not_each_wait_out_the_same_silent_server(scripted, tmp_path, monkeypatch):
    """``--all-profiles`` sends each profile's alerts in turn. With every profile pointing at
    one relay that has stopped answering, each waited out the whole deadline: ninety member
    libraries meant ninety minutes of cron. A destination that did not answer in time is not
    tried again by the other profiles of the same run (each says so, and tries next run)."""
    monkeypatch.setattr(dispatch, "_UNANSWERED", {}, raising=False)
    monkeypatch.setattr(channels, "SMTP_DEADLINE", CUT, raising=False)

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        dribble(conn, b"220-hold on\r\n" * 10000, stop)

    tarpit = scripted(serve)
    deliveries = [_held_loans(datetime(2026, 11, 20, 7, 5, tzinfo=TZ))]
    docs = []
    for name in ("one", "two", "three"):
        profile = _alert_profile(tmp_path, name=name, notify=f"""email_to = ["circ-team@example.edu"]
smtp_host = "127.0.0.1"
smtp_port = {tarpit.port}
smtp_security = "none"
""")
        health = evaluate(profile, deliveries, now=datetime(2026, 11, 24, 10, tzinfo=TZ))
        docs.append(bounded(lambda p=profile, h=health: dispatch.after_check(p, h, offline=True))["value"])
    errors = [[f["error"] for f in d["failed"]] for d in docs]
    assert f"did not finish within {CUT} s" in errors[0][0], errors
    for later in errors[1:]:
        assert len(later) == 1 and "not tried" in later[0] and "next run" in later[0], errors
    assert tarpit.connections == 1


def test_an_alert_that_could_not_be_sent_makes_the_ping_fail(tmp_path, monkeypatch, http_server_local):
    """The ping is the dead man's switch that watches the alerting itself: when a warning's
    e-mail cannot be delivered (the relay is down), a success ping would tell the monitoring
    service all is well while nobody hears of the problem. It pings ``/fail`` instead, and once
    the alert is delivered on a later run the ping is a success again."""
    http = http_server_local
    profile = _alert_profile(tmp_path, f"""email_to = ["circ-team@example.edu"]
smtp_host = "127.0.0.1"
smtp_port = {free_port()}
smtp_security = "none"
ping_url = "{http.url('/ping/abc')}"
""")
    deliveries = [_held_loans(datetime(2026, 11, 23, 7, 5, tzinfo=TZ), verification="empty", rows=0)]
    health = evaluate(profile, deliveries, now=datetime(2026, 11, 23, 10, tzinfo=TZ))
    assert health.exit_code == st.Exit.WARNING  # a warning: alone, it pings success

    doc = dispatch.after_check(profile, health, offline=True)  # nothing listens on the port
    assert [f["channel"] for f in doc["failed"]] == ["email"]
    assert [(s["channel"], s["message"]) for s in doc["sent"]] == [("ping", "fail")]
    assert [r.path for r in http.gets()] == ["/ping/abc/fail"]

    monkeypatch.setattr(dispatch, "send_email", _stand_in_relay)
    doc = dispatch.after_check(profile, health, offline=True)  # the relay is back
    assert [(s["channel"], s["message"]) for s in doc["sent"]] == [("email", "alert"), ("ping", "ok")]
    doc = dispatch.after_check(profile, health, offline=True)  # nothing new to tell
    assert [(s["channel"], s["message"]) for s in doc["sent"]] == [("ping", "ok")]
    assert [r.path for r in http.gets()] == ["/ping/abc/fail", "/ping/abc", "/ping/abc"]


def test_a_ledger_that_cannot_be_opened_for_the_alerts_makes_the_ping_fail(tmp_path, http_server_local):
    """Alerts that cannot even be planned (the ledger cannot be opened) are alerts nobody gets:
    the ping says so with ``/fail``, where it used to send nothing at all."""
    http = http_server_local
    ledger = tmp_path / "ledger.sqlite3"
    ledger.write_bytes(b"not a database, " * 512)
    profile = _alert_profile(tmp_path, f"""webhook_url = "{http.url('/hook')}"
ping_url = "{http.url('/ping/abc')}"
""", ledger=ledger)
    health = evaluate(profile, [], now=datetime(2026, 11, 23, 10, tzinfo=TZ))
    doc = dispatch.after_check(profile, health, offline=True)
    assert [f["channel"] for f in doc["failed"]] == ["webhook"]
    assert [(s["channel"], s["message"]) for s in doc["sent"]] == [("ping", "fail")]
    assert [r.path for r in http.gets()] == ["/ping/abc/fail"]
    assert http.posts("/hook") == []


def test_a_recipient_refused_at_rcpt_is_told_later_and_nobody_twice(scripted, tmp_path, http_server_local):
    """Three recipients; the server takes the first, refuses the second for now (450) and the
    third for good (550). The message counted as sent: the two never got the alert and nobody
    was told. Now the first gets it once; the other two are failures naming the address and
    the server's reply, the ping says fail, and each later run tries again only those who
    did not get it: the second once the server takes it, the third every run, in vain and
    without a message to anybody else."""
    http = http_server_local
    envelopes: list[list[str]] = []
    replies = {"desk@example.edu": b"450 4.2.1 mailbox busy, try later\r\n",
               "gone@example.edu": b"550 5.1.1 no such user here\r\n"}
    server = scripted(smtp_script(rcpt_replies=replies, envelopes=envelopes))
    profile = _alert_profile(tmp_path, f"""email_to = ["circ-team@example.edu", "desk@example.edu", "gone@example.edu"]
email_from = "report-keeper@example.edu"
smtp_host = "127.0.0.1"
smtp_port = {server.port}
smtp_security = "none"
ping_url = "{http.url('/ping/abc')}"
""")
    deliveries = [_held_loans(datetime(2026, 11, 23, 7, 5, tzinfo=TZ), verification="empty", rows=0)]
    health = evaluate(profile, deliveries, now=datetime(2026, 11, 23, 10, tzinfo=TZ))
    assert health.exit_code == st.Exit.WARNING  # alone, it would ping success

    def run() -> dispatch.NotifyDocument:
        box = bounded(lambda: dispatch.after_check(profile, health, offline=True))
        assert "value" in box, box
        return box["value"]

    doc = run()
    assert envelopes == [["circ-team@example.edu"]]
    assert [(s["channel"], s["message"], s.get("recipients")) for s in doc["sent"]] == [
        ("email", "alert", ["circ-team@example.edu"]), ("ping", "fail", None)]
    [failed] = doc["failed"]
    assert (failed["channel"], failed["message"], failed["recipients"]) == (
        "email", "alert", ["desk@example.edu", "gone@example.edu"])
    assert "desk@example.edu (450 4.2.1 mailbox busy, try later" in failed["error"]
    assert "gone@example.edu (550 5.1.1 no such user here" in failed["error"]
    assert "email_to" in failed["error"]
    line = dispatch.summary_line(doc) or ""
    assert "desk@example.edu" in line and "FAILED" in line

    del replies["desk@example.edu"]  # the mailbox takes mail again
    doc = run()
    assert envelopes[1:] == [["desk@example.edu"]]  # not the first recipient again
    assert [(s["channel"], s.get("recipients")) for s in doc["sent"]] == [
        ("email", ["desk@example.edu"]), ("ping", None)]
    assert [f["recipients"] for f in doc["failed"]] == [["gone@example.edu"]]

    doc = run()  # only the address that does not exist is left: no message goes anywhere
    assert envelopes[2:] == []
    assert [f["recipients"] for f in doc["failed"]] == [["gone@example.edu"]]
    assert "gone@example.edu (550 5.1.1 no such user here" in doc["failed"][0]["error"]
    assert [r.path for r in http.gets()] == ["/ping/abc/fail"] * 3

    del replies["gone@example.edu"]  # the address was created after all
    doc = run()
    assert envelopes[2:] == [["gone@example.edu"]] and doc["failed"] == []
    assert [r.path for r in http.gets()][3:] == ["/ping/abc"]
    assert run()["sent"] == [{"channel": "ping", "message": "ok", "detail": doc["sent"][-1]["detail"]}]
    assert len(envelopes) == 3


# ------------------------------------------------------------------------------ deadlines: proxy, DNS


def test_a_proxy_answering_connect_one_byte_at_a_time_is_cut_at_the_deadline(scripted, monkeypatch):
    """Proxies from the environment are honoured. An https webhook through a proxy starts
    with CONNECT; the connection was watched only once the tunnel stood, so a proxy that
    answers CONNECT one byte at a time held cron for as long as it liked."""

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        _read_request(conn)
        dribble(conn, b"HTTP/1.1 200 Connection established\r\n" + b"X-Slow: " + b"a" * 100000, stop)

    proxy = scripted(serve)
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
    box = bounded(lambda: http_request("https://hook.example.edu/T0k3n", method="POST",
                                       document={"a": 1}, timeout=2, deadline=CUT))
    assert proxy.connections == 1  # it went through the proxy
    assert isinstance(box.get("error"), SendError), box
    assert f"did not finish within {CUT} s" in str(box["error"]) and box["error"].unanswered


_HUNG_RESOLVER = '''
import json, socket, sys, time
# A name server that never answers, on 127.0.0.1 of this private network (resolv.conf here
# points at it, waiting 30 s per try): every lookup of a name that is not in /etc/hosts hangs.
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
dns.bind(("127.0.0.1", 53))
from tui.core.config import NotifyConfig
from tui.notify import channels

def timed(call):
    start = time.monotonic()
    try:
        call()
        return {"error": None, "took": time.monotonic() - start}
    except channels.SendError as exc:
        return {"error": str(exc), "unanswered": exc.unanswered, "took": time.monotonic() - start}

cut = float(sys.argv[2])
channels.SMTP_DEADLINE = cut
cfg = NotifyConfig(email_to=("circ-team@example.edu",), email_from="report-keeper@example.edu",
                   smtp_host=sys.argv[1], smtp_port=25, smtp_security="none")
out = {"smtp": timed(lambda: channels.send_email(cfg, "s", "b\\n", timeout=2)),
       "http": timed(lambda: channels.http_request("http://hook.example.edu/x", method="POST",
                                                   document={}, timeout=2, deadline=cut))}
# A relay given as an address needs no lookup; this machine's own name (for EHLO) does, and
# /etc/hosts here does not have it: the send must not spend its deadline on that.
from aiosmtpd.controller import Controller

class Keep:
    messages = []
    async def handle_DATA(self, server, session, envelope):
        Keep.messages.append(envelope.rcpt_tos)
        return "250 OK"

relay = Controller(Keep(), hostname="127.0.0.1", port=2525, server_hostname="relay.test")
relay.start()
channels.SMTP_DEADLINE = 8
channels.LOCAL_NAME_WAIT = 0.5  # a lookup that never ends: any wait is cut
channels._LOCAL_NAME.clear()
cfg = NotifyConfig(email_to=("circ-team@example.edu",), smtp_host="127.0.0.1", smtp_port=2525,
                   smtp_security="none")
out["literal"] = timed(lambda: channels.send_email(cfg, "s", "b\\n", timeout=2))
out["literal"]["delivered"] = Keep.messages
relay.stop()
print(json.dumps(out), flush=True)
'''


def _in_network_without_dns(tmp_path, script: str, *args: str) -> dict[str, Any]:
    """Run ``script`` in a private user, mount and network namespace whose resolv.conf names
    a server that never answers: a real hung resolver, with no network and nothing changed
    outside. Skipped where unprivileged namespaces are not allowed."""
    import shutil

    if not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("unshare or ip is not installed")
    probe = subprocess.run(["unshare", "-rmn", "true"], capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"user and network namespaces are not allowed here: {probe.stderr.decode()[:120]}")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:30 attempts:5\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")  # not this machine's own name
    path = tmp_path / "hung_resolver.py"
    path.write_text(script)
    import shlex

    inner = (f"ip link set lo up && mount --bind {shlex.quote(str(resolv))} /etc/resolv.conf && "
             f"mount --bind {shlex.quote(str(hosts))} /etc/hosts && "
             f"exec {shlex.quote(sys.executable)} {shlex.quote(str(path))} "
             + " ".join(shlex.quote(a) for a in args))
    import os

    env = {**os.environ, "PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parent.parent)}
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(var, None)
    done = subprocess.run(["unshare", "-rmn", "sh", "-c", inner], capture_output=True, text=True,
                          timeout=BOUND, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_hung_name_server_is_inside_the_send_deadline(tmp_path):
    """The host name of the relay and of the webhook were looked up before any deadline
    watched the exchange: a name server that never answers held cron for minutes (glibc
    waits per try, per server, per address family). The lookup now counts towards the
    deadline, and the failure says what did not answer. A relay given as an address is still
    reached when this machine's own name (smtplib's EHLO name) cannot be looked up."""
    out = _in_network_without_dns(tmp_path, _HUNG_RESOLVER, "relay.example.edu", str(CUT))
    for name, what in (("smtp", "relay.example.edu"), ("http", "hook.example.edu")):
        got = out[name]
        assert got["error"] and what in got["error"] and f"did not finish within {CUT} s" in got["error"], out
        assert got["unanswered"] and got["took"] < 20, out
    assert out["literal"]["error"] is None, out  # sent, with a stand-in name in EHLO
    assert out["literal"]["delivered"] == [["circ-team@example.edu"]] and out["literal"]["took"] < 8, out


def test_the_documented_deadlines():
    """The tests above give a send a short deadline of their own (``CUT``); a run sends with
    the product's, which docs/ALERTS.md names: 20 s a step and 60 s in all for an e-mail, 10 s
    and 30 s for a request (the alerts and the ping pass none of their own)."""
    import inspect

    assert (channels.SMTP_TIMEOUT, channels.SMTP_DEADLINE) == (20, 60)
    assert (channels.HTTP_TIMEOUT, channels.HTTP_DEADLINE) == (10, 30)
    email = inspect.signature(send_email).parameters
    assert email["timeout"].default == 20 and email["deadline"].default is None  # SMTP_DEADLINE when sent
    request = inspect.signature(http_request).parameters
    assert request["timeout"].default == 10 and request["deadline"].default == 30


def test_a_plain_send_loads_no_certificates(scripted, monkeypatch, http_server_local):
    """A TLS context loads the system's certificates (tens of milliseconds of CPU each time):
    an e-mail over smtp_security = "none" and a request to http:// make none; a request to
    https:// makes its own, which is used."""
    import ssl

    made: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    server = scripted(smtp_script())
    assert "1 recipient" in str(bounded(lambda: send_email(_plain(server.port), "s", "b\n", timeout=10))["value"])
    assert http_request(http_server_local.url("/hook"), method="POST", document={"a": 1}, timeout=5) == 200
    assert made == []
    with pytest.raises(SendError, match="could not reach"):  # the TLS handshake with a plain HTTP server
        http_request(f"https://127.0.0.1:{http_server_local.port}/hook", method="POST", document={"a": 1},
                     timeout=5)
    assert len(made) == 1


def test_notify_test_with_a_refused_recipient_is_no_working_channel(scripted, tmp_path, capsys):
    """``notify --test`` against a server that takes one recipient and refuses the other said
    "sent" and exited 0: the person setting alerts up believed both would hear of problems."""
    from tui.cli import main

    replies = {"desk@example.edu": b"550 5.1.1 no such user here\r\n"}
    envelopes: list[list[str]] = []
    server = scripted(smtp_script(rcpt_replies=replies, envelopes=envelopes))
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[profile.default]\nhost = "127.0.0.1"\nremote_dir = "up"\n'
                   f'ledger = "{tmp_path / "ledger.sqlite3"}"\n[profile.default.notify]\n'
                   'email_to = ["circ-team@example.edu", "desk@example.edu"]\n'
                   f'smtp_host = "127.0.0.1"\nsmtp_port = {server.port}\nsmtp_security = "none"\n')
    assert main(["notify", "--test", "--config", str(cfg)]) == 2
    out = capsys.readouterr().out
    assert "e-mail   FAILED: e-mail to 1 recipient(s)" in out
    assert "desk@example.edu (550 5.1.1 no such user here; refused: check the address in email_to)" in out
    assert envelopes == [["circ-team@example.edu"]]
