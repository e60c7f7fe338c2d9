from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tui.core.names import escape_name, parse_name, refusal_reason, stem_of

CHI = ZoneInfo("America/Chicago")
BASE = "Loans Per Patron From 3 Days Ago"


@pytest.mark.parametrize(
    "filename, expected",
    [
        (f"{BASE}_20260602_070512.xlsx", datetime(2026, 6, 2, 7, 5, 12)),
        (f"{BASE}_20260602070512.xlsx", datetime(2026, 6, 2, 7, 5, 12)),
        (f"{BASE}-2026-06-02_07-05-12.xlsx", datetime(2026, 6, 2, 7, 5, 12)),
        (f"{BASE} 2026-06-02T07:05:12.xlsx", datetime(2026, 6, 2, 7, 5, 12)),
        (f"{BASE}_20260602_0705.xlsx", datetime(2026, 6, 2, 7, 5)),
        (f"{BASE}_202606020705.xlsx", datetime(2026, 6, 2, 7, 5)),
        (f"{BASE}_2026-06-02_07-05.xlsx", datetime(2026, 6, 2, 7, 5)),
        (f"{BASE} 2026-06-02T07:05.xlsx", datetime(2026, 6, 2, 7, 5)),
    ],
)
def test_recognised_trailing_timestamps(filename, expected):
    parsed = parse_name(filename, tz=CHI)
    assert parsed.base == BASE
    assert parsed.source == "name"
    assert parsed.delivered_at == expected.replace(tzinfo=CHI)


def test_names_with_dots_unicode_and_spaces():
    parsed = parse_name("Prêts v2.1 final – été_20261201_070000.xlsx", tz=CHI)
    assert parsed.base == "Prêts v2.1 final – été"
    assert parsed.delivered_at.hour == 7
    assert stem_of("a.b.c.xlsx") == "a.b.c"
    assert stem_of("noext") == "noext"


def test_no_timestamp_falls_back_to_mtime():
    mtime = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    parsed = parse_name("Weekly summary.xlsx", mtime=mtime, tz=CHI)
    assert (parsed.base, parsed.delivered_at, parsed.source) == ("Weekly summary", mtime, "mtime")
    assert parse_name("Weekly summary.xlsx").source == "none"


def test_impossible_dates_are_not_delivery_times_but_still_not_the_report_name():
    """30 February dates nothing: the mtime does (here none). The stamp still ends the name: as
    part of the report's name it made each such file a report of its own
    (tests/test_time_edges.py)."""
    parsed = parse_name("Report_20260230_070000.xlsx", tz=CHI)
    assert parsed.source == "none"
    assert parsed.base == "Report"


def test_a_name_that_is_only_a_timestamp_keeps_it_as_base():
    parsed = parse_name("20260602_070000.xlsx", tz=CHI)
    assert parsed.base == "20260602_070000"


def test_pattern_override():
    pattern = re.compile(r"^(?P<name>.+?)\.(?P<ts>\d{8}_\d{4})\.xlsx$")
    parsed = parse_name("Loans.20260602_0700.xlsx", tz=CHI, pattern=pattern)
    assert parsed.base == "Loans"
    assert parsed.source == "pattern"
    assert parsed.delivered_at == datetime(2026, 6, 2, 7, 0, tzinfo=CHI)


@pytest.mark.parametrize(
    "name",
    [".", "..", "", "a/b.xlsx", "..\\evil.xlsx", "nul\x00.xlsx", "bell\x07.xlsx", "line\nbreak.xlsx",
     "esc\x1b[31m.xlsx", "spoof\u202eslx.exe", "arabic\u061cmark.xlsx", "x" * 300 + ".xlsx",
     "bad\udcff.xlsx"],
)
def test_hostile_names_are_refused(name):
    assert refusal_reason(name)


@pytest.mark.parametrize("name", ["Report_20260602_070000.xlsx", "[bold red]markup[link=x].xlsx", "été.xlsx", "a b c.xlsx"])
def test_ordinary_names_are_accepted(name):
    assert refusal_reason(name) is None


def test_escape_name_shows_controls():
    assert escape_name("a\x1b[31mb") == "a\\u001b[31mb"
    assert escape_name("spoof\u202e") == "spoof\\u202e"
    assert escape_name("l\u00e9gal\u200d\n") == "l\u00e9gal\\u200d\\u000a"  # letters kept


@pytest.mark.parametrize("char", [chr(c) for c in range(128)])
def test_every_ascii_character_is_judged_as_the_full_check_judges_it(char):
    """Plain ASCII names take a quick path: it must refuse and accept exactly what the
    character-by-character check does, wherever the character stands."""
    from tui.core import names

    for name in (char, f"a{char}b.xlsx", f"{char}x.xlsx", f"x.xlsx{char}", char * 2):
        assert refusal_reason(name) == names._full_refusal_reason(name), repr(name)


@pytest.mark.parametrize("name", ["x" * 255, "x" * 256, ".Report-Keeper-probe.txt", ".report-keeperx",
                                  ".report-keepe", "...", "a.", " "])
def test_the_quick_path_keeps_the_length_limit_and_the_reserved_prefix(name):
    from tui.core import names

    assert refusal_reason(name) == names._full_refusal_reason(name)
