"""The worker pool from asyncio code (``WorkerPool.acall``, ``validate_file_async``): what
``sync`` verifies through. The same promises as the threaded path: a worker that hangs, dies
or is cancelled takes only its own job with it, and a job waiting for a worker is never
forgotten, whoever frees or starts that worker."""

from __future__ import annotations

import array
import asyncio
import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import termios
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from tests.hostile_workbooks import CASES, write_all
from tests.test_hostile_workbooks import gone, hang
from tests.xlsx_factory import write_report
from tui.core import isolation, validate
from tui.core import status as st
from tui.core.validate import validate_file, validate_file_async

#: No test here should come near this; it only turns a hang into a failure.
HANG = 60


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def good(tmp_path):
    """A small good report."""
    return write_report(tmp_path / "good.xlsx", n_rows=2)


@pytest.fixture
def hung():
    """A pool of one worker, that worker hung in a job (its time limit far away): the pool and
    the worker's pid. The pool is closed afterwards."""
    pool = isolation.WorkerPool(1, time_limit=120)
    try:
        yield pool, hang(pool)
    finally:
        pool.close()


class SlowStartPool(isolation.WorkerPool):
    """A real pool whose workers take a moment longer to start, as on a loaded machine: each
    start waits until the test lets it go on (``go``), once it has said so (``spawning``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.spawning = threading.Event()
        self.go = threading.Event()

    def _spawn(self) -> isolation._Worker:
        self.spawning.set()
        self.go.wait(HANG)
        return super()._spawn()


async def test_a_job_waiting_while_another_thread_starts_the_worker_is_woken(tmp_path):
    good = write_report(tmp_path / "good.xlsx", n_rows=3)
    pool = SlowStartPool(1)
    try:
        starting = threading.Thread(target=pool.prestart)
        starting.start()
        assert await asyncio.to_thread(pool.spawning.wait, HANG)  # the only worker is starting
        job = asyncio.ensure_future(validate_file_async(good, pool=pool))
        deadline = time.monotonic() + HANG
        while not pool._async_waiters:  # the job must wait for it
            assert time.monotonic() < deadline, "the job never waited for the starting worker"
            await asyncio.sleep(0.01)
        pool.go.set()
        result = await asyncio.wait_for(job, HANG)
        starting.join()
        assert (result.status, result.rows) == (st.OK, 3)
        assert pool.started == 1
    finally:
        pool.go.set()
        pool.close()


async def test_threads_and_tasks_share_one_worker_without_losing_a_job(tmp_path):
    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    pool = isolation.WorkerPool(1)
    try:
        threaded = [asyncio.to_thread(validate_file, good, pool=pool) for _ in range(4)]
        tasks = [validate_file_async(good, pool=pool) for _ in range(8)]
        results = await asyncio.wait_for(asyncio.gather(*threaded, *tasks), HANG)
        assert [r.status for r in results] == [st.OK] * 12
        assert pool.started == 1
    finally:
        pool.close()


async def test_a_dying_worker_is_attributed_to_its_own_file(hostile, tmp_path):
    """Two workers, a file that aborts its reader among good ones: only its own job fails."""
    good = write_report(tmp_path / "good.xlsx", n_rows=4)
    pool = isolation.WorkerPool(2)
    try:
        files = [hostile["far-corner"] if i % 3 == 0 else good for i in range(18)]
        results = await asyncio.wait_for(
            asyncio.gather(*(validate_file_async(f, pool=pool) for f in files)), HANG)
        for i, r in enumerate(results):
            if i % 3 == 0:
                assert r.status == st.UNREADABLE and "memory" in r.message
            else:
                assert (r.status, r.rows) == (st.OK, 4)
    finally:
        pool.close()


async def test_a_job_past_its_time_limit_is_killed_reaped_and_replaced(tmp_path):
    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    pool = isolation.WorkerPool(1, time_limit=0.5)
    try:
        first = hang(pool)
        result = await asyncio.wait_for(validate_file_async(good, pool=pool), HANG)
        assert result.status == st.UNREADABLE
        assert "took longer than 0.5 s" in result.message
        assert gone(first)
        pool.time_limit = 60
        assert (await validate_file_async(good, pool=pool)).status == st.OK  # a fresh worker
        assert pool.worker_pids() != [first]
    finally:
        pool.close()


def _line_sent(pool: isolation.WorkerPool) -> bool:
    """A busy worker's stdin pipe holds the job's line (the worker is stopped: it reads nothing).
    A worker only taken for the job may not have been written to yet."""
    for worker in list(pool._busy):
        count = array.array("i", [0])
        try:
            fcntl.ioctl(worker._in.fileno(), termios.FIONREAD, count)
        except (OSError, ValueError):
            continue
        if count[0] > 0:
            return True
    return False


async def _busy(pool: isolation.WorkerPool, *, waiting: bool = False) -> None:
    """Until a job runs on the pool's (stopped) worker, its line written to it (and, with
    ``waiting``, another waits for it), however slowly a loaded machine gets it there."""
    deadline = time.monotonic() + HANG
    while not (_line_sent(pool) and (pool._async_waiters or not waiting)):
        assert time.monotonic() < deadline, "the jobs never took their places"
        await asyncio.sleep(0.01)


async def test_a_worker_killed_from_outside_fails_only_its_job(good, hung):
    pool, pid = hung
    job = asyncio.ensure_future(validate_file_async(good, pool=pool))
    await _busy(pool)  # the job is on the worker: it has written its line and awaits the reply
    os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
    result = await asyncio.wait_for(job, HANG)
    assert result.status == st.UNREADABLE and "memory" in result.message
    assert gone(pid)
    assert (await validate_file_async(good, pool=pool)).status == st.OK


async def test_a_cancelled_job_stops_its_worker_at_once(good, hung):
    pool, pid = hung
    job = asyncio.ensure_future(validate_file_async(good, pool=pool))
    await _busy(pool)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert gone(pid)
    assert pool.busy_pids() == []
    assert (await validate_file_async(good, pool=pool)).status == st.OK


async def _running_and_waiting(good: Path, pool: isolation.WorkerPool):
    """Two jobs on a pool of one (hung) worker, once one runs on it and the other waits for it
    (however slowly a loaded machine gets them there)."""
    running = asyncio.ensure_future(validate_file_async(good, pool=pool))
    waiting = asyncio.ensure_future(validate_file_async(good, pool=pool))
    deadline = time.monotonic() + HANG
    while not (pool.busy_pids() and pool._async_waiters):
        assert time.monotonic() < deadline, "the jobs never took their places"
        await asyncio.sleep(0.01)
    return running, waiting


async def test_a_job_waiting_for_a_worker_can_be_cancelled(good, hung):
    pool, pid = hung
    running, waiting = await _running_and_waiting(good, pool)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not gone(pid)  # the other job's worker is not touched
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert (await validate_file_async(good, pool=pool)).status == st.OK


async def test_a_released_worker_wakes_one_waiting_job_and_a_wake_up_lost_to_a_cancel_is_passed_on(good, tmp_path):
    """A worker released wakes the job waiting longest, not every waiting job (each would
    look, and all but one wait again: once per file). A job woken and cancelled before it
    looked passes the wake-up on: the other waiting jobs still get the worker."""
    pool = isolation.WorkerPool(1, time_limit=120)
    try:
        pid = hang(pool)
        running = asyncio.ensure_future(validate_file_async(good, pool=pool))
        await _busy(pool)
        waiting = [asyncio.ensure_future(validate_file_async(good, pool=pool)) for _ in range(3)]
        deadline = time.monotonic() + HANG
        while len(pool._async_waiters) < 3:
            assert time.monotonic() < deadline, "the jobs never took their places"
            await asyncio.sleep(0.01)
        woken: list[int] = []
        still_waiting: list[int] = []
        real_wake = isolation._wake

        def wake(waiter):
            woken.append(id(waiter))
            still_waiting.append(len(pool._async_waiters))
            real_wake(waiter)
            if len(woken) == 1:
                waiting[0].cancel()  # woken, then cancelled before it looks

        isolation._wake, first = wake, pool._async_waiters[0][1]
        try:
            running.cancel()  # its worker is killed and released: one may start another
            with pytest.raises(asyncio.CancelledError):
                await running
            with pytest.raises(asyncio.CancelledError):
                await waiting[0]
            results = await asyncio.wait_for(asyncio.gather(*waiting[1:]), HANG)
        finally:
            isolation._wake = real_wake
        assert [r.status for r in results] == [st.OK, st.OK]
        assert woken[0] == id(first) and still_waiting[0] == 2  # the others were left waiting
        assert len(woken) == len(set(woken)) <= 3
        assert gone(pid)
    finally:
        pool.close()


async def test_closing_the_pool_ends_running_and_waiting_jobs_with_pool_closed(good, hung):
    pool, pid = hung
    running, waiting = await _running_and_waiting(good, pool)
    await asyncio.to_thread(pool.close)  # as the exit hook does, from another thread
    for job in (running, waiting):
        with pytest.raises(isolation.PoolClosed):
            await asyncio.wait_for(job, HANG)
    assert gone(pid)


# ------------------------------------------------------------------ the same verdicts, and exit

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("case", sorted(CASES))
async def test_every_hostile_case_gets_the_same_verdict_from_both_paths(hostile, case):
    """sync (``validate_file_async``) and verify/the app (``validate_file``) judge a file alike."""
    pool = isolation.WorkerPool(1)
    try:
        threaded = await asyncio.to_thread(validate_file, hostile[case], pool=pool)
        awaited = await asyncio.wait_for(validate_file_async(hostile[case], pool=pool), HANG)
    finally:
        pool.close()
    assert awaited == threaded
    assert awaited.status == CASES[case].expect


def test_a_loop_still_running_at_exit_gets_pool_closed_as_a_thread_would(tmp_path):
    """The exit hook closes the pool while an event loop (in a thread of its own) awaits a
    hung reader: its job ends with ``PoolClosed`` (nothing to record), as a blocking call's
    does, not with an error from a thread pool that is shutting down meanwhile."""
    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    script = f"""
import asyncio, os, signal, sys, threading, time
from tui.core import isolation
from tui.core.validate import validate_file, validate_file_async
pool = isolation.shared_pool()
pool.prestart(2)
for pid in pool.worker_pids():
    os.kill(pid, signal.SIGSTOP)
said = threading.Lock()
def say(line):  # one write per line: both threads end at the same moment, and print() writes in pieces
    with said:
        sys.stdout.write(line + "\\n")
        sys.stdout.flush()
def outcome(job):
    try:
        return "result " + job().status
    except BaseException as exc:
        return type(exc).__name__
def loop():
    say("async " + outcome(lambda: asyncio.run(validate_file_async({str(good)!r}))))
def blocking():
    say("thread " + outcome(lambda: validate_file({str(good)!r})))
threading.Thread(target=loop).start()
threading.Thread(target=blocking).start()
deadline = time.monotonic() + 60  # both jobs handed to their (stopped) workers, however busy the machine
while len(pool.busy_pids()) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
say(" ".join(["pids", *map(str, pool.worker_pids())]))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                          timeout=HANG)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["thread"] == "PoolClosed"
    assert lines["async"] == "PoolClosed", done.stderr
    assert all(gone(int(pid)) for pid in lines["pids"].split())


def test_tasks_of_two_event_loops_and_a_thread_share_one_worker(tmp_path):
    """A worker freed by a task of one loop wakes a task waiting on another loop (and a thread)."""
    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    pool = isolation.WorkerPool(1)
    results: list[str] = []

    async def jobs() -> list[str]:
        done = await asyncio.wait_for(
            asyncio.gather(*(validate_file_async(good, pool=pool) for _ in range(6))), HANG)
        return [r.status for r in done]

    def on_a_loop() -> None:
        results.extend(asyncio.run(jobs()))

    def blocking() -> None:
        results.extend(validate_file(good, pool=pool).status for _ in range(6))

    try:
        threads = [threading.Thread(target=t) for t in (on_a_loop, on_a_loop, blocking)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG)
        assert not any(t.is_alive() for t in threads), "a job was never woken"
        assert results == [st.OK] * 18
        assert pool.started == 1 and pool.busy_pids() == []
    finally:
        pool.close()


async def test_limits_changed_mid_sync_let_running_and_waiting_jobs_finish(tmp_path):
    """The app's ``v`` (``configure(let_jobs_finish=True)``) while async jobs run and wait on
    the shared pool: each ends with its verdict under the old limits, the old workers end."""
    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    isolation.configure(size=1, memory_limit=512 << 20)
    try:
        old = isolation.shared_pool()
        pid = hang(old)
        running = asyncio.ensure_future(validate_file_async(good))
        waiting = asyncio.ensure_future(validate_file_async(good))
        await _busy(old, waiting=True)
        isolation.configure(size=1, let_jobs_finish=True)  # a higher memory limit
        assert isolation.shared_pool() is not old
        os.kill(pid, signal.SIGCONT)
        results = await asyncio.wait_for(asyncio.gather(running, waiting), HANG)
        assert [r.status for r in results] == [st.OK, st.OK]
        assert gone(pid) and old.worker_pids() == []
        assert (await validate_file_async(good)).status == st.OK  # the new pool
    finally:
        isolation.configure()


async def test_a_worker_found_dead_while_idle_is_reaped_and_replaced(tmp_path):
    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    pool = isolation.WorkerPool(1)
    try:
        pool.prestart(1)
        (pid,) = pool.worker_pids()
        os.kill(pid, signal.SIGKILL)
        while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            await asyncio.sleep(0.01)  # dead, not yet reaped: what the pool finds
        result = await asyncio.wait_for(validate_file_async(good, pool=pool), HANG)
        assert (result.status, result.rows) == (st.OK, 2)  # not blamed on the file
        assert gone(pid) and pool.started == 2 and pool.busy_pids() == []
    finally:
        pool.close()


async def test_a_task_finding_the_workers_busy_starts_another_but_waits_for_one_starting(tmp_path):
    """From asyncio code a task that finds every worker busy with a job starts the pool's
    next one: what reaches a worker is a zip package to parse (files that are no zip at all
    are judged without one), and ``sync`` verifies two files at a time, so waiting there kept
    a 2-core machine parsing on one core. A worker still starting is waited for by the first
    task that finds it so (its start is an interpreter and the reader's import)."""
    good = write_report(tmp_path / "good.xlsx", n_rows=200)
    pool = isolation.WorkerPool(2)
    try:
        async with asyncio.timeout(HANG):
            one = await validate_file_async(good, pool=pool)
            assert one.status == st.OK and pool.started == 1
            two = await asyncio.gather(*(validate_file_async(good, pool=pool) for _ in range(2)))
            assert [r.status for r in two] == [st.OK] * 2
            assert pool.started == 2
    finally:
        pool.close()


async def test_a_task_never_waits_behind_a_worker_busy_with_a_thread_s_job(good, tmp_path):
    """Only jobs of asyncio code (a sync's quick verifications) are waited for rather than
    starting another worker: a worker held by a thread's job (the app verifying a large
    workbook) may be busy for minutes, so a task then starts the pool's next worker."""
    pool = isolation.WorkerPool(2, time_limit=120)
    try:
        stuck = hang(pool)  # the one worker, frozen: the thread's job below hangs in it
        def thread_job() -> None:
            try:
                validate_file(good, pool=pool)
            except isolation.PoolClosed:  # the pool is closed under it at the end
                pass

        held = threading.Thread(target=thread_job, daemon=True)
        held.start()
        async with asyncio.timeout(HANG):
            while pool.busy_pids() != [stuck]:
                await asyncio.sleep(0.01)
            result = await validate_file_async(good, pool=pool)
        assert result.status == st.OK
        assert pool.started == 2
    finally:
        pool.close()
        held.join(HANG)


# ------------------------------------------------------------------ no worker for what is no workbook


def _not_workbooks(folder: Path) -> dict[str, Path]:
    from tests.xlsx_factory import BAD_INPUTS

    made = {kind: BAD_INPUTS[kind](folder / f"{kind}.xlsx") for kind in ("csv-renamed", "xls-renamed", "encrypted")}
    (folder / "random.xlsx").write_bytes(os.urandom(200 * 1024))
    (folder / "empty.xlsx").write_bytes(b"")
    (folder / "html.xlsx").write_bytes(b"<!DOCTYPE html><html><body>no report</body></html>")
    return {**made, "random": folder / "random.xlsx", "empty": folder / "empty.xlsx",
            "html": folder / "html.xlsx"}


async def test_a_file_that_is_no_workbook_is_judged_without_a_worker(tmp_path):
    """A download that is no zip package at all (random bytes, text, an old .xls) gets the
    verdict a worker would give, from its first bytes, with no worker started: the round trip
    and the worker's start are what verifying it cost. The bytes judged are hashed as a
    worker hashes them. A zip package still goes to a worker."""
    files = _not_workbooks(tmp_path)
    reference = isolation.WorkerPool(1)
    here = isolation.WorkerPool(1)
    try:
        for kind, path in files.items():
            expected = await asyncio.to_thread(
                reference.call, "verify", {"path": str(path), "rules": {"date_column": None}})
            threaded = await asyncio.to_thread(validate_file, path, pool=here)
            awaited = await asyncio.wait_for(validate_file_async(path, pool=here), HANG)
            assert awaited == threaded, kind
            assert awaited.status == st.UNREADABLE and awaited.message == expected["result"]["message"], kind
            assert awaited.read_sha256 == threaded.read_sha256 == expected["result"]["sha256"], kind
            # The same verdict from bytes in hand (a download's): nothing read again.
            data = path.read_bytes()
            sniffed = validate.sniffed_bytes(data)
            assert sniffed == expected["result"]["message"], kind
            from_bytes = await validate_file_async(
                tmp_path / "gone.xlsx", pool=here, name=path.name,
                sniffed=(sniffed, hashlib.sha256(data).hexdigest()))
            assert replace(from_bytes, path=str(path)) == awaited, kind
            assert from_bytes.read_sha256 == awaited.read_sha256, kind
        assert here.started == 0 and here.worker_pids() == []
        good = write_report(tmp_path / "good.xlsx", n_rows=2)
        assert validate.sniffed_bytes(good.read_bytes()) is None  # a zip package: a worker's
        assert validate.sniffed_bytes(b"a,b\n" * (validate.JUDGED_HERE_BYTES // 4 + 1)) is None
        assert (await asyncio.wait_for(validate_file_async(good, pool=here), HANG)).status == st.OK
        assert here.started == 1
    finally:
        reference.close()
        here.close()


def test_a_process_whose_first_pool_is_the_shared_one_starts_and_closes_it_at_exit(tmp_path):
    """The exit hook is registered by a process's first pool (a worker makes none, and starts
    without it): made by ``shared_pool`` (under its lock), it must neither wait for itself nor
    miss the hook that closes the pool at exit."""
    script = (
        "import sys\n"
        "from tui.core import isolation\n"
        "pool = isolation.shared_pool()\n"
        "pool.prestart(1)\n"
        "print(pool.worker_pids()[0], flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=HANG, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True)
    pid = int(out.stdout.split()[0])
    deadline = time.monotonic() + HANG
    while not gone(pid):  # stopped by the exit hook (reaped: not even a zombie)
        assert time.monotonic() < deadline, "the reader outlived its process"
        time.sleep(0.01)
