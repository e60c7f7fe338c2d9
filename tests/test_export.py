"""``report-keeper export`` on real workbooks (both writers) and a real ledger: the table, its
types and coverage, pseudonyms, the cache, hostile files, exit codes and the JSON shape."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tests import export_data as ed
from tests import hostile_workbooks as hw
from tui.cli import main
from tui.core import isolation
from tui.core.export import ExportError, ExportRequest, run_export
from tui.core.export_cache import TableCache, cache_dir
from tui.core.ledger import verification_context
from tui.core.model import RemoteFile
from tui.core.names import parse_name
from tui.core.validate import validate_file

D = date


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The two weeks, built once for the tests that only read them (and export elsewhere)."""
    return ed.build(tmp_path_factory.mktemp("export-shared"))


@pytest.fixture
def now(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)


def export(env, capsys, *args: str) -> tuple[int, dict]:
    code = main(["export", "--config", str(env.config), "--json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def day_of(run_day: date) -> str:
    return ed.covered(run_day).isoformat()


# ------------------------------------------------------------------------ the table


def test_one_table_with_honest_coverage(shared, now, tmp_path, capsys):
    out = tmp_path / "loans.parquet"
    code, doc = export(shared, capsys, "--out", str(out))
    rerun = shared.delivery(D(2026, 3, 3), 1)
    first = shared.delivery(D(2026, 3, 3), 0)
    changed = next(p for p in shared.paths if "(changed " in p)
    original = shared.delivery(D(2026, 3, 4)).name

    assert code == 2  # a file had to be excluded
    assert doc["status"] == "critical"
    assert doc["out"] == str(out)
    assert set(doc) >= {"status", "out", "rows", "files", "pseudonymized_columns", "days",
                        "superseded", "column_drift"}
    assert set(doc["days"]) == {"included", "empty", "closed", "missing", "excluded"}
    included_runs = [D(2026, 3, d) for d in (1, 2, 3, 4, 5, 6, 7, 10, 14)]
    assert doc["days"]["included"] == [day_of(r) for r in included_runs]
    assert doc["days"]["closed"] == [day_of(D(2026, 3, 8))] == [ed.CLOSED_DAY.isoformat()]
    assert doc["days"]["empty"] == [day_of(D(2026, 3, 12))]
    assert doc["days"]["missing"] == [day_of(D(2026, 3, 11)), day_of(D(2026, 3, 13))]
    assert doc["days"]["excluded"] == [{
        "day": day_of(D(2026, 3, 9)), "file": shared.delivery(D(2026, 3, 9)).name, "status": "unreadable",
        "report": ed.REPORT, "run_day": "2026-03-09", "message": doc["days"]["excluded"][0]["message"],
    }]
    assert [n["file"] for n in doc["not_held"]] == [shared.delivery(D(2026, 3, 13)).name]
    assert sorted((s["file"], s["by"]) for s in doc["superseded"]) == sorted([
        (first.name, rerun.name),  # the manual re-run wins
        (original, changed),  # the changed server copy wins over the first download
    ])
    drift = [{k: v for k, v in d.items() if k in ("day", "added", "missing", "reordered")}
             for d in doc["column_drift"]]
    assert drift == [
        {"day": day_of(D(2026, 3, 6)), "added": ["Due Date"], "missing": [], "reordered": False},
        {"day": day_of(D(2026, 3, 10)), "added": [], "missing": [], "reordered": True},
        {"day": day_of(D(2026, 3, 14)), "added": ["Renewals"], "missing": [], "reordered": False},
    ]
    assert doc["pseudonymized_columns"] == []
    assert doc["pseudonymized"] is False

    df = pl.read_parquet(out)
    # One row per data row of every included file, each file once.
    winners = {d.name: d for d in shared.deliveries if d.kind == "ok" and d.downloaded}
    winners.pop(first.name)
    del winners[original]
    expected_rows = sum(len(d.rows) for d in winners.values()) + len(shared.delivery(D(2026, 3, 4)).changed.rows)
    assert df.height == doc["rows"] == expected_rows
    assert doc["files"] == 9
    assert df.columns[:6] == ["report", "run_day", "covered_day", "delivered_at", "source_file", "source_sha256"]
    assert df.columns[6:] == [*ed.BASE, "Due Date", "Renewals"]  # the union, in first appearance
    schema = df.schema
    assert schema["report"] == pl.String and schema["source_file"] == pl.String
    assert schema["run_day"] == pl.Date and schema["covered_day"] == pl.Date
    assert schema["delivered_at"] == pl.Datetime("us", "UTC")
    assert schema["Primary Identifier"] == pl.String  # identifiers stay text ...
    assert schema["Item Barcode"] == pl.String
    assert schema["Loan Date"] == pl.Datetime("us")  # date cells become dates (with their time)
    assert schema["Due Date"] == pl.Date  # ... at midnight: dates
    assert schema["Loans (Not In House)"] == pl.Int64  # integer counts stay integers
    assert schema["Renewals"] == pl.String  # numbers and "n/a": no cell lost
    ids = set(df["Primary Identifier"].to_list())
    assert ed.ALWAYS_ID in ids and str(ed.NUMERIC_ID) in ids  # ... with their leading zeros
    assert all(len(i) == 9 for i in ids if i != str(ed.NUMERIC_ID))
    renewals = df.filter(pl.col("source_file") == shared.delivery(D(2026, 3, 14)).name)["Renewals"].to_list()
    assert renewals[:3] == ["0", "n/a", "2"]

    # Every row says where it came from; the sha256 is the file's.
    per_file = df.group_by("source_file", "source_sha256", "run_day", "covered_day").len()
    assert per_file.height == 9
    for name, sha, run_day, covered, n in per_file.iter_rows():
        assert sha == hashlib.sha256(shared.paths[name].read_bytes()).hexdigest()
        assert covered == ed.covered(run_day)
    by_file = dict(zip(per_file["source_file"], per_file["len"]))
    assert by_file[rerun.name] == len(rerun.rows)
    assert by_file[changed] == len(shared.delivery(D(2026, 3, 4)).changed.rows)
    assert first.name not in by_file and original not in by_file  # never the same loans twice
    delivered = df.filter(pl.col("source_file") == rerun.name)["delivered_at"][0]
    assert delivered == rerun.at.astimezone(UTC)
    # Drift: a day without a column has nulls there.
    assert df.filter(pl.col("run_day") == D(2026, 3, 1))["Due Date"].null_count() == 7 - 1
    # The reordered day's values sit under their own names.
    reordered = df.filter(pl.col("run_day") == D(2026, 3, 10))
    assert reordered["Title"].str.starts_with("Synthetic Title").all()
    assert reordered["Item Barcode"].str.starts_with("0").all()

    # The file: mode 0600, nothing left beside it.
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loans.parquet"]


def test_csv_has_the_same_table(shared, now, tmp_path, capsys):
    code, doc = export(shared, capsys, "--out", str(tmp_path / "loans.csv"), "--since", "2026-02-26",
                       "--until", "2026-03-03")
    assert code == 0  # every covered day in the range is included
    assert doc["days"]["included"] == [day_of(D(2026, 3, d)) for d in range(1, 7)]
    text = (tmp_path / "loans.csv").read_text(encoding="utf-8")
    header = text.splitlines()[0]
    assert header.startswith("report,run_day,covered_day,delivered_at,source_file,source_sha256,Primary Identifier")
    df = pl.read_csv(tmp_path / "loans.csv", infer_schema=False)
    assert df.height == doc["rows"]
    assert ed.ALWAYS_ID in set(df["Primary Identifier"].to_list())  # leading zeros in the text too
    assert stat.S_IMODE(os.stat(tmp_path / "loans.csv").st_mode) == 0o600


def test_human_summary(shared, now, tmp_path, capsys):
    code = main(["export", "--config", str(shared.config), "--out", str(tmp_path / "x.parquet")])
    out = capsys.readouterr()
    assert code == 2
    assert out.err == ""
    lines = out.out.splitlines()
    assert lines[0].startswith("CRITICAL: exported ")
    assert "9 included, 1 empty on an open day, 1 closed, 2 missing, 1 excluded" in lines[1]
    assert any("never downloaded" in line for line in lines)
    assert any("Column drift" in line and "'Due Date'" in line for line in lines)
    assert "Not pseudonymized: 'Primary Identifier' holds raw identifiers (use --pseudonymize before sharing)" in lines


# ------------------------------------------------------------------------ pseudonyms


def _raw_bytes_found(data: bytes, identifiers: set[str]) -> list[str]:
    return sorted(i for i in identifiers if i.encode() in data)


def test_pseudonyms_replace_identifiers_in_every_byte(shared, now, tmp_path, capsys):
    ids = ed.identifiers_in(shared)
    assert ed.ALWAYS_ID in ids and len(ids) > 50
    code, doc = export(shared, capsys, "--out", str(tmp_path / "p.parquet"), "--pseudonymize")
    assert code == 2
    assert doc["pseudonymized_columns"] == ["Primary Identifier"]
    key_path = Path(os.environ["XDG_DATA_HOME"]) / "report-keeper" / "pseudonym-default.key"
    assert doc["key_file"] == str(key_path) and doc["key_created"] is True
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600
    secret = bytes.fromhex(key_path.read_text().strip())
    assert len(secret) == 32

    data = (tmp_path / "p.parquet").read_bytes()
    assert _raw_bytes_found(data, ids) == []  # not in the pages, the dictionary, the statistics
    df = pl.read_parquet(tmp_path / "p.parquet")
    expected = hmac.new(secret, ed.ALWAYS_ID.encode(), hashlib.sha256).hexdigest()[:16]
    always = df.filter(pl.col("Primary Identifier") == expected)
    assert always.height == doc["files"]  # the same patron, the same pseudonym, every day
    assert df["Primary Identifier"].str.len_chars().unique().to_list() == [16]
    numeric = hmac.new(secret, str(ed.NUMERIC_ID).encode(), hashlib.sha256).hexdigest()[:16]
    assert numeric in set(df["Primary Identifier"].to_list())

    # CSV too; and again later: the same pseudonyms (the key is reused, not recreated).
    code, doc2 = export(shared, capsys, "--out", str(tmp_path / "p.csv"), "--pseudonymize")
    assert doc2["key_created"] is False and doc2["key_id"] == doc["key_id"]
    text = (tmp_path / "p.csv").read_bytes()
    assert _raw_bytes_found(text, ids) == []
    again = pl.read_csv(tmp_path / "p.csv", infer_schema=False)
    assert again["Primary Identifier"].to_list() == df["Primary Identifier"].to_list()

    # Another key: other pseudonyms. A key file must be private.
    other = tmp_path / "other.key"
    other.write_text(os.urandom(32).hex() + "\n")
    other.chmod(0o644)
    code = main(["export", "--config", str(shared.config), "--out", str(tmp_path / "o.parquet"),
                 "--pseudonymize", "--key-file", str(other)])
    err = capsys.readouterr().err
    assert code == 3 and "chmod 600" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o.parquet").exists()
    other.chmod(0o600)
    code, doc3 = export(shared, capsys, "--out", str(tmp_path / "o.parquet"), "--pseudonymize",
                        "--key-file", str(other))
    assert doc3["key_id"] != doc["key_id"] and doc3["key_file"] == str(other)
    theirs = pl.read_parquet(tmp_path / "o.parquet")["Primary Identifier"]
    assert not set(theirs.to_list()) & set(df["Primary Identifier"].to_list())
    assert _raw_bytes_found((tmp_path / "o.parquet").read_bytes(), ids) == []

    # Without --pseudonymize the raw identifiers are there (the scan above can find them).
    code, _ = export(shared, capsys, "--out", str(tmp_path / "raw.csv"))
    assert ed.ALWAYS_ID in _raw_bytes_found((tmp_path / "raw.csv").read_bytes(), ids)


def test_identifier_columns_from_the_config(tmp_path, now, capsys):
    env = ed.build(tmp_path / "env", extra_config='identifier_columns = ["item  BARCODE"]', until=D(2026, 3, 2))
    code, doc = export(env, capsys, "--out", str(tmp_path / "x.parquet"), "--pseudonymize")
    assert doc["pseudonymized_columns"] == ["Item Barcode"]
    df = pl.read_parquet(tmp_path / "x.parquet")
    assert ed.ALWAYS_ID in df["Primary Identifier"].to_list()  # the config names the columns
    assert df["Item Barcode"].str.len_chars().unique().to_list() == [16]


# ------------------------------------------------------------------------ the cache


class CountingPool(isolation.WorkerPool):
    """A real worker pool that counts the jobs it runs."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[str] = []

    def call(self, op, args, **kw):
        self.jobs.append(op)
        return super().call(op, args, **kw)


def test_exporting_again_reads_only_the_new_day(tmp_path, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)
    env = ed.build(tmp_path / "env", until=D(2026, 3, 13))
    pool = CountingPool()
    ledger = env.ledger()
    try:
        first = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "a.parquet"), pool=pool)
        assert pool.jobs.count("table") == first.read == first.files == 8
        cache = cache_dir(env.ledger_path)
        entries = sorted(p.name for p in cache.iterdir())
        assert len(entries) == 8 and all(stat.S_IMODE(os.stat(cache / e).st_mode) == 0o600 for e in entries)
        assert stat.S_IMODE(os.stat(cache).st_mode) == 0o700

        # The next night's sync brings 03-14; the export reads that one workbook only.
        env.sync(ledger, D(2026, 3, 14))
        pool.jobs.clear()
        second = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "b.parquet"), pool=pool)
        assert pool.jobs.count("table") == 1 and second.read == 1
        assert second.files == 9 and second.cached == 8
        new = env.delivery(D(2026, 3, 14)).name
        df = pl.read_parquet(tmp_path / "b.parquet")
        assert df.filter(pl.col("source_file") == new).height == len(env.delivery(D(2026, 3, 14)).rows)
        assert df.height == pl.read_parquet(tmp_path / "a.parquet").height + len(env.delivery(D(2026, 3, 14)).rows)

        # Safe to delete: everything is read again, the same table comes out.
        import shutil

        shutil.rmtree(cache)
        pool.jobs.clear()
        third = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "c.parquet"), pool=pool)
        assert pool.jobs.count("table") == 9 == third.read
        assert pl.read_parquet(tmp_path / "c.parquet").equals(df)

        # Each export is in the ledger, with the sha256 of every source it read.
        exports = ledger.exports()
        assert [e["files"] for e in exports] == [8, 9, 9]
        roles = {s["name"]: s["role"] for s in exports[-1]["sources"]}
        assert roles[new] == "rows"
        assert roles[env.delivery(D(2026, 3, 3), 0).name] == "superseded"
        assert roles[env.delivery(D(2026, 3, 8)).name] == "empty"  # the closed day's file
        # Excluded (unreadable): recorded as seen and left out, never as exported.
        assert roles[env.delivery(D(2026, 3, 9)).name] == "excluded"
        assert ledger.exported_sha256s() == {s["sha256"] for s in exports[-1]["sources"]
                                             if s["role"] in ("rows", "empty")}
        assert {s["sha256"] for s in exports[-1]["sources"] if s["role"] == "rows"} == {
            env.shas[n] for n, r in roles.items() if r == "rows"}
        assert exports[-1]["out"] == str(tmp_path / "c.parquet") and exports[-1]["pseudonymized"] is False

        # A file no longer held loses its cache entry at the next export.
        (env.local / new).unlink()
        run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "d.parquet"), pool=pool)
        assert not any(p.name.startswith(env.shas[new]) for p in cache.iterdir())
    finally:
        ledger.close()
        pool.close()


# ------------------------------------------------------------------------ hostile and odd files


def test_a_workbook_that_kills_its_reader_is_excluded_and_the_rest_exported(tmp_path, monkeypatch):
    """Even a file the ledger says verified ok (an older release's verdict) cannot take the
    export down: its table is read in a worker that dies on it; that file alone is excluded."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)
    env = ed.build(tmp_path / "env", until=D(2026, 3, 7))
    target = env.paths[env.delivery(D(2026, 3, 5)).name]
    hostile = hw.w_far_corner(tmp_path)  # A1 and XFD1048576: a grid of 17 G cells
    data = hostile.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    target.write_bytes(data)
    ledger = env.ledger()
    try:
        from tui.core.model import VerifyResult

        name = env.delivery(D(2026, 3, 5)).name
        ledger.record_download(name, size=len(data), sha256=sha, local_path=str(target),
                               when=ed.NOW)
        ledger.record_verification(VerifyResult(str(target), name, ed.REPORT, None, "ok", 3, 1),
                                   sha256=sha)
        result = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet"))
    finally:
        ledger.close()
    assert result.exit_code == 2
    excluded = result.excluded()
    assert [(e["day"], e["file"], e["status"]) for e in excluded] == [(day_of(D(2026, 3, 5)), name, "unreadable")]
    assert "memory" in excluded[0]["message"]
    assert result.files == 7 - 1 + 0  # 03-01..03-07 minus the hostile day (03-03 counts once)
    assert pl.read_parquet(tmp_path / "x.parquet").height == result.rows > 0


def test_a_local_copy_changed_since_download_is_not_exported(tmp_path, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    path = env.paths[env.delivery(D(2026, 3, 2)).name]
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01  # the first zip entry's time stamp: same size, still a sound workbook
    path.write_bytes(bytes(data))
    ledger = env.ledger()
    try:
        result = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet"))
    finally:
        ledger.close()
    assert [(e["file"], e["status"]) for e in result.excluded()] == [(path.name, "modified")]
    assert result.files == 1 and result.exit_code == 2



@pytest.mark.parametrize("at, reason", [
    (datetime(2026, 3, 20, 7, 5, 11, tzinfo=ed.TZ), "dated-ahead"),  # five days after now
    (datetime(1999, 12, 31, 7, 5, 11, tzinfo=ed.TZ), "unknown-date"),  # before any delivery
])
def test_a_held_file_in_no_run_is_named_not_silently_left_out(at, reason, tmp_path, monkeypatch, capsys):
    """A file whose name dates it in no run (``clock.possible_delivery``: more than a day ahead,
    or before 2000) has no run day and no covered day, so the export has no row to put it
    under; it is held and verified, and was left out of the table and of everything the
    export said. It is named, with what it is dated and why it is in no run, and labelled with
    no invented day."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    odd = ed.Delivery(D(2026, 3, 14), at, rows=[], columns=list(ed.BASE))
    odd.rows = ed._rows(D(2026, 3, 14), 6, seed=77, columns=odd.columns)
    path = ed.write_workbook(env.local / odd.name, odd)
    path.chmod(0o600)
    data = path.read_bytes()
    arrived = datetime(2026, 3, 14, 7, 5, 11, tzinfo=ed.TZ).astimezone(UTC)
    profile = env.profile()
    ledger = env.ledger()
    try:
        parsed = parse_name(odd.name, mtime=arrived, tz=ed.TZ)
        assert (parsed.base, parsed.delivered_at) == (ed.REPORT, at)
        ledger.record_listing(None, lambda f: (ed.REPORT, at), [RemoteFile(odd.name, len(data), arrived)],
                              when=arrived + timedelta(hours=1))
        sha = hashlib.sha256(data).hexdigest()
        ledger.record_download(odd.name, size=len(data), sha256=sha, local_path=str(path), mtime=arrived,
                               when=arrived + timedelta(hours=1))
        report = profile.report_for(ed.REPORT)
        result = validate_file(path, report, at)
        ledger.record_verification(result, sha256=sha, context=verification_context(report, at))
        done = run_export(profile, ledger, ExportRequest(out=tmp_path / "x.parquet"))
    finally:
        ledger.close()
    assert all(c.name != odd.name for d in done.days for c in (*d.copies, *d.purged))
    assert odd.name not in {n for d in done.days for n in d.not_held}
    doc = done.to_json()
    assert doc["in_no_run"] == [{"file": odd.name, "report": ed.REPORT, "dated": at.astimezone(UTC).isoformat(),
                                 "reason": reason}]
    said = [line for line in done.summary_lines() if odd.name in line]
    assert len(said) == 1 and "no run" in said[0] and "not exported" in said[0], done.summary_lines()
    assert "1 held file in no run" in done.toast() and "not exported" in done.toast()


# ------------------------------------------------------------------------ exit codes and usage


@pytest.mark.parametrize("args, says", [
    (["--out", "x.xlsx"], "FILE.parquet"),
    (["--out", "x"], "FILE.parquet"),
    (["--out", "x.parquet", "--since", "2026-13-01"], "--since '2026-13-01' is not a day"),
    (["--out", "x.parquet", "--until", "yesterday"], "--until 'yesterday' is not a day"),
    (["--out", "x.parquet", "--since", "2026-03-05", "--until", "2026-03-01"], "is after --until"),
    (["--out", "x.parquet", "--report", "Nope"], "no report named 'Nope'"),
    (["--out", "x.parquet", "--key-file", "k"], "--key-file is only used with --pseudonymize"),
    (["--out", "x.parquet", "--pseudonymize", "--key-file", "missing.key"], "missing.key"),
    (["--out", "no-such-folder/x.parquet"], "does not exist"),
])
def test_usage_errors_exit_3_with_one_line_and_write_nothing(shared, now, tmp_path, monkeypatch, capsys, args, says):
    monkeypatch.chdir(tmp_path)
    code = main(["export", "--config", str(shared.config), *args])
    out = capsys.readouterr()
    assert code == 3
    assert out.out == ""
    assert len(out.err.strip().splitlines()) == 1 and says in out.err
    assert list(tmp_path.iterdir()) == []


def test_an_existing_file_is_replaced_only_with_force(shared, now, tmp_path, capsys):
    out = tmp_path / "x.csv"
    out.write_text("keep me")
    code = main(["export", "--config", str(shared.config), "--out", str(out)])
    assert code == 3 and "--force" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    code, doc = export(shared, capsys, "--out", str(out), "--force", "--until", "2026-03-03")
    assert code == 0 and out.read_text().startswith("report,run_day")
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600


def test_exit_codes_follow_the_coverage(shared, now, tmp_path, capsys):
    # 0: included days and a closed one only
    code, doc = export(shared, capsys, "--out", str(tmp_path / "a.parquet"), "--since", "2026-03-04",
                       "--until", "2026-03-05")
    assert code == 0 and doc["days"]["closed"] == ["2026-03-05"] and doc["status"] == "ok"
    # 1: a missing day and an empty open day (gaps), nothing excluded
    code, doc = export(shared, capsys, "--out", str(tmp_path / "b.parquet"), "--since", "2026-03-07")
    assert code == 1 and doc["status"] == "warning"
    assert doc["days"]["missing"] == ["2026-03-08", "2026-03-10"] and doc["days"]["empty"] == ["2026-03-09"]
    # 2: the unreadable day is in the range
    code, doc = export(shared, capsys, "--out", str(tmp_path / "c.parquet"), "--since", "2026-03-06",
                       "--until", "2026-03-06")
    assert code == 2 and doc["rows"] == 0 and doc["files"] == 0
    assert pl.read_parquet(tmp_path / "c.parquet").columns == list(
        ("report", "run_day", "covered_day", "delivered_at", "source_file", "source_sha256"))
    # Before the ledger's first delivery the schedule's days are missing too.
    code, doc = export(shared, capsys, "--out", str(tmp_path / "d.parquet"), "--since", "2026-02-20",
                       "--until", "2026-02-27")
    assert code == 1
    assert doc["days"]["missing"] == [f"2026-02-{d:02d}" for d in range(20, 26)]
    assert doc["days"]["included"] == ["2026-02-26", "2026-02-27"]


def test_an_empty_ledger_is_a_usage_error(tmp_path, now, capsys):
    (tmp_path / "config.toml").write_text(
        '[profile.default]\nhost = "127.0.0.1"\nlocal_dir = "local"\nledger = "l.sqlite3"\n')
    code = main(["export", "--config", str(tmp_path / "config.toml"), "--out", str(tmp_path / "x.parquet")])
    assert code == 3 and "run 'report-keeper sync' first" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_export_never_uses_the_network(shared, now, tmp_path, capsys):
    """The profile points at port 9 of 127.0.0.1 (nothing listens): an export that tried to
    connect would fail or hang; it only reads the ledger and the local files."""
    code, doc = export(shared, capsys, "--out", str(tmp_path / "x.parquet"), "--until", "2026-02-28")
    assert code == 0 and doc["rows"] > 0


def test_the_core_raises_export_errors_not_tracebacks(shared, now, tmp_path):
    ledger = shared.ledger()
    try:
        (tmp_path / "x.parquet").write_bytes(b"")
        with pytest.raises(ExportError, match="already exists"):
            run_export(shared.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet"))
        (tmp_path / "dir.csv").mkdir()
        with pytest.raises(ExportError, match="is a folder"):
            run_export(shared.profile(), ledger, ExportRequest(out=tmp_path / "dir.csv", force=True))
        # The cache exists once any export ran; made here so the test stands alone (run
        # first, or on its own, it found no cache folder and another refusal).
        TableCache(cache_dir(shared.ledger_path)).open()
        with pytest.raises(ExportError, match="lies in the export cache"):
            run_export(shared.profile(), ledger,
                       ExportRequest(out=cache_dir(shared.ledger_path) / "x.parquet"))
    finally:
        ledger.close()


def test_the_pseudonym_key_is_never_replaced_by_an_export(shared, now, tmp_path, capsys):
    """A key named like an export (``study.csv``), or the profile's own key, given as ``--out``
    with ``--force``: replacing it would lose the key every earlier export's pseudonyms were
    made with (the study could no longer join new exports to old ones). Refused, kept as it was."""
    key = tmp_path / "study.csv"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    before = key.read_bytes()
    code = main(["export", "--config", str(shared.config), "--out", str(key), "--force",
                 "--pseudonymize", "--key-file", str(key)])
    err = capsys.readouterr().err
    assert code == 3 and "is the pseudonym key" in err, err
    assert key.read_bytes() == before
    # The profile's own key is kept whether or not this export pseudonymizes.
    code, _ = export(shared, capsys, "--out", str(tmp_path / "first.parquet"), "--pseudonymize",
                     "--until", "2026-03-03")
    own = Path(os.environ["XDG_DATA_HOME"]) / "report-keeper" / "pseudonym-default.key"
    kept = own.read_bytes()
    renamed = tmp_path / "own.parquet"
    renamed.symlink_to(own)  # the key reached through another name
    for out, extra in ((renamed, ["--pseudonymize"]), (renamed, [])):
        code = main(["export", "--config", str(shared.config), "--out", str(out), "--force", *extra])
        err = capsys.readouterr().err
        assert code == 3 and "is the pseudonym key" in err, err
        assert own.read_bytes() == kept


def _renamed_profile(env, name: str, extra: str = "") -> None:
    """The env's profile (and its ledger's rows) under another name; ``extra``: more config."""
    import sqlite3

    quoted = '"' + name + '"'
    text = env.config.read_text().replace("[profile.default]", f"[profile.{quoted}]")
    env.config.write_text(text.replace("[[profile.default.report]]", f"[[profile.{quoted}.report]]") + extra)
    with sqlite3.connect(env.ledger_path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            if "profile" in [c[1] for c in db.execute(f"PRAGMA table_info({table})")]:
                db.execute(f"UPDATE {table} SET profile = ?", (name,))


def test_a_key_an_earlier_release_kept_under_a_shared_file_name(tmp_path, now, capsys):
    """Profile ``Main Library``: earlier releases kept its key in ``pseudonym-Main_Library.key``,
    the file a profile named ``Main_Library`` has too. Its ledger shows exports made with that
    key and no other profile of the config has the name: the export moves the key to the
    profile's own file, says so, and the pseudonyms stay what they were. With ``Main_Library``
    in the config too, nothing is guessed: exit 3, both profiles and the file named."""
    from tui.core.ledger import Ledger
    from tui.core.pseudonym import PseudonymKey, default_key_path

    env = ed.build(tmp_path / "env", until=D(2026, 3, 4))
    _renamed_profile(env, "Main Library")
    data = Path(os.environ["XDG_DATA_HOME"]) / "report-keeper"
    data.mkdir(parents=True, exist_ok=True)
    old = data / "pseudonym-Main_Library.key"
    secret = os.urandom(32)
    old.write_text(secret.hex() + "\n")
    old.chmod(0o600)
    with Ledger.open(env.ledger_path, profile="Main Library") as ledger:  # an earlier export
        ledger.record_export(out=str(tmp_path / "before.parquet"), format="parquet", reports=[ed.REPORT],
                             since=None, until=None, pseudonymized_columns=["Primary Identifier"],
                             key_id=PseudonymKey(old, secret).key_id, rows=1, files=1, status="ok", sources=[])

    shared_config = env.config.read_text() + '\n[profile.Main_Library]\nhost = "127.0.0.1"\n'
    alone_config = env.config.read_text()
    env.config.write_text(shared_config)
    code = main(["export", "--config", str(env.config), "--profile", "Main Library",
                 "--out", str(tmp_path / "p.parquet"), "--pseudonymize"])
    err = capsys.readouterr().err
    assert code == 3 and "'Main Library' and 'Main_Library'" in err and str(old) in err, err
    assert old.exists() and not default_key_path("Main Library").exists()
    assert not (tmp_path / "p.parquet").exists()
    through = tmp_path / "old.parquet"
    through.symlink_to(old)  # never written over, not even with --force
    code = main(["export", "--config", str(env.config), "--profile", "Main Library", "--out", str(through),
                 "--force"])
    assert code == 3 and "is the pseudonym key" in capsys.readouterr().err
    assert old.read_text() == secret.hex() + "\n"

    env.config.write_text(alone_config)
    code = main(["export", "--config", str(env.config), "--profile", "Main Library",
                 "--out", str(tmp_path / "p.parquet"), "--pseudonymize"])
    out = " ".join(capsys.readouterr().out.split())
    own = data / "pseudonym-Main%20Library.key"
    assert f"pseudonym key was moved from {old} to {own}" in out, out
    assert not old.exists() and own.read_text() == secret.hex() + "\n"
    expected = hmac.new(secret, ed.ALWAYS_ID.encode(), hashlib.sha256).hexdigest()[:16]
    assert expected in pl.read_parquet(tmp_path / "p.parquet")["Primary Identifier"].to_list()
    code, doc = export(env, capsys, "--profile", "Main Library", "--out", str(tmp_path / "q.parquet"),
                       "--pseudonymize")
    assert doc["key_file"] == str(own) and doc["key_moved_from"] is None and doc["key_created"] is False
    own.rename(old)  # put back as the earlier release had it: the JSON says the move too
    code, doc = export(env, capsys, "--profile", "Main Library", "--out", str(tmp_path / "r.parquet"),
                       "--pseudonymize")
    assert doc["key_file"] == str(own) and doc["key_moved_from"] == str(old) and not old.exists()


# ------------------------------------------------------------------------ more odd cases


def test_csv_cells_a_spreadsheet_would_run_are_shown_as_text(tmp_path, monkeypatch):
    """A patron-typed title such as '=HYPERLINK(...)' must not become a live formula when the
    csv is opened in a spreadsheet; parquet keeps the cell exactly."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    from tests import xlsx_factory as xf

    rows = xf.loan_rows(4, day=ed.covered(D(2026, 3, 2)))
    hostile = ['=HYPERLINK("http://127.0.0.1/x","open")', "+1+1", "@SUM(1)", "-2+3"]
    for row, title in zip(rows, hostile):
        row[4] = title
    ledger = env.ledger()
    try:
        ed.replace_copy(env, ledger, D(2026, 3, 2), rows)
        run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.csv"))
        run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet"))
    finally:
        ledger.close()
    csv = pl.read_csv(tmp_path / "x.csv", infer_schema=False)
    titles = csv.filter(pl.col("run_day") == "2026-03-02")["Title"].to_list()
    assert titles == ["'" + t for t in hostile]
    assert csv.filter(pl.col("run_day") == "2026-03-01")["Title"].str.starts_with("Synthetic").all()
    exact = pl.read_parquet(tmp_path / "x.parquet").filter(pl.col("run_day") == D(2026, 3, 2))["Title"]
    assert exact.to_list() == hostile


def test_rows_of_another_day_are_excluded_as_wrong_day(tmp_path, monkeypatch):
    """The content checks' rule, judged against each run's covered day: 03-02 holds the loans
    of 03-01's covered day (the very same file), 03-01 itself stays included."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)
    env = ed.build(tmp_path / "env", until=D(2026, 3, 3))
    ledger = env.ledger()
    try:
        ed.replace_copy(env, ledger, D(2026, 3, 2), data=env.paths[env.delivery(D(2026, 3, 1)).name].read_bytes())
        result = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet"))
    finally:
        ledger.close()
    excluded = result.excluded()
    assert [(e["day"], e["status"]) for e in excluded] == [(day_of(D(2026, 3, 2)), "wrong-day")]
    assert "another day" in excluded[0]["message"]
    assert {d.run_day for d in result.of("included")} == {D(2026, 3, 1), D(2026, 3, 3)}


def test_the_same_rows_twice_are_exported_once_and_a_never_verified_copy_is_verified(tmp_path, monkeypatch):
    import sqlite3

    from tests import xlsx_factory as xf

    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)
    # No date column judged: only the rows themselves can tell that 03-02 repeats 03-01.
    env = ed.build(tmp_path / "env", extra_config='date_column = ""', until=D(2026, 3, 3))
    ledger = env.ledger()
    try:
        # 03-02 holds 03-01's rows, written by the other writer: other bytes, the same rows
        repeat = env.delivery(D(2026, 3, 1))
        path = env.paths[env.delivery(D(2026, 3, 2)).name]
        xf.write_report(path, repeat.rows, columns=ed.BASE, title=ed.REPORT,
                        engine=xf.ENGINES[1 - xf.ENGINES.index(repeat.engine)])
        assert path.read_bytes() != env.paths[repeat.name].read_bytes()
        ed.replace_copy(env, ledger, D(2026, 3, 2), data=path.read_bytes())
        # 03-03's verification was never recorded (the sync was killed before it could)
        first = env.delivery(D(2026, 3, 3))
        with sqlite3.connect(env.ledger_path) as conn:
            conn.execute("DELETE FROM verifications WHERE sha256 = ?", (env.shas[first.name],))
        result = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet"))
        verified = ledger.verifications_of([env.shas[first.name]])[env.shas[first.name]]
        assert (verified.status, verified.rows) == ("ok", len(first.rows))
    finally:
        ledger.close()
    assert [(e["day"], e["status"]) for e in result.excluded()] == [(day_of(D(2026, 3, 2)), "stale")]
    assert "exported for covered day " + day_of(D(2026, 3, 1)) in result.excluded()[0]["message"]
    assert {d.run_day for d in result.of("included")} == {D(2026, 3, 1), D(2026, 3, 3)}
    df = pl.read_parquet(tmp_path / "x.parquet")
    assert df.filter(pl.col("run_day") == D(2026, 3, 3)).height == len(env.delivery(D(2026, 3, 3), 1).rows)
    assert df.height == len(repeat.rows) + len(env.delivery(D(2026, 3, 3), 1).rows)


def test_a_cancelled_export_writes_nothing(shared, now, tmp_path):
    from tui.core.export import Cancelled

    ledger = shared.ledger()
    try:
        with pytest.raises(Cancelled):
            run_export(shared.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet"), cancelled=lambda: True)
        before = len(ledger.exports())
        with pytest.raises(Cancelled):
            run_export(shared.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet"), cancelled=lambda: True)
        assert len(ledger.exports()) == before  # nothing recorded either
    finally:
        ledger.close()
    assert list(tmp_path.iterdir()) == []


def test_no_workbook_is_parsed_in_the_export_process_and_workers_stay_without_polars(shared, tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    probe = (
        "import sys; from tui.cli import main; "
        f"code = main(['export', '--config', {str(shared.config)!r}, '--out', {str(tmp_path / 'x.parquet')!r}]); "
        "sys.stderr.write(str(code) + ' ' + (' '.join(m for m in ('fastexcel', 'nanoarrow', 'textual') "
        "if m in sys.modules) or 'clean'))"
    )
    env = dict(os.environ, REPORT_KEEPER_NOW=ed.NOW_ISO)
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=root, env=env)
    assert proc.stderr.strip().endswith("2 clean"), proc.stderr
    # What a worker imports for the table job (its reader, nanoarrow, the validator): no polars,
    # whose allocator would take most of a worker's address space.
    check = ("import sys, tui.core.isolation, tui.core.validate, tui.core.export_read; "
             "tui.core.validate.warm_up(); import nanoarrow.ipc; print('polars' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=root)
    assert proc.stdout.strip() == "False", proc.stderr


def test_what_the_content_checks_found_is_honoured(tmp_path, monkeypatch, capsys):
    """On the content checks' history: the stale repeat and the drifted day are excluded (their
    rows are not the loans of the days they cover), the low Tuesday is exported but flagged,
    the closed week's few rows are exported as they are."""
    from tests import content_scenario as cs
    from tui.core.ledger import Ledger

    monkeypatch.setenv("REPORT_KEEPER_NOW", cs.NOW_ISO)
    (tmp_path / "config.toml").write_text(cs.config_toml())
    content = cs.write_files(tmp_path / "archive")
    led = Ledger.open(tmp_path / "ledger.sqlite3")
    try:
        cs.seed_ledger(led, content, tmp_path / "local")
    finally:
        led.close()
    code = main(["export", "--config", str(tmp_path / "config.toml"), "--out", str(tmp_path / "x.parquet"),
                 "--json", "--since", "2026-11-20"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2
    covered = lambda run_day: (run_day - timedelta(days=cs.LAG)).isoformat()  # noqa: E731
    excluded = {(e["day"], e["file"], e["status"]) for e in doc["days"]["excluded"]}
    assert excluded == {
        (covered(cs.STALE_DAY), cs.planned(cs.STALE_DAY).name, "wrong-day"),
        (covered(cs.WRONG_DAY), cs.planned(cs.WRONG_DAY).name, "wrong-day"),
    }
    assert doc["few_rows"] == [{"day": covered(cs.FEW_DAY), "file": cs.planned(cs.FEW_DAY).name,
                                "report": cs.REPORT}]
    assert covered(cs.FEW_DAY) in doc["days"]["included"]
    closed_week = [(cs.CLOSED[0] + timedelta(days=i)).isoformat() for i in range(5)]
    assert set(closed_week) <= set(doc["days"]["included"])  # a closed day with rows: its rows count
    df = pl.read_parquet(tmp_path / "x.parquet")
    assert set(df["source_file"].unique()) & {cs.planned(cs.STALE_DAY).name, cs.planned(cs.WRONG_DAY).name} == set()
    assert df.filter(pl.col("covered_day") == cs.FEW_DAY - timedelta(days=cs.LAG)).height == cs.planned(cs.FEW_DAY).rows


def test_an_export_the_ledger_refuses_to_record_still_prints_its_document(now, tmp_path, capsys):
    """The file is written but the ledger cannot record the export (here a ledger whose
    exports table refuses every insert): cron still gets one JSON document, critical, with
    what was written and why it is not recorded, and the file stays."""
    import sqlite3

    env = ed.build(tmp_path / "env", until=D(2026, 3, 3))
    with sqlite3.connect(env.ledger_path) as conn:
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON exports "
                     "BEGIN SELECT RAISE(ABORT, 'the disk refused the write'); END")
    out = tmp_path / "loans.parquet"
    code = main(["export", "--config", str(env.config), "--json", "--out", str(out)])
    streams = capsys.readouterr()
    assert code == 2
    doc = json.loads(streams.out)
    assert doc["status"] == "critical" and doc["error_kind"] == "ledger"
    assert "was written, but the ledger could not record it" in doc["error"]
    assert "the disk refused the write" in doc["error"]
    assert doc["out"] == str(out) and doc["rows"] > 0 and out.is_file()
    assert len(streams.err.strip().splitlines()) == 1 and "could not record" in streams.err


def test_the_coverage_line_says_days_are_counted_per_report_when_there_are_several(tmp_path, monkeypatch):
    """Two reports over ten days: '11 included, 1 closed' counts a day of each report once, so
    it must say so; read as days it claimed more days than the range holds."""
    from tests.test_tui_heatmap import NOW, build_demo

    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    s = build_demo(tmp_path / "demo")
    try:
        result = run_export(s.profile, s.ledger, ExportRequest(
            out=tmp_path / "x.parquet", reports=(), since=date(2026, 11, 1), until=date(2026, 11, 10),
            pseudonymize=True))
    finally:
        s.ledger.close()
    assert len({d.report for d in result.days}) == 2
    assert result.coverage_line() == (
        "Covered days 2026-11-01 .. 2026-11-10 of 2 reports, counted per report: 11 included, 1 closed")


def test_a_line_break_in_an_excluded_file_or_its_message_cannot_forge_a_line(tmp_path, monkeypatch, capsys):
    """The human output lists each excluded file with why; a line break in the local file's
    name (Linux allows one) or in the message stays inside its line, escaped."""
    from tui.core.export_cache import ReadFailure

    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    d = env.delivery(D(2026, 3, 2))
    path = env.paths[d.name]
    odd = path.with_name(f"{path.stem}\n  excluded 2026-01-01: forged.xlsx\r")
    data = path.read_bytes()
    path.unlink()
    odd.write_bytes(data[:10] + bytes([data[10] ^ 1]) + data[11:])  # changed since download
    ledger = env.ledger()
    try:
        ledger.record_download(d.name, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                               local_path=str(odd), when=ed.NOW)
    finally:
        ledger.close()
    code = main(["export", "--config", str(env.config), "--out", str(tmp_path / "x.parquet")])
    out = capsys.readouterr().out
    assert code == 2, out
    lines = out.splitlines()
    assert "\r" not in out
    assert not any("forged" in line and not line.startswith("  excluded ") for line in lines), out
    [line] = [line for line in lines if "forged" in line]
    assert "\\u000a  excluded 2026-01-01: forged.xlsx\\u000d (modified): " in line
    # The message is one value too (a reader's or the operating system's words).
    ledger = env.ledger()
    try:
        result = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "y.parquet"))
    finally:
        ledger.close()
    [day] = [day for day in result.days if day.failures]
    [key] = day.failures
    day.failures[key] = ReadFailure("unreadable", "unreadable\n  excluded 2026-01-01: forged\r")
    lines = result.summary_lines()
    assert [line for line in lines if "forged" in line] == [
        f"  excluded {day.covered_day.isoformat()}: {result.excluded()[0]['file']} (unreadable): "
        "unreadable\\u000a  excluded 2026-01-01: forged\\u000d"]


def test_the_exports_plan_takes_each_tables_schema_from_the_cache_not_from_its_file_again(
        shared, now, tmp_path, capsys, monkeypatch):
    """The cache read each entry's footer for its schema; the plan scanned the entries without
    it, so settling the plan's columns (the csv's formula guard asks for them) opened and
    parsed a footer again before the write read them all. The plan is given the schemas the
    cache found: its columns are known with the entries out of reach."""
    from tui.core import export as ex

    schemas: list[object] = []
    real = ex._plan_frame

    def plan_frame(included, *a, **kw):
        plan = real(included, *a, **kw)
        entries = [d.table.path for d in included]
        hidden = [p.with_name(p.name + ".hidden") for p in entries]
        for p, h in zip(entries, hidden, strict=True):
            p.rename(h)
        try:
            schemas.append(plan.collect_schema())
        finally:
            for p, h in zip(entries, hidden, strict=True):
                h.rename(p)
        return plan

    monkeypatch.setattr(ex, "_plan_frame", plan_frame)
    out = tmp_path / "loans.csv"
    _code, doc = export(shared, capsys, "--out", str(out))
    assert len(schemas) == 1 and "Primary Identifier" in schemas[0]
    assert doc["rows"] > 0 and out.exists()
