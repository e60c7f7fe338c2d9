"""``sync --all-profiles`` with the profiles handed out among processes (``--processes``).

- How profiles are handed out: a ledger file's profiles are one group, the largest first;
  no more processes than ``--parallel`` or than groups, each with its part of ``--parallel``;
  each process filled to its part first, then the next group to the process whose profile
  ended; nothing more to a process gone or once the run is stopped. A name handed out that
  left the config meanwhile is that profile's configuration error.
- Against the real sshd, with a paused proxy holding some profiles still: the process held
  up leaves every other profile to the other; a process killed leaves its own profiles
  critical and the rest go to the other; every process killed leaves the profiles never
  handed out critical saying so; Ctrl-C lists those never handed out as interrupted.
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

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
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
from tui.commands.all_profiles import load_every
from tui.commands.processes import Handed, HandOut, plan, share_output
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


def _names(groups) -> list[list[str]]:
    return [[p.name for p in group] for group in groups]


def _sent(sends) -> list[tuple[int, list[str] | None]]:
    return [(k, None if group is None else [p.name for p in group]) for k, group in sends]


def test_a_ledger_files_profiles_are_one_group_handed_out_largest_first(tmp_path):
    ledgers = {"a": "x.sqlite3", "b": "x.sqlite3", "c": "c.sqlite3", "d": "d.sqlite3",
               "e": "x.sqlite3", "f": "f.sqlite3", "g": "g.sqlite3"}
    profiles = list(load_config(_config(tmp_path, ledgers)).profiles.values())
    # The group of three first, then the single ones in config order.
    run = plan(profiles, 2, 4)
    assert _names(run.groups) == [["a", "b", "e"], ["c"], ["d"], ["f"], ["g"]]
    assert run.parallel == [2, 2]  # --parallel shared out: a bound over every process
    assert plan(profiles, 2, 5).parallel == [3, 2]
    assert plan(profiles, 8, 8).parallel == [2, 2, 2, 1, 1]  # no more processes than groups
    assert plan(profiles, 8, 2).parallel == [1, 1]  # nor than --parallel
    assert plan(profiles, 1, 8).parallel == [8]
    one_file = list(load_config(_config(tmp_path, dict.fromkeys("abc", "x.sqlite3"))).profiles.values())
    assert plan(one_file, 4, 8).parallel == [8]


def test_profiles_are_handed_to_the_process_that_has_room(tmp_path):
    ledgers = {"a": "x.sqlite3", "b": "x.sqlite3", "c": "c.sqlite3", "d": "d.sqlite3",
               "e": "x.sqlite3", "f": "f.sqlite3", "g": "g.sqlite3"}
    run = plan(list(load_config(_config(tmp_path, ledgers)).profiles.values()), 2, 4)
    hand = HandOut(run.groups, run.parallel)
    # The first wave: each process up to its part of --parallel, where fewest are held; a
    # ledger file's group whole, even beyond it (the process runs it two at a time).
    assert _sent(hand.next()) == [(0, ["a", "b", "e"]), (1, ["c"]), (1, ["d"])]
    assert hand.next() == []  # no room anywhere
    hand.freed(1)  # a profile of process 1 ended: its slot takes the next group
    assert _sent(hand.next()) == [(1, ["f"])]
    hand.freed(0)
    assert hand.next() == []  # process 0 still holds two
    hand.freed(0)
    # The last group, and "no more" to every process, once.
    assert _sent(hand.next()) == [(0, ["g"]), (0, None), (1, None)]
    hand.freed(1)
    assert hand.next() == [] and hand.left() == []
    assert _names(hand.handed) == [["a", "b", "e", "g"], ["c", "d", "f"]]


def test_a_process_gone_gets_nothing_more_and_a_stopped_run_hands_nothing_out(tmp_path):
    ledgers = {"a": "x.sqlite3", "b": "x.sqlite3", "c": "c.sqlite3", "d": "d.sqlite3",
               "e": "x.sqlite3", "f": "f.sqlite3", "g": "g.sqlite3"}
    run = plan(list(load_config(_config(tmp_path, ledgers)).profiles.values()), 2, 2)
    hand = HandOut(run.groups, run.parallel)
    assert _sent(hand.next()) == [(0, ["a", "b", "e"]), (1, ["c"])]
    hand.closed(0)  # killed: what it held stays its own, the rest goes to the others
    hand.freed(1)
    assert _sent(hand.next()) == [(1, ["d"])]
    hand.stop()  # Ctrl-C: nothing more is handed out, and no "no more" either (each is stopped)
    hand.freed(1)
    assert hand.next() == []
    assert _names([hand.left()]) == [["f", "g"]]
    assert _names(hand.handed) == [["a", "b", "e"], ["c", "d"]]
    every_gone = HandOut(run.groups, run.parallel)
    every_gone.closed(0)
    every_gone.closed(1)
    assert every_gone.next() == [] and len(every_gone.left()) == 7


async def test_a_profile_handed_out_that_left_the_config_is_listed_with_that_error(tmp_path):
    """The config changed between the parent's reading and the process's: a name handed out
    that the process does not know is a configuration error of that profile alone (exit 3,
    as alone), its slot free at once; one whose settings became wrong gets its own error."""
    cfg = _config(tmp_path, {"a": "a.sqlite3", "b": "b.sqlite3"})
    cfg.write_text(cfg.read_text() + '[profile.bad]\nhost = "h"\nconcurrency = "lots"\n')
    every = load_every(argparse.Namespace(config=str(cfg)))
    parent, child = socket.socketpair()
    handed = Handed(child.detach(), every)
    words, tell = await asyncio.open_connection(sock=parent)
    tell.write(b'{"profiles": ["gone", "b"]}\n{"profiles": ["bad"]}\n{"end": true}\n')
    failed: dict[str, tuple[str, str]] = {}
    assert [p.name async for p in handed.profiles(failed)] == ["b"]
    assert failed["gone"] == ("configuration: profile: 'gone' is no longer in the config (it changed "
                              "during the run)", "config")
    assert failed["bad"][1] == "config" and "concurrency" in failed["bad"][0]
    assert [await words.readline() for _ in range(2)] == [b"free\n"] * 2  # gone's and bad's slots
    mine = handed.selection()
    assert mine.names == ("b", "bad", "gone") and [p.name for p in mine.profiles] == ["b"]
    handed.close()
    tell.close()


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
                 port: int | None = None, proxied: set[str] | None = None) -> Path:
    """``port``: a proxy's in front of the sshd (the sshd's host key, known under that port),
    for every profile or, with ``proxied``, for those only (their requests then wait on a
    paused proxy for as long as it takes: the test resumes it)."""
    known_hosts = sshd.known_hosts
    if port is not None:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(sshd.known_hosts.read_text().replace(f"]:{sshd.port} ", f"]:{port} "))
    text = ""
    for name, ledger in ledgers.items():
        through = port is not None and (proxied is None or name in proxied)
        text += (
            f"[profile.{name}]\n"
            f'host = "127.0.0.1"\nport = {port if through else sshd.port}\nusername = "{sshd.username}"\n'
            f'key = "{sshd.key}"\nknown_hosts = "{known_hosts if through else sshd.known_hosts}"\n'
            f'ssh_config = "{sshd.ssh_config}"\n'
            f'remote_dir = "{base.name}/{name}"\nlocal_dir = "{tmp_path / "local" / name}"\n'
            f'ledger = "{tmp_path / ledger}"\ntimezone = "UTC"\nconcurrency = 2\n'
            + ("request_timeout = 3600\n" if proxied is not None and through else "") + "\n"
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


def test_a_hand_out_typed_by_hand_without_its_socket_is_a_usage_error(tmp_path):
    # The descriptor of the socket a process is handed its profiles over: typed by hand, it
    # is no socket (or a descriptor the process was meant to write to), or beside named ones.
    cfg = _config(tmp_path, {"a": "a.sqlite3", "b": "b.sqlite3"})
    for bad, said in ((["--share-handout=2"], "is not between"), (["--share-handout=7"], "is no socket"),
                      (["--share-handout=7", "--share-profile=a"], "not both")):
        done = _sync(tmp_path, cfg, "--processes", "1", *bad)
        assert done.returncode == 3 and "--share-handout" in done.stderr and said in done.stderr, done.stderr
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


def _holding(parent: int, folder: Path) -> list[int]:
    """The processes the run ``parent`` started (not their own children, the workbook readers)
    that hold a file under ``folder`` open: the one syncing the profile of that local folder
    (which one is the hand-out's choice), downloading into its part file."""
    found = []
    for pid in children_with(parent, b"--all-profiles"):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"{folder}/"):
                    found.append(pid)
                    break
            except OSError:
                continue
    return found


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
        (victim,) = _holding(proc.pid, tmp_path / "local" / "alpha")
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
            children = _holding(proc.pid, tmp_path / "local" / "alpha") + _holding(proc.pid, tmp_path / "local" / "gamma")
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


# ------------------------------------------------- profiles handed out as processes have room

BIG_NAME = "Full Loan History_20260601_060000.xlsx"  # the oldest: its profile starts with it


def _serve_more(served: Path, names: list[str]) -> None:
    """A folder of one or two good workbooks for each of ``names`` beside the fixture's."""
    for k, name in enumerate(names):
        d = served / name
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o755)
        for n in range(1 + k % 2):
            day = date(2026, 6, 8 + n)
            write_report(d / f"{demo_data.DAILY}_{day:%Y%m%d}_070012.xlsx", n_rows=3,
                         day=day - timedelta(days=3), seed=100 + 10 * k + n)


def _big_part(tmp_path: Path, name: str) -> Path:
    return (tmp_path / "local" / name / ".report-keeper" / "parts"
            / part_name(RemoteFile(BIG_NAME, BIG, datetime.now(UTC))))


def _downloading(tmp_path: Path, name: str) -> bool:
    try:
        return _big_part(tmp_path, name).stat().st_size > 0
    except OSError:  # not there yet
        return False


async def _until(check, proc, what: str, bound: float = 120) -> None:
    deadline = time.monotonic() + bound  # a generous bound for a busy machine, not a timing
    while not check():
        if proc.returncode is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} was not seen (exit {proc.returncode})")
        await asyncio.sleep(0.01)


async def _lines(stream: asyncio.StreamReader, into: list[str]) -> None:
    async for line in stream:
        into.append(line.decode(errors="replace").rstrip("\n"))


async def _start(tmp_path: Path, cfg: Path, marker: str, *extra: str):
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--all-profiles", "--json",
        "--processes", "2", "--parallel", "2", *extra, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=_env(tmp_path, RK_TEST_RUN=marker), cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL)


def _served_names(served: Path, name: str) -> set[str]:
    return {p.name for p in (served / name).iterdir()}


def _profiles_per_process(tmp_path: Path) -> list[int]:
    """How many profiles each process of the run synced, as each said in the log."""
    log = (tmp_path / "state" / "report-keeper" / "log" / "report-keeper.log").read_text()
    return sorted(int(line.split(" over ", 1)[1].split()[0]) for line in log.splitlines()
                  if "sync --all-profiles finished" in line and " processes" not in line)


class _HeldRun:
    """A run of ``sync --all-profiles --processes 2 --parallel 2`` (:func:`_held_run`): its
    process, its proxy and the lines it says."""

    def __init__(self, proc: asyncio.subprocess.Process, proxy: TcpProxy) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.proc, self.proxy = proc, proxy
        self.said: list[str] = []
        self._reading = asyncio.ensure_future(_lines(proc.stderr, self.said))
        self._document = asyncio.ensure_future(proc.stdout.read())

    async def until_downloading(self, tmp_path: Path, *names: str) -> None:
        await _until(lambda: all(_downloading(tmp_path, n) for n in names), self.proc,
                     f"the big downloads of {', '.join(names)}")

    async def ended(self) -> dict:
        """The run's document once it has ended (having said no Traceback)."""
        out = await asyncio.wait_for(self._document, 300)
        await asyncio.wait_for(self._reading, 60)
        await asyncio.wait_for(self.proc.wait(), 60)
        assert "Traceback" not in "\n".join(self.said), self.said[-40:]
        return json.loads(out)


@contextlib.asynccontextmanager
async def _held_run(sshd, served: Path, tmp_path: Path, names: list[str], held: set[str]):
    """A run over ``names`` whose ``held`` profiles each start with a big file that comes
    through a proxy slowed until the test has looked (the others connect directly); whatever
    a failed test left of it ends with the test."""
    for name in held:
        (served / name / BIG_NAME).write_bytes(os.urandom(BIG))
    marker = uuid.uuid4().hex
    async with TcpProxy(sshd.port, rate=RATE) as proxy:
        cfg = _sshd_config(tmp_path, sshd, served, {n: f"{n}.sqlite3" for n in names},
                           port=proxy.port, proxied=held)
        run = _HeldRun(await _start(tmp_path, cfg, marker), proxy)
        try:
            yield run
        finally:
            proxy.resume()
            for pid in _run_pids(marker):
                os.kill(pid, signal.SIGKILL)



@pytest.mark.sshd
async def test_a_process_held_up_by_one_profile_leaves_the_others_to_the_process_with_room(
        sshd, served, tmp_path):
    """Each process takes profiles as a slot of its --parallel frees, not a share fixed at the
    start: while alpha's download stands still (its server's replies held), the other process
    syncs every other profile, one after the other, and the run ends when alpha's does."""
    names = ["alpha", "beta", "gamma", "delta", "epsilon"]
    _serve_more(served, ["epsilon"])
    async with _held_run(sshd, served, tmp_path, names, {"alpha"}) as run:
        await run.until_downloading(tmp_path, "alpha")
        run.proxy.pause()
        said = run.said
        others = names[1:]
        await _until(lambda: all(any(line.startswith(f"{n}: ") for line in said) for n in others),
                     run.proc, "the other profiles' ends while alpha stood still")
        assert not any(line.startswith("alpha: ") for line in said)
        run.proxy.rate = None
        run.proxy.resume()
        doc = await run.ended()
    assert run.proc.returncode == 2, said[-40:]  # alpha's big file of random bytes is no workbook
    assert list(doc["profiles"]) == names
    for name in names:
        one = doc["profiles"][name]
        assert one["error"] is None and one["failed"] == [], (name, one)
        assert {d["name"] for d in one["downloaded"]} == _served_names(served, name)
    assert said.count("== alpha") == 1 and said[-1] == "All 5 profiles: CRITICAL", said
    assert _profiles_per_process(tmp_path) == [1, 4]


@pytest.mark.sshd
async def test_a_process_killed_leaves_its_own_profiles_and_the_rest_go_to_the_others(
        sshd, served, tmp_path):
    """alpha and beta are handed to one process each and stand still; alpha's process is
    killed: alpha is critical (internal), and gamma and delta, not handed out yet, go to the
    process left, which syncs them after beta."""
    names = ["alpha", "beta", "gamma", "delta"]
    async with _held_run(sshd, served, tmp_path, names, {"alpha", "beta"}) as run:
        await run.until_downloading(tmp_path, "alpha", "beta")
        run.proxy.pause()
        (victim,) = _holding(run.proc.pid, tmp_path / "local" / "alpha")
        assert _holding(run.proc.pid, tmp_path / "local" / "beta") != [victim]
        os.kill(victim, signal.SIGKILL)
        await _until(lambda: victim not in children_with(run.proc.pid, b"--all-profiles"), run.proc,
                     "the killed process's end")
        run.proxy.rate = None  # beta's big file, then gamma and delta, at full speed
        run.proxy.resume()
        doc = await run.ended()
    assert run.proc.returncode == 2
    assert list(doc["profiles"]) == names
    alpha = doc["profiles"]["alpha"]
    assert alpha["status"] == "critical" and alpha["error_kind"] == "internal", alpha
    assert "stopped from outside (SIGKILL)" in alpha["error"] and alpha["downloaded"] == []
    for name in ("beta", "gamma", "delta"):
        one = doc["profiles"][name]
        assert one["error"] is None and one["failed"] == [], (name, one)
        assert {d["name"] for d in one["downloaded"]} == _served_names(served, name)


@pytest.mark.sshd
async def test_ctrl_c_lists_the_profiles_never_handed_out_as_interrupted(sshd, served, tmp_path):
    """Stopped while alpha and beta hold both slots: they record what is complete and end
    interrupted; gamma, delta and epsilon, never handed out, are listed interrupted too
    (nothing of them downloaded, no ledger made), each said once, in the config's order."""
    names = ["alpha", "beta", "gamma", "delta", "epsilon"]
    _serve_more(served, ["epsilon"])
    async with _held_run(sshd, served, tmp_path, names, {"alpha", "beta"}) as run:
        await run.until_downloading(tmp_path, "alpha", "beta")
        run.proxy.pause()
        run.proc.send_signal(signal.SIGINT)
        run.proxy.resume()  # the rest of the big files would take a minute: they are stopped first
        doc = await run.ended()
    said = run.said
    assert run.proc.returncode == 2
    assert doc["status"] == "critical" and list(doc["profiles"]) == names
    for name in names:
        one = doc["profiles"][name]
        assert one["status"] == "critical" and one["error_kind"] == "interrupted", (name, one)
        assert said.count(f"== {name}") == 1, said
    for name in ("gamma", "delta", "epsilon"):
        one = doc["profiles"][name]
        assert one["downloaded"] == one["files"] == one["failed"] == [], (name, one)
        assert not (tmp_path / f"{name}.sqlite3").exists()
        assert not (tmp_path / "local" / name).exists()
    assert said[-1] == "All 5 profiles: CRITICAL", said


@pytest.mark.sshd
async def test_every_process_killed_leaves_the_profiles_not_handed_out_critical_saying_so(
        sshd, served, tmp_path):
    """Both processes killed while alpha and beta hold them: gamma and delta, never handed out,
    are critical (internal) saying that every process ended before their turn; nothing of them
    was made."""
    names = ["alpha", "beta", "gamma", "delta"]
    async with _held_run(sshd, served, tmp_path, names, {"alpha", "beta"}) as run:
        await run.until_downloading(tmp_path, "alpha", "beta")
        run.proxy.pause()
        victims = children_with(run.proc.pid, b"--all-profiles")
        assert len(victims) == 2
        for victim in victims:
            os.kill(victim, signal.SIGKILL)
        doc = await run.ended()
    said = run.said
    assert run.proc.returncode == 2
    assert list(doc["profiles"]) == names
    for name in ("alpha", "beta"):
        one = doc["profiles"][name]
        assert one["error_kind"] == "internal" and "stopped from outside (SIGKILL)" in one["error"], one
    for name in ("gamma", "delta"):
        one = doc["profiles"][name]
        assert one["status"] == "critical" and one["error_kind"] == "internal", one
        assert one["error"].startswith("not synced: every process of the run ended before this "
                                       "profile's turn (stopped from outside (SIGKILL))"), one
        assert one["downloaded"] == [] and not (tmp_path / f"{name}.sqlite3").exists()
        at = said.index(f"== {name}")
        assert said[at + 1].startswith("report-keeper: not synced"), said
    assert said[-1] == "All 4 profiles: CRITICAL", said
