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
