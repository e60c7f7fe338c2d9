"""The alerts' memory over many runs, against a real aiosmtpd server and a real HTTP receiver.

- A recipient removed from ``email_to`` kept its rows; re-added months later, those rows
  decided what it was told: an alert open when it was removed (the connection failing) that
  ended and came back while it was away was "told already", so it heard nothing at all.
- The "resolved" message of the connection did not say how long it had failed.
- The ledger is a file on disk: one damaged value in the alert memory (a ``clear_since`` that
  is no time) made the whole e-mail channel fail, so nobody was alerted of anything.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, date, datetime, time, timedelta

import pytest

from tests.notify_servers import HttpServer, SmtpServer
from tests.test_alerts import TZ, A, B, _delivery, _profile
from tui.core.health import ConnectionStatus, evaluate
from tui.core.ledger import Ledger
from tui.notify import dispatch

CIRC, DESK = "circ-team@example.edu", "desk@example.edu"
FAILED = ConnectionStatus(ok=False, message="connection refused", write_test="skipped")
WORKS = ConnectionStatus(ok=True, message="ok", write_test="ok")


@pytest.fixture
def servers(tmp_path, monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    smtp = SmtpServer(tmp_path / "smtp", security="none", username=None).start()
    http = HttpServer().start()
    yield smtp, http
    smtp.stop()
    http.stop()


def _notify(smtp: SmtpServer, to: list[str], http: HttpServer | None = None) -> str:
    text = ("email_to = [" + ", ".join(f'"{a}"' for a in to) + "]\n"
            f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\nsmtp_security = "none"\n')
    if http is not None:
        text += f'webhook_url = "{http.url("/hook")}"\n'
    return text


def _check(monkeypatch, profile, when: datetime, connection: ConnectionStatus,
           days: dict[str, list[date]]) -> dispatch.NotifyDocument:
    """``check`` at ``when`` (the clock pinned there): the reports delivered on ``days``."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", when.isoformat())
    deliveries = [_delivery(r, d) for r, ds in days.items() for d in ds
                  if datetime.combine(d, time(7, 5), tzinfo=TZ) <= when]
    health = evaluate(profile, deliveries, now=when, connection=connection)
    return dispatch.after_check(profile, health, offline=False)


def _daily(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _sent(doc: dispatch.NotifyDocument) -> list[tuple[str, str, list[str] | None]]:
    return [(s["channel"], s["message"], s.get("recipients")) for s in doc["sent"]]


# ------------------------------------------------------------------ a recipient removed and re-added


def test_a_recipient_re_added_is_a_new_recipient_told_what_is_open_once(tmp_path, monkeypatch, servers):
    smtp, _ = servers
    first = date(2026, 11, 23)
    days = {A: _daily(first - timedelta(days=10), first + timedelta(days=20)),
            B: _daily(first - timedelta(days=10), first + timedelta(days=20))}
    both = _profile(tmp_path, _notify(smtp, [CIRC, DESK]))
    circ_only = _profile(tmp_path, _notify(smtp, [CIRC]))

    def at(day: int) -> datetime:
        return datetime.combine(first + timedelta(days=day), time(10), tzinfo=TZ)

    def subjects(since: int) -> list[tuple[list[str], str]]:
        return [(m.rcpt_tos, m.subject) for m in smtp.messages[since:]]

    def desk_rows() -> int:
        with Ledger.open(both.ledger_path, profile=both.name) as ledger:
            return len(ledger.alert_rows(dispatch.email_memory(DESK)))

    doc = _check(monkeypatch, both, at(0), FAILED, days)  # Mon 23 Nov: both hear it fails
    assert _sent(doc) == [("email", "alert", [CIRC, DESK])]
    doc = _check(monkeypatch, circ_only, at(1), WORKS, days)  # the desk is taken off the list
    assert _sent(doc) == [] and doc["failed"] == []
    assert desk_rows() == 1  # kept a while: a run of an older config may just not know it yet
    doc = _check(monkeypatch, circ_only, at(2), WORKS, days)  # works for a day: ended
    assert _sent(doc) == [("email", "resolved", [CIRC])]
    for day in range(3, 8):  # a week without the desk
        assert _sent(_check(monkeypatch, circ_only, at(day), WORKS, days)) == []
    assert desk_rows() == 1
    _check(monkeypatch, circ_only, at(8), WORKS, days)  # more than a week: forgotten
    assert desk_rows() == 0
    assert _sent(_check(monkeypatch, circ_only, at(9), WORKS, days)) == []
    doc = _check(monkeypatch, circ_only, at(10), FAILED, days)  # Thu 3 Dec: it fails again
    assert _sent(doc) == [("email", "alert", [CIRC])]
    told = len(smtp.messages)
    # Fri 4 Dec: the desk is back on the list. Its old row said "told: connection failing",
    # which matched the new failure: it heard nothing of a failure it was never told about.
    doc = _check(monkeypatch, both, at(11), FAILED, days)
    assert _sent(doc) == [("email", "alert", [DESK])]
    [(to, subject)] = subjects(told)
    assert to == [DESK] and "CRITICAL: connection failed" in subject
    # still failing; everybody was told, nobody hears it again
    doc = _check(monkeypatch, both, at(12), FAILED, days)
    assert _sent(doc) == [] and subjects(told + 1) == []
    # and it ends for both, once; each is told the span it was told of (from Thu, from Fri)
    _check(monkeypatch, both, at(13), WORKS, days)
    doc = _check(monkeypatch, both, at(14), WORKS, days)
    assert _sent(doc) == [("email", "resolved", [CIRC]), ("email", "resolved", [DESK])]
    bodies = {m.rcpt_tos[0]: m.body for m in smtp.messages[-2:]}
    assert "failed from Thu 3 Dec 10:00 until Sun 6 Dec 10:00 (3 days)" in bodies[CIRC]
    assert "failed from Fri 4 Dec 10:00 until Sun 6 Dec 10:00 (2 days)" in bodies[DESK]
    assert _sent(_check(monkeypatch, both, at(15), WORKS, days)) == []


def test_a_webhook_removed_and_configured_again_is_told_what_is_open(tmp_path, monkeypatch, servers):
    smtp, http = servers
    first = date(2026, 11, 23)
    days = {A: _daily(first - timedelta(days=10), first + timedelta(days=20)),
            B: _daily(first - timedelta(days=10), first + timedelta(days=20))}
    with_hook = _profile(tmp_path, _notify(smtp, [CIRC], http))
    without = _profile(tmp_path, _notify(smtp, [CIRC]))

    def at(day: int) -> datetime:
        return datetime.combine(first + timedelta(days=day), time(10), tzinfo=TZ)

    _check(monkeypatch, with_hook, at(0), FAILED, days)
    assert len(http.posts("/hook")) == 1
    for day in range(1, 10):  # ended on day 2 (told by e-mail only); the webhook forgotten
        _check(monkeypatch, without, at(day), WORKS, days)
    _check(monkeypatch, without, at(10), FAILED, days)
    doc = _check(monkeypatch, with_hook, at(11), FAILED, days)
    assert _sent(doc) == [("webhook", "alert", None)]
    [*_, last] = http.posts("/hook")
    assert [a["kind"] for a in last.json()["new"]] == ["connection"]


def test_a_run_of_a_config_loaded_before_an_address_was_added_keeps_its_memory(tmp_path, monkeypatch, servers):
    """A long sync loaded the config; the desk was added to email_to and a check told it the
    connection fails; the sync then ended and dropped the desk's memory (not in its config),
    so the next run told the desk the same failure again."""
    smtp, _ = servers
    days = {A: _daily(date(2026, 11, 13), date(2026, 12, 5)), B: _daily(date(2026, 11, 13), date(2026, 12, 5))}
    before = _profile(tmp_path, _notify(smtp, [CIRC]))
    after = _profile(tmp_path, _notify(smtp, [CIRC, DESK]))
    start = datetime(2026, 11, 24, 2, 0, tzinfo=TZ)
    doc = _check(monkeypatch, after, start + timedelta(hours=1), FAILED, days)
    assert _sent(doc) == [("email", "alert", [CIRC, DESK])]
    doc = _check(monkeypatch, before, start + timedelta(hours=2), FAILED, days)  # the long sync ends
    assert _sent(doc) == []
    doc = _check(monkeypatch, after, start + timedelta(hours=3), FAILED, days)
    assert _sent(doc) == [] and len(smtp.messages) == 1


def _two_configs(tmp_path, smtp, http):
    """Two configs of one ledger file and profile name, one sending e-mail to CIRC and one a
    webhook; with the reports' days and the first run's time."""
    days = {A: _daily(date(2026, 11, 13), date(2026, 12, 15)), B: _daily(date(2026, 11, 13), date(2026, 12, 15))}
    mail = _profile(tmp_path, _notify(smtp, [CIRC]))
    hook = _profile(tmp_path, f'webhook_url = "{http.url("/hook")}"\n')
    return days, mail, hook, datetime(2026, 11, 24, 10, 0, tzinfo=TZ)


def test_two_configs_sharing_a_ledger_keep_each_others_memory(tmp_path, monkeypatch, servers):
    """One config sends e-mail, another (same ledger file, same profile name) a webhook: each
    run dropped the other's memory as "no longer configured", so both were told the same
    failure again on every run. Each is told once; each hears it end once."""
    smtp, http = servers
    days, mail, hook, start = _two_configs(tmp_path, smtp, http)
    assert _sent(_check(monkeypatch, mail, start, FAILED, days)) == [("email", "alert", [CIRC])]
    assert _sent(_check(monkeypatch, hook, start + timedelta(minutes=30), FAILED, days)) == [
        ("webhook", "alert", None)]
    for day in range(1, 12):  # both run every day, longer than any memory is kept unconfigured
        for profile in (mail, hook):
            assert _sent(_check(monkeypatch, profile, start + timedelta(days=day), FAILED, days)) == []
    assert len(smtp.messages) == 1 and len(http.posts("/hook")) == 1
    _check(monkeypatch, mail, start + timedelta(days=12), WORKS, days)
    _check(monkeypatch, hook, start + timedelta(days=12), WORKS, days)
    assert _sent(_check(monkeypatch, mail, start + timedelta(days=13), WORKS, days)) == [
        ("email", "resolved", [CIRC])]
    assert _sent(_check(monkeypatch, hook, start + timedelta(days=13), WORKS, days)) == [
        ("webhook", "resolved", None)]


def test_a_channel_whose_rows_no_run_rewrites_is_still_kept_while_configured(tmp_path, monkeypatch, servers):
    """The e-mail config runs only check --offline for a while (the connection's row is not
    judged, so not written); the webhook config runs every day. What the e-mail was told is
    kept all the same: each run that has a channel configured says so in the ledger."""
    smtp, http = servers
    days, mail, hook, start = _two_configs(tmp_path, smtp, http)
    assert _sent(_check(monkeypatch, mail, start, FAILED, days)) == [("email", "alert", [CIRC])]
    for day in range(1, 11):
        when = start + timedelta(days=day)
        monkeypatch.setenv("REPORT_KEEPER_NOW", when.isoformat())
        health = evaluate(mail, [_delivery(r, d) for r, ds in days.items() for d in ds
                                 if datetime.combine(d, time(7, 5), tzinfo=TZ) <= when], now=when)
        assert _sent(dispatch.after_check(mail, health, offline=True)) == []
        _check(monkeypatch, hook, start + timedelta(days=day, hours=1), FAILED, days)
    assert _sent(_check(monkeypatch, mail, start + timedelta(days=11), FAILED, days)) == []
    assert len(smtp.messages) == 1


def test_the_memory_is_read_once_per_run(tmp_path, monkeypatch, servers):
    """It was read once per recipient, plus a look for an older release's shared rows and
    for channels no longer configured on every run."""
    smtp, http = servers
    profile = _profile(tmp_path, _notify(smtp, [CIRC, DESK, "head@example.edu"], http))
    days = {A: _daily(date(2026, 11, 13), date(2026, 11, 22)), B: _daily(date(2026, 11, 13), date(2026, 11, 25))}
    statements: list[str] = []
    real_open = Ledger.open.__func__  # type: ignore[attr-defined]

    def traced(cls, *args, **kwargs):
        ledger = real_open(cls, *args, **kwargs)
        ledger._conn.set_trace_callback(statements.append)
        return ledger

    monkeypatch.setattr(Ledger, "open", classmethod(traced))
    for hour in (10, 11):  # told, then nothing new
        statements.clear()
        _check(monkeypatch, profile, datetime(2026, 11, 24, hour, tzinfo=TZ), WORKS, days)
        reads = [s for s in statements if s.lstrip().upper().startswith("SELECT") and " alerts" in s]
        assert len(reads) == 1, reads


# ------------------------------------------------------------------ how long the connection failed


def test_the_connection_resolved_message_says_how_long_it_failed(tmp_path, monkeypatch, servers):
    smtp, http = servers
    profile = _profile(tmp_path, _notify(smtp, [CIRC], http))
    days = {A: _daily(date(2026, 11, 20), date(2026, 12, 5)), B: _daily(date(2026, 11, 20), date(2026, 12, 5))}
    fails = datetime(2026, 12, 1, 2, 10, tzinfo=TZ)  # Tue 1 Dec 02:10
    works = datetime(2026, 12, 2, 7, 0, tzinfo=TZ)  # Wed 2 Dec 07:00
    _check(monkeypatch, profile, fails, FAILED, days)
    _check(monkeypatch, profile, fails + timedelta(hours=12), FAILED, days)  # still failing: no word
    _check(monkeypatch, profile, works, WORKS, days)  # works: no word yet
    doc = _check(monkeypatch, profile, works + timedelta(hours=21), WORKS, days)
    assert _sent(doc) == [("email", "resolved", [CIRC]), ("webhook", "resolved", None)]
    mail = smtp.messages[-1]
    assert mail.subject.strip() == "[report-keeper] RESOLVED: the connection works again after 29 h"
    assert ("The connection failed from Tue 1 Dec 02:10 until Wed 2 Dec 07:00 (29 h); "
            "it has worked in every run since.") in mail.body
    [resolved] = http.posts("/hook")[-1].json()["resolved"]
    assert resolved["kind"] == "connection"
    assert resolved["outage_from"] == fails.astimezone(UTC).isoformat()
    assert resolved["outage_until"] == works.astimezone(UTC).isoformat()
    assert resolved["outage_seconds"] == 28 * 3600 + 50 * 60
    # the fields every alert had are all still there
    assert {"report", "kind", "severity", "day", "last_day", "days", "file", "files", "rescue_by",
            "last_day_to_rerun", "delete_on", "current", "message", "next_step", "problems"} <= set(resolved)


def test_a_clear_since_after_now_does_not_hold_the_resolved_message_back(tmp_path, monkeypatch, servers):
    """A "clear since" later than the run (written while the clock was ahead: a pinned
    REPORT_KEEPER_NOW, a clock set wrong) parsed fine, so the connection's "works again" waited
    until real time caught up with it: for years. It counts as found clear now."""
    smtp, _ = servers
    profile = _profile(tmp_path, _notify(smtp, [CIRC]))
    days = {A: _daily(date(2026, 11, 20), date(2026, 12, 5)), B: _daily(date(2026, 11, 20), date(2026, 12, 5))}
    fails = datetime(2026, 12, 1, 2, 10, tzinfo=TZ)
    _check(monkeypatch, profile, fails, FAILED, days)
    _check(monkeypatch, profile, fails + timedelta(hours=5), WORKS, days)  # clear_since written
    with sqlite3.connect(profile.ledger_path) as db:
        assert db.execute("UPDATE alerts SET clear_since = '2031-06-01T00:00:00+00:00' "
                          "WHERE clear_since IS NOT NULL").rowcount == 1
    db.close()
    _check(monkeypatch, profile, fails + timedelta(hours=6), WORKS, days)  # found clear from now on
    doc = _check(monkeypatch, profile, fails + timedelta(hours=27), WORKS, days)
    assert _sent(doc) == [("email", "resolved", [CIRC])]


def test_a_read_only_account_that_ends_says_how_long_too(tmp_path, monkeypatch, servers):
    smtp, _ = servers
    profile = _profile(tmp_path, _notify(smtp, [CIRC]))
    days = {A: _daily(date(2026, 11, 20), date(2026, 12, 5)), B: _daily(date(2026, 11, 20), date(2026, 12, 5))}
    read_only = ConnectionStatus(ok=True, message="read-only", write_test="read-only")
    start = datetime(2026, 11, 30, 7, 30, tzinfo=TZ)
    _check(monkeypatch, profile, start, read_only, days)
    _check(monkeypatch, profile, start + timedelta(minutes=45), WORKS, days)
    doc = _check(monkeypatch, profile, start + timedelta(days=1), WORKS, days)
    assert _sent(doc) == [("email", "resolved", [CIRC])]
    mail = smtp.messages[-1]
    assert mail.subject.strip() == "[report-keeper] RESOLVED: the connection test passes again after 45 min"
    assert ("The account was read-only or the connection test failed from Mon 30 Nov 07:30 until "
            "Mon 30 Nov 08:15 (45 min); the test has passed in every run since.") in mail.body


# ------------------------------------------------------------------ a damaged memory


@pytest.mark.parametrize(("column", "value"), [
    ("clear_since", "garbage"),
    ("clear_since", 12345),
    ("clear_since", b"\xff\x00"),
    ("first_day", "2026-13-45"),
    ("last_day", None),
    ("kind", "no-such-kind"),
    ("severity", "dreadful"),
    ("state", "ajar"),
    ("reminded_for", "soon"),
    ("sent_at", "yesterday"),
    ("report", b"\x80L"),  # a TEXT column keeps a blob as it is
    ("file", 3.5),
])
def test_a_damaged_memory_value_does_not_stop_the_alert(tmp_path, monkeypatch, servers, caplog, column, value):
    smtp, http = servers
    profile = _profile(tmp_path, _notify(smtp, [CIRC], http))
    first = date(2026, 11, 23)
    days = {A: _daily(first - timedelta(days=10), first - timedelta(days=1)),  # A stops on Mon
            B: _daily(first - timedelta(days=10), first + timedelta(days=1))}  # B stops on Wed

    def at(day: int) -> datetime:
        return datetime.combine(first + timedelta(days=day), time(10), tzinfo=TZ)

    _check(monkeypatch, profile, at(0), FAILED, days)  # Mon: A missing, the connection fails
    _check(monkeypatch, profile, at(1), WORKS, days)  # Tue: it works (clear_since written)
    with sqlite3.connect(profile.ledger_path) as db:
        assert db.execute("SELECT count(*) FROM alerts WHERE clear_since IS NOT NULL").fetchone() == (2,)
        damaged = db.execute(f"UPDATE alerts SET {column} = ?", (value,)).rowcount
    db.close()
    told = len(smtp.messages), len(http.posts("/hook"))
    # The product logger may not propagate (tui.core.logs, once a command ran in this
    # process): listen on it directly.
    product = logging.getLogger("report_keeper")
    product.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="report_keeper"):
            doc = _check(monkeypatch, profile, at(2), WORKS, days)  # Wed: B missing
    finally:
        product.removeHandler(caplog.handler)
    assert doc["failed"] == [], doc
    assert [s["channel"] for s in doc["sent"]] == ["email", "webhook"]
    [mail] = smtp.messages[told[0]:]
    assert f"missing '{B}'" in mail.body
    [hook] = http.posts("/hook")[told[1]:]
    assert [(a["report"], a["kind"]) for a in hook.json()["new"] if a["report"] == B] == [(B, "missing")]
    assert any("damaged" in r.getMessage() and "alert memory" in r.getMessage() for r in caplog.records)
    # the memory is whole again: the next run repeats nothing
    doc = _check(monkeypatch, profile, at(2) + timedelta(hours=1), WORKS, days)
    assert doc["failed"] == [] and [s["message"] for s in doc["sent"] if s["message"] == "alert"] == []
    if column in ("kind", "severity"):
        # A well-formed name this release does not know may be a newer release's alert (one
        # ledger, two installs): left as it is, never dropped (it would be told again after
        # every run of the newer release).
        with sqlite3.connect(profile.ledger_path) as db:
            kept = db.execute(f"SELECT count(*) FROM alerts WHERE {column} = ?", (value,)).fetchone()[0]
        db.close()
        assert kept == damaged, (kept, damaged)


def test_a_bug_planning_one_channel_does_not_keep_the_alert_from_the_other(tmp_path, monkeypatch, servers):
    """Sending was guarded per channel, planning was not: a bug reading one channel's memory
    ended every channel's alerts at once."""
    from tui.core import alerts as al

    smtp, http = servers
    profile = _profile(tmp_path, _notify(smtp, [CIRC], http))
    days = {A: _daily(date(2026, 11, 13), date(2026, 11, 22)), B: _daily(date(2026, 11, 13), date(2026, 11, 25))}
    real = al.sound_rows

    def buggy(channel: str, rows):
        if channel == al.EMAIL:
            raise RuntimeError("a bug")
        return real(channel, rows)

    monkeypatch.setattr(al, "sound_rows", buggy)
    doc = _check(monkeypatch, profile, datetime(2026, 11, 24, 10, tzinfo=TZ), WORKS, days)
    assert _sent(doc) == [("webhook", "alert", None)]
    assert [(f["channel"], f["error"]) for f in doc["failed"]] == [
        ("email", "unexpected error (RuntimeError); see the log")]
    assert smtp.messages == [] and len(http.posts("/hook")) == 1
    monkeypatch.setattr(al, "sound_rows", real)  # fixed: the e-mail is sent on the next run
    doc = _check(monkeypatch, profile, datetime(2026, 11, 24, 11, tzinfo=TZ), WORKS, days)
    assert _sent(doc) == [("email", "alert", [CIRC])] and len(http.posts("/hook")) == 1


def test_a_memory_that_cannot_be_read_fails_each_channel_and_sends_nothing(tmp_path, monkeypatch, servers):
    """The one read of the memory fails (its table is gone from a damaged ledger): each
    channel says so, nothing is sent (it would be sent again on every run)."""
    smtp, http = servers
    profile = _profile(tmp_path, _notify(smtp, [CIRC, DESK], http))
    days = {A: _daily(date(2026, 11, 13), date(2026, 11, 22)), B: _daily(date(2026, 11, 13), date(2026, 11, 25))}
    _check(monkeypatch, profile, datetime(2026, 11, 24, 9, tzinfo=TZ), WORKS, days)  # the ledger exists
    with sqlite3.connect(profile.ledger_path) as db:
        db.execute("DROP TABLE alerts")
    db.close()
    told = len(smtp.messages), len(http.posts("/hook"))
    doc = _check(monkeypatch, profile, datetime(2026, 11, 24, 10, tzinfo=TZ), WORKS, days)
    assert doc["sent"] == []
    assert [(f["channel"], f["error"]) for f in doc["failed"]] == [
        ("email", "the ledger could not be read (OperationalError)"),
        ("webhook", "the ledger could not be read (OperationalError)")]
    assert (len(smtp.messages), len(http.posts("/hook"))) == told


def test_which_memories_are_marked_and_which_forgotten():
    """The rule on its own: a channel configured here is marked once its latest mark is a day
    old; one not configured here is forgotten only after a week without any mark; a mark
    after now (the clock was ahead) is marked again as now, a damaged one counts as long ago;
    a channel of a newer release is left alone."""
    from tui.core import alerts as al

    now = datetime(2026, 12, 2, 10, tzinfo=UTC)

    def rows(*marks: object) -> list:
        return [{"id": i, "updated_at": m} for i, m in enumerate(marks)]

    def ago(**kw) -> str:
        return (now - timedelta(**kw)).isoformat()

    memory = {
        "email:fresh@x": rows(ago(hours=23)),
        "email:stale@x": rows(ago(days=3), ago(hours=25)),
        "email:ahead@x": rows(ago(days=-400)),
        "email:damaged-here@x": rows("yesterday"),
        "email:gone-6d@x": rows(ago(days=9), ago(days=6)),
        "email:gone-7d@x": rows(ago(days=7)),
        "email:gone-8d@x": rows(ago(days=8)),
        "email:gone-damaged@x": rows(b"\xff", None),
        "email:gone-ahead@x": rows(ago(days=-30)),
        "webhook": rows(ago(days=30)),
        "email": rows(ago(days=1)),
        "pager": rows(ago(days=300)),
    }
    mark, forget = al.upkeep(memory, ["email:fresh@x", "email:stale@x", "email:ahead@x",
                                      "email:damaged-here@x", "email:new@x"], now)
    assert sorted(mark) == ["email:ahead@x", "email:damaged-here@x", "email:gone-ahead@x", "email:stale@x"]
    assert sorted(forget) == ["email:gone-8d@x", "email:gone-damaged@x", "webhook"]
