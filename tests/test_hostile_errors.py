"""Errors that used to escape: every one is a single stderr line with the right exit code.

The contract is the process (exit code, stdout empty or, with ``--json``, one JSON document,
one line on stderr, never a traceback). What the process' top level does (the TUI and demo
entries, an unexpected error reaching the last line of defence, a closed stdout, dropped
capabilities) is run as ``python -m tui`` in a subprocess with a fresh home (:func:`rk`). A
headless command's own handling of a bad clock or config (``main()`` prints the line and
returns the code) is run in this process with the same home and environment, its output read
at the file descriptors (:func:`rk_here`): a third of a second of CPU less each than a new
interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from tests import scenario as sc

ROOT = Path(__file__).resolve().parent.parent
SETPRIV = shutil.which("setpriv")


@dataclass
class Run:
    code: int
    out: str
    err: str
    seconds: float
    args: tuple[str, ...] = ()


def rk(*args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 60,
       as_plain_user: bool = False) -> Run:
    """``report-keeper ARGS`` in a subprocess with its own user dirs."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("REPORT_KEEPER_")}
    full.update({
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_STATE_HOME": str(home / "state"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "COLUMNS": "100",
    })
    full.update(env or {})
    command = [sys.executable, "-m", "tui", *args]
    if as_plain_user and os.geteuid() == 0:
        # root ignores file permissions; without these two capabilities it obeys them
        caps = "-dac_override,-dac_read_search"
        command = [SETPRIV, f"--bounding-set={caps}", f"--inh-caps={caps}", *command]
    started = time.monotonic()
    proc = subprocess.run(command, env=full, cwd=str(ROOT), capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    return Run(proc.returncode, proc.stdout.decode("utf-8", "replace"),
               proc.stderr.decode("utf-8", "replace"), time.monotonic() - started, args)


@pytest.fixture
def rk_here(monkeypatch, capfd):
    """``rk`` for a headless command's own handling, in this process: ``main(ARGS)`` with
    the same user dirs and environment, its exit code and what it printed."""
    from tui.cli import main

    def run(*args: str, home: Path, env: dict[str, str] | None = None) -> Run:
        assert args and args[0] in ("sync", "check", "verify"), args  # never the TUI nor a server
        with monkeypatch.context() as mp:
            for key in [k for k in os.environ if k.startswith("REPORT_KEEPER_")]:
                mp.delenv(key)
            for key, value in {
                "XDG_CONFIG_HOME": str(home / "config"),
                "XDG_DATA_HOME": str(home / "data"),
                "XDG_STATE_HOME": str(home / "state"),
                "XDG_CACHE_HOME": str(home / "cache"),
                "HOME": str(home),
                "COLUMNS": "100",
                **(env or {}),
            }.items():
                mp.setenv(key, value)
            mp.chdir(ROOT)
            capfd.readouterr()
            started = time.monotonic()
            try:
                code = main(list(args))
            except SystemExit as exc:  # what `python -m tui` would exit with
                code = exc.code if isinstance(exc.code, int) else 1
            seconds = time.monotonic() - started
            out, err = capfd.readouterr()
        return Run(code, out, err, seconds, args)

    return run


def one_line(run: Run, code: int, *fragments: str) -> str:
    """The run failed with ``code`` and exactly one stderr line; stdout holds nothing or, for
    a run that could not start (exit 3) with ``--json``, one document saying the same."""
    assert "Traceback" not in run.err, run.err
    lines = run.err.splitlines()
    assert len(lines) == 1, run.err
    assert run.code == code, (run.code, run.err)
    if code == 3 and "--json" in run.args:
        doc = json.loads(run.out)
        assert doc["status"] == "critical" and doc["error_kind"] in ("usage", "config", "ledger"), doc
        assert lines[0] == f"report-keeper: {doc['error']}"
    else:
        assert run.out == "", run.out
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def config(tmp_path) -> Path:
    """A valid config whose server does not exist (port 9 on 127.0.0.1 refuses)."""
    (tmp_path / "ssh_config").write_text("")
    path = tmp_path / "config.toml"
    path.write_text(sc.config_toml(
        port=9, known_hosts=str(tmp_path / "known_hosts"), local_dir=str(tmp_path / "local"),
        ledger=str(tmp_path / "ledger.sqlite3"), ssh_config=str(tmp_path / "ssh_config"),
    ))
    return path


@pytest.fixture
def reports(tmp_path) -> Path:
    from tests import xlsx_factory as xf

    folder = tmp_path / "reports"
    folder.mkdir()
    xf.write_report(folder / f"{sc.DAILY}_20261201_070000.xlsx")
    return folder


def _commands(config: Path, reports: Path) -> dict[str, list[str]]:
    return {
        "sync": ["sync", "--json", "--config", str(config)],
        "check": ["check", "--json", "--config", str(config)],
        "check-offline": ["check", "--offline", "--json", "--config", str(config)],
        "verify": ["verify", "--json", str(reports), "--config", str(config)],
        "app": ["--config", str(config)],
        "demo": ["--demo"],
        "demo-server": ["demo-server"],
    }


COMMANDS = ["sync", "check", "check-offline", "verify", "app", "demo", "demo-server"]
#: The commands whose handling of a bad clock or config is run in this process (``rk_here``);
#: the TUI, the demo and the demo server start as the program does.
HEADLESS = ("sync", "check", "check-offline", "verify")


# ---------------------------------------------------------------------------- REPORT_KEEPER_NOW


@pytest.mark.parametrize("command", COMMANDS)
def test_a_clock_that_is_not_a_date_time_is_a_usage_error_everywhere(command, home, config, reports, rk_here):
    runner = rk_here if command in HEADLESS else rk
    run = runner(*_commands(config, reports)[command], home=home, env={"REPORT_KEEPER_NOW": "yesterday"})
    line = one_line(run, 3, "REPORT_KEEPER_NOW", "'yesterday'", "not an ISO 8601 date-time")
    assert "unset" in line  # what to do


OUT_OF_RANGE = ["9999-12-31T23:59:59", "9999-12-31", "0001-01-01", "0001-01-01T00:00:00-05:00",
                "1969-12-31T23:59:59Z", "2100-01-01T00:00:00Z"]


@pytest.mark.parametrize("command,value", [
    *(("check-offline", v) for v in OUT_OF_RANGE),
    ("sync", "9999-12-31T23:59:59"), ("check", "0001-01-01"), ("verify", "9999-12-31"),
    ("app", "2100-01-01T00:00:00Z"), ("demo-server", "0001-01-01"),
])
def test_a_clock_outside_the_accepted_range_is_refused(command, value, home, config, reports, rk_here):
    args = _commands(config, reports)[command]
    if command in HEADLESS:
        run = rk_here(*args, home=home, env={"REPORT_KEEPER_NOW": value})
    else:
        run = rk(*args, home=home, env={"REPORT_KEEPER_NOW": value}, timeout=30)
    one_line(run, 3, "REPORT_KEEPER_NOW", value, "1970-01-01", "2099-12-31")


@pytest.mark.parametrize("value", ["2026-06-10T09:00:00+23:59", "2026-06-10T09:00:00-15:00"])
def test_a_clock_with_an_offset_no_place_uses_is_refused(value, home, config, rk_here):
    run = rk_here("check", "--offline", "--json", "--config", str(config), home=home,
             env={"REPORT_KEEPER_NOW": value})
    one_line(run, 3, "REPORT_KEEPER_NOW", "offset", "-12:00", "+14:00")


def test_a_very_long_clock_value_is_shortened_in_the_message(home, config, rk_here):
    run = rk_here("check", "--offline", "--config", str(config), home=home,
             env={"REPORT_KEEPER_NOW": "x" * 5000})
    line = one_line(run, 3, "REPORT_KEEPER_NOW")
    assert len(line) < 400


def test_the_clock_api_refuses_out_of_range_values(monkeypatch):
    from tui.core import clock

    monkeypatch.setenv("REPORT_KEEPER_NOW", "9999-12-31T23:59:59")
    with pytest.raises(clock.ClockError):
        clock.now()
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-06-10T09:00:00")  # naive: UTC
    assert clock.now() == datetime(2026, 6, 10, 9, tzinfo=UTC)
    monkeypatch.setenv("REPORT_KEEPER_NOW", "1970-01-01T00:00:00Z")
    assert clock.now().year == 1970
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2099-12-31T23:59:59+00:00")
    assert clock.now().year == 2099
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2100-01-01T00:00:00+00:00")
    with pytest.raises(clock.ClockError):
        clock.now()


@pytest.fixture(scope="module")
def scenario_files(tmp_path_factory):
    return sc.write_files(tmp_path_factory.mktemp("alma-output"))


EXTREME_REPORT = """
[[profile.default.report]]
name = "Extreme"
schedule = "every 366 days from 1970-01-01"
at = "23:59"
grace = "31d"
lag_days = 366
anonymize_days = 3660
retention_days = 36600
closed_days = ["9999-12-31", "0001-01-01..9999-12-31"]
"""


@pytest.mark.parametrize("value", ["1970-01-01T00:00:00Z", "2099-12-31T23:59:59Z",
                                   "2099-12-31T11:59:59-12:00", "1970-01-01T14:00:00+14:00"])
def test_check_offline_at_the_ends_of_the_range_with_extreme_settings(value, home, tmp_path, scenario_files, rk_here):
    """The widest clock and the largest config values never overflow the date arithmetic."""
    from tui.core.ledger import Ledger

    ledger = tmp_path / "ledger.sqlite3"
    with Ledger.open(ledger) as led:
        sc.seed_ledger(led, scenario_files, tmp_path / "local", validate=False)
    cfg = tmp_path / "config.toml"
    text = sc.config_toml(ledger=str(ledger), local_dir=str(tmp_path / "local"))
    text = text.replace('grace = "2h"', 'grace = "31d"').replace("lag_days = 3", "lag_days = 366")
    text = text.replace("anonymize_days = 7", "anonymize_days = 3660")
    text = text.replace(f"retention_days = {sc.RETENTION}", "retention_days = 36600")
    text = text.replace('closed_days = ["2026-11-26..2026-11-27"]',
                        'closed_days = ["9999-12-31", "0001-01-01..2026-11-27"]')
    cfg.write_text(text + EXTREME_REPORT)
    run = rk_here("check", "--offline", "--json", "--config", str(cfg), home=home,
                  env={"REPORT_KEEPER_NOW": value})
    assert "Traceback" not in run.err, run.err
    assert run.code in (0, 1, 2), run.err
    doc = json.loads(run.out)
    assert doc["status"] in ("ok", "warning", "critical")
    if value.startswith("1970"):  # the human output too (at 2099 it is as slow as it is long)
        human = rk_here("check", "--offline", "--config", str(cfg), home=home,
                        env={"REPORT_KEEPER_NOW": value})
        assert "Traceback" not in human.err and human.code == run.code, human.err


@pytest.mark.parametrize("now", [
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC),
])
def test_health_and_heatmap_at_the_ends_of_the_range(now):
    from tui.core.health import evaluate
    from tui.core.heatmap import build_grid

    profile = sc.profile()
    report = evaluate(profile, sc.deliveries(), now=now)
    for r in report.reports:
        grid = build_grid(r.runs, today=now.astimezone(sc.TZ).date())
        assert grid.columns >= 1
    report.to_json()


@pytest.mark.parametrize("year", [1, 1969, 2100, 9999])
def test_a_server_name_dated_outside_the_range_falls_back_to_the_mtime(year):
    """A name like ``X_99991231_2359.xlsx`` is no delivery time: the server's mtime is."""
    from tui.core.names import parse_name, parse_timestamp

    mtime = datetime(2026, 6, 1, 7, tzinfo=UTC)
    parsed = parse_name(f"Loans_{year:04d}0630_120000.xlsx", mtime=mtime, tz=sc.TZ)
    assert parsed.delivered_at == mtime and parsed.source == "mtime"
    assert parse_timestamp(f"{year:04d}-06-30T12:00:00") is None


@pytest.mark.parametrize(("seconds", "expected"), [
    (2**63, "2106-02-07T06:28:15+00:00"), (2**40, "2106-02-07T06:28:15+00:00"),
    (float("inf"), "2106-02-07T06:28:15+00:00"), (253402300799, "2106-02-07T06:28:15+00:00"),
    (-(2**63), "1970-01-01T00:00:00+00:00"), (-1, "1970-01-01T00:00:00+00:00"),
    (float("nan"), "1970-01-01T00:00:00+00:00"), (1_780_300_800.5, "2026-06-01T08:00:00.500000+00:00"),
])
def test_a_file_time_no_date_can_hold_is_the_nearest_end(seconds, expected):
    """A modification time (a server's or a local file's) never raises when converted, and the
    result converts to any zone: the furthest from UTC on either side."""
    from zoneinfo import ZoneInfo

    from tui.core.clock import file_time

    when = file_time(seconds)
    assert when.isoformat() == expected
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):
        when.astimezone(ZoneInfo(zone))


def test_health_survives_deliveries_recorded_with_absurd_times():
    """A ledger written before names were range-checked may hold year 1 or 9999: no overflow."""
    from dataclasses import replace

    from tui.core.health import evaluate

    history = sc.deliveries()
    odd = [
        replace(history[0], name="Loans Per Patron From 3 Days Ago_00010101_0000.xlsx",
                delivered_at=datetime(1, 1, 1, tzinfo=UTC)),
        replace(history[1], name="Loans Per Patron From 3 Days Ago_99991231_2359.xlsx",
                delivered_at=datetime(9999, 12, 31, 23, 59, tzinfo=UTC)),
    ]
    started = time.monotonic()
    report = evaluate(sc.profile(), history + odd, now=sc.NOW)
    assert time.monotonic() - started < 30
    report.to_json()
    assert report.report(sc.DAILY).runs[0].day >= date(2026, 1, 1)


# ---------------------------------------------------------------------------- configuration values


BASE = '[profile.default]\nhost = "127.0.0.1"\n'


@pytest.mark.parametrize("line,key,reason", [
    ("connect_timeout = nan", "connect_timeout", "not a number"),
    ("connect_timeout = inf", "connect_timeout", "between"),
    ("connect_timeout = -inf", "connect_timeout", "between"),
    ("connect_timeout = -1", "connect_timeout", "between"),
    ("connect_timeout = 0", "connect_timeout", "between"),
    ("connect_timeout = 0.0", "connect_timeout", "between"),
    ("connect_timeout = 1e400", "connect_timeout", "between"),
    ("connect_timeout = 86400", "connect_timeout", "between"),
    ("connect_timeout = true", "connect_timeout", "boolean"),
    ("port = 99999999999999999999999", "port", "out of range"),
    ("port = 2.5", "port", "whole number"),
    ("concurrency = false", "concurrency", "boolean"),
    ("concurrency = 0", "concurrency", "out of range"),
    ('host = ""', "host", "missing"),
    ('host = "files example.org"', "host", "host name"),
    ('host = "a\\u0000b"', "host", "host name"),
    ('username = "ab\\ncd"', "username", "control character"),
    ('remote_dir = "up\\u0000load"', "remote_dir", "control character"),
    ('local_dir = "/tmp/a\\u0000b"', "local_dir", "NUL"),
    ('key = "/tmp/a\\u0000b"', "key", "NUL"),
    ("[profile.default.defaults]\ngrace = \"99999h\"", "grace", "at most"),
    ("[profile.default.defaults]\ngrace = \"999999999999d\"", "grace", "at most"),
    ("[profile.default.defaults]\nlag_days = nan", "lag_days", "whole number"),
    ("[profile.default.defaults]\nretention_days = 1e9", "retention_days", "whole number"),
    ("[profile.default.defaults]\nretention_days = 99999999", "retention_days", "out of range"),
    ("[profile.default.defaults]\nmin_rows = -1", "min_rows", "out of range"),
    ("[profile.default.defaults]\nclosed_days = [\"2026-13-01\"]", "closed_days", "not a day"),
    ("[profile.default.defaults]\nclosed_days = [1]", "closed_days", "not a day"),
    ("[profile.default.defaults]\nschedule = \"every 2 days from 99999-01-01\"", "schedule", "date"),
    ('timezone = "../../../etc/passwd"', "timezone", "unknown time zone"),
    ('timezone = "Europe/Berlin\\u0000"', "timezone", "unknown time zone"),
])
def test_config_values_are_checked(tmp_path, line, key, reason):
    from tui.core.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    base = "[profile.default]\n" if line.startswith("host") else BASE
    body = base + line + "\n" if not line.startswith("[") else base + "\n" + line + "\n"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:  # when the profile is picked: it stops only itself
        load_config(path).profile()
    text = str(err.value)
    assert str(path) in text and key in text and reason in text, text
    assert "\n" not in text and len(text) < 500


def test_a_long_wrong_value_is_shortened_in_the_message(tmp_path):
    from tui.core.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text("profile = [" + ", ".join(["1"] * 10000) + "]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert len(str(err.value)) < 300


def test_connect_timeout_reaches_the_connection_options(tmp_path):
    from tui.core.config import load_config
    from tui.sftp.client import ConnectOptions

    path = tmp_path / "c.toml"
    path.write_text(BASE + "connect_timeout = 3\n")
    opts = ConnectOptions.from_profile(load_config(path).profile())
    assert opts.connect_timeout == 3.0


# ---------------------------------------------------------------------------- the command line


def _fuzz_configs(tmp_path: Path) -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (REPORT_KEEPER_CONFIG value, fragments the one error line must hold)."""
    d = tmp_path / "fuzz"
    d.mkdir()
    (d / "non-utf8.toml").write_bytes(b"\xff\xfe[profile.default]\nhost = \"x\"\n")
    (d / "nul.toml").write_bytes(b"[profile.default]\nhost = \"a\x00b\"\n")
    (d / "empty.toml").write_bytes(b"")
    (d / "list.toml").write_text("profile = [1, 2]\n")
    (d / "array-of-tables.toml").write_text('[[profile]]\nhost = "x"\n')
    (d / "profile-list.toml").write_text('[profile]\ndefault = ["x"]\n')
    (d / "big.toml").write_bytes(b"# " + b"x" * (3 * 1024 * 1024) + b"\n")
    (d / "nested.toml").write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    (d / "long-number.toml").write_text("[profile.default]\nport = " + "1" * 5000 + "\n")
    os.mkfifo(d / "fifo.toml")
    return {
        "folder": (str(d), ("folder",)),
        "non-utf8": (str(d / "non-utf8.toml"), ("UTF-8",)),
        "nul": (str(d / "nul.toml"), ("TOML",)),
        "empty": (str(d / "empty.toml"), ("no profile",)),
        "list": (str(d / "list.toml"), ("profile", "table")),
        "array-of-tables": (str(d / "array-of-tables.toml"), ("profile", "table")),
        "profile-list": (str(d / "profile-list.toml"), ("profile.default", "table")),
        "dev-zero": ("/dev/zero", ("not a regular file",)),
        "fifo": (str(d / "fifo.toml"), ("not a regular file",)),
        "big": (str(d / "big.toml"), ("larger than",)),
        "nested": (str(d / "nested.toml"), ("nested too deeply",)),
        "long-number": (str(d / "long-number.toml"), ("number too long",)),
        "missing": (str(d / "nope.toml"), ("does not exist",)),
    }


FUZZ = ["folder", "non-utf8", "nul", "empty", "list", "array-of-tables", "profile-list",
        "dev-zero", "fifo", "big", "nested", "long-number", "missing"]


@pytest.mark.parametrize("command,case", [
    *(("sync", c) for c in FUZZ),
    *((cmd, c) for cmd in ("check", "verify", "app") for c in ("dev-zero", "fifo", "list", "nested")),
])
def test_hostile_config_files_give_one_line_and_exit_3(case, command, home, tmp_path, reports, rk_here):
    value, fragments = _fuzz_configs(tmp_path)[case]
    args = {
        "sync": ["sync", "--json"],
        "check": ["check", "--json"],
        "verify": ["verify", "--json", str(reports)],
        "app": [],
    }[command]
    if command == "app":
        run = rk(*args, home=home, env={"REPORT_KEEPER_CONFIG": value}, timeout=30)
    else:
        run = rk_here(*args, home=home, env={"REPORT_KEEPER_CONFIG": value})
    one_line(run, 3, *fragments)
    assert run.seconds < 25


def test_an_unknown_profile_names_the_known_ones(home, config, rk_here):
    run = rk_here("sync", "--json", "--config", str(config), "--profile", "nosuch", home=home)
    one_line(run, 3, "nosuch", "default", "--profile")


def test_known_hosts_that_is_a_folder_is_a_config_error(home, tmp_path, config, rk_here):
    (tmp_path / "kh").mkdir()
    config.write_text(config.read_text().replace(str(tmp_path / "known_hosts"), str(tmp_path / "kh")))
    for args in (["sync", "--json"], ["check", "--json"]):
        run = rk_here(*args, "--config", str(config), home=home)
        one_line(run, 3, "known_hosts", "folder")


def test_local_dir_that_is_a_file_is_a_config_error(home, tmp_path, config, rk_here):
    (tmp_path / "local").write_text("not a folder")
    run = rk_here("sync", "--json", "--config", str(config), home=home)
    one_line(run, 3, "local_dir", "not a folder")
    assert (tmp_path / "local").read_text() == "not a folder"  # nothing lost


@pytest.mark.parametrize("where", ["inside", "itself"])
def test_local_dir_in_a_read_only_folder_is_one_line(where, home, tmp_path, config):
    if os.geteuid() == 0 and SETPRIV is None:
        pytest.skip("running as root without setpriv: root would write anyway")
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    (readonly / "keep.txt").write_text("mine")
    local = readonly / "reports" if where == "inside" else readonly
    config.write_text(config.read_text().replace(str(tmp_path / "local"), str(local)))
    os.chmod(readonly, 0o555)
    try:
        for args in (["sync", "--json"], []):
            run = rk(*args, "--config", str(config), home=home, as_plain_user=True)
            one_line(run, 3, "local_dir", "Permission denied")
        assert (readonly / "keep.txt").read_text() == "mine"
    finally:
        os.chmod(readonly, 0o755)


def test_an_unexpected_error_is_one_line_with_the_log_named(home, config, tmp_path):
    """The last line of defence: a bug prints one line (and JSON with --json), not a traceback."""
    plugin = tmp_path / "sitecustomize.py"
    plugin.write_text(
        "import tui.core.health as h\n"
        "def boom(*a, **k):\n"
        "    raise RuntimeError('simulated bug')\n"
        "h.evaluate = boom\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    run = rk("check", "--offline", "--config", str(config), home=home, env=env)
    line = one_line(run, 2, "unexpected error", "RuntimeError", "report-keeper.log")
    assert "simulated bug" in line
    run = rk("check", "--offline", "--json", "--config", str(config), home=home, env=env)
    assert run.code == 2 and "Traceback" not in run.err and len(run.err.splitlines()) == 1
    doc = json.loads(run.out)
    assert doc["status"] == "critical" and "RuntimeError" in doc["error"]
    assert doc["reports"] == [] and doc["connection"]["ok"] is None  # the shape of check's document
    log = (home / "state" / "report-keeper" / "log" / "report-keeper.log").read_text()
    assert "Traceback" in log and "simulated bug" in log
    run = rk("check", "--offline", "--all-profiles", "--json", "--config", str(config), home=home, env=env)
    assert run.code == 2 and "Traceback" not in run.err, run.err
    doc = json.loads(run.out)
    assert doc["status"] == "critical" and "RuntimeError" in doc["error"], doc
    assert doc["profiles"] == {} and doc["error_kind"] == "internal"  # an --all-profiles document


def test_an_empty_config_name_is_one_line(home, rk_here):
    run = rk_here("sync", "--json", "--config", "", home=home)
    one_line(run, 3, "empty")


def test_a_closed_stdout_keeps_the_exit_code_and_prints_no_traceback(home, config):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORT_KEEPER_")}
    env.update({"XDG_STATE_HOME": str(home / "state"), "XDG_DATA_HOME": str(home / "data"),
                "PYTHONPATH": str(ROOT)})
    proc = subprocess.run([sys.executable, "-m", "tui", "check", "--offline", "--json", "--config",
                           str(config)], env=env, cwd=str(ROOT), stderr=subprocess.PIPE,
                          preexec_fn=lambda: os.close(1), timeout=60)
    assert proc.returncode in (0, 1, 2) and b"Traceback" not in proc.stderr
    assert b"unexpected" not in proc.stderr, proc.stderr
