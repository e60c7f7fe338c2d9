from __future__ import annotations

import os
from datetime import date, time, timedelta
from pathlib import Path

import pytest

from tui.core.config import ConfigError, load_config
from tui.core.schedule import parse_duration

GOOD = """
[defaults]
grace = "90m"

[profile.default]
host = "127.0.0.1"
port = 2222
username = "abcftp"
key = "keys/id_ed25519"
known_hosts = "known_hosts"
remote_dir = "upload/ALMA/Daily_Report"
local_dir = "reports"
timezone = "America/Chicago"

[[profile.default.report]]
name = "Loans Per Patron From 3 Days Ago"
schedule = "daily"
at = "07:00"
grace = "2h"
expected_columns = ["Patron ID", "Loans"]
closed_days = ["2026-12-24..2027-01-01", "2027-04-03"]

[profile.other]
host = "files.example.org"
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_full_profile(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    prof = cfg.profile()
    assert prof.name == "default" and prof.port == 2222
    assert prof.key == tmp_path / "keys" / "id_ed25519"
    assert prof.local_dir == tmp_path / "reports"
    assert str(prof.timezone) == "America/Chicago"
    report = prof.report_for("Loans Per Patron From 3 Days Ago")
    assert report.configured and report.at == time(7, 0) and report.grace == timedelta(hours=2)
    assert report.is_closed(date(2026, 12, 31)) and report.is_closed(date(2027, 4, 3))
    assert not report.is_closed(date(2027, 1, 2))
    assert report.covered_day(date(2026, 6, 5)) == date(2026, 6, 2)


def test_auto_discovery_uses_defaults(tmp_path):
    prof = load_config(write(tmp_path, GOOD)).profile("other")
    report = prof.report_for("Some other report")
    assert not report.configured
    assert report.name == "Some other report"
    assert report.grace == timedelta(minutes=90)  # top-level [defaults]
    assert report.schedule is None  # inferred from history


def test_classify_uses_pattern_then_names(tmp_path):
    text = GOOD + '\n[[profile.other.report]]\nname = "Dotted"\npattern = "^(?P<name>Dotted)\\\\.(?P<ts>\\\\d{8}_\\\\d{4})"\n'
    prof = load_config(write(tmp_path, text)).profile("other")
    report, parsed = prof.classify("Dotted.20260602_0700.xlsx")
    assert report.name == "Dotted" and parsed.source == "pattern"
    report, parsed = prof.classify("Other_20260602_0700.xlsx")
    assert report.name == "Other" and not report.configured


@pytest.mark.parametrize(
    "text, key, reason",
    [
        ('[profile.default]\nhost = "h"\nport = "22"\n', "profile.default.port", "whole number"),
        ('[profile.default]\nhost = "h"\nport = 70000\n', "profile.default.port", "out of range"),
        ('[profile.default]\nhost = "h"\nhots = "x"\n', "profile.default.hots", "unknown key"),
        ('[profile.default]\nhost = "h"\ntimezone = "Mars/Base"\n', "profile.default.timezone", "unknown time zone"),
        ('[profile.default]\nhost = "h"\n[[profile.default.report]]\nname = "R"\ngrace = "soon"\n',
         "profile.default.report[0].grace", "not a duration"),
        ('[profile.default]\nhost = "h"\n[[profile.default.report]]\nname = "R"\nat = "25:00"\n',
         "profile.default.report[0].at", "not a time of day"),
        ('[profile.default]\nhost = "h"\n[[profile.default.report]]\nname = "R"\nclosed_days = ["2026-13-01"]\n',
         "profile.default.report[0].closed_days", "not a day"),
        ('[profile.default]\nhost = "h"\n[[profile.default.report]]\nname = "R"\npattern = "(?P<name>x)"\n',
         "profile.default.report[0].pattern", "named groups"),
        ('[profile.default]\nhost = "h"\n[[profile.default.report]]\nschedule = "daily"\n',
         "profile.default.report[0].name", "needs a name"),
        ('[profile.default]\nhost = "h"\n[[profile.default.report]]\nname = "R"\nschedule = "fortnightly"\n',
         "profile.default.report[0].schedule", "fortnightly"),
        ('[profile.default]\nport = 22\n', "profile.default.host", "missing"),
        ('[profile.default]\nhost = "h"\n[[profile.default.report]]\nname = "R"\n[[profile.default.report]]\nname = "r"\n',
         "profile.default.report[1].name", "configured twice"),
    ],
)
def test_bad_values_name_file_key_and_reason(tmp_path, text, key, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:  # when the profile is picked: it stops only itself
        load_config(path).profile()
    assert err.value.key == key
    assert reason in err.value.reason
    assert str(path) in str(err.value) and key in str(err.value)


def test_broken_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[profile.default\nhost="))
    with pytest.raises(ConfigError, match="does not exist") as missing:
        load_config(tmp_path / "nope.toml")
    # a path given by hand: a typo is likelier than a wish for a new config, so both are said
    assert "check the path" in str(missing.value) and "report-keeper init --config" in str(missing.value)
    with pytest.raises(ConfigError, match="report-keeper --demo"):
        load_config(None)  # default location inside the test's empty XDG dirs


def test_unknown_profile_lists_known_ones(tmp_path):
    with pytest.raises(ConfigError, match="profiles: default, other"):
        load_config(write(tmp_path, GOOD)).profile("nope")


def test_durations():
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("1d") == timedelta(days=1)
    with pytest.raises(ValueError):
        parse_duration("")


def test_the_readme_config_example_loads(tmp_path):
    import re

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    example = re.search(r"```toml\n(.*?)```", readme, re.S)[1]
    prof = load_config(write(tmp_path, example)).profile()
    report = prof.report_for("Loans Per Patron From 3 Days Ago")
    assert report.configured and report.schedule == "daily" and report.is_closed(date(2026, 12, 25))
    assert prof.remote_dir == "upload/ALMA/Daily_Report"


def test_request_timeout_reaches_the_connect_options(tmp_path):
    from tui.sftp.client import ConnectOptions

    default = load_config(write(tmp_path, GOOD)).profile()
    assert ConnectOptions.from_profile(default).request_timeout == 120.0
    text = GOOD.replace('timezone = "America/Chicago"\n', 'timezone = "America/Chicago"\nrequest_timeout = 600\n', 1)
    prof = load_config(write(tmp_path, text)).profile()
    assert prof.request_timeout == 600.0
    assert ConnectOptions.from_profile(prof).request_timeout == 600.0
    edge = load_config(write(tmp_path, text.replace("request_timeout = 600", "request_timeout = 10"))).profile()
    assert ConnectOptions.from_profile(edge).request_timeout == 10.0


@pytest.mark.parametrize("value, reason", [
    ("9.5", "9.5 is not between 10 and 3600 seconds"),
    ("0", "0 is not between 10 and 3600 seconds"),
    ("-120", "-120 is not between 10 and 3600 seconds"),
    ("3601", "3601 is not between 10 and 3600 seconds"),
    ("inf", "is not between 10 and 3600 seconds"),
    ("nan", "nan is not a number"),
    ('"120"', "expected a whole number or a number, got str '120'"),
    ("true", "expected a whole number or a number, got a boolean"),
])
def test_a_bad_request_timeout_is_a_config_error_naming_the_key(tmp_path, value, reason):
    text = GOOD.replace('timezone = "America/Chicago"\n', f'timezone = "America/Chicago"\nrequest_timeout = {value}\n', 1)
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text)).profile()
    assert "request_timeout" in str(err.value) and reason in str(err.value)


def _closed_ranges(seed: int) -> tuple:
    """Closed days as a librarian may list them: single days, ranges that overlap, touch,
    nest or repeat, and ranges at the ends of the calendar."""
    import random

    from tui.core.config import DayRange

    rng = random.Random(seed)
    base = date(2026, 1, 1)
    out = [DayRange(date.min, date(1, 1, 3)), DayRange(date(9999, 12, 30), date.max)]
    for _ in range(rng.randrange(1, 60)):
        first = base + timedelta(days=rng.randrange(-400, 400))
        out.append(DayRange(first, first + timedelta(days=rng.choice((0, 0, 1, 2, 6, 30)))))
    out += out[: rng.randrange(3)]  # repeated entries
    rng.shuffle(out)
    return tuple(out)


@pytest.mark.parametrize("seed", range(20))
def test_closed_days_that_overlap_touch_or_repeat_are_each_day_as_configured(seed):
    from tui.core.config import ReportConfig

    ranges = _closed_ranges(seed)
    report = ReportConfig(name="R", closed_days=ranges)
    days = [date.min, date(1, 1, 3), date(1, 1, 4), date(9999, 12, 29), date(9999, 12, 30), date.max]
    days += [date(2026, 1, 1) + timedelta(days=k) for k in range(-420, 440)]
    for day in days:
        assert report.is_closed(day) == any(r.first <= day <= r.last for r in ranges), day
    assert not ReportConfig(name="R").is_closed(date(2026, 1, 1))


def test_a_closed_day_is_found_without_walking_the_list_of_closed_days(monkeypatch):
    """A health evaluation asks for every run of years of history: with a long list of
    holidays, each day looked at every range (a check over 70 years of runs, ~27,000 days,
    times the list). The ranges are merged once; a day is then one binary search."""
    from tui.core.config import DayRange, ReportConfig

    holidays = tuple(DayRange(date(1990, 1, 1) + timedelta(days=3 * k), date(1990, 1, 1) + timedelta(days=3 * k))
                     for k in range(5000))
    report = ReportConfig(name="R", closed_days=(*holidays, DayRange(date(1, 1, 1), date(1980, 1, 1))))
    looked = []
    original = DayRange.__contains__
    monkeypatch.setattr(DayRange, "__contains__", lambda self, day: looked.append(self) or original(self, day))
    assert report.is_closed(date(1980, 1, 1)) and not report.is_closed(date(1980, 1, 2))
    days = [date(1989, 12, 1) + timedelta(days=k) for k in range(2000)]
    closed = [report.is_closed(day) for day in days]
    assert closed == [day >= date(1990, 1, 1) and (day - date(1990, 1, 1)).days % 3 == 0 for day in days]
    assert not looked  # no range was looked at one by one


def test_a_config_of_many_profiles_resolves_each_path_once(tmp_path, monkeypatch):
    """Each profile is checked against report-keeper's own folders: those (and a known_hosts
    the profiles share) are resolved once per file read, not once per profile."""
    from tui.core import config

    calls: list[object] = []
    real = config._resolved

    def counting(path):
        calls.append(path)
        return real(path)

    monkeypatch.setattr(config, "_resolved", counting)
    text = "".join(f"[profile.p{i}]\nhost = 'files.example.org'\nlocal_dir = 'reports/{i}'\n"
                   f"known_hosts = 'keys/known_hosts'\n" for i in range(50))
    cfg = load_config(write(tmp_path, text))
    assert len(cfg.profiles) == 50
    # per profile its local_dir and its ledger; once: the six own folders and the known_hosts
    assert len(calls) <= 50 * 2 + 6 + 1, len(calls)


def test_a_local_dir_in_a_folder_of_ssh_files_names_the_file_it_holds(tmp_path, monkeypatch):
    """The SSH folder that holds the profile's known_hosts is named as that folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    text = "[profile.a]\nhost = 'files.example.org'\nlocal_dir = '~/.ssh'\n"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text)).profile()
    assert err.value.key == "profile.a.local_dir"
    assert "is the folder of known_hosts" in err.value.reason


def test_a_config_of_many_profiles_asks_the_machine_for_its_defaults_once(tmp_path, monkeypatch):
    """A config of ~17,500 small profiles took ~30 s of CPU to load: each profile looked up the
    data folder (twice), the machine's time zone and the SSH folder again, and resolved its
    folder and ledger one path part at a time. What is the same for every profile is found
    once per read; each profile's own paths cost a few looks at the disk, whatever the number
    of profiles."""
    import platformdirs

    from tui.core import config

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    counts = {"disk": 0, "data": 0, "zone": 0}

    def counting(what, real):
        def call(*a, **kw):
            counts[what] += 1
            return real(*a, **kw)
        return call

    def load(n: int) -> dict[str, int]:
        text = "".join(f"[profile.p{i}]\nhost = 'h{i}.example.org'\nusername = 'u'\n" for i in range(n))
        path = write(tmp_path, text)
        counts.update(disk=0, data=0, zone=0)
        with monkeypatch.context() as m:
            m.setattr(os, "lstat", counting("disk", os.lstat))
            m.setattr(os, "stat", counting("disk", os.stat))
            m.setattr(platformdirs, "user_data_dir", counting("data", platformdirs.user_data_dir))
            m.setattr(config, "system_timezone", counting("zone", config.system_timezone))
            cfg = load_config(path)
        assert len(cfg.profiles) == n and not cfg.broken
        return dict(counts)

    few, many = load(20), load(60)
    assert many["data"] == few["data"] <= 2, (few, many)
    assert many["zone"] == few["zone"] <= 1, (few, many)
    assert many["disk"] - few["disk"] <= 4 * 40, (few, many)
