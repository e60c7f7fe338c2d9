"""``sync --all-profiles`` with the profiles shared out among processes (``--processes``).

- How profiles are shared out: a ledger file's profiles stay together, the shares balanced,
  no more processes than ``--parallel`` or than groups; one process when that is all it makes.
- Against the real sshd: the run's one document lists every profile in the config's order
  with its own result, the human output has each profile's summary once and the run's line
  last, the log names the processes, and a run in one process afterwards finds everything held.
- A process killed from outside mid-run: its profiles are critical and say so, the other
  processes' profiles complete, still one document; the next run completes everything.
- The run itself killed (SIGKILL: nothing of it runs any more) while its processes download
  through a slowed connection: they see their parent gone and stop as on its Ctrl-C, each
  saying so in the log; no process is left, and the next run completes and resumes. A
  parent gone before its process first looked is seen too; a line written to it meanwhile is
  dropped, not raised.
"""

from __future__ import annotations

import asyncio
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
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from tests.fixtures_sshd import TcpProxy, threaded_proxy
from tests.xlsx_factory import write_report
from tui.commands.processes import plan, share_output
from tui.core.config import load_config
from tui.core.ledger import Ledger
from tui.core.model import RemoteFile
from tui.demo import data as demo_data
from tui.sftp.parts import part_name

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


def _sshd_config(tmp_path: Path, sshd, base: Path, ledgers: dict[str, str], *,
                 port: int | None = None) -> Path:
    """``port``: a proxy's in front of the sshd (the sshd's host key, known under that port)."""
    known_hosts = sshd.known_hosts
    if port is not None:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(sshd.known_hosts.read_text().replace(f"]:{sshd.port} ", f"]:{port} "))
    text = ""
    for name, ledger in ledgers.items():
        text += (
            f"[profile.{name}]\n"
            f'host = "127.0.0.1"\nport = {port or sshd.port}\nusername = "{sshd.username}"\n'
            f'key = "{sshd.key}"\nknown_hosts = "{known_hosts}"\nssh_config = "{sshd.ssh_config}"\n'
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


def test_a_share_option_out_of_range_typed_by_hand_is_a_usage_error(tmp_path):
    # A share's options are never typed by hand; typed, a pool of no readers would wait for
    # ever, a parent id of 0 would make the share stop at once for no reason.
    cfg = _config(tmp_path, {"a": "a.sqlite3", "b": "b.sqlite3"})
    for bad in ("--share-readers=0", "--share-readers=-3", "--share-parent=0"):
        done = _sync(tmp_path, cfg, "--processes", "1", "--share-profile=a", bad)
        assert done.returncode == 3 and bad.split("=")[0] in done.stderr, done.stderr
        assert json.loads(done.stdout)["error_kind"] == "usage"
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


def children_with(parent: int, word: bytes) -> list[int]:
    """The live processes whose parent is ``parent`` and whose command line has ``word``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and word in argv:
            found.append(int(pid))
    return found


def _sharing(parent: int, profile: str) -> list[int]:
    """The processes the run ``parent`` started to sync ``profile`` as their share (not their
    own children, the workbook readers, which may carry the same command line)."""
    return children_with(parent, f"--share-profile={profile}".encode())


@pytest.mark.sshd
def test_a_process_killed_mid_run_costs_only_its_own_profiles(sshd, served, tmp_path):
    ledgers = {"alpha": "alpha.sqlite3", "gamma": "gamma.sqlite3"}
    big = served / "alpha" / "Full Loan History_20260601_060000.xlsx"  # the oldest: it starts first
    big.write_bytes(os.urandom(16 * 1024 * 1024))
    marker = uuid.uuid4().hex
    # Slowed (the big file takes seconds), so the run is seen mid-download and the kill lands
    # then, however busy the machine; at full speed it could be over between two looks.
    with threaded_proxy(sshd.port, rate=4_000_000) as proxy:
        cfg = _sshd_config(tmp_path, sshd, served, ledgers, port=proxy.port)
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
    cfg = _sshd_config(tmp_path, sshd, served, ledgers)  # the next run: straight to the sshd
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


def _break_ledger(tmp_path: Path, cfg: Path) -> tuple[Path, bytes]:
    """gamma's ledger file is not a database."""
    (tmp_path / "gamma.sqlite3").write_bytes(b"this is no ledger\n" * 200)
    return tmp_path / "gamma.sqlite3", b"this is no ledger\n" * 200


def _break_local_dir(tmp_path: Path, cfg: Path) -> tuple[Path, bytes]:
    """gamma's folder cannot be made now (a file where its parent folder should be: not even
    root can create it; the config's text is fine, the disk is not)."""
    cfg.write_text(cfg.read_text().replace(f'"{tmp_path / "local" / "gamma"}"',
                                           f'"{tmp_path / "blocker" / "gamma"}"'))
    (tmp_path / "blocker").write_bytes(b"not a folder")
    return tmp_path / "blocker", b"not a folder"


@pytest.mark.sshd
@pytest.mark.parametrize("processes", ["1", "2"])
@pytest.mark.parametrize(("breaks", "kind", "said"), [(_break_ledger, "ledger", "gamma.sqlite3"),
                                                      (_break_local_dir, "config", "cannot be created")])
def test_a_broken_ledger_or_folder_stops_only_its_own_profile(sshd, served, tmp_path, processes,
                                                               breaks, kind, said):
    # In two processes gamma shares one with alpha (the plan puts it where fewest are).
    ledgers = {"alpha": "alpha.sqlite3", "beta": "beta.sqlite3", "gamma": "gamma.sqlite3"}
    cfg = _sshd_config(tmp_path, sshd, served, ledgers)
    broken, content = breaks(tmp_path, cfg)
    done = _sync(tmp_path, cfg, "--processes", processes)
    assert done.returncode == 3, done.stderr  # as `sync --profile gamma` says of it
    doc = json.loads(done.stdout)
    assert doc["status"] == "critical" and list(doc["profiles"]) == ["alpha", "beta", "gamma"]
    gamma = doc["profiles"]["gamma"]
    assert gamma["status"] == "critical" and gamma["error_kind"] == kind, gamma
    assert said in gamma["error"] and gamma["downloaded"] == [] and gamma["files"] == []
    for name in ("alpha", "beta"):  # one broken part leaves no other library's reports unfetched
        one = doc["profiles"][name]
        assert one["error"] is None and one["status"] == "ok", one
        assert {d["name"] for d in one["downloaded"]} == {p.name for p in (served / name).iterdir()}
    assert broken.read_bytes() == content  # left as it was
    assert not (tmp_path / "local" / "gamma").exists() or not any((tmp_path / "local" / "gamma").iterdir())
    if kind == "config":
        assert not (tmp_path / "gamma.sqlite3").exists()  # its ledger is not even opened, as alone
    err = done.stderr.splitlines()
    at = err.index("== gamma")
    assert err[at + 1].startswith("report-keeper: ") and said in err[at + 1], done.stderr
    assert err[-1] == "All 3 profiles: CRITICAL", done.stderr


def test_a_path_of_the_wrong_kind_now_stops_only_the_profile_naming_it(tmp_path):
    # beta's known_hosts became a folder (someone's mkdir, a restore gone wrong): a state of
    # the disk, not of the config text. alpha's commands still run; beta's say why (exit 3).
    ledgers = {"alpha": "alpha.sqlite3", "beta": "beta.sqlite3"}
    cfg = _config(tmp_path, ledgers)
    (tmp_path / "kh-folder").mkdir()
    cfg.write_text(cfg.read_text().replace('[profile.beta]\n', f'[profile.beta]\nknown_hosts = "{tmp_path / "kh-folder"}"\n'))

    def check(*words: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "tui", "check", "--config", str(cfg), "--offline", "--json",
                               *words], capture_output=True, text=True, env=_env(tmp_path), cwd=ROOT,
                              timeout=120, stdin=subprocess.DEVNULL)

    alone = check("--profile", "alpha")
    assert alone.returncode in (0, 1, 2) and json.loads(alone.stdout).get("error_kind") is None, alone.stderr
    beta = check("--profile", "beta")
    assert beta.returncode == 3 and json.loads(beta.stdout)["error_kind"] == "config"
    assert "known_hosts" in beta.stderr and "is a folder" in beta.stderr
    every = check("--all-profiles")
    assert every.returncode == 3, every.stderr
    doc = json.loads(every.stdout)
    assert list(doc["profiles"]) == ["alpha", "beta"]
    assert doc["profiles"]["beta"]["error_kind"] == "config" and "known_hosts" in doc["profiles"]["beta"]["error"]
    assert doc["profiles"]["alpha"].get("error_kind") is None and "reports" in doc["profiles"]["alpha"]
    assert (tmp_path / "kh-folder").is_dir()


def test_check_all_profiles_with_a_ledger_that_cannot_be_opened_checks_the_others(tmp_path):
    ledgers = {"alpha": "alpha.sqlite3", "gamma": "gamma.sqlite3"}
    (tmp_path / "gamma.sqlite3").write_bytes(b"this is no ledger\n" * 200)
    cfg = _config(tmp_path, ledgers)
    done = subprocess.run([sys.executable, "-m", "tui", "check", "--config", str(cfg), "--all-profiles",
                           "--offline", "--json"], capture_output=True, text=True, env=_env(tmp_path),
                          cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 3, done.stderr
    doc = json.loads(done.stdout)
    assert list(doc["profiles"]) == ["alpha", "gamma"]
    gamma = doc["profiles"]["gamma"]
    assert gamma["status"] == "critical" and gamma["error_kind"] == "ledger" and "gamma.sqlite3" in gamma["error"]
    assert gamma["reports"] == []
    alpha = doc["profiles"]["alpha"]
    assert alpha.get("error_kind") != "ledger" and "reports" in alpha and "connection" in alpha, alpha
    assert "== gamma\nreport-keeper: " in done.stderr
    assert (tmp_path / "gamma.sqlite3").read_bytes() == b"this is no ledger\n" * 200


def _run_pids(marker: str) -> list[int]:
    """The live processes of the run ``marker`` (as :func:`_run_processes`), by id."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if f"RK_TEST_RUN={marker}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:
            continue
    return found


#: The slowed connection: each big file takes a minute or more to come through it, far longer
#: than the processes of a killed run may outlive it.
RATE = 256 * 1024
BIG = 16 * 1024 * 1024


@pytest.mark.sshd
async def test_a_run_killed_outright_leaves_no_process_and_the_next_run_resumes(sshd, served, tmp_path):
    """SIGKILL to the run alone (``timeout -s KILL``, the OOM killer, a supervisor): it cannot
    pass a stop on. Each of its processes sees its parent gone, stops as on its Ctrl-C (what is
    complete recorded, part files kept, ledgers unlocked, workbook readers stopped) without a
    word on its broken pipes, and says why in the log."""
    ledgers = {"alpha": "alpha.sqlite3", "gamma": "gamma.sqlite3"}
    for name in ledgers:  # the oldest: each process starts with it
        (served / name / "Full Loan History_20260601_060000.xlsx").write_bytes(os.urandom(BIG))
    marker = uuid.uuid4().hex
    async with TcpProxy(sshd.port, rate=RATE) as proxy:
        cfg = _sshd_config(tmp_path, sshd, served, ledgers, port=proxy.port)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--all-profiles", "--json",
             "--processes", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=_env(tmp_path, RK_TEST_RUN=marker), cwd=ROOT, stdin=subprocess.DEVNULL)
        try:
            # The big file's own part: a small file, read whole in one request, may land first.
            big = part_name(RemoteFile("Full Loan History_20260601_060000.xlsx", BIG, datetime.now(UTC)))

            def downloading(name: str) -> bool:
                try:
                    part = tmp_path / "local" / name / ".report-keeper" / "parts" / big
                    return part.stat().st_size > 0
                except OSError:  # not there yet
                    return False

            deadline = time.monotonic() + 120  # a generous bound for a busy machine, not a timing
            while not all(downloading(name) for name in ledgers):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the downloads were not seen: {proc.communicate(timeout=60)[1][-3000:]}")
                await asyncio.sleep(0.01)
            children = _sharing(proc.pid, "alpha") + _sharing(proc.pid, "gamma")
            assert len(children) == 2
            proc.kill()  # the run alone: its processes are in process groups of their own
            proc.communicate(timeout=60)
            deadline = time.monotonic() + 30  # a bound for a busy machine; without a stop, a minute more
            while _run_pids(marker) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert _run_processes(marker) == []
        finally:
            for pid in _run_pids(marker):  # what a failed test left: it ends with the test
                os.kill(pid, signal.SIGKILL)
        log = (tmp_path / "state" / "report-keeper" / "log" / "report-keeper.log").read_text()
        for pid in children:  # each said why it stopped, and stopped as on a Ctrl-C
            mine = [line for line in log.splitlines() if f"[{pid}]" in line]
            assert any(f"parent process {proc.pid} is gone" in line for line in mine), log[-3000:]
            assert any("sync --all-profiles finished: critical" in line for line in mine), log[-3000:]
        assert "Traceback" not in log

        proxy.rate = None  # the next run: as fast as it goes
        again = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--all-profiles", "--json",
            "--processes", "1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=_env(tmp_path), cwd=ROOT, stdin=asyncio.subprocess.DEVNULL)
        out, err = await asyncio.wait_for(again.communicate(), 300)
    assert b"Traceback" not in err, err[-3000:]
    assert again.returncode == 2, err[-3000:]  # the big files' random bytes are no workbooks
    doc = json.loads(out)
    for name, ledger in ledgers.items():
        one = doc["profiles"][name]
        assert one["error"] is None and one["failed"] == [], (name, one)  # no ledger or part locked
        resumed = {d["name"]: d["resumed_from"] for d in one["downloaded"]}
        assert resumed["Full Loan History_20260601_060000.xlsx"] > 0  # the part file was kept
        served_names = {p.name for p in (served / name).iterdir()}
        assert set(resumed) | set(one["skipped"]) == served_names
        with Ledger.open(tmp_path / ledger, profile=name) as led:
            recorded = {d.name: d.sha256 for d in led.downloads()}
            assert led.integrity_ok()
        assert recorded == {n: _sha(served / name / n) for n in served_names}
        for n in served_names:
            assert _sha(tmp_path / "local" / name / n) == recorded[n]


@pytest.mark.sshd
def test_a_share_whose_parent_was_gone_before_it_looked_stops_at_once(sshd, served, tmp_path):
    """The parent killed while one of its processes was still starting: the process is told
    its parent's id, so it knows its parent gone although it never saw it, and stops."""
    cfg = _sshd_config(tmp_path, sshd, served, {"alpha": "alpha.sqlite3"})
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()  # an id that no running process has
    done = subprocess.run(
        [sys.executable, "-m", "tui", "sync", "--all-profiles", "--json", "--processes", "1",
         f"--config={cfg}", "--share-profile=alpha", f"--share-parent={gone.pid}"],
        capture_output=True, env=_env(tmp_path), cwd=ROOT, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 2  # interrupted
    assert done.stdout == done.stderr == b""  # its output was for the parent: it goes nowhere
    log = (tmp_path / "state" / "report-keeper" / "log" / "report-keeper.log").read_text()
    assert f"the run's parent process {gone.pid} is gone" in log
    assert "sync --all-profiles finished: critical over 1 profiles" in log
    assert not any(p.is_file() for p in (tmp_path / "local" / "alpha").glob("*"))  # none downloaded


def test_the_human_output_of_a_share_drops_what_a_parent_gone_cannot_read():
    """A pipe whose reader is gone (the run's parent killed): a write there fails (EPIPE).
    A share's human output drops it rather than raising in the middle of its sync."""
    read, write = os.pipe()
    os.close(read)
    raw = open(write, "w", buffering=1)  # line-buffered, as stderr is
    try:
        with pytest.raises(BrokenPipeError):  # what the stream itself does
            raw.write("alpha: ok, 1 downloaded, 0 failed\n")
        out = share_output(raw)
        line = "gamma: ok, 2 downloaded, 0 failed\n"
        assert out.write(line) == len(line)
        out.flush()
        assert out.fileno() == write  # otherwise the stream as it is
    finally:
        try:
            raw.close()
        except BrokenPipeError:
            pass
