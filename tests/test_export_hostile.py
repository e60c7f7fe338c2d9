"""``export`` against hostile inputs: copies changed on disk after their table was cached,
columns without a header name under ``--pseudonymize``, a column named like the table's own
leading columns, header cells a spreadsheet would run, a full disk. Real workbooks and a real
ledger (``tests/export_data.py``); the full disk is a real tmpfs when this user may mount one."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from tests import export_data as ed
from tests import xlsx_factory as xf
from tui.cli import main
from tui.core.export import ExportRequest, run_export
from tui.core.export_cache import ReadFailure

D = date
UNTIL = ed.covered(D(2026, 3, 2))  # the last covered day the two-day ledgers below hold


def day_before(day: date) -> str:
    return date.fromordinal(day.toordinal() - 1).isoformat()


@pytest.fixture
def now(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)


# ------------------------------------------------------------------ copies changed on disk


def test_a_copy_changed_after_its_table_was_cached_is_still_excluded_as_modified(tmp_path, now):
    """The first export caches each file's table under the sha256 the ledger recorded. A copy
    edited afterwards (same size, so it still counts as held) must be excluded as modified
    in the next export too, as it is when nothing is cached: the table must never be exported
    under a file that no longer holds it."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    name = env.delivery(D(2026, 3, 2)).name
    path = env.paths[name]
    ledger = env.ledger()
    try:
        first = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "a.parquet", until=UNTIL))
        assert first.files == 2 and first.exit_code == 0

        data = bytearray(path.read_bytes())
        data[10] ^= 0x01  # the first zip entry's time stamp: same size, still a sound workbook
        path.write_bytes(bytes(data))
        edited = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "b.parquet", until=UNTIL))

        # Replaced by a link to another workbook of the same size: not the downloaded bytes.
        elsewhere = tmp_path / "elsewhere.xlsx"
        elsewhere.write_bytes(bytes(data))
        path.unlink()
        path.symlink_to(elsewhere)
        linked = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "c.parquet", until=UNTIL))
    finally:
        ledger.close()
    for result, out in ((edited, "b.parquet"), (linked, "c.parquet")):
        assert [(e["file"], e["status"]) for e in result.excluded()] == [(name, "modified")]
        assert "no longer what was downloaded" in result.excluded()[0]["message"]
        assert result.files == 1 and result.exit_code == 2
        df = pl.read_parquet(tmp_path / out)
        assert name not in set(df["source_file"].to_list())
        assert df.height == result.rows == len(env.delivery(D(2026, 3, 1)).rows)


# ------------------------------------------------------------------ columns and pseudonyms


@pytest.mark.parametrize("header", ["", "000999999"], ids=["blank", "value-like"])
def test_pseudonymize_also_covers_a_column_without_a_header_name(tmp_path, now, capsys, header):
    """A day whose identifier column has no usable header name (a blank cell, or one that reads
    like a value) gets that column named by position, 'column 1'. Nothing tells what it holds,
    so under --pseudonymize it is pseudonymized too: the raw identifiers never reach the file."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    rows = env.delivery(D(2026, 3, 2)).rows
    ledger = env.ledger()
    try:
        ed.replace_copy(env, ledger, D(2026, 3, 2), rows, columns=[header, *ed.BASE[1:]])
    finally:
        ledger.close()
    ids = {str(r[0]) for d in env.deliveries for r in d.rows}
    out = tmp_path / "p.parquet"
    code = main(["export", "--config", str(env.config), "--json", "--out", str(out), "--pseudonymize",
                 "--until", UNTIL.isoformat()])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc
    assert doc["pseudonymized_columns"] == ["Primary Identifier", "column 1"]
    data = out.read_bytes()
    assert sorted(i for i in ids if i.encode() in data) == []
    df = pl.read_parquet(out)
    day = df.filter(pl.col("run_day") == D(2026, 3, 2))
    assert day.height == len(rows) and day["column 1"].str.len_chars().unique().to_list() == [16]
    # The same patron, the same pseudonym, whichever column the day put them in.
    before = df.filter(pl.col("run_day") == D(2026, 3, 1))["Primary Identifier"][0]
    assert day["column 1"][0] == before

    # The summary says why the column was pseudonymized.
    code = main(["export", "--config", str(env.config), "--out", str(tmp_path / "q.csv"), "--pseudonymize",
                 "--until", UNTIL.isoformat()])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("Pseudonymized: 'Primary Identifier', 'column 1'") for line in lines), lines
    assert any("no header name" in line and "'column 1'" in line for line in lines), lines
    csv = (tmp_path / "q.csv").read_bytes()
    assert sorted(i for i in ids if i.encode() in csv) == []

    # Without --pseudonymize the column keeps its values, as the workbook holds them.
    raw = tmp_path / "raw.parquet"
    assert main(["export", "--config", str(env.config), "--out", str(raw), "--until", UNTIL.isoformat()]) == 0
    capsys.readouterr()
    kept = pl.read_parquet(raw).filter(pl.col("run_day") == D(2026, 3, 2))["column 1"].to_list()
    assert kept == [str(r[0]) for r in rows]


def test_a_column_named_like_a_leading_column_never_hides_another(tmp_path, now):
    """A workbook column named 'report' is renamed 'report (from the file)'; when the same
    workbook also has a column of that very name, neither may be lost."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    rows = [[*r, "value of report", "value of the other"] for r in env.delivery(D(2026, 3, 2)).rows]
    ledger = env.ledger()
    try:
        ed.replace_copy(env, ledger, D(2026, 3, 2), rows, columns=[*ed.BASE, "report", "report (from the file)"])
        result = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet"))
    finally:
        ledger.close()
    df = pl.read_parquet(tmp_path / "x.parquet").filter(pl.col("run_day") == D(2026, 3, 2))
    assert len(set(df.columns)) == len(df.columns) == len(result.columns)
    assert df["report"].unique().to_list() == [ed.REPORT]
    values = {c: set(df[c].to_list()) for c in df.columns[6 + len(ed.BASE):]}
    assert sorted(values.values(), key=str) == [{"value of report"}, {"value of the other"}]
    assert values["report (from the file)"] == {"value of the other"}  # the file's own name stays


def test_header_spellings_that_differ_only_in_case_or_spacing_are_one_column(tmp_path, now, capsys):
    """03-02's workbook spells two headers differently ('user  group', 'Loan\\xa0Date ': case,
    a doubled space, a non-breaking space, a trailing space): one column each, not two
    half-empty ones, under the spelling of the first file, and the merge is listed. 'Title'
    and 'TITLE' are two columns of 03-02 itself, so they are never merged (with each other or
    with 03-01's 'Title'), and 'LoansNotInHouse' is another name, not another spelling."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    second = env.delivery(D(2026, 3, 2))
    columns = ["Primary Identifier", "user  group", "Loan\xa0Date ", "Item Barcode", "Title", "TITLE",
               "LoansNotInHouse"]
    rows = [[*r[:5], f"shouted {i}", r[5]] for i, r in enumerate(second.rows)]
    ledger = env.ledger()
    try:
        ed.replace_copy(env, ledger, D(2026, 3, 2), rows, columns=columns)
        result = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet", until=UNTIL))
    finally:
        ledger.close()
    assert list(result.columns[6:]) == [*ed.BASE, "TITLE", "LoansNotInHouse"]
    df = pl.read_parquet(tmp_path / "x.parquet")
    assert df.columns == list(result.columns)
    assert df["User Group"].null_count() == df["Loan Date"].null_count() == 0
    day2 = df.filter(pl.col("run_day") == D(2026, 3, 2))
    assert day2["User Group"].to_list() == [r[1] for r in second.rows]
    assert day2["Loan Date"].to_list() == [r[2] for r in second.rows]
    assert day2["TITLE"].to_list() == [f"shouted {i}" for i in range(len(rows))]
    assert day2["Title"].to_list() == [r[4] for r in second.rows]
    doc = result.to_json()
    assert doc["merged_columns"] == [
        {"column": "User Group", "spellings": ["User Group", "user  group"]},
        {"column": "Loan Date", "spellings": ["Loan Date", "Loan\xa0Date "]},
    ]
    assert doc["columns_not_merged"] == [
        {"columns": ["Title", "TITLE"], "report": ed.REPORT, "day": ed.covered(D(2026, 3, 2)).isoformat(),
         "file": second.name, "files": 1}]
    assert [(c["added"], c["missing"]) for c in doc["column_drift"]] == [
        (["TITLE", "LoansNotInHouse"], ["Loans (Not In House)"])]
    text = "\n".join(result.summary_lines())
    assert "'User Group' (also 'user  group')" in text and "'Loan Date' (also 'Loan\\xa0Date ')" in text
    assert "'Title' and 'TITLE'" in text


def test_spellings_of_a_column_named_like_a_leading_column_are_merged_under_its_new_name(tmp_path, now):
    """03-01 has a column 'report', 03-02 'Report ': one column, renamed as a column named like
    the leading 'report' is, and the merge names the column the table holds."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    ledger = env.ledger()
    try:
        for run_day, name in ((D(2026, 3, 1), "report"), (D(2026, 3, 2), "Report ")):
            rows = [[*r, f"{name.strip()} {i}"] for i, r in enumerate(env.delivery(run_day).rows)]
            ed.replace_copy(env, ledger, run_day, rows, columns=[*ed.BASE, name])
        result = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet", until=UNTIL))
    finally:
        ledger.close()
    df = pl.read_parquet(tmp_path / "x.parquet")
    assert df.columns == list(result.columns) == [*result.columns[:6], *ed.BASE, "report (from the file)"]
    assert df["report"].unique().to_list() == [ed.REPORT]
    assert df["report (from the file)"].null_count() == 0
    assert result.to_json()["merged_columns"] == [{"column": "report (from the file)",
                                                   "spellings": ["report", "Report "]}]


def test_csv_header_cells_a_spreadsheet_would_run_are_shown_as_text(tmp_path, now):
    """Header cells come from the workbook like any cell: in a csv, one beginning with '='
    would be a live formula in the header line."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    hostile = '=HYPERLINK("http://127.0.0.1/x","open")'
    ledger = env.ledger()
    try:
        ed.replace_copy(env, ledger, D(2026, 3, 2), env.delivery(D(2026, 3, 2)).rows, columns=[*ed.BASE[:-1], hostile])
        run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.csv"))
        run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet"))
    finally:
        ledger.close()
    with open(tmp_path / "x.csv", newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))  # polars keeps a header's doubled quotes doubled
    assert "'" + hostile in header and hostile not in header
    assert not any(c.startswith(("=", "+", "-", "@")) for c in header)
    assert hostile in pl.read_parquet(tmp_path / "x.parquet").columns  # parquet keeps it exactly


# ------------------------------------------------------------------ the output


def _tmpfs(mnt: Path, options: str) -> None:
    """Mount a small tmpfs at ``mnt`` (skipped where this user cannot mount one: root is
    needed, and a read-only folder means nothing to root otherwise)."""
    mnt.mkdir()
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + done.stderr.decode(errors="replace").strip())


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs with less than 4 KiB free."""
    mnt = tmp_path / "full"
    _tmpfs(mnt, "size=64k,mode=0700")
    try:
        (mnt / "filler").write_bytes(b"\0" * 60 * 1024)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def read_only(tmp_path):
    """A folder on a read-only file system (no permission bit stops root)."""
    mnt = tmp_path / "ro"
    _tmpfs(mnt, "size=64k,mode=0700,ro")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_read_only_folder_is_one_line_and_writes_nothing(tmp_path, now, capsys, read_only):
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    code = main(["export", "--config", str(env.config), "--out", str(read_only / "x.parquet")])
    err = capsys.readouterr().err
    assert code == 3 and len(err.strip().splitlines()) == 1
    assert "Read-only file system" in err and str(read_only) in err
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_full_disk_is_one_line_saying_so_and_leaves_nothing(tmp_path, now, capsys, full_disk, fmt):
    env = ed.build(tmp_path / "env", until=D(2026, 3, 14))
    out = full_disk / f"loans.{fmt}"
    code = main(["export", "--config", str(env.config), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1
    assert "No space left on device" in err and "free space" in err and "bug" not in err
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]  # nothing half-written
    ledger = env.ledger()
    try:
        assert ledger.exports() == []  # and nothing recorded
    finally:
        ledger.close()


def test_a_copy_gone_or_resized_since_download_is_not_called_never_downloaded(tmp_path, now, capsys):
    """A day whose downloaded copy was deleted or truncated is missing (nothing usable is held,
    sync fetches it again), but it was downloaded: the coverage must not say it never was."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 14))
    removed = env.delivery(D(2026, 3, 1)).name
    env.paths[removed].unlink()
    truncated = env.paths[env.delivery(D(2026, 3, 2)).name]
    truncated.write_bytes(truncated.read_bytes()[:-100])
    never = env.delivery(D(2026, 3, 13)).name  # listed, never downloaded
    out = tmp_path / "x.parquet"
    code = main(["export", "--config", str(env.config), "--json", "--out", str(out)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2  # 03-09 is unreadable
    assert {(n["file"], n["reason"]) for n in doc["not_held"]} == {
        (removed, "missing-locally"), (env.delivery(D(2026, 3, 2)).name, "missing-locally"),
        (never, "not-downloaded")}
    assert {UNTIL.isoformat(), day_before(UNTIL)} <= set(doc["days"]["missing"])

    code = main(["export", "--config", str(env.config), "--out", str(tmp_path / "y.parquet"),
                 "--until", UNTIL.isoformat()])
    lines = capsys.readouterr().out.splitlines()
    assert code == 1
    assert not any("never downloaded" in line for line in lines), lines
    assert any("local copy is gone or changed size" in line and "sync" in line for line in lines), lines


# ------------------------------------------------------------------ days


def test_a_rerun_that_repeats_another_days_rows_gives_way_to_the_days_own_delivery(tmp_path, now):
    """03-03 holds its scheduled delivery (its own rows, verified ok) and a manual re-run at
    10:30 that repeats 03-02's rows (Alma sent an earlier result again; no date column is
    judged, so only the rows can tell). The re-run is newer, but its rows are not this day's
    loans: the day's own delivery is exported, not the whole day dropped."""
    env = ed.build(tmp_path / "env", extra_config='date_column = ""', until=D(2026, 3, 3))
    scheduled, rerun = env.delivery(D(2026, 3, 3), 0), env.delivery(D(2026, 3, 3), 1)
    repeat = env.delivery(D(2026, 3, 2))
    path = env.paths[rerun.name]
    xf.write_report(path, repeat.rows, columns=ed.BASE, title=ed.REPORT,
                    engine=xf.ENGINES[1 - xf.ENGINES.index(repeat.engine)])  # other bytes, same rows
    ledger = env.ledger()
    try:
        from tui.core.ledger import verification_context
        from tui.core.validate import validate_file

        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        ledger.record_download(rerun.name, size=len(data), sha256=sha, local_path=str(path), when=ed.NOW)
        report = env.profile().report_for(ed.REPORT)
        ledger.record_verification(validate_file(path, report, rerun.at), sha256=sha,
                                   context=verification_context(report, rerun.at))
        result = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "x.parquet",
                                                                 until=ed.covered(D(2026, 3, 3))))
    finally:
        ledger.close()
    assert [(d.run_day, d.category) for d in result.days] == [
        (D(2026, 3, 1), "included"), (D(2026, 3, 2), "included"), (D(2026, 3, 3), "included")]
    assert result.excluded() == [] and result.exit_code == 0
    [superseded] = result.superseded()
    assert (superseded["file"], superseded["by"], superseded["status"]) == (rerun.name, scheduled.name, "stale")
    df = pl.read_parquet(tmp_path / "x.parquet")
    day = df.filter(pl.col("run_day") == D(2026, 3, 3))
    assert set(day["source_file"]) == {scheduled.name} and day.height == len(scheduled.rows)
    assert df.height == sum(len(env.delivery(D(2026, 3, d)).rows) for d in (1, 2, 3))


def test_rows_below_min_rows_are_exported_not_called_an_empty_day(tmp_path, now, capsys):
    """min_rows is a monitoring threshold: a file with fewer rows is verified 'empty' (a
    warning to look at it), but its rows are real loans. The export must not drop them and
    call the day 'empty on an open day (no rows)'; they are included and flagged as far fewer
    rows than usual."""
    env = ed.build(tmp_path / "env", extra_config="min_rows = 8", until=D(2026, 3, 3))
    small = [env.delivery(D(2026, 3, 1)), env.delivery(D(2026, 3, 2))]
    assert [len(d.rows) for d in small] == [6, 7]
    out = tmp_path / "x.parquet"
    code = main(["export", "--config", str(env.config), "--json", "--out", str(out),
                 "--until", ed.covered(D(2026, 3, 3)).isoformat()])
    doc = json.loads(capsys.readouterr().out)
    assert doc["days"]["included"] == [ed.covered(D(2026, 3, d)).isoformat() for d in (1, 2, 3)]
    assert doc["days"]["empty"] == [] and code == 0
    assert [f["file"] for f in doc["few_rows"]] == [d.name for d in small]
    df = pl.read_parquet(out)
    assert df.height == doc["rows"] == 6 + 7 + len(env.delivery(D(2026, 3, 3), 1).rows)
    assert set(df["source_file"]) >= {d.name for d in small}


def _export_raw_and_pseudonymized(env, tmp_path, first, second) -> None:
    """The copies of 03-01 and 03-02 replaced by ``first`` and ``second`` (rows of the base
    columns), then exported to raw.parquet and, pseudonymized, to p.parquet."""
    ledger = env.ledger()
    try:
        ed.replace_copy(env, ledger, D(2026, 3, 1), first, columns=ed.BASE)
        ed.replace_copy(env, ledger, D(2026, 3, 2), second, columns=ed.BASE)
        run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "raw.parquet", until=UNTIL))
        run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "p.parquet", until=UNTIL,
                                                        pseudonymize=True))
    finally:
        ledger.close()


def test_a_numeric_identifier_is_the_same_text_and_pseudonym_whatever_else_its_column_holds(tmp_path, now):
    """A day's identifier column of numbers stays floating point when one of them is beyond
    2**53 (not every whole number is exact there); cast to text, 987654321 became
    '987654321.0', and its pseudonym another than the day it came as text: one patron, two
    pseudonyms. Whole numbers are written as their digits, as a text cell shows them."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    same = 987654321
    big = 9123456789012346  # above 2**53, exact (even)
    first = [[str(same), *r[1:]] for r in env.delivery(D(2026, 3, 1)).rows]
    second = [[v, *r[1:]] for v, r in zip([same, big, *range(1001, 1100)], env.delivery(D(2026, 3, 2)).rows)]
    _export_raw_and_pseudonymized(env, tmp_path, first, second)
    raw = pl.read_parquet(tmp_path / "raw.parquet")
    ids = raw.filter(pl.col("run_day") == D(2026, 3, 2))["Primary Identifier"].to_list()
    assert ids == [str(r[0]) for r in second]  # '987654321', '9123456789012346', '1001', ...
    pseudo = pl.read_parquet(tmp_path / "p.parquet")
    day1 = pseudo.filter(pl.col("run_day") == D(2026, 3, 1))["Primary Identifier"][0]
    day2 = pseudo.filter(pl.col("run_day") == D(2026, 3, 2))["Primary Identifier"][0]
    assert day1 == day2


def test_a_whole_number_beyond_2_63_has_its_digits_whichever_way_its_column_was_read(tmp_path, now):
    """A number cell of 10**19 (a double, exactly) in an identifier column: on 03-01 the column
    also holds text, so it was read as text and the cell reads '10000000000000000000'; on 03-02
    the column is all numbers, kept floating point, and the number was written as '1e19' (the
    conversion to whole digits stopped at 2**63): one identifier, two texts, two pseudonyms.
    A text cell of more digits than a double holds keeps every digit."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    big = 10**19  # beyond 2**63, and exactly a double: both writers write it without loss
    huge = 1e40  # a double of 41 digits, beyond what 128-bit integers hold
    long_text = "123456789012345678901234"  # a text cell: never a number, never rounded
    first = [[v, *r[1:]] for v, r in zip([big, long_text, "abc", huge], env.delivery(D(2026, 3, 1)).rows)]
    second = [[v, *r[1:]] for v, r in zip([big, huge, *range(1001, 1100)], env.delivery(D(2026, 3, 2)).rows)]
    _export_raw_and_pseudonymized(env, tmp_path, first, second)
    raw = pl.read_parquet(tmp_path / "raw.parquet")
    day1 = raw.filter(pl.col("run_day") == D(2026, 3, 1))["Primary Identifier"].to_list()
    day2 = raw.filter(pl.col("run_day") == D(2026, 3, 2))["Primary Identifier"].to_list()
    assert day1[:4] == [str(big), long_text, "abc", str(int(huge))]
    assert day2[:3] == [str(big), str(int(huge)), "1001"]
    pseudo = pl.read_parquet(tmp_path / "p.parquet")
    p1 = pseudo.filter(pl.col("run_day") == D(2026, 3, 1))["Primary Identifier"][0]
    p2 = pseudo.filter(pl.col("run_day") == D(2026, 3, 2))["Primary Identifier"][0]
    assert p1 == p2
    assert pseudo.filter(pl.col("run_day") == D(2026, 3, 1))["Primary Identifier"][3] == \
        pseudo.filter(pl.col("run_day") == D(2026, 3, 2))["Primary Identifier"][1]


def test_a_file_whose_identifier_header_was_renamed_is_named_under_pseudonymize(tmp_path, now, capsys):
    """03-02's identifier column is headed 'Primary ID', a name no rule marks as an identifier:
    its values stay raw. The export cannot know what the column holds, but it knows that the
    report's other files have 'Primary Identifier' and this one has not; under --pseudonymize
    it must say so loudly, not only as a column drift."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    d = env.delivery(D(2026, 3, 2))
    ledger = env.ledger()
    try:
        ed.replace_copy(env, ledger, D(2026, 3, 2), d.rows, columns=["Primary ID", *ed.BASE[1:]])
    finally:
        ledger.close()
    args = ["export", "--config", str(env.config), "--until", UNTIL.isoformat(), "--pseudonymize"]
    assert main([*args, "--json", "--out", str(tmp_path / "x.parquet")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["identifier_columns_absent"] == [
        {"day": UNTIL.isoformat(), "report": ed.REPORT, "file": d.name, "columns": ["Primary Identifier"]}]
    assert main([*args, "--out", str(tmp_path / "y.parquet")]) == 0
    lines = capsys.readouterr().out.splitlines()
    [line] = [line for line in lines if "NOT pseudonymized" in line]
    assert line.startswith(f"  {UNTIL.isoformat()}: {d.name} has no 'Primary Identifier' column")
    ledger = env.ledger()
    try:  # the app's notification says it too
        toast = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "t.parquet", until=UNTIL,
                                                                pseudonymize=True)).toast()
    finally:
        ledger.close()
    assert "1 file without an identifier column" in toast and "NOT pseudonymized" in toast
    # A header that differs only in case or spacing is the same column: nothing to say.
    env2 = ed.build(tmp_path / "env2", until=D(2026, 3, 2))
    ledger = env2.ledger()
    try:
        ed.replace_copy(env2, ledger, D(2026, 3, 2), d.rows, columns=["primary  identifier ", *ed.BASE[1:]])
        result = run_export(env2.profile(), ledger, ExportRequest(out=tmp_path / "z.parquet", until=UNTIL,
                                                                  pseudonymize=True))
    finally:
        ledger.close()
    assert result.identifier_gaps == [] and result.to_json()["identifier_columns_absent"] == []
    assert "NOT pseudonymized" not in result.toast()


# ------------------------------------------------------------------ what held up


def test_no_identifier_reaches_the_log_the_ledger_or_the_messages(tmp_path, now, capsys):
    """Every export of the two weeks (an unreadable file, a modified copy, a full range, a bad
    key), then the log file, the ledger and everything printed are searched for every raw
    identifier the workbooks hold."""
    from tui.core.logs import setup_logging

    log = setup_logging()  # the process's log (the first command run in this process chose it)
    assert log is not None
    start = log.stat().st_size if log.exists() else 0
    env = ed.build(tmp_path / "env")
    changed = env.paths[env.delivery(D(2026, 3, 5)).name]
    data = bytearray(changed.read_bytes())
    data[10] ^= 0x01
    changed.write_bytes(bytes(data))
    bad_key = tmp_path / "bad.key"
    bad_key.write_text("not a key")
    bad_key.chmod(0o600)
    said = []
    for args in (["--out", str(tmp_path / "a.parquet")], ["--out", str(tmp_path / "b.csv"), "--json"],
                 ["--out", str(tmp_path / "c.parquet"), "--pseudonymize"],
                 ["--out", str(tmp_path / "d.parquet"), "--pseudonymize", "--key-file", str(bad_key)]):
        main(["export", "--config", str(env.config), *args])
        streams = capsys.readouterr()
        said.append(streams.out + streams.err)
    ids = ed.identifiers_in(env)
    assert any("modified" in s for s in said) and any("not a key" in s for s in said)
    with open(log, "rb") as fh:
        fh.seek(start)
        logs = fh.read()
    assert b"export:" in logs  # the exports logged (the file names of what they excluded, ...)
    ledger = b"".join(p.read_bytes() for p in env.root.glob("ledger.sqlite3*") if p.is_file())
    for where, blob in (("log", logs), ("ledger", ledger), ("output", "".join(said).encode())):
        assert sorted(i for i in ids if i.encode() in blob) == [], where


def test_key_files_that_are_empty_or_links(tmp_path):
    from tui.core.pseudonym import PseudonymKeyError, load_key

    empty = tmp_path / "empty.key"
    empty.write_bytes(b"")
    empty.chmod(0o600)
    with pytest.raises(PseudonymKeyError, match="64 hex digits"):
        load_key(empty, "x")
    real = tmp_path / "real.key"
    real.write_text("cd" * 32 + "\n")
    real.chmod(0o600)
    link = tmp_path / "link.key"
    link.symlink_to(real)
    assert load_key(link, "x").secret == bytes([0xCD]) * 32  # what ssh accepts too
    real.chmod(0o644)  # the file behind the link decides
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        load_key(link, "x")
    dangling = tmp_path / "dangling.key"
    dangling.symlink_to(tmp_path / "nowhere.key")
    with pytest.raises(PseudonymKeyError, match="does not exist"):
        load_key(dangling, "x")
    assert not (tmp_path / "nowhere.key").exists()  # never created through the link


def test_a_purged_copy_below_min_rows_is_not_called_empty_its_rows_are_in_an_export(tmp_path, now):
    """After an export included a file with fewer rows than min_rows, the retention policy may
    delete the copy. The next export must say where its rows are (excluded as purged, with
    exported_in), not call the day empty."""
    env = ed.build(tmp_path / "env", extra_config="min_rows = 8", until=D(2026, 3, 3))
    small = env.delivery(D(2026, 3, 1))
    until = ed.covered(D(2026, 3, 3))
    ledger = env.ledger()
    try:
        first = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "a.parquet", until=until))
        assert first.of("included")[0].run_day == D(2026, 3, 1)
        path = env.paths[small.name]
        path.unlink()
        ledger.mark_purged([(small.name, str(path))])
        second = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "b.parquet", until=until))
    finally:
        ledger.close()
    [day] = [d for d in second.days if d.run_day == D(2026, 3, 1)]
    assert day.category == "excluded"
    [excluded] = second.excluded()
    assert (excluded["file"], excluded["status"], excluded["exported_in"]) == (
        small.name, "purged", str(tmp_path / "a.parquet"))
    assert second.exit_code == 1  # excluded only as purged: a warning


def test_the_private_folder_of_an_export_killed_midway_is_removed_by_the_next_one(tmp_path, now):
    """An export writes into a private folder beside its target and links the finished file to
    its name: killed midway (power cut, kill -9) nothing appears under that name, but the
    folder with the half-written table (patron data) would stay, hidden, for ever. The next
    export into that folder removes such leftovers once they are an hour old, and nothing else."""
    import time

    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    target = tmp_path / "study"
    target.mkdir()
    old = target / ".report-keeper-export-k1ll3d"
    old.mkdir(mode=0o700)
    (old / "export.parquet").write_bytes(b"PAR1 half a table")
    recent = target / ".report-keeper-export-running"  # another export, still writing
    recent.mkdir(mode=0o700)
    (recent / "export.csv").write_bytes(b"report,run_day")
    mine = target / ".report-keeper-export-notadir"  # not a folder: not ours
    mine.write_bytes(b"")
    link = target / ".report-keeper-export-link"  # a link is never followed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_bytes(b"")
    link.symlink_to(elsewhere)
    hour_ago = time.time() - 3700
    for p in (old, old / "export.parquet", mine):
        os.utime(p, (hour_ago, hour_ago))
    os.utime(link, (hour_ago, hour_ago), follow_symlinks=False)
    ledger = env.ledger()
    try:
        run_export(env.profile(), ledger, ExportRequest(out=target / "x.parquet", until=UNTIL))
    finally:
        ledger.close()
    assert sorted(p.name for p in target.iterdir()) == sorted(
        ["x.parquet", recent.name, mine.name, link.name])
    assert (elsewhere / "keep").exists()


# ------------------------------------------------------------------ honest about what it exported


def test_number_cells_of_2_53_and_more_in_an_identifier_column_are_counted_never_shown(tmp_path, now, capsys,
                                                                                    caplog):
    """An identifier held as a number cell of 2**53 or more may already be rounded (a cell is
    a double): two patrons may have become one identifier, and one pseudonym. The export must
    say how many such cells each identifier column has and in which files, never which values.
    03-01's column is all numbers (read as numbers), 03-02's mixes text and numbers (read as
    text: a text cell of many digits is exact and not counted). A big number in a column that
    is no identifier column is not counted. From the cache, the counts are the same."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    big, negative, edge = 12345678901234567, -(2**60), 2**53
    text_digits = "98765432109876543"
    first = [[v, *r[1:]] for v, r in zip([big, *range(1001, 1100)], env.delivery(D(2026, 3, 1)).rows)]
    second = [[v, *r[1:]] for v, r in zip([text_digits, negative, "abc", edge, 2**53 - 1, *range(1001, 1100)],
                                          env.delivery(D(2026, 3, 2)).rows)]
    second[1][3] = 2**60  # 'Item Barcode' is no identifier column
    ledger = env.ledger()
    try:
        ed.replace_copy(env, ledger, D(2026, 3, 1), first, columns=ed.BASE)
        ed.replace_copy(env, ledger, D(2026, 3, 2), second, columns=ed.BASE)
    finally:
        ledger.close()
    caplog.set_level("DEBUG")
    args = ["export", "--config", str(env.config), "--until", UNTIL.isoformat()]
    assert main([*args, "--json", "--out", str(tmp_path / "x.parquet")]) == 0
    doc = json.loads(capsys.readouterr().out)
    expected = [{"column": "Primary Identifier", "cells": 3, "files": [
        {"day": ed.covered(D(2026, 3, 1)).isoformat(), "report": ed.REPORT,
         "file": env.delivery(D(2026, 3, 1)).name, "cells": 1},
        {"day": UNTIL.isoformat(), "report": ed.REPORT, "file": env.delivery(D(2026, 3, 2)).name, "cells": 2},
    ]}]
    assert doc["imprecise_identifiers"] == expected
    assert doc["files_read"] == 2
    assert main([*args, "--pseudonymize", "--out", str(tmp_path / "y.csv")]) == 0
    text = capsys.readouterr().out
    [line] = [line for line in text.splitlines() if "2**53" in line]
    assert "'Primary Identifier'" in line and "3 number cells" in line and "2 files" in line, line
    assert main([*args, "--json", "--pseudonymize", "--out", str(tmp_path / "z.parquet")]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["files_from_cache"] == 2 and again["files_read"] == 0
    assert again["imprecise_identifiers"] == expected
    ledger = env.ledger()
    try:  # the app's notification says it too
        toast = run_export(env.profile(), ledger, ExportRequest(out=tmp_path / "t.parquet", until=UNTIL)).toast()
    finally:
        ledger.close()
    assert "3 identifier cells hold a number of 2**53 or more" in toast
    shown = text + toast + json.dumps(doc) + "\n".join(r.getMessage() for r in caplog.records)
    for value in (big, negative, edge, text_digits, float(big), float(negative)):
        assert str(value) not in shown


def test_the_export_names_the_pseudonym_rule_it_used(tmp_path, now, capsys):
    """A study joins exports on pseudonyms: it must be able to tell that two exports computed
    them the same way (the key's id says which key; the rule says how). The rule named is the
    one applied (the HMAC of the trimmed text, case kept, cut to 16 hex digits), the same in
    every export, documented word for word, and null when nothing was pseudonymized."""
    import hashlib
    import hmac

    from tui.core.pseudonym import PSEUDONYM_RULE, load_key

    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    args = ["export", "--config", str(env.config), "--until", UNTIL.isoformat(), "--json"]
    assert main([*args, "--out", str(tmp_path / "raw.parquet")]) == 0
    assert json.loads(capsys.readouterr().out)["pseudonym_rule"] is None
    docs = []
    for out in ("a.parquet", "b.parquet"):
        assert main([*args, "--pseudonymize", "--out", str(tmp_path / out)]) == 0
        docs.append(json.loads(capsys.readouterr().out))
    assert docs[0]["pseudonym_rule"] == docs[1]["pseudonym_rule"] == PSEUDONYM_RULE
    key = load_key(None, env.profile().name)
    assert key.key_id == docs[0]["key_id"]
    want = hmac.new(key.secret, ed.ALWAYS_ID.encode(), hashlib.sha256).hexdigest()[:16]
    assert pl.read_parquet(tmp_path / "a.parquet")["Primary Identifier"][0] == want
    root = Path(__file__).resolve().parent.parent
    for doc in ("docs/EXPORT.md", "docs/JSON.md"):
        assert f"`{PSEUDONYM_RULE}`" in (root / doc).read_text(encoding="utf-8"), doc
    assert main(["export", "--config", str(env.config), "--until", UNTIL.isoformat(), "--pseudonymize",
                 "--out", str(tmp_path / "c.parquet")]) == 0
    assert f"Pseudonym rule: {PSEUDONYM_RULE}" in capsys.readouterr().out


def test_a_file_column_that_differs_from_a_leading_column_only_in_case_is_renamed_and_listed(tmp_path, now,
                                                                                          capsys):
    """A workbook column 'Report' beside the table's own 'report' would be two columns whose
    names differ only in case: tools that fold case (SQL engines, spreadsheets' lookups)
    would take one for the other, and the export merges such spellings everywhere else. The
    file's column is kept, under a name of its own, and the renaming is listed."""
    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    d = env.delivery(D(2026, 3, 2))
    rows = [[*r, f"theirs {i}", f"when {i}"] for i, r in enumerate(d.rows)]
    ledger = env.ledger()
    try:
        ed.replace_copy(env, ledger, D(2026, 3, 2), rows, columns=[*ed.BASE, "Report", "Delivered_At "])
    finally:
        ledger.close()
    assert main(["export", "--config", str(env.config), "--until", UNTIL.isoformat(), "--json",
                 "--out", str(tmp_path / "x.parquet")]) == 0
    doc = json.loads(capsys.readouterr().out)
    df = pl.read_parquet(tmp_path / "x.parquet")
    assert df.columns == doc["columns"]
    folded = [" ".join(c.split()).casefold() for c in df.columns]
    assert len(set(folded)) == len(folded), df.columns
    assert df["report"].unique().to_list() == [ed.REPORT]
    day = df.filter(pl.col("run_day") == D(2026, 3, 2))
    assert day["Report (from the file)"].to_list() == [f"theirs {i}" for i in range(len(rows))]
    assert day["Delivered_At  (from the file)"].to_list() == [f"when {i}" for i in range(len(rows))]
    assert doc["imprecise_identifiers"] == []  # its identifiers are text cells
    assert doc["renamed_columns"] == [
        {"column": "Report (from the file)", "spellings": ["Report"], "leading_column": "report"},
        {"column": "Delivered_At  (from the file)", "spellings": ["Delivered_At "], "leading_column": "delivered_at"},
    ]
    assert main(["export", "--config", str(env.config), "--until", UNTIL.isoformat(),
                 "--out", str(tmp_path / "y.parquet")]) == 0
    text = capsys.readouterr().out
    assert "Renamed 'Report' to 'Report (from the file)'" in text, text


def test_the_reader_counts_number_cells_of_2_53_and_more_in_every_kind_of_column(tmp_path):
    """Each way a column is read: as numbers; as text for mixing numbers and text; as text
    because a typed read would lose a cell ('n/a'); as text throughout. Only number cells of
    2**53 or more count, a text cell of as many digits never. The counts are kept with the
    cached table (an entry without them is read again)."""
    from tui.core.export_cache import TableCache

    path = tmp_path / "r.xlsx"
    rows = [
        [2**53, 2**60, 2**61, "12345678901234567", 2**53 - 1],
        [1, "abc", "n/a", "98765432109876543", 5],
        [-(2**54), "11111111111111111", 3, "x", 6],
    ]
    xf.write_report(path, rows, columns=["numbers", "mixed", "lost", "text", "small"], header_row=1)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    cache = TableCache(tmp_path / "cache").open()
    built = cache.build(path, sha, 1)
    assert not isinstance(built, ReadFailure)
    assert dict(built.schema)["mixed"] == pl.String and dict(built.schema)["lost"] == pl.String
    assert dict(built.imprecise) == {"numbers": 2, "mixed": 1, "lost": 1}
    cached = cache.get(sha, 1)
    assert cached is not None and cached.imprecise == built.imprecise
    pl.read_parquet(cache.entry(sha, 1)).write_parquet(cache.entry(sha, 1))  # the counts lost
    assert cache.get(sha, 1) is None and not cache.entry(sha, 1).exists()


def test_number_cells_that_are_not_finite_are_not_counted_as_rounded_identifiers(tmp_path):
    """A workbook may hold number cells of NaN or infinity (the reader gives them for ``<v>NaN</v>``
    and ``<v>inf</v>``, which no spreadsheet writes): no identifier was rounded there, so they are
    not counted among the number cells of 2**53 or more, in a column read as numbers or as text."""
    import zipfile

    from tui.core.export_cache import TableCache

    plain = tmp_path / "plain.xlsx"
    rows = [[101, 201], [102, "abc"], [2**54, 202]]
    xf.write_report(plain, rows, columns=["numbers", "mixed"], header_row=1)
    path = tmp_path / "r.xlsx"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(path, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.startswith("xl/worksheets/"):
                for old, new in ((b"<v>101</v>", b"<v>NaN</v>"), (b"<v>102</v>", b"<v>inf</v>"),
                                 (b"<v>201</v>", b"<v>-inf</v>"), (b"<v>202</v>", b"<v>NaN</v>")):
                    assert old in data
                    data = data.replace(old, new)
            zout.writestr(info, data)
    cache = TableCache(tmp_path / "cache").open()
    built = cache.build(path, hashlib.sha256(path.read_bytes()).hexdigest(), 1)
    assert not isinstance(built, ReadFailure)
    assert dict(built.imprecise) == {"numbers": 1}  # the one finite number of 2**53 or more


def _cached_entry(tmp_path):
    from tui.core.export_cache import TableCache

    path = tmp_path / "r.xlsx"
    xf.write_report(path, [[2**53, "a"], [2, "b"], [3, "c"]], columns=["numbers", "text"], header_row=1)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    cache = TableCache(tmp_path / "cache").open()
    built = cache.build(path, sha, 1)
    assert not isinstance(built, ReadFailure)
    return cache, sha, built


def test_a_cached_table_is_read_from_its_file_once(tmp_path, monkeypatch):
    """A cache hit read the entry's footer three times (its schema, its row count, its counts
    of large numbers: each call opened the file and parsed the footer again). The footer is
    read once and all three come from it; the table is the same."""
    cache, sha, built = _cached_entry(tmp_path)
    entry = str(cache.entry(sha, 1))
    reads: list[str] = []

    def counting(name, real):
        def call(source, *a, **kw):
            if isinstance(source, (str, os.PathLike)) and os.fspath(source) == entry:
                reads.append(name)
            return real(source, *a, **kw)
        return call

    for name in ("read_parquet_schema", "read_parquet_metadata", "scan_parquet", "read_parquet"):
        monkeypatch.setattr(pl, name, counting(name, getattr(pl, name)))
    real_open = os.open
    monkeypatch.setattr(os, "open", lambda p, *a, **kw: (
        reads.append("open") if os.fspath(p) == entry else None) or real_open(p, *a, **kw))
    got = cache.get(sha, 1)
    assert got is not None
    assert (got.rows, got.schema, got.imprecise) == (built.rows, built.schema, built.imprecise)
    assert len(reads) == 1, reads


@pytest.mark.parametrize("damage", ["truncated", "no magic", "footer longer than the file", "empty",
                                    "footer garbage"])
def test_a_damaged_cache_entry_is_read_again(tmp_path, damage):
    """An entry whose end is not a parquet footer (a disk that lost its end, bytes written over
    it) is removed and the table read again, never trusted."""
    cache, sha, _built = _cached_entry(tmp_path)
    entry = cache.entry(sha, 1)
    raw = entry.read_bytes()
    n = int.from_bytes(raw[-8:-4], "little")
    damaged = {
        "truncated": raw[:-5],
        "no magic": raw[:-4] + b"PAR0",
        "footer longer than the file": raw[:-8] + (len(raw) * 2).to_bytes(4, "little") + b"PAR1",
        "empty": b"",
        "footer garbage": raw[:-(n + 8)] + b"\xff" * n + raw[-8:],
    }[damage]
    entry.write_bytes(damaged)
    assert cache.get(sha, 1) is None
    assert not entry.exists()


# ---------------------------------------------------------------- a ledger moved elsewhere


def _moved(tmp_path, capsys):
    """The two weeks exported once (the cache filled beside the ledger), then the ledger moved
    to another folder and the profile's ``ledger`` setting changed to it."""
    env = ed.build(tmp_path / "site")
    assert main(["export", "--config", str(env.config), "--out", str(tmp_path / "one.parquet")]) in (0, 1, 2)
    capsys.readouterr()
    old_cache = env.root / "ledger.sqlite3-export-cache"
    assert len(list(old_cache.glob("*.parquet"))) > 5
    moved = env.root / "moved"
    moved.mkdir()
    for side in ("", "-wal", "-shm"):
        if (env.root / f"ledger.sqlite3{side}").exists():
            (env.root / f"ledger.sqlite3{side}").rename(moved / f"ledger.sqlite3{side}")
    env.config.write_text(env.config.read_text().replace('ledger = "ledger.sqlite3"',
                                                         'ledger = "moved/ledger.sqlite3"'))
    return env, old_cache, moved


def _export_again(env, tmp_path, capsys):
    code = main(["export", "--config", str(env.config), "--out", str(tmp_path / "two.parquet")])
    capsys.readouterr()
    assert code in (0, 1, 2)


def test_the_export_cache_of_a_ledger_moved_away_goes_with_it(tmp_path, now, capsys):
    """The cache lives beside its ledger and holds the reports' raw values: once the ledger
    was moved (and the profile's ledger setting changed), the old cache stayed behind, a copy
    of patron data nobody looks after any more. The next export removes it; the new cache is
    beside the ledger where it is now."""
    env, old_cache, moved = _moved(tmp_path, capsys)
    _export_again(env, tmp_path, capsys)
    assert not old_cache.exists()
    assert len(list((moved / "ledger.sqlite3-export-cache").glob("*.parquet"))) > 5


def test_the_cache_of_a_ledger_still_there_is_kept(tmp_path, now, capsys):
    """A ledger copied rather than moved (or another profile's, still in use) keeps its cache."""
    env, old_cache, moved = _moved(tmp_path, capsys)
    shutil.copy(moved / "ledger.sqlite3", env.root / "ledger.sqlite3")
    before = sorted(p.name for p in old_cache.iterdir())
    _export_again(env, tmp_path, capsys)
    assert sorted(p.name for p in old_cache.iterdir()) == before


def test_a_moved_ledgers_old_cache_never_takes_what_is_not_its_own(tmp_path, now, capsys):
    """What lies in the old cache folder and is not an entry of ours (a file of another name,
    a folder, a link named like an entry) is kept, the folder with it; a link to the user's
    file, named like an entry, is never followed (the user's file is untouched)."""
    env, old_cache, moved = _moved(tmp_path, capsys)
    mine = tmp_path / "thesis.parquet"
    mine.write_bytes(b"the user's own file")
    (old_cache / "notes.txt").write_text("kept")
    (old_cache / "sub").mkdir()
    link = old_cache / f"{'a' * 64}-r9.9-h1.parquet"
    link.symlink_to(mine)
    _export_again(env, tmp_path, capsys)
    assert mine.read_bytes() == b"the user's own file"
    assert sorted(p.name for p in old_cache.iterdir()) == sorted(["notes.txt", "sub", link.name])
    assert link.is_symlink()


def test_a_link_in_place_of_the_moved_ledgers_old_cache_is_not_followed(tmp_path, now, capsys):
    """The old cache's name now a link to a folder of the user's holding files named like
    entries: nothing in it is deleted, and the link stays."""
    env, old_cache, moved = _moved(tmp_path, capsys)
    shutil.rmtree(old_cache)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    entry = theirs / f"{'b' * 64}-r9.9-h1.parquet"
    entry.write_bytes(b"not ours")
    old_cache.symlink_to(theirs)
    _export_again(env, tmp_path, capsys)
    assert old_cache.is_symlink() and entry.read_bytes() == b"not ours"


def test_a_ledger_renamed_in_its_folder_exports_into_a_cache_of_its_new_name(tmp_path, now, capsys):
    """``ledger.sqlite3`` renamed ``ledger.db`` (the setting changed with it): the cache folder
    is named after the whole file name, so the old one goes as a moved ledger's does and the
    export reads every workbook into the new one (nothing is excluded as unreadable)."""
    env = ed.build(tmp_path / "site")
    assert main(["export", "--config", str(env.config), "--out", str(tmp_path / "one.parquet")]) in (0, 1, 2)
    capsys.readouterr()
    cache = env.root / "ledger.sqlite3-export-cache"
    before = sorted(p.name for p in cache.glob("*.parquet"))
    for side in ("", "-wal", "-shm"):
        if (env.root / f"ledger.sqlite3{side}").exists():
            (env.root / f"ledger.sqlite3{side}").rename(env.root / f"ledger.db{side}")
    env.config.write_text(env.config.read_text().replace('ledger = "ledger.sqlite3"', 'ledger = "ledger.db"'))
    code = main(["export", "--config", str(env.config), "--json", "--out", str(tmp_path / "two.parquet")])
    out = capsys.readouterr().out
    assert code in (0, 1, 2) and "could not be read" not in out
    assert not cache.exists()
    assert sorted(p.name for p in (env.root / "ledger.db-export-cache").glob("*.parquet")) == before


def test_an_earlier_releases_cache_folder_is_used_and_renamed(tmp_path, now, capsys):
    """A cache an earlier release kept under the ledger's stem (``ledger-export-cache``): the
    export after the upgrade reads nothing again, from the folder renamed to its new name."""
    env = ed.build(tmp_path / "site")
    assert main(["export", "--config", str(env.config), "--out", str(tmp_path / "one.parquet")]) in (0, 1, 2)
    capsys.readouterr()
    cache = env.root / "ledger.sqlite3-export-cache"
    before = sorted(p.name for p in cache.glob("*.parquet"))
    cache.rename(env.root / "ledger-export-cache")
    code = main(["export", "--config", str(env.config), "--json", "--out", str(tmp_path / "two.parquet")])
    doc = json.loads(capsys.readouterr().out)
    assert code in (0, 1, 2) and doc["files_read"] == 0 and doc["files_from_cache"] == len(before)
    assert not (env.root / "ledger-export-cache").exists()
    assert sorted(p.name for p in cache.glob("*.parquet")) == before
