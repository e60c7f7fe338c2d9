"""A schedule the history cannot tell, and delivery dates no run can take.

One stray workbook (or a one-off manual run of another report) used to become a report with an
inferred "daily" schedule of confidence 0.1 that was critical every day, for ever; a file dated
in the future belonged to no run and no problem named it; a stamp-less file with modification
time 0 made runs from 1970, and one dated 2100..2106 was left out without a word."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta

import pytest

from tests import scenario as sc
from tui.cli import main
from tui.core import clock
from tui.core.health import evaluate
from tui.core.ledger import Ledger
from tui.core.model import Delivery, RemoteFile
from tui.core.schedule import TRUSTED_CONFIDENCE, TRUSTED_DAYS
from tui.core.status import Exit

D = date
STRAY = "Inventory Count Once"


def _delivery(name: str, report: str, at: datetime, *, on_server: bool = True,
              downloaded: bool = True, rows: int = 12) -> Delivery:
    at = at.astimezone(UTC)
    return Delivery(
        name=name, report=report, delivered_at=at, size=10_000, mtime=at,
        first_seen=min(at, sc.NOW.astimezone(UTC)), last_seen=sc.NOW.astimezone(UTC),
        on_server=on_server,
        downloaded_at=(min(at, sc.NOW.astimezone(UTC)) if downloaded else None),
        local_path=f"/local/{name}" if downloaded else None,
        verification="ok" if downloaded else None, rows=rows if downloaded else None,
    )


def _stray(day: date, hh: int = 14, mm: int = 12) -> Delivery:
    at = sc.local(day, hh, mm)
    return _delivery(f"{STRAY}_{at:%Y%m%d_%H%M}.xlsx", STRAY, at)


def _kinds(report) -> list[str]:
    return [str(p.kind) for p in report.problems]


# ------------------------------------------------------------------ a schedule the history cannot tell


def test_a_report_seen_once_is_never_missing_and_says_its_schedule_is_unknown():
    history = [*sc.deliveries(), _stray(D(2026, 12, 8))]
    health = evaluate(sc.profile(), history, now=sc.NOW)
    stray = health.report(STRAY)
    assert not stray.schedule_known and stray.inferred
    assert [r.day for r in stray.runs] == [D(2026, 12, 8)]  # its delivery, nothing expected
    assert "missing" not in _kinds(stray) and stray.exit == Exit.WARNING
    (p,) = stray.problems
    assert (p.kind, p.severity, p.file, p.day) == ("schedule-unknown", "warning", None, None)
    assert p.message == (f"'{STRAY}': schedule unknown — seen once on Tue 8 Dec; set `schedule` in "
                         "the config to be warned when it stops")
    assert "schedule =" in p.next_step
    doc = stray.to_json()
    assert doc["schedule_known"] is False and doc["inferred"] is True
    assert doc["schedule_text"] == "schedule unknown — seen once on Tue 8 Dec; set `schedule` in the config to be warned when it stops"
    # The scenario's own verdict is unchanged by the stray file.
    assert health.exit_code == Exit.CRITICAL
    without = evaluate(sc.profile(), sc.deliveries(), now=sc.NOW)
    for name in (sc.DAILY, sc.WEEKLY):
        assert health.report(name).problems == without.report(name).problems


def test_the_unknown_schedule_warning_ends_after_a_week_and_check_is_all_clear_for_it():
    later = sc.NOW + timedelta(days=30)
    health = evaluate(sc.profile(), [_stray(D(2026, 12, 8))], now=later)
    stray = health.report(STRAY)
    assert stray.problems == () and stray.exit == Exit.OK  # not a daily alarm for ever
    assert [r.status for r in stray.runs] == ["on-time"]
    assert stray.to_json()["schedule_text"].startswith("schedule unknown — seen once on Tue 8 Dec")


def test_two_deliveries_are_too_few_and_an_irregular_history_is_no_schedule_either():
    two = [_stray(D(2026, 12, 1)), _stray(D(2026, 12, 2))]
    stray = evaluate(sc.profile(), two, now=sc.local(D(2026, 12, 4), 8, 0)).report(STRAY)
    assert not stray.schedule_known and "missing" not in _kinds(stray)
    assert "seen 2 times, last on Wed 2 Dec" in stray.problems[0].message
    # Manual runs at no rhythm: many days, but no schedule explains them.
    days = [D(2026, 10, 2), D(2026, 10, 17), D(2026, 10, 20), D(2026, 11, 9), D(2026, 11, 30), D(2026, 12, 6)]
    odd = evaluate(sc.profile(), [_stray(d, 9 + i, 7 * i) for i, d in enumerate(days)], now=sc.NOW)
    stray = odd.report(STRAY)
    assert stray.confidence < TRUSTED_CONFIDENCE and not stray.schedule_known
    assert "missing" not in _kinds(stray) and stray.exit == Exit.WARNING
    assert "seen 6 times, last on Sun 6 Dec" in stray.problems[0].message


def test_a_report_arriving_daily_for_a_week_is_still_judged_and_a_configured_one_always():
    week = [_stray(D(2026, 12, 1) + timedelta(days=i), 7, 5) for i in range(7)]  # 1..7 Dec
    stray = evaluate(sc.profile(), week, now=sc.NOW).report(STRAY)
    assert stray.schedule_known and stray.confidence >= TRUSTED_CONFIDENCE and len(week) >= TRUSTED_DAYS
    missing = [p for p in stray.problems if p.kind == "missing"]
    assert [p.day for p in missing] == [D(2026, 12, 8), D(2026, 12, 9)]
    assert {p.severity for p in missing} == {"critical"} and stray.exit == Exit.CRITICAL
    assert stray.to_json()["schedule_known"] is True
    # The configured daily report with one delivery: judged strictly, as configured.
    one = [d for d in sc.deliveries() if d.report == sc.DAILY][-1:]
    daily = evaluate(sc.profile(), one, now=sc.NOW + timedelta(days=3)).report(sc.DAILY)
    assert daily.schedule_known and "missing" in _kinds(daily) and daily.exit == Exit.CRITICAL


# ------------------------------------------------------------------ dates no run can take


def test_a_delivery_dated_in_the_future_is_named():
    name = f"{sc.DAILY}_20261223_0705.xlsx"
    ahead = _delivery(name, sc.DAILY, sc.local(D(2026, 12, 23), 7, 5), downloaded=False)
    base = sc.deliveries()
    health = evaluate(sc.profile(), [*base, ahead], now=sc.NOW)
    daily = health.report(sc.DAILY)
    assert all(name not in r.files for r in daily.runs)
    (p,) = [p for p in daily.problems if p.file == name]
    assert (p.kind, p.severity) == ("bad-date", "warning")
    assert p.message == (f"'{name}' was delivered with a date in the future: dated Wed 23 Dec 07:05; "
                         "the server's clock or the name is wrong, and it counts for no run")
    others = [q for q in daily.problems if q.file != name]
    assert others == list(evaluate(sc.profile(), base, now=sc.NOW).report(sc.DAILY).problems)


@pytest.mark.parametrize("when", [
    clock.EARLIEST,  # a stamp-less file with modification time 0
    datetime(1999, 12, 31, 12, tzinfo=UTC),
    datetime(2103, 5, 1, tzinfo=UTC),  # what a 32-bit SFTP time can say past 2099
    clock.FILE_TIME_MAX,
])
def test_an_impossible_date_spawns_no_runs_and_is_named_once(when):
    name = f"{sc.DAILY}.xlsx"  # no stamp: dated by the server's modification time
    odd = _delivery(name, sc.DAILY, when)
    weekly_odd = _delivery(f"{sc.WEEKLY}.xlsx", sc.WEEKLY, when)
    base = sc.deliveries()
    plain = evaluate(sc.profile(), base, now=sc.NOW)
    health = evaluate(sc.profile(), [*base, odd, weekly_odd], now=sc.NOW)
    for report in (sc.DAILY, sc.WEEKLY):
        got, want = health.report(report), plain.report(report)
        assert [r.day for r in got.runs] == [r.day for r in want.runs]  # none from 1970 or 2103
        assert (str(got.schedule), got.confidence) == (str(want.schedule), want.confidence)
        bad = [p for p in got.problems if p.kind == "bad-date"]
        assert len(bad) == 1 and bad[0].severity == "warning" and bad[0].day is None
        assert f"{when.astimezone(sc.TZ):%-d %b %Y}" in bad[0].message
        assert "impossible date" in bad[0].message
        assert [p for p in got.problems if p.kind != "bad-date"] == list(want.problems)
    assert len(health.report(sc.DAILY).runs) == 71


def test_a_bad_date_is_no_longer_named_once_the_file_is_gone_and_held():
    gone = _delivery(f"{sc.DAILY}.xlsx", sc.DAILY, clock.EARLIEST, on_server=False)
    daily = evaluate(sc.profile(), [*sc.deliveries(), gone], now=sc.NOW).report(sc.DAILY)
    assert "bad-date" not in _kinds(daily)
    # Never downloaded and gone: it is lost, whatever its date said.
    lost = dataclasses.replace(gone, downloaded_at=None, local_path=None, verification=None, rows=None)
    daily = evaluate(sc.profile(), [*sc.deliveries(), lost], now=sc.NOW).report(sc.DAILY)
    assert [(p.kind, p.severity) for p in daily.problems if p.file == gone.name] == [("lost", "critical")]
    # Held, but the copy went missing while the server still has it: both are said, undated.
    astray = dataclasses.replace(gone, on_server=True, extra={"local_state": "missing-locally"})
    daily = evaluate(sc.profile(), [*sc.deliveries(), astray], now=sc.NOW).report(sc.DAILY)
    mine = [p for p in daily.problems if p.file == gone.name]
    assert [(p.kind, p.severity) for p in mine] == [("bad-date", "warning"), ("missing-locally", "warning")]
    assert all(p.day is None and p.delete_on is None for p in mine)
    assert mine[1].message == (f"The copy of '{gone.name}' is no longer at '/local/{gone.name}' (moved, "
                               "deleted or damaged); the server still has it")


def test_check_offline_on_a_ledger_with_a_stray_file_and_a_1970_file(tmp_path, monkeypatch, capsys):
    """The command as cron runs it: one stray workbook and one stamp-less file of modification
    time 0 are warnings, named; no run from 1970, no critical exit."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", sc.NOW_ISO)
    config = tmp_path / "config.toml"
    ledger_path = tmp_path / "ledger.sqlite3"
    (tmp_path / "ssh").write_text("")
    config.write_text(sc.config_toml(local_dir=str(tmp_path / "local"), ledger=str(ledger_path),
                                     known_hosts=str(tmp_path / "kh"), ssh_config=str(tmp_path / "ssh")))
    (tmp_path / "kh").write_text("")
    profile = sc.profile()
    week = [RemoteFile(f"{sc.DAILY}_{d:%Y%m%d}_0705.xlsx", 9_000, sc.local(d, 7, 5).astimezone(UTC))
            for d in (sc.TODAY - timedelta(days=n) for n in range(7, 0, -1))]
    stray = RemoteFile(f"{STRAY}_20261208_1412.xlsx", 9_000, sc.local(D(2026, 12, 8), 14, 12).astimezone(UTC))
    epoch = RemoteFile(f"{sc.WEEKLY}.xlsx", 9_000, clock.EARLIEST)

    def report_of(f: RemoteFile):
        report, parsed = profile.classify(f.name, f.mtime)
        return report.name, parsed.delivered_at

    with Ledger.open(ledger_path) as ledger:
        ledger.record_listing(None, report_of, [*week, stray, epoch], when=sc.NOW.astimezone(UTC), tz=sc.TZ)
    code = main(["check", "--config", str(config), "--offline", "--json"])
    doc = json.loads(capsys.readouterr().out)
    reports = {r["name"]: r for r in doc["reports"]}
    assert code == Exit.WARNING and doc["status"] == "warning", doc
    assert reports[STRAY]["schedule_known"] is False
    assert [p["kind"] for p in reports[STRAY]["problems"]] == ["schedule-unknown"]
    assert [p["kind"] for p in reports[sc.WEEKLY]["problems"]] == ["bad-date"]
    assert all(not r["day"].startswith("1970") for r in reports[sc.WEEKLY]["runs"])
    code = main(["check", "--config", str(config), "--offline"])
    out = capsys.readouterr().out
    assert code == Exit.WARNING
    assert "schedule unknown — seen once on Tue 8 Dec" in out
    assert f"'{sc.WEEKLY}.xlsx'" in out and "impossible date" in out


def test_init_proposes_a_report_seen_on_two_days_as_skip_as_the_health_evaluation_judges_it():
    """Two deliveries fit some schedule perfectly (confidence 1.0): init wrote it as the
    report's schedule, and a one-off run repeated once became a report expected for ever."""
    from tui.core import setup as su

    files = [RemoteFile(f"Twice_{d:%Y%m%d}_0705.xlsx", 10, sc.local(d, 7, 5)) for d in (D(2026, 12, 1), D(2026, 12, 2))]
    files += [RemoteFile(f"Daily_{d:%Y%m%d}_0705.xlsx", 10, sc.local(d, 7, 5))
              for d in (D(2026, 12, 1) + timedelta(days=i) for i in range(TRUSTED_DAYS))]
    proposals = {p.name: p for p in su.propose_reports(files, sc.TZ)}
    assert proposals["Twice"].confidence == 1.0 and proposals["Twice"].keep is False
    assert proposals["Daily"].keep is True and proposals["Daily"].schedule == "daily"


def test_a_report_whose_only_file_is_dated_ahead_is_named_not_silent():
    ahead = _stray(D(2027, 3, 1))
    stray = evaluate(sc.profile(), [ahead], now=sc.NOW).report(STRAY)
    assert stray.runs == () and [p.kind for p in stray.problems] == ["bad-date"]
    assert "date in the future: dated Mon 1 Mar 14:12" in stray.problems[0].message
    assert stray.to_json()["schedule_text"].startswith("schedule unknown — nothing delivered yet")


def test_many_stray_reports_and_bad_dates_are_told_as_groups():
    from tui.core.problem_list import ProblemGroup, tell

    strays = [_delivery(f"Once {i}_20261208_1412.xlsx", f"Once {i}", sc.local(D(2026, 12, 8), 14, 12))
              for i in range(3)]
    odd = [_delivery(f"{sc.WEEKLY} {i}.xlsx", sc.WEEKLY, clock.EARLIEST) for i in range(3)]
    groups = [g for g in tell(evaluate(sc.profile(), [*strays, *odd], now=sc.NOW))
              if isinstance(g, ProblemGroup) and g.kind in ("schedule-unknown", "bad-date")]
    assert {g.message for g in groups} == {
        "3 reports have no schedule configured and too few deliveries to tell one",
        "3 files are dated in the future or at an impossible time: in no run",
    }


def test_a_one_off_delivery_does_not_decide_when_the_night_run_starts(tmp_path, monkeypatch):
    """The nightly run starts after the latest report is due: a report whose schedule is unknown
    (one stray workbook at 23:40) is expected at no time, so it moves nothing."""
    from tui.core import unattended
    from tui.core.config import load_config

    monkeypatch.setenv("REPORT_KEEPER_NOW", sc.NOW_ISO)
    config = tmp_path / "config.toml"
    ledger_path = tmp_path / "ledger.sqlite3"
    config.write_text(sc.config_toml(local_dir=str(tmp_path / "local"), ledger=str(ledger_path)))
    profile = load_config(config).profile()
    alone = unattended.plan_schedule(profile, config)
    stray = RemoteFile(f"{STRAY}_20261208_2340.xlsx", 9_000, sc.local(D(2026, 12, 8), 23, 40).astimezone(UTC))

    def report_of(f: RemoteFile):
        report, parsed = profile.classify(f.name, f.mtime)
        return report.name, parsed.delivered_at

    with Ledger.open(ledger_path) as ledger:
        ledger.record_listing(None, report_of, [stray], when=sc.NOW.astimezone(UTC), tz=sc.TZ)
    plan = unattended.plan_schedule(profile, config)
    assert (plan.at, plan.reason) == (alone.at, alone.reason)
    assert STRAY not in plan.reason


def test_what_is_held_of_a_file_of_unknown_date_is_told_without_dates():
    """The file problems of a delivery of unknown date come from the same code as every
    other's, told without its dates (they would be 1970's): lost, missing locally or changed
    (its next step names no date), never near deletion (that is its delete-on date)."""
    gone = _delivery(f"{sc.DAILY}.xlsx", sc.DAILY, clock.EARLIEST, on_server=False)
    never = dataclasses.replace(gone, downloaded_at=None, local_path=None, verification=None, rows=None,
                                extra={"rolling_of": f"{sc.DAILY}.xlsx"})
    astray = dataclasses.replace(gone, extra={"local_state": "missing-locally"})
    waiting = dataclasses.replace(never, on_server=True, extra={})
    changed = dataclasses.replace(gone, on_server=True, changed=True, extra={"local_state": "changed"})
    said = []
    for d in (never, astray, waiting, changed):
        daily = evaluate(sc.profile(), [*sc.deliveries(), d], now=sc.NOW).report(sc.DAILY)
        said.append([(p.kind, p.next_step) for p in daily.problems if p.file == d.name])
        assert all(p.day is None and p.delete_on is None and p.rescue_by is None
                   for p in daily.problems if p.file == d.name)
    assert said[0] == [("lost", f"If it was a delivery of '{sc.DAILY}' that you need, re-run it in "
                            "Alma Analytics; run 'report-keeper sync' daily (e.g. from cron) so it does "
                            "not happen again")]
    assert said[1] == [("lost", f"Put the file back at '/local/{gone.name}' from a backup or "
                             "wherever it was moved")]
    assert [k for k, _ in said[2]] == ["bad-date"]
    assert said[3] == [("bad-date", said[3][0][1]),
                       ("changed", "Run 'report-keeper sync' now (when the server deletes it is unknown): "
                                   "the new copy is kept beside the old one")]


def test_check_names_a_file_of_unknown_date_that_changed_on_the_server(tmp_path, monkeypatch, capsys):
    """A stamp-less file of modification time 0, downloaded, whose server copy then changed
    (another size): the new copy is not held, and nothing said so (the problem's text needed a
    delete-on date it does not have). It is told, without a date."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", sc.NOW_ISO)
    config = tmp_path / "config.toml"
    ledger_path = tmp_path / "ledger.sqlite3"
    local_dir = tmp_path / "local"
    local_dir.mkdir()
    (tmp_path / "ssh").write_text("")
    (tmp_path / "kh").write_text("")
    config.write_text(sc.config_toml(local_dir=str(local_dir), ledger=str(ledger_path),
                                     known_hosts=str(tmp_path / "kh"), ssh_config=str(tmp_path / "ssh")))
    profile = sc.profile()
    held = RemoteFile(f"{sc.WEEKLY}.xlsx", 9_000, clock.EARLIEST)
    copy = local_dir / held.name
    copy.write_bytes(b"x" * held.size)

    def report_of(f: RemoteFile):
        report, parsed = profile.classify(f.name, f.mtime)
        return report.name, parsed.delivered_at

    when = sc.NOW.astimezone(UTC)
    with Ledger.open(ledger_path) as ledger:
        ledger.record_listing(None, report_of, [held], when=when - timedelta(days=1), tz=sc.TZ)
        ledger.record_download(held.name, size=held.size, sha256="0" * 64, local_path=str(copy),
                               mtime=held.mtime, when=when - timedelta(days=1))
        ledger.record_listing(None, report_of, [dataclasses.replace(held, size=9_500)], when=when, tz=sc.TZ)
        assert ledger.local_state(held.name) == "changed"
    main(["check", "--config", str(config), "--offline", "--json"])
    doc = json.loads(capsys.readouterr().out)
    weekly = {r["name"]: r for r in doc["reports"]}[sc.WEEKLY]
    mine = [p for p in weekly["problems"] if p["file"] == held.name]
    assert [p["kind"] for p in mine] == ["bad-date", "changed"], mine
    changed = mine[1]
    assert changed["severity"] == "warning" and changed["day"] is None and changed["delete_on"] is None
    assert "new copy is not held yet" in changed["message"]
    assert "Run 'report-keeper sync'" in changed["next_step"] and " before " not in changed["next_step"]
