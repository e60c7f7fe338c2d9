"""A ``sync`` killed outright (SIGKILL: ``timeout -s KILL``, the OOM killer, a supervisor
killing a cron job) leaves no workbook reader behind.

An idle reader sees its job pipe close and ends; one deep in a long parse reads no pipe until
the parse is over (up to the reader's time limit, minutes), and could outlive the sync by
that long. On Linux each reader asks the kernel to kill it when the sync dies
(``PR_SET_PDEATHSIG``). The test stands a stopped process (SIGSTOP: it reads nothing, as a
reader in a long parse) in for such a reader, kills the sync mid-download through a slowed
connection to the real sshd, and looks that every reader of it is gone within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.fixtures_sshd import threaded_proxy
from tests.test_sync_processes import BIG, RATE, ROOT, _env, _run_pids, _sshd_config, children_with, served  # noqa: F401 - fixture
from tui.core.ledger import Ledger

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")


def _readers(parent: int) -> list[int]:
    """The workbook readers started by process ``parent``."""
    return children_with(parent, b"tui.core.isolation")


def _started(pid: int) -> bool:
    """Reader ``pid`` has started (it waits on its job pipe): a reader stopped before that would
    stand in for none, since a real one goes on to ask for its end with the parent."""
    try:
        return (Path(f"/proc/{pid}/wchan").read_text().endswith("pipe_read")
                or Path(f"/proc/{pid}/syscall").read_text().startswith("0 0x0 "))  # read(0, ...)
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """``pid`` runs (not gone, and no zombie waiting for a parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.sshd
def test_a_sync_killed_outright_leaves_no_reader_even_one_in_a_long_parse(sshd, served, tmp_path):
    (served / "alpha" / "Full Loan History_20260601_060000.xlsx").write_bytes(os.urandom(BIG))
    marker = uuid.uuid4().hex
    readers: list[int] = []
    with threaded_proxy(sshd.port, rate=RATE) as proxy:
        cfg = _sshd_config(tmp_path, sshd, served, {"alpha": "alpha.sqlite3"}, port=proxy.port)
        proc = subprocess.Popen(
            [sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--profile", "alpha", "--json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(tmp_path, RK_TEST_RUN=marker),
            cwd=ROOT, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120  # a generous bound for a busy machine, not a timing
            # the small reports verified (the readers started), the big one still coming
            while not ((readers := _readers(proc.pid)) and all(map(_started, readers))):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"no reader seen: {proc.communicate(timeout=60)[1][-3000:]!r}")
                time.sleep(0.01)
            for pid in readers:  # each as deep in a parse as it gets: it reads nothing
                os.kill(pid, signal.SIGSTOP)
            assert proc.poll() is None  # the big file is still coming through the slowed link
            proc.kill()
            proc.communicate(timeout=60)
            deadline = time.monotonic() + 20  # a bound for a busy machine; without the fix, for ever
            while any(_alive(pid) for pid in readers) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert [pid for pid in readers if _alive(pid)] == []
        finally:
            for pid in readers:  # what a failed test left: it ends with the test
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def test_a_reader_started_from_a_thread_that_ends_lives_on_for_the_next_job(tmp_path):
    """Linux sends the death signal when the *thread* that started a process ends, not the
    process: a reader started by a short-lived thread (an executor's, the app's verify
    worker) would be killed idle, or mid-job under another thread's call. Readers are started
    by one thread that lives as long as the process, so the next job finds the same reader."""
    import threading

    from tests.xlsx_factory import write_report
    from tui.core.isolation import WorkerPool

    path = tmp_path / "Loans_20260609_070000.xlsx"
    write_report(path)
    job = {"path": str(path), "rules": {"date_column": None}}
    pool = WorkerPool(size=1)
    try:
        replies = []
        for _ in range(2):  # each call from a thread of its own, which then ends
            thread = threading.Thread(target=lambda: replies.append(pool.call("verify", job)))
            thread.start()
            thread.join()
            # The kernel sends the death signal as the thread exits, before its /proc entry
            # goes: once that is gone, a signal, had there been one, has been sent.
            deadline = time.monotonic() + 20
            while Path(f"/proc/self/task/{thread.native_id}").exists():
                assert time.monotonic() < deadline, "the thread never ended"
                time.sleep(0.01)
        assert [r["result"]["rows"] for r in replies] == [5, 5]
        assert pool.started == 1  # the first reader took the second job
    finally:
        pool.close()


def test_a_reader_whose_parent_is_gone_before_it_asked_ends_at_once():
    """The classic race: the parent killed between the reader's start and its request to die
    with it (which then never comes). The reader looks once more and ends, although its job
    pipe stays open (held here, as by a process that inherited it)."""
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()  # an id that no running process has
    reader = subprocess.Popen([sys.executable, "-m", "tui.core.isolation", "0", str(gone.pid)],
                              stdin=subprocess.PIPE, cwd=ROOT)
    try:
        assert reader.wait(timeout=60) == 0  # without the look, it waits on its pipe for ever
    finally:
        reader.kill()
        reader.wait()
        assert reader.stdin is not None
        reader.stdin.close()


@pytest.mark.sshd
def test_a_share_whose_parent_dies_after_its_sync_ended_says_so_and_writes_nothing(sshd, served, tmp_path):
    """The run's parent killed after a share's sync ended, while its alerts go out (a ping
    held by the server here), where the parent watch no longer looks: the process says in the
    log that its parent is gone and sends its document nowhere (a pipe to nobody), as when the
    watch saw it; its results are recorded and its alerts still go."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    arrived, release = threading.Event(), threading.Event()

    class Held(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            arrived.set()
            release.wait(120)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"OK")

        do_GET = do_POST = do_HEAD = _handle

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Held)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    cfg = _sshd_config(tmp_path, sshd, served, {"alpha": "alpha.sqlite3"})
    cfg.write_text(cfg.read_text() + f'[profile.alpha.notify]\nping_url = "http://127.0.0.1:{httpd.server_address[1]}/ping"\n')
    marker = uuid.uuid4().hex
    # The run's parent, standing in for `sync --all-profiles`: it starts the share, telling its id.
    parent = subprocess.Popen(
        [sys.executable, "-c", "import os, subprocess, sys; "
         "sys.exit(subprocess.call(sys.argv[1:] + [f'--share-parent={os.getpid()}']))",
         sys.executable, "-m", "tui", "sync", "--all-profiles", "--json", "--processes", "1",
         f"--config={cfg}", "--share-profile=alpha"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path, RK_TEST_RUN=marker), cwd=ROOT,
        stdin=subprocess.DEVNULL)
    try:
        assert arrived.wait(120), parent.communicate(timeout=60)  # the sync ended: its ping is out
        share = [pid for pid in _run_pids(marker)
                 if b"tui" in (argv := Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))
                 and b"--share-profile=alpha" in argv and pid != parent.pid]
        assert len(share) == 1
        parent.kill()
        parent.wait(timeout=60)
        release.set()
        deadline = time.monotonic() + 60  # a bound for a busy machine
        while _alive(share[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(share[0])
        out, _ = parent.communicate(timeout=60)  # what the share wrote to the pipe it shared
    finally:
        release.set()
        httpd.shutdown()
        for pid in _run_pids(marker):
            os.kill(pid, signal.SIGKILL)
    assert out == b""  # no document on a pipe to nobody
    log = (tmp_path / "state" / "report-keeper" / "log" / "report-keeper.log").read_text()
    assert f"the run's parent process {parent.pid} is gone (killed?) after this process's sync ended" in log
    assert "sync --all-profiles finished: ok over 1 profiles" in log  # its result, not a stop
    with Ledger.open(tmp_path / "alpha.sqlite3", profile="alpha") as led:
        assert {d.name for d in led.downloads()} == {p.name for p in (served / "alpha").iterdir()}
