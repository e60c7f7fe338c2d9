"""One member library's config typo stops that profile only.

A consortium office keeps every member library's profile in one config file and runs
``sync --all-profiles`` and ``check --all-profiles`` from cron. A wrong value, an unknown key
or a bad report entry under one ``[profile.NAME]`` (even a name no profile may have, or a
``profile.NAME`` that is no table) makes that profile unusable: each command that picks it
says exactly what it said before (exit 3, the same line), ``--all-profiles`` lists it with
that error and runs every other profile. What is wrong with the file as a whole (not TOML,
not UTF-8, the shared ``[defaults]``, the ``profile`` table itself) still stops everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_all_profiles import folders, profile_toml, run_cli  # noqa: F401 - fixture
from tests.test_sync_processes import _config, _env
from tui.cli import main
from tui.commands.common import error_document
from tui.core.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
#: The one-line message each hostile profile gets, as a run that picks it alone prints it.
LOTS = "profile.bad.concurrency: expected a whole number, got str 'lots'"


def _with(cfg: Path, text: str, *, before: str | None = None) -> Path:
    """``cfg`` with ``text`` added at its end, or before the table ``[profile.<before>]``."""
    old = cfg.read_text()
    if before is None:
        cfg.write_text(old + "\n" + text + "\n")
    else:
        at = old.index(f"[profile.{before}]")
        cfg.write_text(old[:at] + text + "\n\n" + old[at:])
    return cfg


def _cli(cfg: Path, tmp_path: Path, *words: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui", *words, "--config", str(cfg)],
                          capture_output=True, text=True, env=_env(tmp_path), cwd=ROOT, timeout=120,
                          stdin=subprocess.DEVNULL)


def _broken_entry(doc: dict, name: str, command: str, message: str) -> None:
    """``name``'s entry is what ``command --profile name --json`` prints for it, word for word."""
    one = doc["profiles"][name]
    assert one == error_document(command, one["error"], "config"), one
    assert one["error"].endswith(message), one["error"]


# ------------------------------------------------------------------ the loader


BAD_PROFILES = {
    "a wrong value": ('[profile.bad]\nhost = "h"\nconcurrency = "lots"\n', LOTS),
    "an unknown key": ('[profile.bad]\nhost = "h"\nconcurency = 3\n', "profile.bad.concurency: unknown key"),
    "a bad report entry": ('[profile.bad]\nhost = "h"\n[[profile.bad.report]]\nname = "R"\nat = "25:99"\n',
                           "profile.bad.report[0].at:"),
    "a control character in a value": ('[profile.bad]\nhost = "h"\nremote_dir = "in\\u001b[2Jbox"\n',
                                       "profile.bad.remote_dir:"),
    "a control character in a key": ('[profile.bad]\nhost = "h"\n"k\\u0007" = 1\n', 'profile.bad."k\\u0007":'),
    "a ~name path of no such user": ('[profile.bad]\nhost = "h"\nlocal_dir = "~nosuchuser-rk/x"\n',
                                     "profile.bad.local_dir: '~nosuchuser-rk/x' names the home folder of a user"),
    "a bad notify table": ('[profile.bad]\nhost = "h"\n[profile.bad.notify]\nwebhook_url = "ftp://x"\n',
                           "profile.bad.notify.webhook_url:"),
    "no host": ("[profile.bad]\nport = 22\n", "profile.bad.host: missing"),
}


@pytest.mark.parametrize("case", list(BAD_PROFILES))
def test_a_broken_profile_stops_only_itself(tmp_path, case):
    text, said = BAD_PROFILES[case]
    cfg = _config(tmp_path, {"alpha": "a.sqlite3", "omega": "o.sqlite3"})
    if text.startswith("[profile]\n"):  # a key of the profile table itself, where the file starts
        cfg.write_text(text + cfg.read_text())
    else:
        _with(cfg, text, before="omega")
    config = load_config(cfg)
    assert [p.name for p in config.profiles.values()] == ["alpha", "omega"]
    assert config.profile("alpha").name == "alpha" and config.profile("omega").name == "omega"
    assert list(config.broken) == ["bad"]
    assert config.names == (("bad", "alpha", "omega") if text.startswith("[profile]") else ("alpha", "bad", "omega"))
    with pytest.raises(ConfigError) as raised:
        config.profile("bad")
    assert raised.value is config.broken["bad"]
    assert str(raised.value).startswith(f"{cfg}: ") and said in str(raised.value), str(raised.value)
    assert "\n" not in str(raised.value) and "\x1b" not in str(raised.value)


def test_a_default_selection_landing_on_a_broken_profile_fails_as_before(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[profile.default]\nhost = "h"\nconcurrency = "lots"\n[profile.other]\nhost = "h"\n')
    with pytest.raises(ConfigError, match="profile.default.concurrency: expected a whole number"):
        load_config(cfg).profile()
    cfg.write_text('[profile.only]\nhost = "h"\nconcurrency = "lots"\n')
    with pytest.raises(ConfigError, match="profile.only.concurrency: expected a whole number"):
        load_config(cfg).profile()
    # Two profiles, no "default": the one that loads is not picked in the broken one's place.
    cfg.write_text('[profile.one]\nhost = "h"\n[profile.two]\nhost = "h"\nconcurrency = "lots"\n')
    with pytest.raises(ConfigError, match=r"no such profile \(profiles: one, two\)"):
        load_config(cfg).profile()


@pytest.mark.parametrize(("text", "said"), [
    ('[defaults]\ngrace = "forever"\n[profile.a]\nhost = "h"\n', "defaults.grace:"),
    ('[defaults]\nbogus = 1\n[profile.a]\nhost = "h"\n', "defaults.bogus: unknown key"),
    ('[defaults]\ndate_column = "x\\u001by"\n[profile.a]\nhost = "h"\n', "defaults.date_column:"),
    ('profile = 3\n', "profile: expected a table"),
    # Settings written right under [profile] (a first config's slip): no profile at all.
    ('[profile]\nhost = "h"\nusername = "u"\nremote_dir = "r"\n', "profile.host: expected a table: [profile.NAME]"),
    ('[profile]\nbad = 3\n', "profile.bad: expected a table"),
    ('bogus = 1\n[profile.a]\nhost = "h"\n', "bogus: unknown key"),
    ('[profile.a]\nhost = "h"\nport = \n', "is not valid TOML"),
])
def test_what_the_whole_file_gets_wrong_still_fails_the_whole_file(tmp_path, text, said):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text + '[profile.good]\nhost = "h"\n' if "profile = 3" not in text else text)
    with pytest.raises(ConfigError, match=None) as raised:
        load_config(cfg)
    assert said in str(raised.value), str(raised.value)


def test_a_config_whose_every_profile_is_broken_still_loads_and_says_each(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[profile.x]\nhost = 3\n[profile.y]\nport = "22"\n')
    config = load_config(cfg)
    assert config.profiles == {} and list(config.broken) == ["x", "y"]
    with pytest.raises(ConfigError, match="profile.x.host"):
        config.profile("x")
    # --all-profiles lists each with its error, in one process or several (nothing to share out)
    for words in (["sync", "--all-profiles", "--json"], ["sync", "--all-profiles", "--json", "--processes", "2"],
                  ["check", "--all-profiles", "--json", "--offline"]):
        done = _cli(cfg, tmp_path, *words)
        assert done.returncode == 3, done.stderr
        doc = json.loads(done.stdout)
        assert doc["status"] == "critical" and list(doc["profiles"]) == ["x", "y"], doc
        assert [one["error_kind"] for one in doc["profiles"].values()] == ["config", "config"]
        assert "profile.y.port" in doc["profiles"]["y"]["error"] or "profile.y.host" in doc["profiles"]["y"]["error"]
        assert "unexpected" not in done.stderr and done.stderr.count("report-keeper: ") == 2, done.stderr
        assert words[0] == "check" or done.stderr.endswith("All 2 profiles: CRITICAL\n"), done.stderr


# ------------------------------------------------------------------ single-profile commands


@pytest.mark.parametrize("command", ["check", "export", "purge", "verify", "notify"])
def test_another_profiles_typo_does_not_stop_a_single_profile_command(tmp_path, command):
    cfg = _with(_config(tmp_path, {"alpha": "a.sqlite3"}), '[profile.bad]\nhost = "h"\nconcurrency = "lots"\n')
    extra = {"check": ["--offline"], "export": ["--out", str(tmp_path / "out.csv")],
             "purge": ["--dry-run"], "verify": [str(tmp_path)], "notify": ["--test"]}[command]
    (tmp_path / "local" / "alpha").mkdir(parents=True)
    good = _cli(cfg, tmp_path, command, "--profile", "alpha", "--json", *extra)
    # Whatever alpha's command says of itself (no reports to verify or export, no alert
    # channel to test), it is not the other profile's typo.
    assert "profile.bad" not in good.stdout + good.stderr and "lots" not in good.stdout + good.stderr, good.stderr
    assert json.loads(good.stdout)  # its own document
    bad = _cli(cfg, tmp_path, command, "--profile", "bad", "--json", *extra)
    assert bad.returncode == 3, bad.stderr
    assert bad.stderr == f"report-keeper: {cfg}: {LOTS}\n"
    assert json.loads(bad.stdout)["error"] == f"{cfg}: {LOTS}"
    assert json.loads(bad.stdout)["error_kind"] == "config"


def test_check_profile_good_beside_a_broken_one_is_a_normal_check(tmp_path):
    cfg = _with(_config(tmp_path, {"alpha": "a.sqlite3"}), '[profile.bad]\nhost = "h"\nconcurrency = "lots"\n')
    good = _cli(cfg, tmp_path, "check", "--profile", "alpha", "--offline", "--json")
    assert good.returncode in (0, 1, 2), good.stderr
    doc = json.loads(good.stdout)
    assert "error_kind" not in doc and "reports" in doc and doc["connection"]["write_test"] == "skipped"


# ------------------------------------------------------------------ --all-profiles


def test_check_all_profiles_checks_every_good_profile_and_lists_the_broken_one(tmp_path):
    cfg = _with(_config(tmp_path, {"alpha": "a.sqlite3", "omega": "o.sqlite3"}),
                '[profile.bad]\nhost = "h"\nconcurrency = "lots"\n', before="omega")
    done = _cli(cfg, tmp_path, "check", "--all-profiles", "--offline", "--json")
    assert done.returncode == 3, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "critical" and list(doc["profiles"]) == ["alpha", "bad", "omega"]
    _broken_entry(doc, "bad", "check", LOTS)
    assert doc["profiles"]["bad"]["error"] == f"{cfg}: {LOTS}"
    for name in ("alpha", "omega"):
        one = doc["profiles"][name]
        assert "error_kind" not in one and "reports" in one and "notify" in one, one
    assert (tmp_path / "a.sqlite3").exists() and (tmp_path / "o.sqlite3").exists()
    err = done.stderr.splitlines()
    assert err[err.index("== bad") + 1] == f"report-keeper: {cfg}: {LOTS}", done.stderr
    human = _cli(cfg, tmp_path, "check", "--all-profiles", "--offline")
    assert human.returncode == 3
    assert "== alpha" in human.stdout and "== omega" in human.stdout and "All 3 profiles: CRITICAL" in human.stdout
    assert f"== bad\nreport-keeper: {cfg}: {LOTS}\n" in human.stderr
    assert "profile bad cannot run" in (tmp_path / "state" / "report-keeper" / "log" / "report-keeper.log").read_text()


HOSTILE_NAMES = {
    "escape sequence": ('[profile."bad\\u001b[2J\\u001b]0;pwned\\u0007"]\nhost = "h"\n', "bad\x1b[2J\x1b]0;pwned\x07",
                        "the profile name holds U+001B (ESC)"),
    "line break": ('[profile."bad\\n== alpha"]\nhost = "h"\n', "bad\n== alpha", "the profile name holds U+000A"),
    "direction override": ('[profile."bad\\u202ename"]\nhost = "h"\n', "bad\u202ename", "the profile name holds U+202E"),
}


@pytest.mark.parametrize("case", list(HOSTILE_NAMES))
def test_a_profile_whose_name_is_hostile_is_listed_inert_and_the_others_run(tmp_path, case):
    text, name, said = HOSTILE_NAMES[case]
    cfg = _config(tmp_path, {"alpha": "a.sqlite3"})
    cfg.write_text(text + "\n" + cfg.read_text() if text.startswith("[profile]") else cfg.read_text() + "\n" + text)
    done = _cli(cfg, tmp_path, "check", "--all-profiles", "--offline", "--json")
    assert done.returncode == 3, done.stderr
    doc = json.loads(done.stdout)
    assert set(doc["profiles"]) == {"alpha", name}
    assert "reports" in doc["profiles"]["alpha"] and "error_kind" not in doc["profiles"]["alpha"]
    _broken_entry(doc, name, "check", "")
    assert said in doc["profiles"][name]["error"]
    # Neither stream carries the name's controls: escaped where written, inert in the JSON.
    for stream in (done.stdout, done.stderr):
        assert not any(ch in stream for ch in "\x1b\x07\u202e"), repr(stream)
    headers = [line for line in done.stderr.splitlines() if line.startswith("== ")]
    assert len(headers) == 1 and headers[0] != "== alpha", done.stderr  # no forged header line


@pytest.mark.sshd
@pytest.mark.parametrize("processes", ["1", "2"])
def test_sync_all_profiles_fetches_every_good_profile_beside_a_broken_one(sshd, folders, tmp_path, processes):
    base, made = folders
    cfg = tmp_path / "c.toml"
    cfg.write_text(profile_toml("alpha", sshd, f"{base.name}/a", tmp_path, "alpha.sqlite3")
                   + '[profile.bad]\nhost = "127.0.0.1"\nconcurrency = "lots"\n'
                   + f'ledger = "{tmp_path / "bad.sqlite3"}"\nlocal_dir = "{tmp_path / "local" / "bad"}"\n\n'
                   + profile_toml("beta", sshd, f"{base.name}/b", tmp_path, "beta.sqlite3"))
    done = run_cli("sync", "--config", str(cfg), "--all-profiles", "--json", "--processes", processes)
    assert done.returncode == 3, done.stderr  # the worst: a config error
    doc = json.loads(done.stdout)  # exactly one document
    assert doc["status"] == "critical" and list(doc["profiles"]) == ["alpha", "bad", "beta"]
    _broken_entry(doc, "bad", "sync", LOTS)
    assert doc["profiles"]["bad"]["error"] == f"{cfg}: {LOTS}"
    for name, folder in (("alpha", "a"), ("beta", "b")):
        one = doc["profiles"][name]
        assert one["error"] is None and one["status"] == "ok", one
        assert sorted(d["name"] for d in one["downloaded"]) == sorted(made[folder])
        for d in one["downloaded"]:
            assert (tmp_path / "local" / name / d["name"]).read_bytes() == (base / folder / d["name"]).read_bytes()
    assert not (tmp_path / "bad.sqlite3").exists() and not (tmp_path / "local" / "bad").exists()
    err = done.stderr.splitlines()
    assert err.count("== bad") == 1, done.stderr
    assert err[err.index("== bad") + 1] == f"report-keeper: {cfg}: {LOTS}", done.stderr
    assert err[-1] == "All 3 profiles: CRITICAL", done.stderr


def test_all_profiles_with_a_broken_shared_defaults_still_stops_before_any_profile(tmp_path):
    cfg = _config(tmp_path, {"alpha": "a.sqlite3"})
    cfg.write_text('[defaults]\ngrace = "forever"\n' + cfg.read_text())
    for command in ("sync", "check"):
        done = _cli(cfg, tmp_path, command, "--all-profiles", "--offline", "--json") if command == "check" \
            else _cli(cfg, tmp_path, command, "--all-profiles", "--json")
        assert done.returncode == 3
        doc = json.loads(done.stdout)
        assert doc == {"status": "critical", "profiles": {}, "error": doc["error"], "error_kind": "config"}
        assert "defaults.grace" in doc["error"] and done.stderr == f"report-keeper: {doc['error']}\n"
    assert not (tmp_path / "a.sqlite3").exists()


def test_schedule_all_profiles_plans_for_the_good_profiles_and_names_the_broken_one(tmp_path, capsys):
    cfg = _with(_config(tmp_path, {"alpha": "a.sqlite3"}), '[profile.bad]\nhost = "h"\nconcurrency = "lots"\n')
    code = main(["schedule", "--config", str(cfg), "--all-profiles"])
    out, err = capsys.readouterr()
    assert code == 3, err
    assert "--all-profiles" in out and "OnCalendar=" in out  # the timer for every profile, bad included once fixed
    assert f"report-keeper: profile 'bad' cannot run: {cfg}: {LOTS}" in err, err
    # All of them broken: nothing to plan, exit 3 with each one's error.
    cfg.write_text('[profile.bad]\nhost = "h"\nconcurrency = "lots"\n')
    assert main(["schedule", "--config", str(cfg), "--all-profiles"]) == 3
    out, err = capsys.readouterr()
    assert out == "" and LOTS in err


def test_the_app_opens_a_good_profile_beside_a_broken_one_and_refuses_the_broken_one(tmp_path, capsys):
    import argparse

    from tui.commands import tui_app

    cfg = _with(_config(tmp_path, {"alpha": "a.sqlite3"}), '[profile.bad]\nhost = "h"\nconcurrency = "lots"\n')
    code = tui_app.run(argparse.Namespace(config=str(cfg), profile="bad", demo=False, local_dir=None))
    assert code == 3
    assert capsys.readouterr().err == f"report-keeper: {cfg}: {LOTS}\n"


async def test_the_app_reads_its_own_profile_again_while_another_is_broken(tmp_path):
    """The app re-reads the config for its profile's reader limits (before Verify): another
    member's typo must not keep the old limits with a "config was not read again" toast."""
    from tui.app import create_app
    from tui.core import isolation

    cfg = _with(_config(tmp_path, {"alpha": "a.sqlite3"}), '[profile.bad]\nhost = "h"\nconcurrency = "lots"\n')
    app = create_app(load_config(cfg).profile("alpha"), auto_connect=False)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            cfg.write_text(cfg.read_text().replace("[profile.alpha]\n", "[profile.alpha]\nreader_memory_mib = 300\n"))
            app.apply_current_reader_limits()
            await pilot.pause()
            toasts = [f"{n.title}: {n.message}" for n in app._notifications]
            assert not [t for t in toasts if "not read again" in t], toasts
            assert app.profile.reader_memory_mib == 300
            assert isolation.shared_pool().memory_limit == 300 << 20
    finally:
        app.ledger.close()


def test_a_share_whose_profile_became_broken_during_the_run_lists_it_with_its_error(tmp_path):
    """A process of a run over several is given its profiles by name; one that a typo broke
    after the run planned (the office edits the file while cron runs) is listed with its
    error by that process, exit 3 as alone, where the process stopped with a bug before."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[profile.bad]\nhost = "h"\nconcurrency = "lots"\n')
    done = subprocess.run(
        [sys.executable, "-m", "tui", "sync", "--all-profiles", "--json", "--processes", "1",
         f"--config={cfg}", "--share-profile=bad", "--share-readers=1", f"--share-parent={os.getpid()}"],
        capture_output=True, text=True, env=_env(tmp_path), cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 3, done.stderr
    doc = json.loads(done.stdout)
    assert list(doc["profiles"]) == ["bad"]
    _broken_entry(doc, "bad", "sync", LOTS)
