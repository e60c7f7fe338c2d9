"""Untrusted workbooks are read in worker processes with a memory and a time limit.

A native reader (calamine inside fastexcel) can abort the whole process on a crafted file:
Rust's "memory allocation of N bytes failed" is a ``SIGABRT`` no ``except`` can catch. So the
product never parses a workbook in its own process. A small pool of worker processes does,
one job per worker at a time, and a worker that dies takes only its own job with it:

    pool = shared_pool()                      # one per process: verify, sync and the app
    reply = pool.call("verify", {...})        # a plain dict, or raises WorkerFailed
    pool.close()                              # also at interpreter exit

Design (see docs/WORKBOOK_ISOLATION.md for the reasons):

- Workers are started with ``subprocess`` (fork+exec of ``python -m tui.core.isolation``),
  never ``fork()`` alone: the parent may hold threads, an asyncio loop and an SSH session.
- Each worker sets its own limits before importing the reader: ``RLIMIT_AS`` (address space,
  1 GiB by default), no core dumps, and before each job a CPU-time limit as a backstop should
  the parent vanish mid-job. The parent enforces the wall-time limit: on expiry it kills the
  worker (SIGKILL), reaps it and starts a fresh one for the next job.
- Jobs and replies are one JSON line each over the worker's stdin/stdout (never pickle: a
  worker that has parsed hostile bytes is not trusted to send code). Replies are size-capped.
  Only plain results cross back: statuses, counts, column names, messages, and the few cells
  the Verify screen's preview shows.
- A worker's death is attributed exactly: each worker runs one job at a time, so its job is
  the one it died on. ``SIGABRT`` with Rust's allocation message, a ``MemoryError`` or a
  ``SIGKILL`` we did not send mean "needs more memory than allowed"; an expired deadline or
  ``SIGXCPU`` mean "took too long"; anything else is a crash of the reader.

No Textual here; the module is safe to import anywhere (the reader is imported by workers only).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import resource
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol, TypedDict

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop, Future
    from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("report_keeper.isolation")

DEFAULT_MEMORY_BYTES = 1 << 30  # address space of one worker
DEFAULT_TIME_LIMIT = 120.0  # seconds of wall time for one workbook
MAX_REPLY_BYTES = 64 << 20  # a reply larger than this is treated as a misbehaving worker
STDERR_TAIL = 8192  # the last bytes of a worker's stderr kept to tell why it died
CPU_SLACK = 5  # seconds of CPU beyond the wall-time limit before the kernel stops a worker
DEATH_GRACE = 5.0  # seconds a worker that closed its output has to end before it is killed
CANCEL_CHECK = 0.1  # seconds between looks at a caller's cancel flag while a job runs
MIN_MEMORY_BYTES = 64 << 20  # below this the interpreter and the reader cannot even start

# What a worker's death means; the wording is the product's (validate.py turns it into a result).
MEMORY = "memory"
TIME = "time"
CRASH = "crash"
CLOSED = "closed"


@dataclass(frozen=True)
class Failure:
    """Why a job got no reply. ``detail`` is for logs (signal or exit code), never content."""

    kind: str  # MEMORY | TIME | CRASH | CLOSED
    detail: str
    seconds: float = 0.0  # the wall-time limit, for TIME


class WorkerFailed(Exception):
    """The worker running a job died, was killed, or the pool is closed."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(f"{failure.kind}: {failure.detail}")
        self.failure = failure


class PoolClosed(WorkerFailed):
    """The pool was closed (the program is exiting): no result, and nothing to record."""


class Cancelled(PoolClosed):
    """The caller cancelled the job; its worker was stopped. No result, nothing to record."""


class _NotDelivered(Exception):
    """The job could not be handed to the worker (it had died while idle)."""


def default_size() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _package_root() -> str:
    return str(Path(__file__).resolve().parents[2])


#: A worker's reply to one job (JSON: ``{"ok": true, "result": ...}`` or the failure's kind).
Reply = dict[str, object]


class _Worker:
    def __init__(self, memory_limit: int) -> None:
        import subprocess  # noqa: PLC0415 - workers import this module too, and start faster without it

        env = dict(os.environ)
        root = _package_root()
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.pop("PYTHONSTARTUP", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tui.core.isolation", str(memory_limit), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            start_new_session=True,  # terminal signals (ctrl-c, ctrl-z, hang-up) stay with us
            env=env,
        )
        self.pid = self.proc.pid
        self.jobs = 0
        self._stderr = b""
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        self._in: IO[bytes] = self.proc.stdin
        self._out: IO[bytes] = self.proc.stdout
        self._err: IO[bytes] = self.proc.stderr

    # -- one job
    def _send(self, line: bytes) -> None:
        """Hand one job line to the worker; ``_NotDelivered`` when it had died while idle."""
        self.jobs += 1
        try:
            self._in.write(line)
            self._in.flush()
        except (BrokenPipeError, OSError):
            self.kill()
            raise _NotDelivered() from None  # it died before this job: not this file's doing

    def _keep_stderr(self, chunk: bytes) -> None:
        self._stderr = (self._stderr + chunk)[-STDERR_TAIL:]

    @staticmethod
    def _reply_in(buf: bytearray) -> Reply | None:
        """The reply once ``buf`` holds its whole line, None while it does not; raises
        ``WorkerFailed`` for a reply no honest worker sends (the caller kills the worker)."""
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > MAX_REPLY_BYTES:
                raise WorkerFailed(Failure(CRASH, "reply too large"))
            return None
        try:
            reply = json.loads(bytes(buf[:end]))
        except ValueError:
            raise WorkerFailed(Failure(CRASH, "unreadable reply")) from None
        if not isinstance(reply, dict):
            raise WorkerFailed(Failure(CRASH, "unexpected reply"))
        return {str(k): v for k, v in reply.items()}

    def run(self, line: bytes, time_limit: float, cancel: Callable[[], bool] | None = None) -> Reply:
        """Send one job line and wait for its reply; raises ``WorkerFailed`` (worker gone) or
        ``Cancelled`` (``cancel()`` became true: the worker is killed, it may be mid-parse)."""
        deadline = time.monotonic() + time_limit
        self._send(line)
        out_fd, err_fd = self._out.fileno(), self._err.fileno()
        poller = select.poll()
        poller.register(out_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        poller.register(err_fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        err_open = True
        buf = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise WorkerFailed(Failure(TIME, f"no reply within {time_limit:g} s", time_limit))
            if cancel is not None:
                if cancel():
                    self.kill()
                    raise Cancelled(Failure(CLOSED, "cancelled by the caller"))
                remaining = min(remaining, CANCEL_CHECK)
            events = poller.poll(max(1, int(remaining * 1000)))
            for fd, _ in events:
                if fd == err_fd and err_open:
                    chunk = _read(err_fd)
                    if chunk:
                        self._keep_stderr(chunk)
                    else:
                        err_open = False
                        poller.unregister(err_fd)
                elif fd == out_fd:
                    chunk = _read(out_fd)
                    if not chunk:
                        raise WorkerFailed(self._death())
                    buf += chunk
                    try:
                        reply = self._reply_in(buf)
                    except WorkerFailed:
                        self.kill()
                        raise
                    if reply is not None:
                        return reply

    async def arun(self, line: bytes, time_limit: float) -> Reply:
        """:meth:`run` for asyncio code: the reply is read by the event loop itself (no thread
        waits on the worker). Cancelling the awaiting task kills the worker, as ``cancel`` does."""
        import asyncio  # noqa: PLC0415 - workers import this module too, and start faster without it

        loop = asyncio.get_running_loop()
        self._send(line)
        out_fd, err_fd = self._out.fileno(), self._err.fileno()
        answer: asyncio.Future[Reply | None] = loop.create_future()
        buf = bytearray()

        def on_out() -> None:
            if answer.done():
                return
            chunk = _read(out_fd)
            if not chunk:
                answer.set_result(None)  # the worker closed its output: it is dying
                return
            buf.extend(chunk)
            try:
                reply = self._reply_in(buf)
            except WorkerFailed as exc:
                answer.set_exception(exc)
                return
            if reply is not None:
                answer.set_result(reply)

        def on_err() -> None:
            chunk = _read(err_fd)
            if chunk:
                self._keep_stderr(chunk)
            else:
                loop.remove_reader(err_fd)

        loop.add_reader(out_fd, on_out)
        loop.add_reader(err_fd, on_err)
        try:
            try:
                async with asyncio.timeout(time_limit):
                    reply = await answer
            finally:  # before any kill below closes (and frees the numbers of) the pipes
                loop.remove_reader(out_fd)
                loop.remove_reader(err_fd)
        except TimeoutError:
            self.kill()
            raise WorkerFailed(Failure(TIME, f"no reply within {time_limit:g} s", time_limit)) from None
        except WorkerFailed:
            self.kill()
            raise
        except BaseException:  # cancelled: the worker may be mid-parse
            self.kill()
            raise
        if reply is None:  # it is ending: wait for that on the loop itself, not in a thread
            await self._ended(DEATH_GRACE)  # (the loop's thread pool is shut down at exit, and
            raise WorkerFailed(self._death(grace=0))  # a cancelled wait there ran on unwatched)
        return reply

    async def _ended(self, within: float) -> None:
        """Until the worker has ended (or ``within`` seconds passed), without blocking the loop."""
        import asyncio  # noqa: PLC0415 - see arun

        pause, waited = 0.001, 0.0
        while self.proc.poll() is None and waited < within:
            await asyncio.sleep(pause)
            waited += pause
            pause = min(pause * 2, 0.05)

    def _death(self, grace: float = DEATH_GRACE) -> Failure:
        """The worker closed its output: wait for it (``grace`` seconds at most, then kill it)
        and say why it ended."""
        import subprocess  # noqa: PLC0415 - see __init__

        try:
            code = self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        try:  # whatever it managed to write before dying (bounded)
            self._keep_stderr(_read(self._err.fileno(), nonblocking=True))
        except OSError:
            pass
        self.close_pipes()
        tail = self._stderr
        if code is not None and code < 0:
            sig = -code
            name = _signal_name(sig)
            if sig == signal.SIGABRT and b"memory allocation of" in tail:
                return Failure(MEMORY, f"{name}: allocation failed")
            if sig == signal.SIGKILL:  # not ours (ours raise before getting here): the OOM killer
                return Failure(MEMORY, f"{name} from outside")
            if sig == signal.SIGXCPU:
                return Failure(TIME, f"{name}: CPU limit")
            return Failure(CRASH, name)
        if b"MemoryError" in tail:
            return Failure(MEMORY, f"exit {code}: MemoryError")
        return Failure(CRASH, f"exit {code}")

    # -- lifecycle
    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        import subprocess  # noqa: PLC0415 - see __init__

        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
            log.error("worker %d did not end after SIGKILL", self.pid)
        self.close_pipes()

    def stop(self) -> None:
        """End an idle worker. It holds no state worth a goodbye, so SIGKILL (immediate, where a
        polite EOF would cost a polling wait) and reap."""
        self.kill()

    def close_pipes(self) -> None:
        for pipe in (self._in, self._out, self._err):
            try:
                pipe.close()
            except OSError:
                pass

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


def _read(fd: int, nonblocking: bool = False) -> bytes:
    if nonblocking:
        os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def _wake(waiter: Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _wake_in(loop: AbstractEventLoop, waiter: Future[None]) -> bool:
    """Wake ``waiter`` of ``loop``: at once from that loop's own thread, else through the
    loop (False: the loop is closed, nobody waits there any more)."""
    asyncio = sys.modules.get("asyncio")  # (loaded: a task waits) - workers never load it
    if asyncio is not None and asyncio.events._get_running_loop() is loop:
        _wake(waiter)
        return True
    try:
        loop.call_soon_threadsafe(_wake, waiter)
    except RuntimeError:
        return False
    return True


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


class WorkerPool:
    """At most ``size`` worker processes, each running one job at a time.

    ``call`` blocks the calling thread until a worker is free and has answered; any number of
    threads may call at once (asyncio code calls it through ``asyncio.to_thread``). Workers
    start on first use (or ``prestart``) and are reused; one that died is replaced on demand.
    """

    def __init__(
        self,
        size: int | None = None,
        *,
        memory_limit: int = DEFAULT_MEMORY_BYTES,
        time_limit: float = DEFAULT_TIME_LIMIT,
    ) -> None:
        _exit_hook_once()
        self.size = max(1, int(size or default_size()))
        self.memory_limit = max(MIN_MEMORY_BYTES, int(memory_limit))
        self.time_limit = float(time_limit)
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._starting = 0
        self._closed = False
        self._retired = False  # no longer the shared pool: each worker stops after its job
        self._owner = os.getpid()
        self.started = 0  # workers started over the pool's life (for tests and logs)
        #: Tasks waiting for a free worker (:meth:`acall`), with the loop each waits on.
        self._async_waiters: list[tuple[AbstractEventLoop, Future[None]]] = []

    # ------------------------------------------------------------------ public
    def call(
        self, op: str, args: Mapping[str, object], *, time_limit: float | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> Reply:
        """Run ``op`` in a worker; the worker's reply (a dict). Raises ``WorkerFailed`` when the
        worker died or ran out of time (it is replaced), ``PoolClosed`` after ``close`` and
        ``Cancelled`` when ``cancel()`` turned true while the job ran."""
        limit = float(time_limit or self.time_limit)
        line = json.dumps({"op": op, "args": args, "seconds": limit}).encode() + b"\n"
        for _ in range(3):  # a worker found dead when handed the job is replaced, not blamed
            worker = self._acquire()
            try:
                return self._run(worker, line, limit, cancel)
            except _NotDelivered:
                continue
        raise WorkerFailed(Failure(CRASH, "no worker would take the job"))

    async def acall(self, op: str, args: Mapping[str, object], *,
                    time_limit: float | None = None) -> Reply:
        """:meth:`call` for asyncio code, with no thread waiting on the worker: the event loop
        itself reads the reply. Cancelling the awaiting task stops the job (its worker is
        killed, as ``cancel`` does for :meth:`call`)."""
        limit = float(time_limit or self.time_limit)
        line = json.dumps({"op": op, "args": args, "seconds": limit}).encode() + b"\n"
        for _ in range(3):  # a worker found dead when handed the job is replaced, not blamed
            worker = await self._aacquire()
            healthy = False
            try:
                reply = self._judged(await worker.arun(line, limit))
                healthy = True  # it answered; one that died since is found out when next taken
                return reply
            except _NotDelivered:
                continue
            except WorkerFailed as exc:  # (a cancel here is the task's, not a Cancelled)
                raise self._failed(worker, exc) from None
            finally:
                self._release(worker, healthy)
        raise WorkerFailed(Failure(CRASH, "no worker would take the job"))

    def _run(self, worker: _Worker, line: bytes, limit: float, cancel: Callable[[], bool] | None) -> Reply:
        healthy = False
        try:
            reply = self._judged(worker.run(line, limit, cancel))
            healthy = True  # it answered; one that died since is found out when next taken
            return reply
        except Cancelled:
            raise
        except WorkerFailed as exc:
            raise self._failed(worker, exc) from None
        finally:
            self._release(worker, healthy)

    @staticmethod
    def _judged(reply: Reply) -> Reply:
        if reply.get("ok") is False and reply.get("kind") == MEMORY:
            # the worker caught a MemoryError and is exiting: not reusable
            raise WorkerFailed(Failure(MEMORY, "MemoryError"))
        return reply

    def _failed(self, worker: _Worker, exc: WorkerFailed) -> WorkerFailed:
        """What a job whose worker failed raises: ``PoolClosed`` when the pool was closed
        under it (nothing to record), else the failure itself (logged)."""
        if self._closed:
            return PoolClosed(Failure(CLOSED, "the pool was closed"))
        log.warning("workbook worker %d: %s (%s)", worker.pid, exc.failure.kind, exc.failure.detail)
        return exc

    def prestart(self, n: int = 1) -> None:
        """Start up to ``n`` workers now (one by default: a caller that does not know yet how
        much it will read), so their start-up overlaps other work. Each is an interpreter and
        the reader's import, so no more than there is work for: the threads' jobs (``call``)
        start the others as they need them, up to ``size``."""
        want = max(0, min(n, self.size))
        started: list[_Worker | None] = []
        with self._cond:
            if not (self._closed or self._retired):
                while len(self._idle) + len(self._busy) + self._starting + len(started) < want:
                    started.append(None)
            self._starting += len(started)
        for i in range(len(started)):
            try:
                started[i] = self._spawn()
            except OSError as exc:
                log.error("cannot start a workbook worker: %s", exc)
        with self._cond:
            self._starting -= len(started)
            for w in started:
                if w is not None:
                    if self._closed or self._retired:  # replaced while this one started
                        w.stop()
                    else:
                        self._idle.append(w)
            self._cond.notify_all()
        self._wake_async()

    def worker_pids(self) -> list[int]:
        with self._cond:
            return [w.pid for w in (*self._idle, *self._busy)]

    def busy_pids(self) -> list[int]:
        with self._cond:
            return [w.pid for w in self._busy]

    def close(self) -> None:
        """Stop every worker (SIGKILL: a worker holds nothing worth a goodbye) and refuse new
        jobs; the callers of busy ones get ``PoolClosed``."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            idle, busy = list(self._idle), list(self._busy)
            self._idle.clear()
            self._cond.notify_all()
        self._wake_async()
        if os.getpid() != self._owner:  # an inherited copy after fork: the workers are not ours
            return
        for w in busy:
            try:
                w.proc.kill()  # its caller reaps it (run() sees the end of its output)
            except OSError:
                pass
        for w in idle:
            w.stop()

    def retire(self) -> None:
        """Stop the idle workers now and every busy one when its job ends: nothing is killed
        mid-job. A caller holding the pool may still call it (a run started under its limits
        ends under them); each such job gets a worker of its own that stops after it."""
        with self._cond:
            self._retired = True
            idle = list(self._idle)
            self._idle.clear()
        if os.getpid() == self._owner:
            for w in idle:
                w.stop()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def limits(self) -> tuple[int, int, float]:
        """What its workers are started and run under: size, memory limit, time limit."""
        return (self.size, self.memory_limit, self.time_limit)

    # ------------------------------------------------------------------ internals
    def _spawn(self) -> _Worker:
        w = _started(self.memory_limit)
        self.started += 1
        log.debug("started workbook worker %d", w.pid)
        return w

    def _take(self, *, grow: bool = True) -> _Worker | bool:
        """(Under the lock.) An idle worker, now busy; True when the caller may start one
        (counted as starting); False when it must wait for one. Without ``grow`` no other
        worker is started while one is starting and none is busy, unless a task is already
        waiting for it."""
        if self._closed:
            raise PoolClosed(Failure(CLOSED, "the pool was closed"))
        while self._idle:
            w = self._idle.pop()
            if w.alive:
                self._busy.add(w)
                return w
            w.kill()  # died while idle (killed from outside): reap it, try another
        if not grow and not self._async_waiters and self._starting and not self._busy:
            return False
        if len(self._busy) + self._starting < self.size:
            self._starting += 1
            return True
        return False

    def _started(self) -> _Worker:
        """Start the worker :meth:`_take` allowed; it is busy at once."""
        try:
            w = self._spawn()
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
            self._wake_async()
            raise
        with self._cond:
            self._starting -= 1
            self._busy.add(w)
        return w

    def _acquire(self) -> _Worker:
        with self._cond:
            while True:
                got = self._take()
                if got is not False:
                    break
                self._cond.wait()
        return got if isinstance(got, _Worker) else self._started()

    async def _aacquire(self) -> _Worker:
        """:meth:`_acquire` without blocking the event loop: a task waits for a free worker
        on a future that :meth:`_release` completes."""
        import asyncio  # noqa: PLC0415 - see _Worker.arun

        loop = asyncio.get_running_loop()
        while True:
            with self._cond:
                # A worker still starting is waited for by the first task that finds it so
                # (a start is an interpreter and the reader's import, ~0.14 s of CPU); the
                # next one, or one that finds every worker busy with a job, starts another
                # (up to the pool's size): what reaches a worker is a workbook to parse
                # (``validate._judged_here`` judges the files that are no zip package).
                got = self._take(grow=False)
                if got is False:
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._async_waiters.append((loop, waiter))
            if got is True:
                got = self._started()  # a process start: a few milliseconds, rare
            if isinstance(got, _Worker):
                return got
            try:
                await waiter
            except BaseException:
                with self._cond:
                    woken = (loop, waiter) not in self._async_waiters
                    if not woken:
                        self._async_waiters.remove((loop, waiter))
                if woken:  # woken, then cancelled before it looked: the next one looks instead
                    self._wake_async(one=True)
                raise

    def _wake_async(self, *, one: bool = False) -> None:
        """Let every task waiting for a worker look again (from any thread); with ``one``, the
        one waiting longest (a worker was released: one can have it). Waking them all at each
        release woke every waiting verification, once per file, for one to find the worker."""
        while True:
            with self._cond:
                if one:
                    waiters = self._async_waiters[:1]
                    del self._async_waiters[:1]
                else:
                    waiters, self._async_waiters = self._async_waiters, []
            woke = False
            for loop, waiter in waiters:
                woke = _wake_in(loop, waiter) or woke
            if woke or not waiters or not one:
                return

    def _release(self, w: _Worker, healthy: bool) -> None:
        with self._cond:
            self._busy.discard(w)
            keep = healthy and not (self._closed or self._retired)
            if keep:
                self._idle.append(w)
            self._cond.notify()
        self._wake_async(one=True)
        if not keep:
            if healthy:
                w.stop()  # the pool closed meanwhile
            else:
                w.kill()  # dead or misbehaving: kill (a no-op if dead) and reap, no zombie


# ---------------------------------------------------------------------- starting workers

#: Linux kills a worker when the thread that started it ends (``PR_SET_PDEATHSIG``, which the
#: worker sets for itself): the thread, not the process. So there, workers are started by one
#: thread that lives as long as the process (the main thread, or this one).
_STARTER: tuple[int, ThreadPoolExecutor] | None = None
_STARTER_LOCK = threading.Lock()


def _started(memory_limit: int) -> _Worker:
    """A new worker, started by a thread that ends only with this process (see ``_STARTER``)."""
    global _STARTER
    if not sys.platform.startswith("linux") or threading.current_thread() is threading.main_thread():
        return _Worker(memory_limit)
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415 - workers import this module too, and start faster without it

    with _STARTER_LOCK:
        if _STARTER is None or _STARTER[0] != os.getpid():  # none yet, or a forked child's copy
            _STARTER = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="reader-starter"))
        starter = _STARTER[1]
    try:
        started = starter.submit(_Worker, memory_limit)
    except RuntimeError:  # the interpreter is shutting down: no thread to hand it to
        return _Worker(memory_limit)
    return started.result()


# ---------------------------------------------------------------------- the shared pool

_SHARED: WorkerPool | None = None
_SHARED_LOCK = threading.Lock()
#: Shared pools replaced while their jobs ran on (``configure(let_jobs_finish=True)``): closed
#: with the shared pool, so no thread waits on one of their workers at exit.
_RETIRED: list[WorkerPool] = []
class _Settings(TypedDict, total=False):
    memory_limit: int
    time_limit: float
    size: int


_SETTINGS: _Settings = {}


def configure(
    *, memory_limit: int | None = None, time_limit: float | None = None, size: int | None = None,
    let_jobs_finish: bool = False,
) -> None:
    """Set the shared pool's limits; None means the default.

    A running pool that already has this size and memory limit is kept, workers and all,
    under the new time limit (given with each job), unless a job runs in it and
    ``let_jobs_finish`` is false: whoever stops
    the readers with a job under way (the app quitting, a command interrupted) means it
    stopped. Otherwise a running pool is replaced: closed (the callers of busy workers get
    ``PoolClosed``), or with ``let_jobs_finish`` retired (``WorkerPool.retire``: its running
    jobs end under the old limits, nothing is lost). Without ``let_jobs_finish`` the pools
    retired earlier are closed too."""
    global _SHARED, _SETTINGS
    settings: _Settings = {}
    if memory_limit is not None:
        settings["memory_limit"] = int(memory_limit)
    if time_limit is not None:
        settings["time_limit"] = float(time_limit)
    if size is not None:
        settings["size"] = int(size)
    with _SHARED_LOCK:
        _SETTINGS = settings
        old, _SHARED = _SHARED, None
        if old is not None and _keeps(old, settings, let_jobs_finish):
            _SHARED, old = old, None
        if let_jobs_finish:
            if old is not None:
                _RETIRED.append(old)
            retired: list[WorkerPool] = []
        else:
            retired, _RETIRED[:] = list(_RETIRED), []
    if old is not None and let_jobs_finish:
        old.retire()
        return
    for pool in (*retired, old):
        if pool is not None:
            pool.close()


def _keeps(pool: WorkerPool, settings: _Settings, let_jobs_finish: bool) -> bool:
    """Whether ``configure`` keeps ``pool`` as the shared pool under ``settings`` (then with
    their time limit): it is this process's, open, and has the size and memory limit a pool
    made now would have; and no job runs in it unless those jobs may finish."""
    if pool.closed or pool._owner != os.getpid():
        return False
    wanted = WorkerPool(**settings)  # a pool starts no worker until asked
    if pool.limits[:2] != wanted.limits[:2]:  # its size, and the memory its workers start under
        return False
    if pool.busy_pids() and not let_jobs_finish:
        return False
    # The time limit goes with each job (the caller's deadline, the worker's CPU limit): the
    # next job has the new one, a running one keeps its own.
    pool.time_limit = wanted.time_limit
    return True


class ReaderSettings(Protocol):
    """What a profile says of the reader's limits (``config.Profile``)."""

    @property
    def reader_memory_mib(self) -> int: ...
    @property
    def reader_seconds(self) -> float: ...


def reader_limits(profiles: Iterable[ReaderSettings]) -> tuple[int, float]:
    """The reader's limits (address-space bytes, seconds) for reading these profiles'
    workbooks: one profile's own; for several, which share one pool of readers, the largest
    of each (a report one of them allows is never refused for another's lower limit)."""
    chosen = list(profiles)
    return (max(p.reader_memory_mib for p in chosen) << 20, max(p.reader_seconds for p in chosen))


def use_reader_limits(profiles: Iterable[ReaderSettings], *, let_jobs_finish: bool = False) -> None:
    """Give the shared pool these profiles' limits (``configure``: a running pool under other
    limits is replaced); ``configure()`` gives the defaults back."""
    memory, seconds = reader_limits(profiles)
    configure(memory_limit=memory, time_limit=seconds, let_jobs_finish=let_jobs_finish)


def shared_pool() -> WorkerPool:
    """The process's pool, created on first use (and again in a forked child)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or _SHARED.closed or _SHARED._owner != os.getpid():
            _SHARED = WorkerPool(**_SETTINGS)
        return _SHARED


def shutdown() -> None:
    """Close the shared pool (the app calls this on quit; it also runs at interpreter exit)."""
    global _SHARED
    with _SHARED_LOCK:
        pool, _SHARED = _SHARED, None
        retired, _RETIRED[:] = list(_RETIRED), []
    for p in (*retired, pool):
        if p is not None and p._owner == os.getpid():
            p.close()


def _register_exit_hook() -> None:
    """Close the shared pool when the interpreter shuts down, *before* it joins the remaining
    threads: a thread blocked on a worker's reply (a thread pool's, or an asyncio default
    executor's) would otherwise hold the exit up until its job's time limit. Threading's own
    exit hooks run in reverse order, so registering after ``concurrent.futures.thread`` (which
    joins its threads from such a hook) puts ours first."""
    import concurrent.futures.thread  # noqa: F401, PLC0415 - its hook must be registered before ours

    # A private function of threading (no public way to run before it joins threads).
    hook = getattr(threading, "_register_atexit", None)
    if hook is not None:
        try:
            hook(shutdown)
            return
        except RuntimeError:  # the interpreter is already shutting down
            pass
    atexit.register(shutdown)


_EXIT_HOOK: list[bool] = []  # registered (once per process: by its first pool)
#: Its own lock: pools are made under ``_SHARED_LOCK`` (``shared_pool``, ``_keeps``).
_EXIT_HOOK_LOCK = threading.Lock()


def _exit_hook_once() -> None:
    """Register the exit hook when the process makes its first pool (a worker, which makes
    none, starts without ``concurrent.futures`` and its hook)."""
    if _EXIT_HOOK:
        return
    with _EXIT_HOOK_LOCK:
        if _EXIT_HOOK:
            return
        _register_exit_hook()
        _EXIT_HOOK.append(True)


# ---------------------------------------------------------------------- the worker side


def _die_with_parent(parent: int) -> bool:
    """Ask Linux to kill this worker when the thread that started it ends (that thread lives
    as long as the parent process: ``_started``), so a parent killed outright (SIGKILL) leaves
    no worker in a long parse behind; elsewhere the end of the job pipe tells an idle worker.
    False when the parent was gone already (before the request, which then came too late)."""
    if sys.platform.startswith("linux"):
        import ctypes  # noqa: PLC0415 - in the worker only

        pr_set_pdeathsig = 1
        try:
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the pipe's end still tells
            pass
    return os.getppid() == parent


#: The C heap a worker keeps at its top when freeing (``M_TOP_PAD``): this share of its memory
#: limit, at most ``HEAP_PAD_MAX``.
HEAP_PAD_SHARE = 128
HEAP_PAD_MAX = 8 << 20


def _keep_freed_heap(memory_limit: int) -> None:
    """Let the C heap keep some freed memory at its top for the next workbook (glibc's
    ``M_TOP_PAD``), instead of returning it to the kernel after each job and taking it back,
    zeroed page by page, in the next: a 7,000-row workbook freed and faulted ~3 MB again
    (~730 page faults, 1-2 ms of system time of its ~30 ms). Each growth of the heap asks the
    pad more, so near the memory limit a workbook has up to the pad less: 1/128 of the limit
    (8 MiB of the default 1 GiB). Elsewhere (no glibc) nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # noqa: PLC0415 - in the worker only

    m_top_pad = -2
    pad = min(HEAP_PAD_MAX, memory_limit // HEAP_PAD_SHARE) if memory_limit > 0 else HEAP_PAD_MAX
    try:
        ctypes.CDLL(None).mallopt(m_top_pad, pad)
    except (OSError, AttributeError):  # no mallopt (another C library): the default heap
        pass


def _worker_main(argv: list[str]) -> int:
    memory_limit, parent = int(argv[0]), int(argv[1])
    if not _die_with_parent(parent):
        return 0  # the parent is gone: nobody will send a job
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an abort must not dump a GiB to disk
    if memory_limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    _keep_freed_heap(memory_limit)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Worker log records would go to stderr via logging's last resort: keep them quiet, the
    # parent logs each result.
    product = logging.getLogger("report_keeper")
    product.addHandler(logging.NullHandler())
    product.propagate = False

    # It imports this module (a cycle at import time): loaded here, in the worker.
    from tui.core import validate  # noqa: PLC0415 - see above

    validate.warm_up()
    out = sys.stdout.buffer
    for raw in sys.stdin.buffer:
        if os.getppid() != parent:
            return 0  # the parent is gone: nobody wants the answer
        try:
            job = json.loads(raw)
            op, args = job["op"], job["args"]
            if op not in ("verify", "preview", "table"):
                raise KeyError(op)
            _cpu_limit(float(job.get("seconds") or DEFAULT_TIME_LIMIT))
            result: object
            match op:
                case "verify":
                    result = validate.worker_verify(**args)
                case "preview":
                    result = validate.worker_preview(**args)
                case _:  # an export's job only (most workers never get one)
                    from tui.core import export_read  # noqa: PLC0415 - a worker's start-up time

                    result = export_read.worker_table(**args)
            reply: dict[str, object] = {"ok": True, "result": result}
        except MemoryError:
            out.write(b'{"ok": false, "kind": "memory"}\n')
            out.flush()
            return 3  # the heap may be in pieces: a fresh worker takes the next job
        except Exception as exc:  # noqa: BLE001 - reported, the worker stays up
            reply = {"ok": False, "kind": "error", "type": type(exc).__name__}
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()
    return 0


def _cpu_limit(seconds: float) -> None:
    """Let this job use at most ``seconds`` (+ slack) more CPU time than used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used + seconds + CPU_SLACK) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    except (ValueError, OSError):
        pass


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
