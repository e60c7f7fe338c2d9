"""Many downloads at once: :class:`TransferQueue` (bounded concurrency, retries, cancel, pause).

    async with TransferQueue(factory, concurrency=4, on_event=cb) as queue:   # or events=asyncio.Queue()
        job = queue.add(remote_file, remote_dir, local_dir)
        queue.cancel(job.id) / queue.cancel_all() / queue.pause() / queue.resume()
        jobs = await queue.join()            # every Job ends done, failed or cancelled

``factory`` is ``async () -> SftpConnection`` (e.g. ``lambda: connect(opts, host_key_policy=...)``);
the queue opens one connection, shares it between its workers (SFTP multiplexes requests)
and reconnects through the factory when it breaks. Each file is fetched by
:func:`tui.sftp.download.download`. Events (small frozen dataclasses, all with ``job_id`` and
``name``; match them by class): :class:`Queued`, :class:`Running` (bytes, total, rate; at most
one every ``progress_interval`` seconds per file, plus the final one), :class:`Retrying`
(attempt, reason, delay), :class:`Done` (sha256, path, status, resumed_from, transferred),
:class:`Failed` (reason, error), :class:`Cancelled`.

Transient errors (lost connection, timeouts, generic server failures, a server file that
changed mid-download) are retried with exponential backoff; authentication and host-key
failures are never retried, and stop the whole queue. A full local disk fails the file with
:class:`LocalDiskFull`; its part file is kept for resuming once space is freed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from tui.core import clock
from tui.core.model import JobState, RemoteFile
from tui.sftp import parts
from tui.sftp.client import SftpConnection
from tui.sftp.download import DirSync, DownloadResult, HeldCheck, Placed, download
from tui.sftp.errors import (
    AuthFailed,
    ConnectFailed,
    ConnectionLost,
    HostKeyChanged,
    HostKeyUnknown,
    ServerStalled,
    SftpError,
    TransferFailed,
)
from tui.sftp.errors import (
    Cancelled as CancelledError_,
)

log = logging.getLogger("report_keeper.sftp.queue")


async def _still_a_file(conn: SftpConnection, job: Job) -> None:
    """Before fetching again a file whose download found the server answering nothing: a
    named pipe or a device put in its place after the listing keeps the server's SFTP process
    waiting for ever (and every other transfer of its connection with it), so it is never
    opened again."""
    kind = await conn.kind(SftpConnection.join(job.remote_dir, job.remote.name))
    if kind != "file":
        what = "a folder" if kind == "folder" else "a named pipe or a device"
        raise TransferFailed(
            f"'{job.name}' is no longer a regular file on the server but {what}, and the "
            "server stopped answering when it was read.",
            "Ask the server's administrator to put the report back as a regular file.")


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class TransferEvent:
    job_id: int
    name: str


@dataclass(frozen=True)
class Queued(TransferEvent):
    size: int = 0


@dataclass(frozen=True)
class Running(TransferEvent):
    bytes: int = 0
    total: int = 0
    rate: float = 0.0  # bytes per second over the current attempt


@dataclass(frozen=True)
class Retrying(TransferEvent):
    attempt: int = 1  # the attempt that failed (1-based)
    reason: str = ""
    delay: float = 0.0


@dataclass(frozen=True)
class Done(TransferEvent):
    size: int = 0
    sha256: str = ""
    path: str = ""
    status: Placed = Placed.NEW
    resumed_from: int = 0  # offset the last attempt started at
    transferred: int = 0  # bytes received from the server over all attempts
    attempts: int = 1
    sniffed: str | None = None  # DownloadResult.sniffed: no zip package, judged as it arrived


@dataclass(frozen=True)
class Failed(TransferEvent):
    reason: str = ""
    error: SftpError | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Cancelled(TransferEvent):
    pass


# ---------------------------------------------------------------- queue

_FATAL = (AuthFailed, HostKeyUnknown, HostKeyChanged)


@dataclass
class Job:
    id: int
    remote: RemoteFile
    remote_dir: str
    local_dir: Path
    state: JobState = JobState.QUEUED
    attempts: int = 0
    transferred: int = 0
    result: DownloadResult | None = None
    error: SftpError | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    #: Its task has begun to run (a task cancelled before its first step never runs its body).
    started: bool = field(default=False, repr=False)
    cancel_requested: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    #: Asked before the first byte: True when another process has just fetched this copy.
    already_held: HeldCheck | None = field(default=None, repr=False)
    #: Placed under this name instead of the server's (a version of a rolling report).
    local_name: str | None = None

    @property
    def name(self) -> str:
        """The file's identity (``RemoteFile.ident``: its name, or ``folder/name``)."""
        return self.remote.ident


class TransferQueue:
    """Bounded-concurrency download queue with retries, resume, cancel and pause."""

    def __init__(self, connect: Callable[[], Awaitable[SftpConnection]], *, concurrency: int = 4,
                 on_event: Callable[[TransferEvent], object] | None = None,
                 events: asyncio.Queue[TransferEvent] | None = None, max_attempts: int = 5,
                 backoff_base: float = 1.0, backoff_max: float = 30.0,
                 progress_interval: float = 0.1, connection: SftpConnection | None = None,
                 sync_dir: DirSync | None = None,
                 hold_placed: Callable[[Path, int], object] | None = None) -> None:
        """``sync_dir``: given to every :func:`tui.sftp.download.download` (the caller makes
        each download's folder durable before relying on it, instead of one fsync per file);
        ``hold_placed`` too (the caller owns each descriptor it is given: see ``download``)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._factory = connect
        self.concurrency = concurrency
        self._on_event = on_event
        self._events = events
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.progress_interval = progress_interval
        self._conn: SftpConnection | None = connection
        self._owns_conn = connection is None
        self._conn_lock = asyncio.Lock()
        self._fatal: SftpError | None = None
        self._todo: asyncio.Queue[Job] = asyncio.Queue()
        self._gate = asyncio.Event()
        self._gate.set()
        #: The jobs' tasks now running (at most ``concurrency``): each job's end starts the
        #: next, so no worker task waits on each job's task.
        self._running: set[asyncio.Task[None]] = set()
        self._closing = False  # no job starts meanwhile (closing, or cancelling them all)
        self.jobs: dict[int, Job] = {}
        self._next_id = 1
        self.connections_opened = 0
        self._sync_dir = sync_dir
        self._hold_placed = hold_placed

    # -- control
    def add(self, remote: RemoteFile, remote_dir: str, local_dir: Path | str, *,
            already_held: HeldCheck | None = None,
            local_name: str | None = None) -> Job:
        """Queue one download; returns its :class:`Job` (``job.id`` for cancel).

        ``already_held(remote)``: see :func:`download` (the job then fails with FileBusy);
        ``local_name``: place it under this name (see :func:`download`).
        """
        job = Job(self._next_id, remote, remote_dir, Path(local_dir), already_held=already_held,
                  local_name=local_name)
        self._next_id += 1
        self.jobs[job.id] = job
        self._emit(Queued(job.id, job.name, remote.size))
        self._todo.put_nowait(job)
        self._start_jobs()
        return job

    def cancel(self, job_id: int) -> bool:
        """Cancel one job (queued or running). False if it already ended."""
        job = self.jobs.get(job_id)
        if job is None or job.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED):
            return False
        job.cancel_requested = True
        if job.task is not None and not job.task.done():
            job.task.cancel()
            if not job.started:  # its body never runs: nothing in it will end the job
                self._finish_cancel(job)
                self._ended(job)
        elif job.state == JobState.QUEUED:
            self._finish_cancel(job)
        return True

    def cancel_all(self) -> None:
        held, self._closing = self._closing, True  # none starts while the others are cancelled
        try:
            for job_id in list(self.jobs):
                self.cancel(job_id)
        finally:
            self._closing = held

    def pause(self) -> None:
        """Stop starting new files and hold running ones between blocks."""
        self._gate.clear()

    def resume(self) -> None:
        self._gate.set()
        self._start_jobs()

    @property
    def paused(self) -> bool:
        return not self._gate.is_set()

    async def join(self) -> list[Job]:
        """Wait until every job added so far has ended; returns them in order.

        Then removes part files of finished files left by older server copies.
        """
        # The last added first: the others have mostly ended by then (a wake for the run, not
        # for each file).
        for job in reversed(list(self.jobs.values())):
            await job.finished.wait()
        done: dict[Path, set[str]] = {}
        for job in self.jobs.values():
            if job.state == JobState.DONE:
                done.setdefault(job.local_dir, set()).add(job.remote.name)  # parts: by server name
        for folder, names in done.items():
            await asyncio.to_thread(parts.remove_stale_parts, folder, names)
        return list(self.jobs.values())

    async def close(self) -> None:
        """Cancel everything still running and close the connection the queue opened."""
        self._closing = True
        try:
            self.cancel_all()
            await asyncio.gather(*self._running, return_exceptions=True)
        finally:
            self._closing = False
        if self._conn is not None and self._owns_conn:
            await self._conn.close()
        self._conn = None

    async def __aenter__(self) -> TransferQueue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals
    def _emit(self, event: TransferEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a broken UI callback must not stop transfers
                log.exception("transfer event callback failed")
        if self._events is not None:
            self._events.put_nowait(event)

    def _start_jobs(self) -> None:
        """Start queued jobs, each in a task of its own, while fewer than ``concurrency`` run
        and the queue is neither paused nor closing (asked by ``add``, ``resume`` and the end
        of each job)."""
        while len(self._running) < self.concurrency and self._gate.is_set() and not self._closing:
            try:
                job = self._todo.get_nowait()
            except asyncio.QueueEmpty:
                return
            if job.state != JobState.QUEUED:  # cancelled while queued
                continue
            job.state = JobState.RUNNING
            job.task = asyncio.ensure_future(self._run(job))
            self._running.add(job.task)

    def _ended(self, job: Job) -> None:
        """``job`` is over: its place goes to the next."""
        job.finished.set()
        if job.task is not None:
            self._running.discard(job.task)
        self._start_jobs()

    def _finish_cancel(self, job: Job) -> None:
        job.state = JobState.CANCELLED
        job.error = CancelledError_(f"The download of '{job.name}' was cancelled.",
                                    "Its part file is kept; downloading it again resumes there.")
        self._emit(Cancelled(job.id, job.name))
        job.finished.set()

    async def _connection(self) -> SftpConnection:
        async with self._conn_lock:
            if self._fatal is not None:
                raise self._fatal
            if self._conn is None or self._conn.closed:
                if self._conn is not None:
                    await self._conn.close()
                    self._conn = None
                try:
                    self._conn = await self._factory()
                    self._owns_conn = True
                    self.connections_opened += 1
                except SftpError as exc:
                    if isinstance(exc, _FATAL) or not exc.transient:
                        self._fatal = exc
                    raise
            return self._conn

    async def _drop(self, conn: SftpConnection) -> None:
        async with self._conn_lock:
            if self._conn is conn:
                self._conn = None
                await conn.close()

    async def _run(self, job: Job) -> None:
        job.started = True
        started = time.monotonic()
        last = [float("-inf")]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= self.progress_interval or done >= total:
                last[0] = now
                elapsed = max(now - started, 1e-6)
                self._emit(Running(job.id, job.name, done, total, (done - resumed[0]) / elapsed))

        resumed = [0]
        stalled = False  # an attempt found the server answering nothing, and no check since passed
        try:
            while True:
                job.attempts += 1
                conn = None
                try:
                    conn = await self._connection()
                    if stalled:
                        await _still_a_file(conn, job)
                        stalled = False
                    resumed[0] = parts.part_progress(job.local_dir, job.remote)
                    started = time.monotonic()
                    self._emit(Running(job.id, job.name, resumed[0], job.remote.size, 0.0))
                    result = await download(conn, job.remote, job.remote_dir, job.local_dir,
                                            progress=progress, gate=self._gate,
                                            already_held=job.already_held,
                                            local_name=job.local_name, sync_dir=self._sync_dir,
                                            hold_placed=self._hold_placed)
                except SftpError as exc:
                    job.transferred += exc.received
                    fatal = isinstance(exc, _FATAL)
                    if fatal or not exc.transient or job.attempts >= self.max_attempts:
                        if exc.transient and not fatal:
                            exc.given_up(job.attempts)
                        job.state = JobState.FAILED
                        job.error = exc
                        log.warning("download of %r failed: %s", job.name, exc.what)
                        self._emit(Failed(job.id, job.name, str(exc), exc))
                        return
                    if isinstance(exc, ConnectFailed) and conn is not None:
                        await self._drop(conn)
                    stalled = stalled or isinstance(exc, ServerStalled)  # kept until a check passes
                    delay = 0.0 if (isinstance(exc, ConnectionLost) and job.attempts == 1) else min(
                        self.backoff_max, self.backoff_base * 2 ** (job.attempts - 1))
                    log.info("download of %r: attempt %d failed (%s); retrying in %.1f s",
                             job.name, job.attempts, exc.what, delay)
                    self._emit(Retrying(job.id, job.name, job.attempts, str(exc), delay))
                    await asyncio.sleep(delay)
                    await self._gate.wait()
                    if isinstance(exc, TransferFailed) and conn is not None and not conn.closed:
                        before = job.remote
                        await self._refresh(job, conn)
                        if job.local_name is not None and job.remote != before:
                            # A rolling report's next version: not this version's bytes.
                            job.remote = before
                            job.state = JobState.FAILED
                            job.error = TransferFailed(
                                f"'{job.name}' was replaced on the server by a newer version during "
                                "the download.",
                                "The next sync fetches the newer version; this one cannot be fetched "
                                "any more.")
                            self._emit(Failed(job.id, job.name, str(job.error), job.error))
                            return
                    continue
                except Exception as exc:  # noqa: BLE001 - a bug must fail one file, not the queue (logged)
                    self._fail_unexpected(job, exc)
                    return
                job.transferred += result.transferred
                job.result = result
                job.state = JobState.DONE
                self._emit(Done(job.id, job.name, result.size, result.sha256, str(result.path),
                                result.status, result.resumed_from, job.transferred, job.attempts,
                                result.sniffed))
                return
        except asyncio.CancelledError:
            if not job.finished.is_set():
                self._finish_cancel(job)
            raise
        except Exception as exc:  # noqa: BLE001 - raised while a failed attempt was handled: the same
            self._fail_unexpected(job, exc)
        finally:
            self._ended(job)

    def _fail_unexpected(self, job: Job, exc: Exception) -> None:
        """A bug fails this one file, with the log to report, never the queue."""
        log.error("unexpected error downloading %r", job.name, exc_info=exc)
        err = TransferFailed(f"Unexpected error downloading '{job.name}': {type(exc).__name__}.",
                             "Try again; if it persists, report it with the log file.")
        job.state = JobState.FAILED
        job.error = err
        self._emit(Failed(job.id, job.name, str(err), err))

    async def _refresh(self, job: Job, conn: SftpConnection) -> None:
        """After a server file changed mid-download, take its current size and mtime."""
        try:
            attrs = await conn.stat(SftpConnection.join(job.remote_dir, job.remote.name))
        except SftpError:
            return
        if attrs.size is not None and attrs.mtime is not None:
            job.remote = replace(job.remote, size=int(attrs.size),
                                 mtime=clock.file_time(attrs.mtime))
