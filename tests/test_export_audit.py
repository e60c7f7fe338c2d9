"""``export --pseudonymize`` against header rows that name an identifier column twice, and the
pseudonym key against what the output may be. Real workbooks (xlsxwriter), a real ledger
(``tests/export_data.py``)."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from tests import export_data as ed
from tui.cli import main

D = date
UNTIL = ed.covered(D(2026, 3, 2))


@pytest.fixture
def now(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", ed.NOW_ISO)


@pytest.mark.parametrize("configured", ['identifier_columns = ["Primary Identifier"]', ""])
def test_an_identifier_column_repeated_in_a_header_is_pseudonymized_both_times(tmp_path, now, capsys, configured):
    """A workbook whose analysis holds the identifier column twice reads as 'Primary
    Identifier' and 'Primary Identifier (2)'. The configured identifier columns matched only
    the first: the second copy of every patron's identifier reached the file raw."""
    env = ed.build(tmp_path / "env", extra_config=configured, until=D(2026, 3, 2))
    d = env.delivery(D(2026, 3, 2))
    ledger = env.ledger()
    try:
        ed.replace_copy(env, ledger, D(2026, 3, 2), [[*r, r[0]] for r in d.rows],
                        columns=[*ed.BASE, "Primary Identifier"])
    finally:
        ledger.close()
    out = tmp_path / "x.csv"
    assert main(["export", "--config", str(env.config), "--until", UNTIL.isoformat(), "--pseudonymize",
                 "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["pseudonymized_columns"]) == {"Primary Identifier", "Primary Identifier (2)"}
    assert doc["identifier_columns_absent"] == []  # the day before has the column, once
    text = out.read_text()
    assert ed.ALWAYS_ID not in text and not any(str(r[0]) in text for r in d.rows)
    df = pl.read_csv(out, infer_schema=False).filter(pl.col("run_day") == D(2026, 3, 2).isoformat())
    assert df["Primary Identifier"].to_list() == df["Primary Identifier (2)"].to_list()  # one pseudonym each


def test_force_replaces_a_link_or_a_second_name_never_the_file_behind_it(tmp_path, now, capsys):
    """``--out`` naming a link to a downloaded report, or a second name (hard link) of the
    ledger: with ``--force`` only that name is replaced, never the bytes behind it; the report
    stays what was downloaded and the ledger opens with every record. Through a link, the
    ledger itself is refused (it is the file the name leads to)."""
    import hashlib

    from tui.core.ledger import Ledger

    env = ed.build(tmp_path / "env", until=D(2026, 3, 2))
    report = env.paths[env.delivery(D(2026, 3, 1)).name]
    before = hashlib.sha256(report.read_bytes()).hexdigest()
    link = tmp_path / "link.csv"
    link.symlink_to(report)
    second = tmp_path / "ledger-second-name.parquet"
    second.hardlink_to(env.ledger_path)
    args = ["export", "--config", str(env.config), "--until", UNTIL.isoformat(), "--force", "--out"]
    for out in (link, second):
        assert main([*args, str(out)]) == 0, capsys.readouterr().err
        capsys.readouterr()
        assert out.is_file() and not out.is_symlink() and out.stat().st_mode & 0o777 == 0o600
    assert hashlib.sha256(report.read_bytes()).hexdigest() == before and not report.is_symlink()
    assert pl.read_parquet(second)["run_day"].to_list()  # an export now, the ledger untouched
    with Ledger.open(env.ledger_path, profile="default") as ledger:
        assert len(ledger.exports()) == 2
    through = tmp_path / "ledger-link.csv"
    through.symlink_to(env.ledger_path)
    assert main([*args, str(through)]) == 3
    assert "is the ledger" in capsys.readouterr().err and through.is_symlink()
