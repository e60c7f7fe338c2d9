"""The purge killed at each step (a real SIGKILL of a real process), and a folder whose files
cannot be deleted: nothing is lost, nothing looks lost, and the next purge finishes the job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests import retention_data as rd
from tests.test_hostile_errors import ROOT, SETPRIV, rk
from tui.cli import main

#: Runs the purge in a child process that kills itself at the chosen point:
#: ``after-decision`` once the ledger holds the decision, before the first file is touched;
#: ``after-delete`` right after the first file is deleted, before anything else is recorded.
CRASH = r"""
import os, signal, sys
from tui.core import retention
from tui.core.config import load_config
from tui.core.ledger import Ledger

config, mode = sys.argv[1], sys.argv[2]
real = retention._delete

def crash(copy, *folders):
    if mode == "after-decision":
        os.kill(os.getpid(), signal.SIGKILL)
    why = real(copy, *folders)
    if mode == "after-delete":
        os.kill(os.getpid(), signal.SIGKILL)
    return why

retention._delete = crash
profile = load_config(config).profile()
with Ledger.open(profile.ledger_path, profile=profile.name) as ledger:
    retention.purge(profile, ledger)
print("not killed")
"""


def _check(env, capsys) -> dict:
    code = main(["check", "--offline", "--json", "--config", str(env.config)])
    doc = json.loads(capsys.readouterr().out)
    report = doc["reports"][0]
    assert not [p for p in report["problems"] if p["kind"] in ("lost", "missing-locally", "missing")], report
    assert {r["status"] for r in report["runs"] if r["day"] < rd.NOW.date().isoformat()} == {"on-time"}
    assert code == 0
    return report


@pytest.mark.parametrize("mode", ["after-decision", "after-delete"])
def test_a_purge_killed_between_its_steps_loses_nothing_and_is_finished_next_time(
        mode, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    env = rd.build(tmp_path / "h")
    with env.ledger() as ledger:
        env.export(ledger, rd.OLD)
    child = subprocess.run(
        [sys.executable, "-c", CRASH, str(env.config), mode], cwd=str(ROOT), capture_output=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    assert b"not killed" not in child.stdout

    first, rest = env.path(0), [env.path(i) for i in range(1, 10)]
    assert first.exists() == (mode == "after-decision") and all(p.exists() for p in rest)
    with env.ledger() as ledger:
        states = ledger.local_states()
        # The decision was recorded before any file was touched: every copy it covers reads
        # as purged (never missing, never fetched again), whether its file is gone yet or not.
        assert {n for n, s in states.items() if s == "purged"} == {rd.name(i) for i in rd.OLD}
        assert all(dl.purged_at is None for dl in ledger.downloads())
        assert ledger.reconcile_local(env.local).missing == ()
    report = _check(env, capsys)
    assert [r["purged"] for r in report["runs"][:10]] == [[rd.name(i)] for i in rd.OLD]

    # The next purge finishes it: the file already gone is recorded, the others deleted.
    code = main(["purge", "--json", "--config", str(env.config)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["errors"] == [] and doc["waiting_for_export"] == []
    assert [p["name"] for p in doc["purged"]] == [rd.name(i) for i in rd.OLD]
    assert all(p["interrupted"] for p in doc["purged"])
    assert env.files() == {rd.name(i) for i in range(10, rd.DAYS)}
    with env.ledger() as ledger:
        gone = [dl for dl in ledger.downloads() if dl.purged_at is not None]
        assert sorted(dl.name for dl in gone) == sorted(rd.name(i) for i in rd.OLD)
    _check(env, capsys)


def test_files_that_cannot_be_deleted_are_reported_not_a_traceback(tmp_path):
    if os.geteuid() == 0 and SETPRIV is None:
        pytest.skip("running as root without setpriv: root would delete anyway")
    env = rd.build(tmp_path / "h", profile_extra="local_retention_days = 30\nkeep_until_exported = false")
    home = tmp_path / "home"
    home.mkdir()
    now = {"REPORT_KEEPER_NOW": rd.NOW_ISO}
    os.chmod(env.local, 0o500)  # files cannot be removed from it
    try:
        run = rk("purge", "--json", "--config", str(env.config), home=home, env=now, as_plain_user=True)
    finally:
        os.chmod(env.local, 0o700)
    assert "Traceback" not in run.err and run.code == 1, run.err
    doc = json.loads(run.out)
    assert doc["status"] == "warning" and doc["purged"] == []
    assert [e["name"] for e in doc["errors"]] == [rd.name(i) for i in rd.OLD]
    assert all("Permission denied" in e["error"] for e in doc["errors"])
    assert env.files() == {rd.name(i) for i in range(rd.DAYS)}  # nothing lost
    with env.ledger() as ledger:  # nothing recorded as purged: the decision was withdrawn
        assert all(dl.purge_started is None and dl.purged_at is None for dl in ledger.downloads())
        assert "purged" not in set(ledger.local_states().values())
    # The human output says the same in one line per file.
    run = rk("purge", "--dry-run", "--config", str(env.config), home=home, env=now)
    assert run.code == 0 and "WOULD PURGE" in run.out and "dry run: nothing was deleted" in run.out
    run = rk("purge", "--config", str(env.config), home=home, env=now)
    assert run.code == 0 and "Purged: 10 local copies past local_retention_days deleted" in run.out
    assert env.files() == {rd.name(i) for i in range(10, rd.DAYS)}


def test_a_ledger_that_refuses_the_purge_record_deletes_nothing_and_says_so(tmp_path, capsys, monkeypatch):
    """The purge records its decision before it deletes anything: a ledger that refuses that
    write (a trigger here, as a full disk would) leaves every file in place, and the one JSON
    document names the ledger's problem in a sentence that reads."""
    import sqlite3

    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    env = rd.build(tmp_path / "h")
    with env.ledger() as ledger:
        env.export(ledger, rd.OLD)
    before = env.files()
    with sqlite3.connect(env.ledger_path) as conn:
        conn.execute("CREATE TRIGGER refuse BEFORE UPDATE ON downloads "
                     "BEGIN SELECT RAISE(ABORT, 'the disk refused the write'); END")
    code = main(["purge", "--json", "--config", str(env.config)])
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert code == 2 and doc["status"] == "critical" and doc["purged"] == []
    assert "the disk refused the write" in doc["error"]
    assert not doc["error"].lower().startswith(("the cannot", "the could", "the the"))
    assert "nothing was deleted" in doc["error"]
    assert env.files() == before
