"""``sync --all-profiles`` with the profiles shared out among processes (``--processes``).

- How profiles are shared out: a ledger file's profiles stay together, the shares balanced,
  no more processes than ``--parallel`` or than groups; one process when that is all it makes.
- Against the real sshd: the run's one document lists every profile in the config's order
  with its own result, the human output has each profile's summary once and the run's line
  last, the log names the processes, and a run in one process afterwards finds everything held.
- A process killed from outside mid-run: its profiles are critical and say so, the other
  processes' profiles complete, still one document; the next run completes everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.xlsx_factory import write_report
from tui.commands.processes import plan
from tui.core.config import load_config
from tui.core.ledger import Ledger
from tui.demo import data as demo_data

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-06-10T14:00:00+00:00"


def _config(tmp_path: Path, ledgers: dict[str, str], *, port: int = 22, extra: str = "") -> Path:
    text = ""
    for name, ledger in ledgers.items():
        text += (f"[profile.{name}]\nhost = \"127.0.0.1\"\nport = {port}\nremote_dir = \"{name}\"\n"
                 f"local_dir = \"{tmp_path / 'local' / name}\"\nledger = \"{tmp_path / ledger}\"\n"
                 f"timezone = \"UTC\"\n{extra}\n")
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def _names(shares) -> list[list[str]]:
    return [[p.name for p in share] for share in shares]


def test_a_ledger_files_profiles_share_one_process_and_the_shares_are_balanced(tmp_path):
    ledgers = {"a": "x.sqlite3", "b": "x.sqlite3", "c": "c.sqlite3", "d": "d.sqlite3",
               "e": "x.sqlite3", "f": "f.sqlite3"}
    profiles = list(load_config(_config(tmp_path, ledgers)).profiles.values())
    # The group of three first, then the single ones where fewest are; each in config order.
    assert _names(plan(profiles, 2, 8)) == [["a", "b", "e"], ["c", "d", "f"]]
    assert _names(plan(profiles, 3, 8)) == [["a", "b", "e"], ["c", "f"], ["d"]]
    assert _names(plan(profiles, 8, 8)) == [["a", "b", "e"], ["c"], ["d"], ["f"]]  # 4 groups
    assert _names(plan(profiles, 8, 2)) == [["a", "b", "e"], ["c", "d", "f"]]  # --parallel 2
    assert _names(plan(profiles, 1, 8)) == [["a", "b", "c", "d", "e", "f"]]
    one_file = list(load_config(_config(tmp_path, dict.fromkeys("abc", "x.sqlite3"))).profiles.values())
    assert _names(plan(one_file, 4, 8)) == [["a", "b", "c"]]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


PROFILES = {"alpha": "shared.sqlite3", "beta": "shared.sqlite3", "gamma": "gamma.sqlite3",
            "delta": "delta.sqlite3"}


@pytest.fixture
def served(sshd):
    """A folder per profile on the real sshd with two or three good workbooks (and in delta's,
    an empty report)."""
    base = Path(tempfile.mkdtemp(prefix="procs-", dir=sshd.root))
    os.chmod(base, 0o755)
    for k, name in enumerate(PROFILES):
        d = base / name
        d.mkdir()
        os.chmod(d, 0o755)
        for n in range(2 + k % 2):
            day = date(2026, 6, 8 + n)
            write_report(d / f"{demo_data.DAILY}_{day:%Y%m%d}_070012.xlsx", n_rows=3 + k,
                         day=day - timedelta(days=3), seed=n + 10 * k)
        if name == "delta":
            write_report(d / "Empty Loans_20260610_070012.xlsx", rows=[])
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _sshd_config(tmp_path: Path, sshd, base: Path, ledgers: dict[str, str]) -> Path:
    text = ""
    for name, ledger in ledgers.items():
        text += (
            f"[profile.{name}]\n"
            f'host = "127.0.0.1"\nport = {sshd.port}\nusername = "{sshd.username}"\n'
            f'key = "{sshd.key}"\nknown_hosts = "{sshd.known_hosts}"\nssh_config = "{sshd.ssh_config}"\n'
            f'remote_dir = "{base.name}/{name}"\nlocal_dir = "{tmp_path / "local" / name}"\n'
            f'ledger = "{tmp_path / ledger}"\ntimezone = "UTC"\nconcurrency = 2\n\n'
        )
    cfg = tmp_path / "config.toml"
    cfg.write_text(text)
    return cfg


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "REPORT_KEEPER_NOW": NOW, "XDG_STATE_HOME": str(tmp_path / "state"), **extra}


def _sync(tmp_path: Path, cfg: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--all-profiles",
                           "--json", *extra], capture_output=True, text=True, env=_env(tmp_path),
                          cwd=ROOT, timeout=300, stdin=subprocess.DEVNULL)


@pytest.mark.sshd
def test_profiles_shared_out_among_processes_give_the_one_document(sshd, served, tmp_path):
    cfg = _sshd_config(tmp_path, sshd, served, PROFILES)
    done = _sync(tmp_path, cfg, "--processes", "2")
    doc = json.loads(done.stdout)  # exactly one document
    assert done.returncode == 1, done.stderr  # delta's empty report: a warning, nothing worse
    assert doc["status"] == "warning" and list(doc["profiles"]) == list(PROFILES)
    for name in PROFILES:
        one = doc["profiles"][name]
        assert one["error"] is None and one["failed"] == [], (name, one)
        served_names = {p.name for p in (served / name).iterdir()}
        assert {d["name"] for d in one["downloaded"]} == served_names
        for d in one["downloaded"]:
            assert _sha(Path(d["path"])) == d["sha256"] == _sha(served / name / d["name"])
        assert {f["name"] for f in one["files"]} == served_names
        with Ledger.open(tmp_path / PROFILES[name], profile=name) as led:
            assert {d.name for d in led.downloads()} == served_names
            assert led.integrity_ok()
        assert one["status"] == ("warning" if name == "delta" else "ok")
    err = done.stderr.splitlines()
    for name in PROFILES:  # each profile's summary once; the run's line last, once
        assert err.count(f"== {name}") == 1, done.stderr
    assert err[-1] == "All 4 profiles: WARNING" and done.stderr.count("All ") == 1, done.stderr
    log = (tmp_path / "state" / "report-keeper" / "log" / "report-keeper.log").read_text()
    assert "sync --all-profiles: 4 profiles in 2 processes" in log
    pids = {line.split("[", 1)[1].split("]", 1)[0] for line in log.splitlines()
            if "sync --all-profiles finished" in line}
    assert len(pids) == 3  # each process's own line, and the run's

    again = _sync(tmp_path, cfg, "--processes", "1")  # the same ledgers, one process
    doc = json.loads(again.stdout)
    assert list(doc["profiles"]) == list(PROFILES)
    for name in PROFILES:
        one = doc["profiles"][name]
        assert one["downloaded"] == [] and set(one["skipped"]) == {p.name for p in (served / name).iterdir()}


def test_processes_out_of_range_is_a_usage_error(tmp_path):
    cfg = _config(tmp_path, {"a": "a.sqlite3", "b": "b.sqlite3"})
    for bad in ("0", "65"):
        done = _sync(tmp_path, cfg, "--processes", bad)
        assert done.returncode == 3 and "--processes" in done.stderr, done.stderr
        doc = json.loads(done.stdout)  # --json: one document all the same, no profile run
        assert doc == {"status": "critical", "profiles": {}, "error": doc["error"], "error_kind": "usage"}
    assert not (tmp_path / "a.sqlite3").exists()  # nothing was started


def _run_processes(marker: str) -> list[str]:
    """Live processes of the run ``marker`` (its own, its children's, their readers)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            if f"RK_TEST_RUN={marker}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
    return found


def _sharing(parent: int, profile: str) -> list[int]:
    """The processes the run ``parent`` started to sync ``profile`` as their share (not their
    own children, the workbook readers, which may carry the same command line)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and f"--share-profile={profile}".encode() in argv:
            found.append(int(pid))
    return found


@pytest.mark.sshd
def test_a_process_killed_mid_run_costs_only_its_own_profiles(sshd, served, tmp_path):
    ledgers = {"alpha": "alpha.sqlite3", "gamma": "gamma.sqlite3"}
    big = served / "alpha" / "Full Loan History_20260601_060000.xlsx"  # the oldest: it starts first
    big.write_bytes(os.urandom(48 * 1024 * 1024))
    cfg = _sshd_config(tmp_path, sshd, served, ledgers)
    marker = uuid.uuid4().hex
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--all-profiles", "--json",
         "--processes", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(tmp_path, RK_TEST_RUN=marker), cwd=ROOT, stdin=subprocess.DEVNULL)
    parts = tmp_path / "local" / "alpha" / ".report-keeper" / "parts"

    def downloading() -> bool:
        try:
            return any(p.stat().st_size > 0 for p in parts.glob("*.part"))
        except OSError:  # not there yet, or placed meanwhile
            return False

    deadline = time.monotonic() + 120  # a generous bound for a busy machine, not a timing
    while not downloading():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the big file was not seen downloading: {proc.communicate(timeout=60)[1][-3000:]}")
        time.sleep(0.005)
    (victim,) = _sharing(proc.pid, "alpha")
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=120)
    assert "Traceback" not in err, err[-3000:]
    assert proc.returncode == 2
    deadline = time.monotonic() + 60  # the killed process's workbook readers see it gone
    while _run_processes(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _run_processes(marker) == []
    doc = json.loads(out)
    assert doc["status"] == "critical" and list(doc["profiles"]) == ["alpha", "gamma"]
    alpha, gamma = doc["profiles"]["alpha"], doc["profiles"]["gamma"]
    assert alpha["status"] == "critical" and alpha["error_kind"] == "internal"
    assert "stopped from outside (SIGKILL)" in alpha["error"] and alpha["downloaded"] == []
    assert gamma["error"] is None and {d["name"] for d in gamma["downloaded"]} == {
        p.name for p in (served / "gamma").iterdir()}

    done = _sync(tmp_path, cfg, "--processes", "2")  # the next run: alpha completes, resumed
    doc = json.loads(done.stdout)
    alpha = doc["profiles"]["alpha"]
    assert alpha["error"] is None and alpha["failed"] == [], alpha
    held = set(alpha["skipped"]) | {d["name"] for d in alpha["downloaded"]}
    assert held == {p.name for p in (served / "alpha").iterdir()}
    assert _sha(tmp_path / "local" / "alpha" / big.name) == _sha(big)
    with Ledger.open(tmp_path / "alpha.sqlite3", profile="alpha") as led:
        assert led.integrity_ok()


@pytest.mark.sshd
def test_a_share_whose_ledger_cannot_be_opened_says_why_and_the_others_sync(sshd, served, tmp_path):
    ledgers = {"alpha": "alpha.sqlite3", "gamma": "gamma.sqlite3"}
    (tmp_path / "gamma.sqlite3").write_bytes(b"this is no ledger\n" * 200)
    cfg = _sshd_config(tmp_path, sshd, served, ledgers)
    done = _sync(tmp_path, cfg, "--processes", "2")
    assert done.returncode == 3, done.stderr  # as in one process: a ledger that cannot be used
    doc = json.loads(done.stdout)
    assert doc["status"] == "critical" and list(doc["profiles"]) == ["alpha", "gamma"]
    gamma = doc["profiles"]["gamma"]
    assert gamma["status"] == "critical" and gamma["error_kind"] == "ledger", gamma
    assert "gamma.sqlite3" in gamma["error"] and gamma["downloaded"] == []
    alpha = doc["profiles"]["alpha"]
    assert alpha["error"] is None and {d["name"] for d in alpha["downloaded"]} == {
        p.name for p in (served / "alpha").iterdir()}
    assert (tmp_path / "gamma.sqlite3").read_bytes() == b"this is no ledger\n" * 200  # left as it was
