"""A file dated in the future is no report's latest delivery.

A server clock that is wrong, or a hostile name, can date a workbook next year. It is named
(a ``bad-date`` warning) and counts for no run; it was still taken as the report's latest
delivery, so ``check`` and the Health screen said "last: Fri 10 Dec 2027" for a report whose
real deliveries had stopped days ago: a person reading the report list saw it delivering."""

from __future__ import annotations

import json
from datetime import UTC, date, timedelta

from tests import scenario as sc
from tui.cli import main
from tui.core.health import evaluate
from tui.core.ledger import Ledger
from tui.core.model import RemoteFile
from tui.core.status import Exit

D = date
INFERRED = "Fines Daily"  # no [[report]] entry: its daily schedule is inferred
STOPPED = sc.TODAY - timedelta(days=5)  # Sat 5 Dec: the last real delivery


def _files(report: str) -> list[RemoteFile]:
    days = [STOPPED - timedelta(days=n) for n in range(30, -1, -1)]
    return [RemoteFile(f"{report}_{d:%Y%m%d}_070500.xlsx", 9_000, sc.local(d, 7, 5).astimezone(UTC))
            for d in days]


def _next_year(report: str) -> RemoteFile:
    at = sc.local(D(2027, 12, 10), 7, 5)
    return RemoteFile(f"{report}_{at:%Y%m%d_%H%M%S}.xlsx", 9_000, at.astimezone(UTC))


def test_a_file_dated_next_year_is_not_the_last_delivery_of_a_report_that_stopped(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPORT_KEEPER_NOW", sc.NOW_ISO)
    config = tmp_path / "config.toml"
    ledger_path = tmp_path / "ledger.sqlite3"
    config.write_text(sc.config_toml(local_dir=str(tmp_path / "local"), ledger=str(ledger_path)))
    profile = sc.profile()
    listing = [*_files(sc.DAILY), _next_year(sc.DAILY), *_files(INFERRED), _next_year(INFERRED)]

    def report_of(f: RemoteFile):
        report, parsed = profile.classify(f.name, f.mtime)
        return report.name, parsed.delivered_at

    with Ledger.open(ledger_path) as ledger:
        ledger.record_listing(None, report_of, listing, when=sc.NOW.astimezone(UTC), tz=sc.TZ)
        deliveries = ledger.deliveries()
    code = main(["check", "--config", str(config), "--offline", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == Exit.CRITICAL and doc["status"] == "critical", doc
    reports = {r["name"]: r for r in doc["reports"]}
    for name in (sc.DAILY, INFERRED):
        r = reports[name]
        assert r["status"] == "critical" and r["schedule_known"] is True
        real = f"{name}_{STOPPED:%Y%m%d}_070500.xlsx"
        assert (r["last_file"], r["last_delivery"]) == (real, sc.local(STOPPED, 7, 5).astimezone(UTC).isoformat()), r
        missing = [p for p in r["problems"] if p["kind"] == "missing"]
        assert [p["day"] for p in missing if p["severity"] == "critical"] == [
            "2026-12-07", "2026-12-08", "2026-12-09"], missing
        # the file of next year stays listed and named
        ahead = _next_year(name).name
        assert [p["kind"] for p in r["problems"] if p["file"] == ahead] == ["bad-date"]
        assert all(ahead not in run["files"] for run in r["runs"])
    code = main(["check", "--config", str(config), "--offline"])
    out = capsys.readouterr().out
    assert code == Exit.CRITICAL
    lines = [line for line in out.splitlines() if sc.DAILY in line or INFERRED in line]
    lines = [line for line in lines if "last:" in line]
    assert len(lines) == 2 and all("last: Sat 5 Dec 07:05" in line for line in lines), out
    assert "2027" not in "".join(lines), out
    # The evaluation itself: the same, whatever order the ledger gives the files in.
    health = evaluate(profile, list(reversed(deliveries)), now=sc.NOW)
    for name in (sc.DAILY, INFERRED):
        last = health.report(name).last_delivery
        assert last is not None and last.delivered_at == sc.local(STOPPED, 7, 5)


def test_a_report_whose_only_file_is_dated_ahead_has_no_last_delivery():
    ahead = _next_year(INFERRED)
    from tests.test_schedule_unknown import _delivery

    health = evaluate(sc.profile(), [_delivery(ahead.name, INFERRED, ahead.mtime)], now=sc.NOW)
    report = health.report(INFERRED)
    assert report.last_delivery is None and report.to_json()["last_delivery"] is None
    assert [p.kind for p in report.problems] == ["bad-date"]


def test_a_ledger_holding_only_files_dated_ahead_is_not_said_to_hold_no_delivery(tmp_path, monkeypatch, capsys):
    """Every file dated ahead: no report has a last delivery, but the ledger holds files (each
    named as bad-date). "The ledger holds no delivery yet: run sync" sent the person to a sync
    that had run already, away from the dates that are wrong."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", sc.NOW_ISO)
    config = tmp_path / "config.toml"
    ledger_path = tmp_path / "ledger.sqlite3"
    config.write_text(sc.config_toml(local_dir=str(tmp_path / "local"), ledger=str(ledger_path)))
    profile = sc.profile()

    def report_of(f: RemoteFile):
        report, parsed = profile.classify(f.name, f.mtime)
        return report.name, parsed.delivered_at

    with Ledger.open(ledger_path) as ledger:
        ledger.record_listing(None, report_of, [_next_year(sc.DAILY), _next_year(INFERRED)],
                              when=sc.NOW.astimezone(UTC), tz=sc.TZ)
    main(["check", "--config", str(config), "--offline"])
    out = capsys.readouterr().out
    assert "holds no delivery yet" not in out, out
    assert _next_year(INFERRED).name in out, out  # named, with its wrong date
    # An empty ledger still gets the hint.
    ledger_path.unlink()
    main(["check", "--config", str(config), "--offline"])
    assert "holds no delivery yet" in capsys.readouterr().out
