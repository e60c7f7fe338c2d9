"""Local retention without a server: the config keys, the purge's decisions on a real local
history (real workbooks, a real ledger), hostile local files, interrupted purges, and how a
purged copy reads everywhere (ledger states, health, heatmap)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests import retention_data as rd
from tui.core import heatmap as hm
from tui.core import retention
from tui.core.config import ConfigError, load_config
from tui.core.health import WAITING_FOR_EXPORT, evaluate
from tui.core.model import RemoteFile
from tui.core.names import escape_name


@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


BASE = '[profile.default]\nhost = "h"\n'
REPORT = '[[profile.default.report]]\nname = "R"\n'


def test_a_history_copied_for_a_test_is_the_one_a_build_makes(tmp_path, pinned):
    """``rd.build`` copies a history built earlier in the process with the same settings: the
    same files (bytes, modes), the same ledger rows but for its own paths, the same modes."""
    import sqlite3
    import stat

    def seen(env: rd.Local) -> tuple:
        with sqlite3.connect(env.ledger_path) as db:
            tables = [t for t, in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
            rows = {t: [tuple(str(v).replace(str(env.root), "ROOT") for v in row)
                        for row in db.execute(f"SELECT * FROM {t}")] for t in tables}
            pragmas = [db.execute(f"PRAGMA {p}").fetchall() for p in ("journal_mode", "user_version")]
        db.close()
        files = {p.name: (p.read_bytes(), stat.S_IMODE(p.stat().st_mode)) for p in env.local.iterdir()}
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [env.local, *env.root.iterdir()]}
        return rows, pragmas, files, modes, env.shas

    rd.build(tmp_path / "first")  # the one later builds copy, if no test made it before
    fresh = rd._build(tmp_path / "fresh", profile_extra="local_retention_days = 30", report_extra="",
                      days=rd.DAYS)
    copied = rd.build(tmp_path / "copied")
    assert len(fresh.shas) == rd.DAYS and seen(copied) == seen(fresh)
    assert str(tmp_path / "copied") in copied.profile().local_dir.as_posix()


# ----------------------------------------------------------------------------- config


def test_retention_is_set_per_profile_and_per_report(tmp_path):
    text = (BASE + "local_retention_days = 90\n" + REPORT + "local_retention_days = 30\n"
            + '[[profile.default.report]]\nname = "S"\nkeep_until_exported = false\n'
            + '[profile.other]\nhost = "h"\n[profile.other.defaults]\nlocal_retention_days = 7\n'
            + '[profile.none]\nhost = "h"\n')
    config = load_config(write(tmp_path, text))
    p = config.profile("default")
    assert p.report_for("R").local_retention_days == 30 and p.report_for("R").keeps_until_exported
    s = p.report_for("S")
    assert s.local_retention_days == 90 and s.keep_until_exported is False and not s.keeps_until_exported
    assert p.report_for("discovered").local_retention_days == 90  # the profile's default
    assert config.profile("other").report_for("x").local_retention_days == 7
    none = config.profile("none").report_for("x")
    assert none.local_retention_days is None and none.purge_after(rd.NOW, rd.TZ) is None
    assert retention.policy_set(p) and not retention.policy_set(config.profile("none"))


def test_purge_age_counts_days_on_the_librarys_clock():
    report = load_config_text("local_retention_days = 30\n").report_for("R")
    tz = ZoneInfo("America/Chicago")
    before_dst = datetime(2026, 3, 5, 7, 5, tzinfo=tz)  # CST; daylight saving starts 8 Mar
    due = report.purge_after(before_dst.astimezone(UTC), tz)
    assert due == datetime(2026, 4, 4, 7, 5, tzinfo=tz) and due.utcoffset() == timedelta(hours=-5)


def load_config_text(extra: str):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return load_config(write(Path(folder), BASE + extra + REPORT)).profile()


@pytest.mark.parametrize("where", ["profile", "report", "defaults"])
@pytest.mark.parametrize(
    "value, reason",
    [("0", "out of range"), ("-30", "out of range"), ("36601", "out of range"), ('"30"', "whole number"),
     ("true", "whole number"), ("30.5", "whole number"), ("[30]", "whole number")],
)
def test_bad_local_retention_days_names_file_key_and_reason(tmp_path, where, value, reason):
    line = f"local_retention_days = {value}\n"
    text = {"profile": BASE + line, "report": BASE + REPORT + line,
            "defaults": BASE + "[profile.default.defaults]\n" + line}[where]
    key = {"profile": "profile.default.local_retention_days",
           "report": "profile.default.report[0].local_retention_days",
           "defaults": "profile.default.defaults.local_retention_days"}[where]
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path).profile()  # its own error: raised when it is picked
    assert err.value.key == key and reason in err.value.reason
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("value", ['"yes"', "1", "0", "[true]"])
def test_bad_keep_until_exported(tmp_path, value):
    path = write(tmp_path, BASE + REPORT + f"keep_until_exported = {value}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path).profile()  # its own error: raised when it is picked
    assert err.value.key == "profile.default.report[0].keep_until_exported"
    assert "true or false" in err.value.reason


def test_retention_set_twice_on_a_profile_is_refused(tmp_path):
    path = write(tmp_path, BASE + "local_retention_days = 30\n[profile.default.defaults]\nlocal_retention_days = 60\n")
    with pytest.raises(ConfigError, match="both here and in"):
        load_config(path).profile()  # its own error: raised when it is picked


# ----------------------------------------------------------------------------- the purge


def _states(env):
    with env.ledger() as ledger:
        return ledger.local_states()


def test_only_old_exported_content_goes_and_dry_run_changes_nothing(tmp_path, pinned):
    env = rd.build(tmp_path / "h")
    with env.ledger() as ledger:
        env.export(ledger, range(0, 5))  # runs 0..4 exported, 5..9 old but not exported
        states = ledger.local_states()
        dry = retention.purge(env.profile(), ledger, dry_run=True, now=rd.NOW)
        assert [c.name for c in dry.purged] == [rd.name(i) for i in range(5)]
        assert [(c.name, why) for c, why in dry.waiting] == [(rd.name(i), "not-exported") for i in range(5, 10)]
        assert env.files() == {rd.name(i) for i in range(rd.DAYS)} and ledger.local_states() == states
        assert dry.to_json()["dry_run"] is True and dry.exit_code == 1

        result = retention.purge(env.profile(), ledger, now=rd.NOW)
        doc = json.loads(json.dumps(result.to_json()))
        assert [p["name"] for p in doc["purged"]] == [rd.name(i) for i in range(5)]
        assert [w["name"] for w in doc["waiting_for_export"]] == [rd.name(i) for i in range(5, 10)]
        assert doc["waiting_for_export"][0]["days_waiting"] == 4 and doc["errors"] == []
        assert env.files() == {rd.name(i) for i in range(5, rd.DAYS)}
        states = ledger.local_states()
        assert {n for n, s in states.items() if s == "purged"} == {rd.name(i) for i in range(5)}
        # Purged copies are never missing on disk, never lost, never held.
        check = ledger.reconcile_local(env.local)
        assert check.missing == () and check.newly_missing == ()
        assert not ledger.holds(rd.name(0), os.path.getsize(env.path(5)), rd.delivered(0))
        assert ledger.lost() == []

        # Once the rest is exported, the next purge takes it; a third one has nothing to do.
        env.export(ledger, range(5, 10))
        again = retention.purge(env.profile(), ledger, now=rd.NOW)
        assert [c.name for c in again.purged] == [rd.name(i) for i in range(5, 10)] and not again.waiting
        assert again.exit_code == 0
        third = retention.purge(env.profile(), ledger, now=rd.NOW)
        assert not third.purged and not third.waiting and not third.errors


def test_without_keep_until_exported_every_old_copy_goes(tmp_path, pinned):
    env = rd.build(tmp_path / "h", profile_extra="local_retention_days = 30\nkeep_until_exported = false")
    with env.ledger() as ledger:
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
    assert [c.name for c in result.purged] == [rd.name(i) for i in rd.OLD] and not result.waiting
    assert env.files() == {rd.name(i) for i in range(10, rd.DAYS)}


def test_no_policy_touches_nothing(tmp_path, pinned):
    env = rd.build(tmp_path / "h", profile_extra="")
    with env.ledger() as ledger:
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
    assert not result.policy and not result.purged and result.exit_code == 0
    assert result.summary_lines() == [
        "No local retention is configured (local_retention_days): every local copy is kept."]
    assert len(env.files()) == rd.DAYS


def test_reasons_a_copy_waits(tmp_path, pinned):
    env = rd.build(tmp_path / "h")
    with env.ledger() as ledger:
        env.export(ledger, [0], role="superseded")
        env.export(ledger, [1], role="excluded")
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
    reasons = {c.name: why for c, why in result.waiting}
    assert reasons[rd.name(0)] == "superseded" and reasons[rd.name(1)] == "excluded"
    assert reasons[rd.name(2)] == "not-exported" and not result.purged


def test_changed_copies_follow_the_same_rule_each_by_its_own_content(tmp_path, pinned):
    """A delivery with two copies (the server's copy changed after the download): each copy is
    purged when its own content was exported."""
    import hashlib

    from tests import xlsx_factory as xf
    from tui.core.validate import validate_file
    from tui.sftp.download import changed_name

    env = rd.build(tmp_path / "h")
    remote = RemoteFile(rd.name(2), 1, rd.delivered(4).astimezone(UTC))
    second = xf.write_report(env.local / changed_name(rd.name(2), remote), xf.loan_rows(9, seed=77))
    sha = hashlib.sha256(second.read_bytes()).hexdigest()
    with env.ledger() as ledger:
        ledger.record_download(rd.name(2), size=second.stat().st_size, sha256=sha, local_path=str(second),
                               mtime=remote.mtime)
        ledger.record_verification(validate_file(second, env.profile().report_for(rd.REPORT), rd.delivered(2)),
                                   sha256=sha)
        env.shas[second.name] = sha
        env.export(ledger, [2])  # the first copy's content only
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
        assert [c.file for c in result.purged] == [rd.name(2)]
        assert [(c.file, c.latest) for c, _ in result.waiting if c.name == rd.name(2)] == [(second.name, True)]
        assert second.exists() and not env.path(2).exists()
        assert ledger.local_state(rd.name(2)) != "purged"  # its latest copy is still held
        sources = [{"sha256": sha, "name": second.name, "report": rd.REPORT, "run_day": "2026-03-03",
                    "role": "rows", "rows": 9}]
        ledger.record_export(out="x", format="csv", reports=[rd.REPORT], since=None, until=None,
                             pseudonymized_columns=None, key_id=None, rows=9, files=1, status="ok", sources=sources)
        again = retention.purge(env.profile(), ledger, now=rd.NOW)
        assert [c.file for c in again.purged] == [second.name] and not second.exists()
        assert ledger.local_state(rd.name(2)) == "purged"


def test_a_report_can_keep_longer_than_its_profile(tmp_path, pinned):
    env = rd.build(tmp_path / "h", profile_extra="local_retention_days = 30\nkeep_until_exported = false",
                   report_extra="local_retention_days = 35")
    with env.ledger() as ledger:
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
    assert [c.name for c in result.purged] == [rd.name(i) for i in range(5)]


# ----------------------------------------------------------------------------- hostile local files


def test_a_replaced_or_linked_file_is_never_deleted(tmp_path, pinned):
    """Only the downloaded bytes are deleted: a file edited since, or a link put in its place
    (pointing at something else of the user's), is left alone and reported."""
    env = rd.build(tmp_path / "h", profile_extra="local_retention_days = 30\nkeep_until_exported = false")
    edited = env.path(0)
    edited.write_bytes(edited.read_bytes()[:-1] + b"x")  # same size, other bytes
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    env.path(1).unlink()
    env.path(1).symlink_to(precious)
    with env.ledger() as ledger:
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
        errors = {c.name: why for c, why in result.errors}
        assert set(errors) == {rd.name(0), rd.name(1)}
        assert "no longer what was downloaded" in errors[rd.name(0)]
        assert "no longer a regular file" in errors[rd.name(1)]
        assert edited.exists() and env.path(1).is_symlink() and precious.read_text() == "mine"
        assert result.exit_code == 1 and [c.name for c in result.purged] == [rd.name(i) for i in range(2, 10)]
        # Not purged: the decision was withdrawn (held again, or missing as before).
        assert ledger.local_state(rd.name(0)) == "downloaded"
        assert all(not d.purge_started for d in ledger.downloads(rd.name(0)))


# ----------------------------------------------------------------------------- interrupted purges


def test_an_interrupted_purge_is_finished_or_withdrawn(tmp_path, pinned, monkeypatch):
    env = rd.build(tmp_path / "h")
    with env.ledger() as ledger:
        env.export(ledger, range(0, 10))
        # The decision was recorded for runs 0..2, then the process died: run 0's file was
        # already deleted, 1 and 2 were not.
        ledger.mark_purging([(rd.name(i), str(env.path(i))) for i in range(3)], when=rd.NOW)
        env.path(0).unlink()
        assert ledger.reconcile_local(env.local).missing == ()  # never "missing-locally"
        # The server deletes run 0's file: it is not lost either.
        listing = [RemoteFile(rd.name(i), env.path(i).stat().st_size, rd.delivered(i).astimezone(UTC))
                   for i in range(1, rd.DAYS)]
        ledger.record_listing(None, lambda f: (rd.REPORT, rd.delivered(0)), listing, when=rd.NOW)
        d0 = next(d for d in ledger.deliveries() if d.name == rd.name(0))
        assert not d0.on_server and not d0.extra["lost"] and d0.extra["local_state"] == "purged"
        health = evaluate(env.profile(), ledger.deliveries(), now=rd.NOW)
        assert not [p for p in health.problems if p.kind in ("lost", "missing-locally", "missing")]

    # Meanwhile the policy was removed: run 0 is recorded purged (its file is gone), runs 1 and
    # 2 are held copies again.
    text = env.config.read_text().replace("local_retention_days = 30", "")
    env.config.write_text(text)
    with env.ledger() as ledger:
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
        assert [c.name for c in result.finished] == [rd.name(0)]
        assert [c.name for c in result.undone] == [rd.name(1), rd.name(2)] and not result.purged
        states = ledger.local_states()
        assert states[rd.name(0)] == "purged" and states[rd.name(1)] == states[rd.name(2)] == "downloaded"
        assert env.path(1).exists() and env.path(2).exists()


# ----------------------------------------------------------------------------- health and heatmap


def test_health_waits_for_export_then_keeps_purged_runs_verified(tmp_path, pinned):
    env = rd.build(tmp_path / "h")
    profile = env.profile()
    with env.ledger() as ledger:
        health = evaluate(profile, ledger.deliveries(), now=rd.NOW)
        waiting = [p for p in health.problems if p.kind == WAITING_FOR_EXPORT]
        assert len(waiting) == 1 and waiting[0].severity == "warning" and waiting[0].file is None
        assert "10 local copies" in waiting[0].message and "nothing is lost" in waiting[0].message
        assert f"--since {rd.covered(0)} --until {rd.covered(9)}" in waiting[0].next_step
        assert health.exit_code == 1

        env.export(ledger, range(0, 10))
        retention.purge(profile, ledger, now=rd.NOW)
        health = evaluate(profile, ledger.deliveries(), now=rd.NOW)
    assert health.problems == [] and health.exit_code == 0
    runs = {r.day: r for r in health.reports[0].runs}
    for i in range(rd.DAYS):
        run = runs[rd.FIRST + timedelta(days=i)]
        assert run.status == "on-time" and run.verification == "ok"
        assert run.purged == ((rd.name(i),) if i < 10 else ())
    grid = hm.build_grid(health.reports[0].runs, today=rd.NOW.date())
    cell = grid.cell(rd.FIRST)
    assert cell.kind == hm.OK  # the calendar reads as before
    detail = hm.day_detail(cell, tz=rd.TZ, today=rd.NOW.date())
    assert ("Local copy", "purged (local retention; the ledger keeps its record)") in detail.facts
    assert detail.purged == (rd.name(0),)
    assert not [f for f in hm.day_detail(grid.cell(rd.FIRST + timedelta(days=20)), tz=rd.TZ).facts
                if f[0] == "Local copy"]


def test_one_alert_per_report_while_copies_wait(tmp_path, pinned):
    from tui.core.alerts import alerts_from

    env = rd.build(tmp_path / "h")
    with env.ledger() as ledger:
        waiting = alerts_from(evaluate(env.profile(), ledger.deliveries(), now=rd.NOW))
        env.export(ledger, range(0, 5))  # fewer copies wait: still the same alert
        fewer = alerts_from(evaluate(env.profile(), ledger.deliveries(), now=rd.NOW))
    assert [a.kind for a in waiting] == [a.kind for a in fewer] == [WAITING_FOR_EXPORT]
    alert = waiting[0]
    assert alert.severity == "warning" and alert.file is None
    assert alert.matches(fewer[0].row(state="open", sent_at="x"))
    today = rd.NOW.date()
    assert alert.headline(today) == f"local copies of '{rd.REPORT}' past their retention wait for an export"
    assert alert.headline(today, ended=True) == f"no local copy of '{rd.REPORT}' waits for an export any more"


def test_without_keep_until_exported_nothing_waits(tmp_path, pinned):
    env = rd.build(tmp_path / "h", profile_extra="local_retention_days = 30\nkeep_until_exported = false")
    with env.ledger() as ledger:
        health = evaluate(env.profile(), ledger.deliveries(), now=rd.NOW)
    assert health.problems == []


def test_sync_says_what_it_purged_and_what_waits(tmp_path, pinned):
    """The purge part of sync's human output and of its JSON (the sync itself is tested on sshd)."""
    import io

    from tui.commands.sync import _summary
    from tui.sftp.sync import SyncResult

    env = rd.build(tmp_path / "h")
    with env.ledger() as ledger:
        env.export(ledger, range(0, 8))
        result = SyncResult(retention=retention.purge(env.profile(), ledger, now=rd.NOW)).finish()
    assert result.status == 0  # waiting copies are check's warning
    out = io.StringIO()
    _summary(result, env.profile(), out)
    text = out.getvalue()
    assert "Purged: 8 local copies past local_retention_days deleted" in text
    assert "Waiting for export: 2 local copies" in text and text.endswith("Status: OK\n")
    doc = result.to_json()
    assert len(doc["purged"]) == 8 and [w["reason"] for w in doc["waiting_for_export"]] == ["not-exported"] * 2
    assert doc["purge_errors"] == [] and doc["retention_policy"][rd.REPORT]["local_retention_days"] == 30
    failed = SyncResult(purge_error="The local retention purge could not run (x).").finish()
    assert failed.status == 1 and failed.to_json()["purge_errors"] == [{"error": failed.purge_error}]


def test_an_unverified_copy_is_never_purged(tmp_path, pinned):
    """Even without keep_until_exported: the ledger would keep no result of it."""
    import sqlite3

    env = rd.build(tmp_path / "h", profile_extra="local_retention_days = 30\nkeep_until_exported = false")
    with sqlite3.connect(env.ledger_path) as db:
        db.execute("DELETE FROM verifications WHERE sha256 = ?", (env.shas[rd.name(3)],))
    with env.ledger() as ledger:
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
    assert [(c.name, why) for c, why in result.waiting] == [(rd.name(3), "unverified")]
    assert rd.name(3) not in {c.name for c in result.purged} and env.path(3).exists()


def test_a_line_break_in_a_file_name_or_a_reason_cannot_forge_a_line_of_purge(tmp_path, pinned, capsys):
    """The human output of ``purge`` quotes a local file's name and why it was not deleted
    (an operating system's words); a line break in either (Linux allows one in a name) stays
    inside its own line, escaped, and never starts a line of its own."""
    from tui.cli import main

    env = rd.build(tmp_path / "h", profile_extra="local_retention_days = 30\nkeep_until_exported = false")
    odd = env.local / f"{rd.name(0)}\n  PURGED       forged.xlsx\r"
    env.path(0).rename(odd)
    data = odd.read_bytes()
    odd.write_bytes(data[:-1] + b"x")  # same size, other bytes: not deleted
    with env.ledger() as ledger:
        ledger.record_download(rd.name(0), size=len(data), sha256=env.shas[rd.name(0)],
                               local_path=str(odd), when=rd.NOW - timedelta(days=35))
    code = main(["purge", "--config", str(env.config)])
    out = capsys.readouterr().out
    assert code == 1 and odd.exists()
    lines = out.splitlines()
    assert not any("forged" in line and "NOT DELETED" not in line for line in lines), out
    assert "\r" not in out
    [line] = [line for line in lines if "NOT DELETED" in line]
    assert "\\u000a  PURGED       forged.xlsx\\u000d: its content is no longer" in line
    # The reason is one value too: whatever words it quotes stay on its line.
    with env.ledger() as ledger:
        result = retention.purge(env.profile(), ledger, now=rd.NOW, dry_run=True)
    [copy] = result.purged  # the odd copy: the others went in the purge above
    result.errors.append((copy, "it cannot be deleted (Busy\n  PURGED       forged.xlsx\rx)"))
    lines = result.summary_lines()
    assert not any(line.startswith("  PURGED") for line in lines), lines
    assert [line for line in lines if "NOT DELETED" in line] == [
        f"  NOT DELETED  {escape_name(copy.file)}: it cannot be deleted (Busy\\u000a  PURGED       "
        "forged.xlsx\\u000dx)"]
