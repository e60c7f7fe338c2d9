"""The log file over a run shared among processes (``sync --all-profiles``, several processes).

Every process of the run writes its own lines to the one ``report-keeper.log``. Were each to
rotate it on its own, the file reaching its limit mid-run would be rotated once per process:
the backups shifted several times, the older history dropped early and one run's lines spread
over files of a few lines each. So the run's first process rotates a full file once before
it starts the others, and none of them rotates it during the run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.test_sync_processes import PROFILES, _sshd_config, _sync, served  # noqa: F401 - fixture
from tui.core import logs


def _log_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state" / "report-keeper" / "log"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _history(d: Path, fill: int) -> dict[str, bytes]:
    """A log of ``fill`` bytes and three backups, each line naming the file it was written as."""
    files = {}
    for suffix in ("", ".1", ".2", ".3"):
        name = "report-keeper.log" + suffix
        line = f"2026-06-0{len(suffix) + 1} 07:00:00,000 [1] INFO report_keeper: old line of {name}\n".encode()
        size = fill if suffix == "" else 1000
        files[name] = (line * (size // len(line) + 1))[:size]
        (d / name).write_bytes(files[name])
    return files


def _pids(text: str) -> set[str]:
    return set(re.findall(r"^\S+ \S+ \[(\d+)\] ", text, re.M)) - {"1"}


@pytest.mark.sshd
def test_a_log_filling_up_during_a_run_over_processes_is_not_rotated_by_each(sshd, served, tmp_path):
    d = _log_dir(tmp_path)
    old = _history(d, logs.MAX_BYTES - 40)  # the first line of any process fills it
    cfg = _sshd_config(tmp_path, sshd, served, PROFILES)
    done = _sync(tmp_path, cfg, "--processes", "2")
    assert done.returncode == 1 and json.loads(done.stdout)["status"] == "warning", done.stderr
    for name in ("report-keeper.log.1", "report-keeper.log.2", "report-keeper.log.3"):
        assert (d / name).read_bytes() == old[name], f"{name} was rotated during the run"
    assert not (d / "report-keeper.log.4").exists()
    log = (d / "report-keeper.log").read_bytes()
    assert log.startswith(old["report-keeper.log"])  # appended to, never rotated away
    run = log[len(old["report-keeper.log"]):].decode()
    assert len(_pids(run)) == 3, run  # both processes of the run and the run's own
    assert "sync --all-profiles: 4 profiles in 2 processes" in run
    assert run.count("sync --all-profiles finished") == 3


@pytest.mark.sshd
def test_a_full_log_is_rotated_once_before_a_run_over_processes(sshd, served, tmp_path):
    d = _log_dir(tmp_path)
    old = _history(d, logs.MAX_BYTES + 10)
    cfg = _sshd_config(tmp_path, sshd, served, PROFILES)
    done = _sync(tmp_path, cfg, "--processes", "2")
    assert done.returncode == 1, done.stderr
    # Shifted exactly once: the full log became the first backup, the oldest one went.
    assert (d / "report-keeper.log.1").read_bytes() == old["report-keeper.log"]
    assert (d / "report-keeper.log.2").read_bytes() == old["report-keeper.log.1"]
    assert (d / "report-keeper.log.3").read_bytes() == old["report-keeper.log.2"]
    run = (d / "report-keeper.log").read_text()
    assert "old line" not in run and len(_pids(run)) == 3, run


def test_holding_rotation_rotates_a_full_log_first_and_then_never(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    root = logs.logging.getLogger(logs.LOGGER)
    saved = list(root.handlers)
    for h in saved:
        root.removeHandler(h)
    try:
        d = _log_dir(tmp_path)
        old = _history(d, logs.MAX_BYTES + 1)
        path = logs.setup_logging()
        assert path == d / "report-keeper.log"
        logs.hold_rotation()
        assert (d / "report-keeper.log.1").read_bytes() == old["report-keeper.log"]
        for _ in range(3):  # well past the limit: still the one file
            root.info("%s", "x" * (logs.MAX_BYTES // 2))
        assert (d / "report-keeper.log.1").read_bytes() == old["report-keeper.log"]
        assert (d / "report-keeper.log").stat().st_size > logs.MAX_BYTES
        logs.hold_rotation()  # again (a later run in the same process): nothing more to do
        assert (d / "report-keeper.log.2").read_bytes() == old["report-keeper.log.1"]
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved:
            root.addHandler(h)
