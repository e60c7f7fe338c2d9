"""Alert channels against real servers on 127.0.0.1: aiosmtpd (STARTTLS, implicit TLS, AUTH),
an HTTP server for the webhook and the ping, and hostile or broken servers; the notify config's
validation; ``report-keeper notify --test``."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading
from pathlib import Path

import pytest

from tests.fixtures_sshd import free_port
from tests.notify_servers import HttpServer, SmtpServer, self_signed_cert
from tui.cli import main
from tui.core.config import ConfigError, NotifyConfig, load_config
from tui.notify.channels import SendError, fail_url, http_request, send_email, show_url

PASSWORD = "s3cret-Pass word"


@pytest.fixture
def smtp_factory(tmp_path, monkeypatch):
    started = []

    def make(**kwargs) -> SmtpServer:
        server = SmtpServer(tmp_path / f"smtp{len(started)}", password=PASSWORD, **kwargs).start()
        started.append(server)
        if server.security != "none":
            monkeypatch.setenv("SSL_CERT_FILE", str(server.cert))
        return server

    monkeypatch.setenv("RK_SMTP_PASSWORD", PASSWORD)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    yield make
    for s in started:
        s.stop()


@pytest.fixture
def http_server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    server = HttpServer().start()
    yield server
    server.stop()


def _cfg(server: SmtpServer, **overrides) -> NotifyConfig:
    values = dict(email_to=("circ-team@example.edu",), email_from="report-keeper@example.edu",
                  smtp_host="127.0.0.1", smtp_port=server.port, smtp_security=server.security,
                  smtp_username=server.username, smtp_password_env="RK_SMTP_PASSWORD" if server.username else None)
    values.update(overrides)
    return NotifyConfig(**values)


# ------------------------------------------------------------------------------ e-mail


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_email_with_tls_and_login(smtp_factory, security):
    server = smtp_factory(security=security)
    detail = send_email(_cfg(server), "[report-keeper] subject — é", "body line\n")
    assert "1 recipient" in str(detail)
    [msg] = server.messages
    assert msg.authenticated_as == "reports" and msg.rcpt_tos == ["circ-team@example.edu"]
    assert msg.subject == "[report-keeper] subject — é" and msg.body.replace("\r\n", "\n") == "body line\n"
    assert msg.message["Auto-Submitted"] == "auto-generated"


def test_email_through_a_local_relay_without_login(smtp_factory):
    server = smtp_factory(security="none", username=None)
    send_email(_cfg(server), "s", "b\n")
    assert [m.authenticated_as for m in server.messages] == [None]


def test_starttls_is_required_when_configured(smtp_factory):
    server = smtp_factory(security="none", username=None)  # offers no STARTTLS
    with pytest.raises(SendError, match="does not offer STARTTLS; nothing was sent"):
        send_email(_cfg(server, smtp_security="starttls", smtp_username="reports",
                        smtp_password_env="RK_SMTP_PASSWORD"), "s", "b\n")
    assert server.messages == [] and server.logins == []


def test_an_untrusted_certificate_is_refused(smtp_factory, monkeypatch):
    server = smtp_factory(security="tls")
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(SendError, match="certificate of 127.0.0.1 port .* could not be verified"):
        send_email(_cfg(server), "s", "b\n")
    assert server.messages == [] and server.logins == []


def test_a_refused_login_names_the_variable_not_the_password(smtp_factory, monkeypatch):
    server = smtp_factory(security="starttls")
    monkeypatch.setenv("RK_SMTP_PASSWORD", "wrong-Password-123")
    with pytest.raises(SendError) as err:
        send_email(_cfg(server), "s", "b\n")
    text = str(err.value)
    assert "refused the login of 'reports' (535" in text and "RK_SMTP_PASSWORD" in text
    assert "wrong-Password-123" not in text and PASSWORD not in text


def test_a_missing_password_variable(smtp_factory, monkeypatch):
    server = smtp_factory(security="starttls")
    monkeypatch.delenv("RK_SMTP_PASSWORD")
    with pytest.raises(SendError, match="environment variable RK_SMTP_PASSWORD .* is not set"):
        send_email(_cfg(server), "s", "b\n")
    assert server.logins == []


def test_nobody_listening_and_a_silent_server(tmp_path):
    cfg = NotifyConfig(email_to=("a@example.edu",), smtp_host="127.0.0.1", smtp_port=free_port(),
                       smtp_security="none")
    with pytest.raises(SendError, match="could not reach 127.0.0.1 port"):
        send_email(cfg, "s", "b\n", timeout=2)
    with socket.socket() as silent:  # accepts (kernel backlog) but never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        cfg = NotifyConfig(email_to=("a@example.edu",), smtp_host="127.0.0.1",
                           smtp_port=silent.getsockname()[1], smtp_security="none")
        with pytest.raises(SendError, match="did not answer within 1 s"):
            send_email(cfg, "s", "b\n", timeout=1)


def _echoing_tls_smtp(tmp_path: Path) -> tuple[int, list[bytes], threading.Thread]:
    """A hostile SMTP server (implicit TLS) that echoes the client's AUTH line in its refusal."""
    cert, key = self_signed_cert(tmp_path / "echo-tls")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with ctx.wrap_socket(conn, server_side=True) as s:
            f = s.makefile("rwb")
            f.write(b"220 evil ESMTP\r\n"); f.flush()
            for line in f:
                seen.append(line)
                if line.upper().startswith(b"EHLO"):
                    f.write(b"250-evil\r\n250 AUTH PLAIN\r\n")
                elif line.upper().startswith(b"AUTH"):
                    f.write(b"535 denied: " + line.strip() + b" " + base64.b64decode(line.split()[-1]) + b"\r\n")
                elif line.upper().startswith(b"QUIT"):
                    f.write(b"221 bye\r\n"); f.flush()
                    break
                else:
                    f.write(b"250 ok\r\n")
                f.flush()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, seen, thread, cert


def test_a_server_echoing_the_credentials_does_not_leak_them(tmp_path, monkeypatch):
    port, seen, thread, cert = _echoing_tls_smtp(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    monkeypatch.setenv("RK_SMTP_PASSWORD", PASSWORD)
    cfg = NotifyConfig(email_to=("a@example.edu",), smtp_host="127.0.0.1", smtp_port=port,
                       smtp_security="tls", smtp_username="reports", smtp_password_env="RK_SMTP_PASSWORD")
    with pytest.raises(SendError) as err:
        send_email(cfg, "s", "b\n", timeout=5)
    thread.join(5)
    assert any(line.upper().startswith(b"AUTH") for line in seen)  # the server did get them
    text = str(err.value)
    assert "535" in text and "***" in text
    for secret in (PASSWORD, base64.b64encode(PASSWORD.encode()).decode(),
                   base64.b64encode(f"\0reports\0{PASSWORD}".encode()).decode()):
        assert secret not in text


# ------------------------------------------------------------------------------ HTTP


def test_webhook_posts_json(http_server):
    assert http_request(http_server.url("/hook/T0k3n"), method="POST", document={"a": "é"}) == 200
    [req] = http_server.posts("/hook/T0k3n")
    assert req.json() == {"a": "é"} and req.headers["Content-Type"].startswith("application/json")
    assert req.headers["User-Agent"].startswith("report-keeper/")


def test_http_errors_say_what_happened_without_the_token(http_server):
    http_server.responses["/hook/T0k3n"] = (500, None)
    with pytest.raises(SendError) as err:
        http_request(http_server.url("/hook/T0k3n"), method="POST", document={})
    assert "HTTP 500" in str(err.value) and "T0k3n" not in str(err.value)
    assert show_url(http_server.url("/hook/T0k3n")) == f"http://127.0.0.1:{http_server.port}/…"


def test_a_webhook_post_follows_no_redirect(http_server):
    http_server.responses["/hook"] = (307, http_server.url("/elsewhere"))
    with pytest.raises(SendError, match="redirect .HTTP 307. that was not followed; a POST follows no redirect"):
        http_request(http_server.url("/hook"), method="POST", document={})
    assert http_server.gets("/elsewhere") == [] and http_server.posts("/elsewhere") == []


def test_a_ping_follows_http_redirects_but_no_other_scheme(http_server):
    http_server.responses["/ping"] = (302, http_server.url("/ping2"))
    assert http_request(http_server.url("/ping")) == 200
    assert [r.path for r in http_server.gets()] == ["/ping", "/ping2"]
    for target in ("file:///etc/passwd", "ftp://127.0.0.1/x", "gopher://127.0.0.1/"):
        http_server.responses["/bad"] = (302, target)
        with pytest.raises(SendError, match="redirect") as err:
            http_request(http_server.url("/bad"))
        assert "not followed" in str(err.value) or "refused address" in str(err.value)
    http_server.responses["/loop"] = (302, http_server.url("/loop"))
    with pytest.raises(SendError):
        http_request(http_server.url("/loop"))
    assert len(http_server.gets("/loop")) <= 4


def test_unreachable_slow_and_huge_http_servers():
    with pytest.raises(SendError, match="could not reach"):
        http_request(f"http://127.0.0.1:{free_port()}/p")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(SendError, match="did not answer within 1 s"):
            http_request(f"http://127.0.0.1:{silent.getsockname()[1]}/p", timeout=1)
    # a response body of 50 MB: at most MAX_BODY bytes are read
    listener = socket.create_server(("127.0.0.1", 0))
    sent = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 52428800\r\n\r\n")
            total = 0
            try:
                while total < 52428800:
                    conn.sendall(b"x" * 65536)
                    total += 65536
            except OSError:
                pass
            sent.append(total)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    assert http_request(f"http://127.0.0.1:{listener.getsockname()[1]}/big") == 200
    t.join(10)
    listener.close()
    assert sent and sent[0] < 52428800  # we hung up long before the end


def test_fail_url():
    assert fail_url("https://hc.example/abc") == "https://hc.example/abc/fail"
    assert fail_url("https://hc.example/abc/") == "https://hc.example/abc/fail"
    assert fail_url("https://hc.example/abc?rid=1") == "https://hc.example/abc/fail?rid=1"


# ------------------------------------------------------------------------------ config


BASE = """
[profile.default]
host = "files.example.org"
[profile.default.notify]
"""


@pytest.mark.parametrize("table, key, reason", [
    ('email_to = ["a@example.edu"]\nsmtp_host = "smtp.example.edu"\nsmtp_password = "hunter2"',
     "smtp_password", "never goes in the config file"),
    ('webhook_url = "https://user:hunter2@chat.example.edu/x"', "webhook_url", "user name or password"),
    ('webhook_url = "file:///etc/passwd"', "webhook_url", "only http:// and https://"),
    ('ping_url = "javascript:alert(1)"', "ping_url", "only http:// and https://"),
    ('ping_url = "https://hc.example/a b"', "ping_url", "spaces or control characters"),
    ('email_to = ["a@example.edu"]', "smtp_host", "missing"),
    ('email_to = ["not an address"]\nsmtp_host = "s.example.edu"', "email_to", "not an e-mail address"),
    ('email_to = ["a@example.edu, b@example.edu"]\nsmtp_host = "s.example.edu"', "email_to", "several addresses"),
    ('email_to = ["a@example.edu"]\nsmtp_host = "smtp://s.example.edu"', "smtp_host", "no scheme"),
    ('email_to = ["a@example.edu"]\nsmtp_host = "s.example.edu"\nsmtp_security = "ssl"', "smtp_security", "not one of"),
    ('email_to = ["a@example.edu"]\nsmtp_host = "s.example.edu"\nsmtp_username = "u"', "smtp_password_env", "missing"),
    ('email_to = ["a@example.edu"]\nsmtp_host = "s.example.edu"\nsmtp_username = "u"\nsmtp_password_env = "hunter2!"',
     "smtp_password_env", "NAME of an environment variable"),
    ('email_to = ["a@example.edu"]\nsmtp_host = "s.example.edu"\nsmtp_username = "u"\nsmtp_password_env = "P"\nsmtp_security = "none"',
     "smtp_security", "unencrypted"),
    ('smtp_host = "s.example.edu"', "email_to", "nobody to send e-mail to"),
    ('email_to = ["a@example.edu"]\nsmtp_host = "s.example.edu"\nsmtp_port = 70000', "smtp_port", "out of range"),
    ('webhook = "https://x.example/"', "webhook", "unknown key"),
])
def test_notify_config_errors_name_file_key_and_reason(tmp_path, table, key, reason):
    path = tmp_path / "config.toml"
    path.write_text(BASE + table + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path).profile()  # its own error: raised when it is picked
    text = str(err.value)
    assert text.startswith(f"{path}: profile.default.notify.{key}: ") and reason in text
    assert "hunter2" not in text


def test_notify_config_defaults(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(BASE + 'email_to = "a@example.edu"\nsmtp_host = "smtp.example.edu"\n'
                    'ping_url = "https://hc.example/abc"\n')
    n = load_config(path).profile().notify
    assert n.email_to == ("a@example.edu",) and n.smtp_security == "starttls" and n.port == 587
    assert n.ping_url == "https://hc.example/abc" and n.webhook_url is None and n.configured
    path.write_text("[profile.default]\nhost = \"h\"\n")
    assert not load_config(path).profile().notify.configured


# ------------------------------------------------------------------------------ notify --test


def _profile_config(tmp_path: Path, notify: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[profile.default]\nhost = "127.0.0.1"\nremote_dir = "up"\n'
                    f'ledger = "{tmp_path / "ledger.sqlite3"}"\n[profile.default.notify]\n{notify}')
    return path


def _notify_test_every_channel(tmp_path: Path, server, http_server, capsys):
    """``notify --test --json`` with e-mail, a webhook and a ping: (exit code, output, document)."""
    cfg = _profile_config(tmp_path, server.notify_table() + f'webhook_url = "{http_server.url("/hook")}"\n'
                          f'ping_url = "{http_server.url("/ping/abc")}"\n')
    code = main(["notify", "--test", "--config", str(cfg), "--json"])
    out = capsys.readouterr()
    return code, out, json.loads(out.out)


def test_notify_test_reaches_every_channel(smtp_factory, http_server, tmp_path, capsys):
    server = smtp_factory(security="starttls")
    code, out, doc = _notify_test_every_channel(tmp_path, server, http_server, capsys)
    assert code == 0 and doc["status"] == "ok"
    assert [(c["channel"], c["ok"]) for c in doc["channels"]] == [("email", True), ("webhook", True), ("ping", True)]
    assert [m.subject for m in server.messages] == ["[report-keeper] TEST: alerts of profile 'default' reach you"]
    assert http_server.posts("/hook")[0].json()["status"] == "test"
    assert [r.path for r in http_server.gets()] == ["/ping/abc"]
    assert "e-mail   sent" in out.err and PASSWORD not in out.out + out.err


def test_the_message_names_every_watched_folder(smtp_factory, tmp_path, capsys):
    """A profile that watches several server folders: the message says all of them, not only
    the first (a person must know where to look)."""
    server = smtp_factory(security="starttls")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[profile.default]\nhost = "127.0.0.1"\nremote_dirs = ["up/Daily", "up/Weekly"]\n'
                   f'ledger = "{tmp_path / "ledger.sqlite3"}"\n[profile.default.notify]\n'
                   + server.notify_table())
    assert main(["notify", "--test", "--config", str(cfg)]) == 0
    capsys.readouterr()
    [message] = server.messages
    assert "127.0.0.1:up/Daily, up/Weekly" in message.body


def test_notify_test_says_which_channel_failed(smtp_factory, http_server, tmp_path, capsys, monkeypatch):
    server = smtp_factory(security="starttls")
    monkeypatch.setenv("RK_SMTP_PASSWORD", "wrong-Password-123")
    http_server.responses["/hook"] = (404, None)
    cfg = _profile_config(tmp_path, server.notify_table() + f'webhook_url = "{http_server.url("/hook")}"\n')
    code = main(["notify", "--test", "--config", str(cfg)])
    out = capsys.readouterr().out
    assert code == 2
    assert "e-mail   FAILED: 127.0.0.1 port" in out and "refused the login" in out
    assert "webhook  FAILED: " in out and "HTTP 404" in out
    assert "wrong-Password-123" not in out


def test_notify_test_without_channels_is_a_usage_error(tmp_path, capsys):
    cfg = _profile_config(tmp_path, "")
    assert main(["notify", "--test", "--config", str(cfg)]) == 3
    assert "no alert channel is configured" in capsys.readouterr().err
    assert main(["notify", "--config", str(cfg)]) == 3


def test_the_readme_alerts_example_loads(tmp_path):
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    [example] = [b for b in re.findall(r"```toml\n(.*?)```", readme, re.S) if ".notify]" in b]
    path = tmp_path / "config.toml"
    path.write_text('[profile.default]\nhost = "files.example.org"\n' + example)
    n = load_config(path).profile().notify
    assert n.email_to == ("circ-team@example.edu",) and n.smtp_password_env == "RK_SMTP_PASSWORD"
    assert n.webhook_url and n.ping_url and n.smtp_security == "starttls"


@pytest.mark.parametrize("broken", ["email", "webhook"])
def test_notify_test_goes_on_past_a_bug_in_one_channel(smtp_factory, http_server, tmp_path, capsys,
                                                       monkeypatch, broken):
    """A bug in one channel (stood in for by a send that raises something other than
    SendError) stopped the whole test: the other channels got no test message and the
    command printed a traceback instead of a line per channel. Each channel now says what
    happened to it, the others are tried, and the exit code says one failed."""
    from tui.notify import dispatch

    server = smtp_factory(security="starttls")
    real_http = dispatch.http_request

    def bug(*args: object, **kwargs: object) -> str:
        raise RuntimeError("a bug")

    if broken == "email":
        monkeypatch.setattr(dispatch, "send_email", bug)
    else:
        monkeypatch.setattr(dispatch, "http_request",
                            lambda url, **kw: bug() if kw.get("method") == "POST" else real_http(url, **kw))
    code, out, doc = _notify_test_every_channel(tmp_path, server, http_server, capsys)
    assert code == 2 and doc["status"] == "critical"
    assert [(c["channel"], c["ok"]) for c in doc["channels"]] == [
        ("email", broken != "email"), ("webhook", broken != "webhook"), ("ping", True)]
    name = {"email": "e-mail  ", "webhook": "webhook "}[broken]
    assert f"{name} FAILED: unexpected error (RuntimeError); see the log" in out.err
    assert len(server.messages) == (broken != "email")
    assert len(http_server.posts("/hook")) == (broken != "webhook")
    assert [r.path for r in http_server.gets()] == ["/ping/abc"]
