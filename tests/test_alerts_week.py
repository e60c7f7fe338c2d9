"""A week of cron runs against the real OpenSSH sshd, with a report that stops and resumes.

Every simulated day runs ``report-keeper sync`` and then ``report-keeper check``, with
``REPORT_KEEPER_NOW`` at 10:00 Chicago time, while the server folder gets one file a day at
07:05, then none for four days, then again. The runs are made in this process (a process's
start-up was most of the test's time), except the check after a sync that sent an alert: that
one is a process of its own (as the systemd timer starts it), so what it must not send again
can only come from the ledger, as on a real night. The alerts go to a real SMTP server
(aiosmtpd, STARTTLS, AUTH) and a real HTTP server (webhook and ping), and the assertions are
on what those servers received.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.daily_config import server_folder, write_daily_config
from tests.notify_servers import HttpServer, SmtpServer
from tests.xlsx_factory import write_report

TZ = ZoneInfo("America/Chicago")
REPORT = "Loans Per Patron From 3 Days Ago"
PASSWORD = "s3cret-Pass word"


def _config(tmp: Path, server, remote_dir: str, notify: str) -> Path:
    return write_daily_config(tmp, server, remote_dir, REPORT, tail=f"[profile.default.notify]\n{notify}")


def _deliver(folder: Path, day: date) -> None:
    at = datetime.combine(day, time(7, 5), tzinfo=TZ)
    path = folder / f"{REPORT}_{at:%Y%m%d_%H%M%S}.xlsx"
    write_report(path, n_rows=4, day=day - timedelta(days=3), seed=day.toordinal())
    os.utime(path, (at.timestamp(), at.timestamp()))


def _run(command: str, cfg: Path, day: date, env: dict[str, str]) -> tuple[int, dict]:
    now = datetime.combine(day, time(10, 0), tzinfo=TZ).isoformat()
    proc = subprocess.run(
        [sys.executable, "-m", "tui", command, "--config", str(cfg), "--json"],
        env={**env, "REPORT_KEEPER_NOW": now}, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 3, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _run_here(command: str, cfg: Path, day: date, env: dict[str, str], monkeypatch, capsys) -> tuple[int, dict]:
    """The same run in this process, with ``env`` as its environment."""
    from tui.cli import main

    for name in [k for k in os.environ if k not in env]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REPORT_KEEPER_NOW", datetime.combine(day, time(10, 0), tzinfo=TZ).isoformat())
    capsys.readouterr()
    code = main([command, "--config", str(cfg), "--json"])
    out = capsys.readouterr()
    assert code != 3, out.err
    return code, json.loads(out.out)


@pytest.fixture
def server_dir(sshd):
    with server_folder(sshd.root, "week-") as sub:
        yield sub


@pytest.fixture
def base_env(tmp_path):
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["RK_SMTP_PASSWORD"] = PASSWORD
    return env


@pytest.mark.sshd
def test_a_week_of_cron_runs_with_a_report_that_stops(sshd, server_dir, tmp_path, base_env, monkeypatch, capsys):
    smtp = SmtpServer(tmp_path / "smtp", security="starttls", password=PASSWORD).start()
    http = HttpServer().start()
    try:
        notify = smtp.notify_table() + (
            f'webhook_url = "{http.url("/hook")}"\nping_url = "{http.url("/ping/abc")}"\n'
        )
        cfg = _config(tmp_path, sshd, server_dir.name, notify)
        env = {**base_env, "SSL_CERT_FILE": str(smtp.cert)}
        stops, resumes = date(2026, 11, 28), date(2026, 12, 2)
        for day in (date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)):
            _deliver(server_dir, day)
        seen: dict[date, tuple[int, int, int]] = {}
        processes: list[date] = []  # the days whose check ran as a process of its own
        days = [date(2026, 11, 26) + timedelta(days=i) for i in range(8)]  # Thu 26 .. Thu 3
        for day in days:
            if not stops <= day < resumes:
                _deliver(server_dir, day)
            before = (len(smtp.messages), len(http.posts("/hook")))
            sync_code, sync_doc = _run_here("sync", cfg, day, env, monkeypatch, capsys)
            if any(s["channel"] != "ping" for s in sync_doc["notify"]["sent"]):
                check_code, check_doc = _run("check", cfg, day, env)
                processes.append(day)
            else:
                check_code, check_doc = _run_here("check", cfg, day, env, monkeypatch, capsys)
            assert sync_code == 0, sync_doc  # the sync itself works every day
            assert sync_doc["notify"]["failed"] == [] and check_doc["notify"]["failed"] == []
            # check never repeats what sync sent the same day
            assert check_doc["notify"]["sent"] == [s for s in check_doc["notify"]["sent"] if s["channel"] == "ping"]
            seen[day] = (len(smtp.messages) - before[0], len(http.posts("/hook")) - before[1], check_code)

        subjects = [m.subject for m in smtp.messages]
        assert subjects == [
            f"[report-keeper] CRITICAL: missing '{REPORT}' Sat 28 Nov — last day to re-run: Tue 1 Dec",
            f"[report-keeper] REMINDER CRITICAL: missing '{REPORT}' since Sat 28 Nov (3 runs) — last day to re-run: "
            "tomorrow, Tue 1 Dec",
            f"[report-keeper] RESOLVED: '{REPORT}' delivers again after missing Sat 28 Nov to Tue 1 Dec",
        ], subjects
        # one message a day at most, on the right days
        assert {d: s[0] for d, s in seen.items() if s[0]} == {
            date(2026, 11, 28): 1, date(2026, 11, 30): 1, date(2026, 12, 2): 1}
        assert processes == [date(2026, 11, 28), date(2026, 11, 30), date(2026, 12, 2)]
        assert all(m.authenticated_as == "reports" for m in smtp.messages)
        assert all(m.rcpt_tos == ["circ-team@example.edu"] for m in smtp.messages)
        alert, reminder, resolved = (m.body for m in smtp.messages)
        assert "Re-run 'Loans Per Patron From 3 Days Ago' in Alma Analytics for loans of Wed 25 Nov before Wed 2 Dec" in alert
        assert "last day to re-run: Tue 1 Dec (the loans are anonymized on Wed 2 Dec)" in alert
        # rescue-by is the day the loans are anonymized: the reminder leaves a whole day to act
        assert "the last day to re-run is tomorrow, Tue 1 Dec (the loans are anonymized on Wed 2 Dec)" in reminder
        assert "delivered again for Wed 2 Dec" in resolved
        assert "Sun 29 Nov: last day to re-run: today, Wed 2 Dec" in resolved  # the missed days still rescuable
        for body in (alert, reminder, resolved):
            assert "Synthetic Title" not in body and "0" * 5 not in body  # no cell values

        hooks = [r.json() for r in http.posts("/hook")]
        assert [h["message"] for h in hooks] == ["alert", "reminder", "resolved"]
        first = hooks[0]
        assert first["profile"] == "default" and first["status"] == "critical"
        assert [(p["report"], p["kind"], p["day"], p["rescue_by"]) for p in first["new"]] == [
            (REPORT, "missing", "2026-11-28", "2026-12-02")]
        assert first["resolved"] == [] and [p["kind"] for p in first["open"]] == ["missing"]
        assert [p["days"] for p in hooks[1]["reminders"]] == [["2026-11-28", "2026-11-29", "2026-11-30"]]
        assert hooks[2]["new"] == [] and hooks[2]["open"] == []
        assert [(p["kind"], p["day"], p["last_day"]) for p in hooks[2]["resolved"]] == [
            ("missing", "2026-11-28", "2026-12-01")]

        # ping after every run: /fail while something is critical (check stays critical after the
        # report resumed: the missed days can still be rescued), plain when all is well
        pings = [r.path for r in http.gets()]
        assert len(pings) == 2 * len(days)
        expected = []
        for day in days:
            bad = day >= stops
            expected += ["/ping/abc/fail" if bad else "/ping/abc"] * 2
        assert pings == expected
        assert seen[date(2026, 12, 3)][2] == 2  # check still says critical: Sun 29 .. Tue 1 rescuable
    finally:
        smtp.stop()
        http.stop()


@pytest.mark.sshd
def test_a_refused_smtp_login_changes_nothing_and_is_retried(sshd, server_dir, tmp_path, base_env, monkeypatch,
                                                             capsys):
    smtp = SmtpServer(tmp_path / "smtp", security="starttls", password=PASSWORD).start()
    try:
        cfg = _config(tmp_path, sshd, server_dir.name, smtp.notify_table())
        env = {**base_env, "SSL_CERT_FILE": str(smtp.cert)}
        for day in (date(2026, 11, 25), date(2026, 11, 26), date(2026, 11, 27)):
            _deliver(server_dir, day)
        wrong = {**env, "RK_SMTP_PASSWORD": "wrong-Password-123"}
        code, doc = _run_here("sync", cfg, date(2026, 11, 28), wrong, monkeypatch, capsys)
        assert code == 0  # the sync worked; the missing Sat 28 is the alert's business
        assert doc["status"] == "ok" and len(doc["downloaded"]) == 3
        failed = doc["notify"]["failed"]
        assert [(f["channel"], f["message"]) for f in failed] == [("email", "alert")]
        assert "refused the login of 'reports'" in failed[0]["error"]
        assert smtp.messages == [] and smtp.logins and all(l == ("reports", False) for l in smtp.logins)
        log = (Path(os.environ["XDG_STATE_HOME"]) / "report-keeper" / "log" / "report-keeper.log")
        assert "email alert not sent" in log.read_text()  # logged...
        for text in (json.dumps(doc), log.read_text()):  # ...without the password
            assert "wrong-Password-123" not in text and PASSWORD not in text

        # the next run (a process of its own), with the right password, sends the alert that
        # was not sent
        code, doc = _run("check", cfg, date(2026, 11, 28), env)
        assert code == 2
        assert [(s["channel"], s["message"], s["new"]) for s in doc["notify"]["sent"]] == [("email", "alert", 1)]
        assert [m.subject for m in smtp.messages] == [
            f"[report-keeper] CRITICAL: missing '{REPORT}' Sat 28 Nov — last day to re-run: Tue 1 Dec"]
    finally:
        smtp.stop()
