"""When alerts are due: the grouping of problems and each channel's memory in a real ledger.

The week of cron runs in ``test_alerts_week.py`` proves the common story end to end; these
cover the other turns: a gap found after the fact, the connection judged by sync, check and
check --offline, a file about to be deleted, several problems at once, another run holding
the notify lock."""

from __future__ import annotations

import tomllib
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tests.locks import flock_held_elsewhere
from tui.core import alerts as al
from tui.core.config import parse_config
from tui.core.health import ConnectionStatus, evaluate
from tui.core.ledger import Ledger
from tui.core.model import Delivery

TZ = ZoneInfo("America/Chicago")
A = "Loans Per Patron From 3 Days Ago"
B = "Fines Daily"


def _profile(tmp_path, notify: str = ""):
    text = f"""
[profile.default]
host = "127.0.0.1"
timezone = "America/Chicago"
ledger = "{tmp_path / 'ledger.sqlite3'}"
[[profile.default.report]]
name = "{A}"
schedule = "daily"
at = "07:00"
[[profile.default.report]]
name = "{B}"
schedule = "daily"
at = "07:00"
"""
    if notify:
        text += "[profile.default.notify]\n" + notify
    return parse_config(tomllib.loads(text)).profile()


def _delivery(report: str, day: date, *, downloaded: bool = True) -> Delivery:
    at = datetime.combine(day, time(7, 5), tzinfo=TZ)
    return Delivery(name=f"{report}_{at:%Y%m%d_%H%M%S}.xlsx", report=report, delivered_at=at, size=10,
                    mtime=at, first_seen=at, last_seen=at, on_server=True,
                    downloaded_at=at if downloaded else None, verification="ok" if downloaded else None,
                    rows=5 if downloaded else None)


def _health(profile, days: dict[str, list[date]], now: date, connection=None, **kw):
    # The ledger at ``now`` holds what was delivered until then (``days`` may plan further).
    moment = datetime.combine(now, time(10), tzinfo=TZ)
    deliveries = [d for r, ds in days.items() for d in (_delivery(r, day, **kw) for day in ds)
                  if d.delivered_at <= moment]
    return evaluate(profile, deliveries, now=moment, connection=connection)


def _tell(ledger: Ledger, health, scope: str = al.SCOPE_FULL, channel: str = al.EMAIL) -> al.Plan:
    """Plan, and record it as a successful send would."""
    today = health.now.date()
    plan = al.plan(channel, al.alerts_from(health, scope=scope), ledger.alert_rows(channel),
                   today=today, sent_at=f"{today}T10:00:00", scope=scope)
    ledger.save_alert_rows(channel, plan.tidy_save, plan.tidy_delete)
    if plan.should_send:
        ledger.save_alert_rows(channel, plan.save, plan.delete)
    return plan


def _week(first: date, n: int, skip=()) -> list[date]:
    return [first + timedelta(days=i) for i in range(n) if first + timedelta(days=i) not in skip]


def test_a_gap_found_after_the_fact_is_told_once_and_never_resolved(tmp_path):
    profile = _profile(tmp_path)
    wed = date(2026, 11, 25)
    days = {A: _week(date(2026, 11, 23), 5, skip={wed}), B: _week(date(2026, 11, 23), 5)}
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        plan = _tell(ledger, _health(profile, days, date(2026, 11, 27)))
        assert [(a.kind, a.first_day, a.current) for a in plan.new] == [("missing", wed, False)]
        assert plan.open == [] and plan.resolved == []
        subject = al.compose(plan, profile="default", status="critical", where="h:d", now_text="now").subject
        assert subject == f"[report-keeper] CRITICAL: missing '{A}' Wed 25 Nov — last day to re-run: tomorrow, Sat 28 Nov"
        # next day: nothing new, and no "resolved" for something already told as over
        days[A].append(date(2026, 11, 28))
        days[B].append(date(2026, 11, 28))
        assert not _tell(ledger, _health(profile, days, date(2026, 11, 28))).should_send


def test_several_problems_make_one_message_with_a_count(tmp_path):
    profile = _profile(tmp_path)
    days = {A: _week(date(2026, 11, 23), 4), B: _week(date(2026, 11, 23), 4)}
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        assert not _tell(ledger, _health(profile, days, date(2026, 11, 26))).should_send
        plan = _tell(ledger, _health(profile, days, date(2026, 11, 27)))
        assert sorted(a.report for a in plan.new) == sorted([A, B])
        msg = al.compose(plan, profile="default", status="critical", where="h:d", now_text="now")
        assert msg.subject.endswith("Fri 27 Nov — last day to re-run: Mon 30 Nov (+1 more)")
        assert msg.body.count("* CRITICAL: missing") == 2
        assert [p["kind"] for p in msg.document["new"]] == ["missing", "missing"]
        # B delivers again the next day, A does not: one message, B ended, A still open
        days[B].append(date(2026, 11, 28))
        plan = _tell(ledger, _health(profile, days, date(2026, 11, 28)))
        assert plan.new == [] and [a.report for a in plan.resolved] == [B]
        msg = al.compose(plan, profile="default", status="critical", where="h:d", now_text="now")
        assert msg.subject == f"[report-keeper] RESOLVED: '{B}' delivers again after missing Fri 27 Nov; 1 still open"


def test_the_connection_is_judged_only_as_far_as_a_run_tested_it(tmp_path):
    profile = _profile(tmp_path)
    days = {A: _week(date(2026, 11, 23), 5), B: _week(date(2026, 11, 23), 5)}
    now = date(2026, 11, 27)
    failed = ConnectionStatus(ok=False, message="refused", write_test="skipped")
    read_only = ConnectionStatus(ok=True, message="ro", write_test="read-only")
    logged_in = ConnectionStatus(ok=True, message="sync connected", write_test="skipped")
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        plan = _tell(ledger, _health(profile, days, now, failed))
        assert [(a.kind, a.severity) for a in plan.new] == [("connection", "critical")]
        # check --offline knows nothing about the connection: nothing ends
        assert not _tell(ledger, _health(profile, days, now, ConnectionStatus.skipped()), al.SCOPE_NONE).should_send
        # a sync that logged in proves the connection works again; once it still does a day
        # later, that is told
        assert not _tell(ledger, _health(profile, days, now, logged_in), al.SCOPE_LOGIN).should_send
        days = {A: _week(date(2026, 11, 23), 6), B: _week(date(2026, 11, 23), 6)}
        now += timedelta(days=1)
        plan = _tell(ledger, _health(profile, days, now, logged_in), al.SCOPE_LOGIN)
        assert [(a.kind, a.severity) for a in plan.resolved] == [("connection", "critical")]
        assert al.compose(plan, profile="p", status="ok", where="w", now_text="n").subject == \
            "[report-keeper] RESOLVED: the connection works again"
        # a read-only account (check's write test): told once; a sync cannot tell it ended
        assert [(a.kind, a.severity) for a in _tell(ledger, _health(profile, days, now, read_only)).new] == [
            ("connection", "warning")]
        assert not _tell(ledger, _health(profile, days, now, logged_in), al.SCOPE_LOGIN).should_send
        # worse: the failure is news, and says it all (read-only is not "passing again")
        plan = _tell(ledger, _health(profile, days, now, failed))
        assert [(a.severity) for a in plan.new] == ["critical"] and plan.resolved == []
        # it all works: both end together, a day later
        works = ConnectionStatus(ok=True, message="ok", write_test="ok")
        assert not _tell(ledger, _health(profile, days, now, works)).should_send
        days = {A: _week(date(2026, 11, 23), 7), B: _week(date(2026, 11, 23), 7)}
        plan = _tell(ledger, _health(profile, days, now + timedelta(days=1), works))
        assert sorted(a.severity for a in plan.resolved) == ["critical", "warning"] and plan.new == []


def test_a_file_near_deletion_is_told_and_ends_when_downloaded(tmp_path):
    profile = _profile(tmp_path)
    first = date(2026, 10, 1)
    days = {A: [first + timedelta(days=i) for i in range(58)], B: [first + timedelta(days=i) for i in range(58)]}
    now = first + timedelta(days=57)
    deliveries = [_delivery(r, d) for r, ds in days.items() for d in ds]
    deliveries[0] = _delivery(A, first, downloaded=False)
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        health = evaluate(profile, deliveries, now=datetime.combine(now, time(10), tzinfo=TZ))
        plan = _tell(ledger, health)
        assert [(a.kind, a.file) for a in plan.new] == [("near-deletion", deliveries[0].name)]
        assert plan.new[0].headline(now) == f"'{deliveries[0].name}' not downloaded yet — the server deletes it on Mon 30 Nov"
        deliveries[0] = _delivery(A, first)
        health = evaluate(profile, deliveries, now=datetime.combine(now, time(11), tzinfo=TZ))
        plan = _tell(ledger, health)
        assert [a.kind for a in plan.resolved] == ["near-deletion"] and plan.new == []
        assert ledger.alert_rows(al.EMAIL) == []


def test_another_run_holding_the_notify_lock_is_left_to_send(tmp_path, monkeypatch):
    from tui.notify import dispatch

    profile = _profile(tmp_path, 'webhook_url = "http://127.0.0.1:9/hook"\n')
    days = {A: _week(date(2026, 11, 23), 4), B: _week(date(2026, 11, 23), 5)}
    health = _health(profile, days, date(2026, 11, 27))
    Ledger.open(profile.ledger_path).close()
    monkeypatch.setattr(dispatch, "LOCK_WAIT", 0.3)
    lock = dispatch.lock_path(profile)
    lock.write_bytes(b"")
    with flock_held_elsewhere(lock):
        doc = dispatch.after_check(profile, health, offline=True)
    assert doc["sent"] == [] and doc["failed"] == [] and "left to it" in doc["note"]


def test_alerts_never_break_the_run(tmp_path, monkeypatch):
    from tui.notify import dispatch

    profile = _profile(tmp_path, 'webhook_url = "http://127.0.0.1:9/hook"\n')
    health = _health(profile, {A: [date(2026, 11, 23)]}, date(2026, 11, 27))

    def broken(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(dispatch.al, "alerts_from", broken)
    doc = dispatch.after_check(profile, health, offline=False)
    assert [(f["channel"], f["error"]) for f in doc["failed"]] == [
        ("alerts", "unexpected error (RuntimeError); see the log")]


def test_a_streak_split_by_a_late_file_stays_one_alert(tmp_path):
    """A report stops on Tue 24; the person is told. Then a file for Wed 25 shows up with a
    timestamp of that day (the server got it late), which makes Wed 25 "late" and splits the
    missing days in two. Before, the next run announced "missing since Thu 26" as news and
    told the person 'Loans…' "delivers again after missing Tue 24" while it still did not.
    The outage stays one alert: no message until it really ends, then one "resolved" with
    all its days."""
    from tui.core.model import Delivery

    profile = _profile(tmp_path)
    days = {A: _week(date(2026, 11, 18), 6), B: _week(date(2026, 11, 18), 12)}  # A stops Tue 24
    at = datetime(2026, 11, 25, 10, 30, tzinfo=TZ)
    late = Delivery(name=f"{A}_{at:%Y%m%d_%H%M%S}.xlsx", report=A, delivered_at=at, size=10, mtime=at,
                    first_seen=at, last_seen=at, on_server=True, downloaded_at=at, verification="ok", rows=5)

    def health(now: date, extra=()):
        deliveries = [_delivery(r, d) for r, ds in days.items() for d in ds if d <= now] + list(extra)
        return evaluate(profile, deliveries, now=datetime.combine(now, time(10), tzinfo=TZ))

    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        told = _tell(ledger, health(date(2026, 11, 24)))
        assert [(a.kind, a.first_day) for a in told.new] == [("missing", date(2026, 11, 24))]
        reminded = _tell(ledger, health(date(2026, 11, 26)))  # Tue 24's last day to re-run: Fri 27
        assert reminded.new == [] and [a.rescue_by for a in reminded.reminders] == [date(2026, 11, 28)]
        # the late file for Wed 25 appears: still the same outage, nothing to say
        plan = _tell(ledger, health(date(2026, 11, 27), [late]))
        assert plan.new == [] and plan.resolved == [], (plan.new, plan.resolved)
        assert [(a.kind, a.days) for a in plan.open] == [
            ("missing", [date(2026, 11, 24), date(2026, 11, 26), date(2026, 11, 27)])]
        # it resumes on Sat 28: one "resolved" for the whole outage, no news
        days[A].append(date(2026, 11, 28))
        plan = _tell(ledger, health(date(2026, 11, 28), [late]))
        assert plan.new == [] and [a.kind for a in plan.resolved] == ["missing"]
        msg = al.compose(plan, profile="p", status="critical", where="w", now_text="n")
        assert msg.subject == f"[report-keeper] RESOLVED: '{A}' delivers again after missing Tue 24 Nov to Fri 27 Nov"
        assert "Tue 24 Nov: last day to re-run" not in msg.body  # its rescue-by is today: gone
        assert "Thu 26 Nov: last day to re-run: tomorrow, Sun 29 Nov" in msg.body
        # and stays quiet afterwards
        days[A].append(date(2026, 11, 29))
        assert not _tell(ledger, health(date(2026, 11, 29), [late])).should_send


def test_the_reminder_leaves_a_day_to_act(tmp_path):
    """Rescue-by is the day Alma anonymizes the loans: a re-run must happen *before* it (on
    that day check itself says "too late"). The reminder said "the last day to rescue the data
    is tomorrow" on the day before rescue-by, which was the last day itself: a person who
    believed it acted a day late and lost the data. It now comes the day before the last day
    and says which day that is; a run that missed that day reminds on the last day, saying
    "today"."""
    profile = _profile(tmp_path)
    days = {A: _week(date(2026, 11, 18), 10), B: _week(date(2026, 11, 18), 14)}  # A stops Sat 28
    # Sat 28 covers Wed 25: anonymized on Wed 2 Dec, so Tue 1 Dec is the last day to re-run
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        assert [a.kind for a in _tell(ledger, _health(profile, days, date(2026, 11, 28))).new] == ["missing"]
        assert not _tell(ledger, _health(profile, days, date(2026, 11, 29))).should_send
        plan = _tell(ledger, _health(profile, days, date(2026, 11, 30)))
        assert [a.rescue_by for a in plan.reminders] == [date(2026, 12, 2)]
        msg = al.compose(plan, profile="p", status="critical", where="w", now_text="n")
        assert msg.subject.endswith("— last day to re-run: tomorrow, Tue 1 Dec"), msg.subject
        assert "the last day to re-run is tomorrow, Tue 1 Dec (the loans are anonymized on Wed 2 Dec)" in msg.body
        assert not _tell(ledger, _health(profile, days, date(2026, 12, 1))).should_send  # once

    with Ledger.open(tmp_path / "l2.sqlite3") as ledger:  # the machine was off on Mon 30
        _tell(ledger, _health(profile, days, date(2026, 11, 28)))
        plan = _tell(ledger, _health(profile, days, date(2026, 12, 1)))
        assert [a.rescue_by for a in plan.reminders] == [date(2026, 12, 2)]
        msg = al.compose(plan, profile="p", status="critical", where="w", now_text="n")
        assert msg.subject.endswith("— last day to re-run: today, Tue 1 Dec"), msg.subject
        assert "the last day to re-run is today, Tue 1 Dec" in msg.body


def test_a_problem_that_clears_and_comes_back_is_told_again_once(tmp_path):
    """Missing Tue 24 and Wed 25, fine Thu 26 (resolved), missing again from Fri 27: a new
    alert for the new outage, once; the ended one is not told again."""
    profile = _profile(tmp_path)
    skip = {date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 27), date(2026, 11, 28), date(2026, 11, 29)}
    days = {A: _week(date(2026, 11, 18), 12, skip=skip), B: _week(date(2026, 11, 18), 12)}

    def tell(now: date) -> al.Plan:
        upto = {r: [d for d in ds if d <= now] for r, ds in days.items()}
        return _tell(ledger, _health(profile, upto, now))

    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        assert [(a.kind, a.first_day) for a in tell(date(2026, 11, 24)).new] == [("missing", date(2026, 11, 24))]
        assert not tell(date(2026, 11, 25)).new
        ended = tell(date(2026, 11, 26))
        assert ended.new == [] and [a.first_day for a in ended.resolved] == [date(2026, 11, 24)]
        again = tell(date(2026, 11, 27))
        assert [(a.kind, a.first_day) for a in again.new] == [("missing", date(2026, 11, 27))]
        assert again.resolved == []
        assert not tell(date(2026, 11, 28)).new


def test_subject_and_body_name_the_same_last_day_to_re_run(tmp_path):
    """Rescue-by is the day the loans are anonymized; a re-run must come before it. The
    subject said "rescue by Wed 2 Dec" (which reads as "on Wed 2 Dec at the latest") while
    the body said "before Wed 2 Dec": a person trusting the subject acted a day late. Every
    place of every message now names the last day a re-run is possible, as the reminder
    already did, and the day the loans are anonymized only beside it."""
    profile = _profile(tmp_path)
    days = {A: _week(date(2026, 11, 18), 10), B: _week(date(2026, 11, 18), 15)}  # A stops Sat 28
    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        plan = _tell(ledger, _health(profile, days, date(2026, 11, 28)))
        msg = al.compose(plan, profile="p", status="critical", where="w", now_text="n")
        assert msg.subject == f"[report-keeper] CRITICAL: missing '{A}' Sat 28 Nov — last day to re-run: Tue 1 Dec"
        assert "last day to re-run: Tue 1 Dec (the loans are anonymized on Wed 2 Dec)" in msg.body
        assert "rescue by" not in msg.subject + msg.body
        assert msg.document["new"][0]["rescue_by"] == "2026-12-02"  # the JSON field stays
        assert msg.document["new"][0]["last_day_to_rerun"] == "2026-12-01"
        plan = _tell(ledger, _health(profile, days, date(2026, 11, 30)))
        msg = al.compose(plan, profile="p", status="critical", where="w", now_text="n")
        assert msg.subject == (f"[report-keeper] REMINDER CRITICAL: missing '{A}' since Sat 28 Nov (3 runs) "
                               "— last day to re-run: tomorrow, Tue 1 Dec")
        assert "rescue by" not in msg.subject + msg.body
        # it resumes on Wed 2 Dec: the days still to re-run are listed with their last day
        days[A] += [date(2026, 12, 2)]
        plan = _tell(ledger, _health(profile, days, date(2026, 12, 2)))
        msg = al.compose(plan, profile="p", status="critical", where="w", now_text="n")
        assert [a.kind for a in plan.resolved] == ["missing"]
        assert "Sun 29 Nov: last day to re-run: today, Wed 2 Dec" in msg.body, msg.body
        assert "Mon 30 Nov: last day to re-run: tomorrow, Thu 3 Dec" in msg.body
        assert "before" not in msg.body.split("Ended:")[1]


def test_each_recipient_remembers_what_it_was_told(tmp_path):
    """E-mail memory is per recipient now (so one refused at RCPT can be told later without
    the others hearing it twice). A ledger of before, with one memory for the whole list,
    is taken over by every recipient: the upgrade sends nobody anything again. A recipient
    added to email_to later is told what is open, once; the others hear nothing of it."""
    from tests.notify_servers import SmtpServer
    from tui.notify import dispatch

    server = SmtpServer(tmp_path / "smtp", security="none", username=None).start()
    try:
        def notify(to: list[str]) -> str:
            return ('email_to = [' + ", ".join(f'"{a}"' for a in to) + ']\n'
                    f'smtp_host = "127.0.0.1"\nsmtp_port = {server.port}\nsmtp_security = "none"\n')

        two = ["circ-team@example.edu", "desk@example.edu"]
        profile = _profile(tmp_path, notify(two))
        days = {A: _week(date(2026, 11, 18), 7), B: _week(date(2026, 11, 18), 12)}  # A stops Wed 25
        health = _health(profile, days, date(2026, 11, 27))
        with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
            _tell(ledger, health, scope=al.SCOPE_NONE)  # what a release before this one recorded
            assert ledger.alert_rows(al.EMAIL) != []
        doc = dispatch.after_check(profile, health, offline=True)
        assert doc["sent"] == [] and doc["failed"] == [] and server.messages == []
        with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
            assert ledger.alert_rows(al.EMAIL) == []  # taken over, once
            assert all(len(ledger.alert_rows(dispatch.email_memory(a))) == 1 for a in two)

        three = [*two, "head@example.edu"]
        profile = _profile(tmp_path, notify(three))
        doc = dispatch.after_check(profile, health, offline=True)
        assert [(s["message"], s["recipients"]) for s in doc["sent"]] == [("alert", ["head@example.edu"])]
        assert [m.rcpt_tos for m in server.messages] == [["head@example.edu"]]
        assert server.messages[0].message["To"] == "head@example.edu"
        # it resumes: one "resolved" to all three together
        days[A] += _week(date(2026, 11, 28), 2)
        doc = dispatch.after_check(profile, _health(profile, days, date(2026, 11, 29)), offline=True)
        assert [(s["message"], s["recipients"]) for s in doc["sent"]] == [("resolved", three)]
        assert [m.rcpt_tos for m in server.messages][1:] == [three]
    finally:
        server.stop()


def test_a_connection_that_fails_on_sync_and_works_on_check_is_one_alert(tmp_path):
    """Every morning the timer's sync fails to connect (the server drops long sessions, say)
    and the check right after it logs in. Each day brought "CRITICAL: connection failed" and
    then "RESOLVED: the connection works again": two e-mails a day that teach a person to
    ignore both. The connection alert now ends only once the connection has worked in every
    run for a whole day; a failure in between keeps it open without a word."""
    profile = _profile(tmp_path)
    failed = ConnectionStatus(ok=False, message="refused", write_test="skipped")
    logged_in = ConnectionStatus(ok=True, message="sync connected", write_test="skipped")
    works = ConnectionStatus(ok=True, message="ok", write_test="ok")
    first = date(2026, 11, 23)
    days = {A: _week(first - timedelta(days=7), 16), B: _week(first - timedelta(days=7), 16)}

    def run(day: date, at: time, connection: ConnectionStatus, scope: str) -> al.Plan:
        now = datetime.combine(day, at, tzinfo=TZ)
        health = evaluate(profile, [_delivery(r, d) for r, ds in days.items() for d in ds if d <= day],
                          now=now, connection=connection)
        plan = al.plan(al.EMAIL, al.alerts_from(health, scope=scope), ledger.alert_rows(al.EMAIL),
                       today=day, sent_at=now.isoformat(timespec="seconds"), scope=scope)
        ledger.save_alert_rows(al.EMAIL, plan.tidy_save, plan.tidy_delete)
        if plan.should_send:
            ledger.save_alert_rows(al.EMAIL, plan.save, plan.delete)
        return plan

    def told(plan: al.Plan) -> list[tuple[str, str]]:
        return [("new", a.severity) for a in plan.new] + [("resolved", a.severity) for a in plan.resolved]

    with Ledger.open(tmp_path / "l.sqlite3") as ledger:
        messages = []
        for i in range(4):  # four days of flapping
            day = first + timedelta(days=i)
            messages.append(told(run(day, time(7, 10), failed, al.SCOPE_LOGIN)))
            messages.append(told(run(day, time(7, 12), works, al.SCOPE_FULL)))
        assert messages == [[("new", "critical")]] + [[]] * 7, messages
        # then it works: the sync of the next day still finds it working, a day after the
        # check that first did: that is when it has worked for a whole day
        day = first + timedelta(days=4)
        assert told(run(day, time(7, 10), logged_in, al.SCOPE_LOGIN)) == [("resolved", "critical")]
        assert told(run(day, time(7, 12), works, al.SCOPE_FULL)) == []
        # a new failure later is news again, at once
        day = first + timedelta(days=5)
        assert told(run(day, time(7, 10), failed, al.SCOPE_LOGIN)) == [("new", "critical")]


# ------------------------------------------------------------------ outage times across a clock change

BERLIN = ZoneInfo("Europe/Berlin")


def _outage_text(start: datetime, end: datetime | None, tz: ZoneInfo = BERLIN) -> str:
    """The "Ended:" line of a connection alert that lasted from ``start`` to ``end`` (UTC)."""
    from tui.core.model import ProblemKind

    alert = al.Alert(report="", kind=ProblemKind.CONNECTION, severity="critical", problems=(),
                     current=False, outage_from=start, outage_until=end)
    if end is None:  # when it began is not known
        alert = al.Alert(report="", kind=ProblemKind.CONNECTION, severity="critical", problems=(),
                         current=False, outage_until=start)
    plan = al.Plan(channel="email", today=(end or start).astimezone(tz).date() + timedelta(days=1),
                   resolved=[alert])
    body = al.compose(plan, profile="p", status="ok", where="w", now_text="n", tz=tz).body
    (line,) = [x.strip() for x in body.splitlines() if x.strip().startswith("The connection failed")]
    return line


def test_an_outage_across_the_autumn_change_says_which_0230_it_means():
    """On the night the clocks go back (Europe/Berlin, Sun 25 Oct 2026, 03:00 CEST -> 02:00
    CET) an hour's outage from 00:30 to 01:30 UTC read "from Sun 25 Oct 02:30 until Sun 25
    Oct 02:30 (1 h)": both times bare, the same wall time twice. The zone names them apart."""
    utc = ZoneInfo("UTC")
    start, end = datetime(2026, 10, 25, 0, 30, tzinfo=utc), datetime(2026, 10, 25, 1, 30, tzinfo=utc)
    assert _outage_text(start, end) == ("The connection failed from Sun 25 Oct 02:30 CEST until Sun 25 Oct "
                                        "02:30 CET (1 h); it has worked in every run since.")
    # Spring: 01:30 CET to 03:30 CEST is one hour, not two.
    spring = datetime(2026, 3, 29, 0, 30, tzinfo=utc)
    assert "from Sun 29 Mar 01:30 CET until Sun 29 Mar 03:30 CEST (1 h)" in _outage_text(spring, spring + timedelta(hours=1))
    # A time in the hour that happens twice is named even alone.
    assert "until Sun 25 Oct 02:30 CET;" in _outage_text(end, None)
    assert "until Sun 25 Oct 02:30 CEST;" in _outage_text(start, None)
    # Any other night reads as before: no zone.
    assert "from Sat 24 Oct 02:30 until Sat 24 Oct 03:30 (1 h)" in _outage_text(
        start - timedelta(days=1), end - timedelta(days=1))
    # A zone whose abbreviation is no name (Chile's "-03"/"-04") says the offset.
    santiago = ZoneInfo("America/Santiago")  # back from -03 to -04 on Sun 5 Apr 2026 at 00:00
    back = datetime(2026, 4, 5, 2, 30, tzinfo=utc)
    line = _outage_text(back, back + timedelta(hours=1), santiago)
    assert "from Sat 4 Apr 23:30 UTC-03:00 until Sat 4 Apr 23:30 UTC-04:00 (1 h)" in line, line
