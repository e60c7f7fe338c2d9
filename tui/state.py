"""The app's state: what the screens show, as plain typed Python (no Textual here).

- :class:`DataSnapshot` with its :class:`RemoteRow`s: the ledger, the health evaluation and
  the local folder, built in one place (:func:`build_snapshot`, in a thread worker) from the
  ledger and the sync service's latest listing;
- :class:`ConnectionInfo`: the server connection and its test, and what the health evaluation
  is told about them;
- :class:`TransferBoard`: the downloads of this session, fed with the transfer queue's events
  (the only writer of a :class:`JobView`);
- :class:`SyncServiceLike`: what the app needs of the sync service;
- :data:`SCREENS`: the five screens, their keys and labels (the app's modes, the nav bar, the
  help and the palette all read this one list);
- :func:`verify_local_reports`: the Verify screen's list, verified through the ledger's cache
  (with the copies the retention policy purged, by their last result).

The app (``tui/app.py``) holds one of each and wires its workers to them; screens read them
and ask the app for what changes them (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol

from tui.core import clock
from tui.core import status as st
from tui.core.config import Profile
from tui.core.health import ConnectionStatus, HealthReport, evaluate
from tui.core.ledger import LEDGER_ERRORS, Ledger
from tui.core.local_reports import VerifyOutcome, find_local_reports, purged_reports, verify_local
from tui.core.model import ConnTestResult, Delivery, EntryKind, JobState, LocalState, VerifyResult, WriteTest
from tui.core.names import escape_name
from tui.core.retention import still_on_disk
from tui.core.status import VerifyStatus
from tui.sftp.download import Placed
from tui.sftp.errors import FileBusy
from tui.sftp.queue import Cancelled, Done, Failed, Queued, Retrying, Running, TransferEvent, TransferQueue
from tui.sftp.sync import AgainOutcome, EventCallback, FetchedAgain, RemoteListing, SyncResult

log = logging.getLogger("report_keeper.state")


# ---------------------------------------------------------------------------------------------
# The screens


class ScreenName(StrEnum):
    """The app's screens (Textual modes)."""

    HEALTH = "health"
    REMOTE = "remote"
    QUEUE = "queue"
    VERIFY = "verify"
    HEATMAP = "heatmap"


@dataclass(frozen=True)
class ScreenInfo:
    name: ScreenName
    key: str  # the key that shows it
    label: str  # its name in the nav bar, the help and the palette
    about: str  # what it shows (the palette's help line)


SCREENS: tuple[ScreenInfo, ...] = (
    ScreenInfo(ScreenName.HEALTH, "1", "Health", "overall status, problems, connection"),
    ScreenInfo(ScreenName.REMOTE, "2", "Remote", "the server folder"),
    ScreenInfo(ScreenName.QUEUE, "3", "Queue", "downloads in progress"),
    ScreenInfo(ScreenName.VERIFY, "4", "Verify", "verification of local reports"),
    ScreenInfo(ScreenName.HEATMAP, "5", "Heatmap", "deliveries calendar"),
)


# ---------------------------------------------------------------------------------------------
# The connection


class ConnectionState(StrEnum):
    IDLE = "idle"  # not connected yet
    CONNECTING = "connecting"
    CONNECTED = "connected"
    FAILED = "failed"


@dataclass
class ConnectionInfo:
    """What the header and the health screen say about the server connection."""

    state: ConnectionState = ConnectionState.IDLE
    message: str = ""
    test: ConnTestResult | None = None
    testing: bool = False
    tested_at: datetime | None = None
    listing_error: str = ""

    def status(self) -> ConnectionStatus | None:
        """What the health evaluation is told about the connection (None: nothing known).

        The state is the latest word (a listing or a test, whichever came last): a listing
        that works clears an older failed test, and a failed listing is never hidden by an
        older test that passed. A passed test still tells its write verdict (read-only)."""
        test = self.test
        if self.state == ConnectionState.FAILED:
            if test is not None and not test.ok and self.message == test.message:
                return ConnectionStatus.from_result(test)  # the failure is the test's
            return ConnectionStatus(ok=False, message=self.message, write_test=WriteTest.SKIPPED)
        if test is not None and (test.ok or self.state != ConnectionState.CONNECTED):
            return ConnectionStatus.from_result(test)
        if self.state == ConnectionState.CONNECTED:
            return ConnectionStatus(ok=True, message="the folder was listed (connection test not run yet)",
                                    write_test=WriteTest.SKIPPED)
        return None


# ---------------------------------------------------------------------------------------------
# The data snapshot


@dataclass(frozen=True)
class RemoteRow:
    """One file of the server folder as the Remote screen shows it."""

    name: str  # untrusted: always shown escaped
    report: str
    delivered_at: datetime | None
    size: int
    delete_on: date | None
    days_left: int | None
    state: LocalState
    verification: VerifyStatus | None
    message: str = ""
    local_path: str | None = None
    age_seconds: float = 0.0
    #: A rolling report (``name`` is the server's fixed name): the version on the server now,
    #: its ledger and local name ``NAME (YYYY-MM-DD HHMM).ext``; None for an ordinary file.
    version: str | None = None
    folder: str = ""  # the server folder it is in (normalized)
    server_name: str = ""  # the server's exact name ("": ``name``)
    local_name: str = ""  # the name of its local copy ("": not assigned yet)
    #: Purged, but its file had other names (hard links) then: what to say of its data still
    #: on disk (``retention.still_on_disk``); "" otherwise.
    purge_note: str = ""


@dataclass(frozen=True)
class OtherRow:
    """An entry of a watched folder that is not a report (a sub-folder, a link, a file that
    is no workbook): the Remote screen shows it dimmed; it cannot be selected or fetched."""

    key: str  # the table's row key: never a file's identity
    folder: str  # the server folder it is in
    name: str  # untrusted: always shown escaped
    kind: EntryKind


@dataclass(frozen=True)
class DataSnapshot:
    """Everything the screens render, computed off the UI thread from the ledger."""

    rows: tuple[RemoteRow, ...] = ()
    health: HealthReport | None = None
    local_size: int = 0
    local_files: int = 0
    listed_at: datetime | None = None
    refused: tuple[tuple[str, str], ...] = ()  # (name, reason)
    error: str = ""  # why the health evaluation failed (never a traceback)
    version: int = 0
    others: tuple[OtherRow, ...] = ()  # entries of the watched folders that are not reports
    #: Short labels of the watched folders when there are several (the Remote screen's Folder
    #: column); empty when one folder is watched.
    folder_labels: Mapping[str, str] = field(default_factory=dict)


def folder_labels(folders: Sequence[str]) -> dict[str, str]:
    """A short label per watched folder: its last part, or its whole path when two folders
    share their last part. Empty for a single folder (nothing to tell apart)."""
    if len(folders) < 2:
        return {}
    last = [f.rstrip("/").rsplit("/", 1)[-1] or f for f in folders]
    return {f: (short if last.count(short) == 1 else f) for f, short in zip(folders, last, strict=True)}


def other_rows(profile: Profile, ledger: Ledger) -> tuple[OtherRow, ...]:
    """The ledger's entries that are not reports, of the folders watched now; a sub-folder
    that is itself watched is left out (its files are listed)."""
    watched = set(profile.folders)
    return tuple(OtherRow(key=f"\x00{o.folder}\x00{o.name}", folder=o.folder, name=o.name, kind=o.kind)
                 for o in ledger.others() if o.ignored_in(watched))


def folder_size(folder: Path) -> tuple[int, int]:
    """(bytes, files) of the downloaded reports under ``folder`` (hidden files and folders,
    such as the working folder of part files, excluded)."""
    total = count = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0, 0
    for entry in entries:
        try:
            if entry.name.startswith("."):
                continue
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
                count += 1
            elif entry.is_dir(follow_symlinks=False):
                sub = folder_size(Path(entry.path))
                total += sub[0]
                count += sub[1]
        except OSError:
            continue
    return total, count


def partial_names(listing: RemoteListing | None) -> frozenset[str]:
    """Names the latest listing found a part file for (partial while the ledger says new)."""
    if listing is None:
        return frozenset()
    return frozenset(e.name for e in listing.entries if e.local_state == LocalState.PARTIAL)


def _purge_note(d: Delivery) -> str:
    """A purged copy whose file had other names (hard links): what to say of its data."""
    links = d.extra.get("purge_links", 0)
    if not links or not d.local_path:
        return ""
    return still_on_disk(d.local_path, links, d.extra.get("purge_inode"))


def build_snapshot(profile: Profile, ledger: Ledger, *, connection: ConnectionStatus | None = None,
                   version: int = 0, partial: frozenset[str] = frozenset()) -> DataSnapshot:
    """Check the held copies against the disk, read the ledger, evaluate health, size the
    local folder. Runs in a thread worker.

    ``partial``: names the latest listing found a part file for (:func:`partial_names`)."""
    now = clock.now()
    tz = profile.timezone
    today = now.astimezone(tz).date()
    try:
        # The disk, not the last listing, says what is held: a copy moved away since shows
        # as missing locally even while the server cannot be reached.
        ledger.reconcile_local(Path(profile.local_dir).expanduser())
    except LEDGER_ERRORS:
        log.exception("checking the held copies against the disk failed")
    deliveries = ledger.deliveries()
    rows = []
    for d in deliveries:
        if not d.on_server:
            continue
        report = profile.report_for(d.report)
        delete_on = report.delete_on(d.delivered_at, tz)
        state = d.local_state
        server_name = d.extra.get("rolling_of") or d.name
        if state == LocalState.NEW and server_name in partial:
            state = LocalState.PARTIAL
        rows.append(
            RemoteRow(
                name=server_name,
                report=d.report,
                delivered_at=d.delivered_at,
                size=d.size,
                delete_on=delete_on,
                days_left=(delete_on - today).days,
                state=state,
                verification=d.verification,
                message=d.message,
                local_path=d.local_path,
                age_seconds=(now - d.delivered_at).total_seconds(),
                version=d.name if server_name != d.name else None,
                folder=d.folder or profile.folders[0],
                server_name=d.extra.get("rolling_of") or d.server_name or d.name,
                local_name=d.local_name or (d.name if d.extra.get("rolling_of") else ""),
                purge_note=_purge_note(d),
            )
        )
    health = None
    error = ""
    try:
        health = evaluate(profile, deliveries, now=now, connection=connection)
    except Exception as exc:  # the screens show what failed; the log has why
        log.exception("health evaluation failed")
        error = f"The health evaluation failed ({type(exc).__name__}); see the log file for details."
    size, files = folder_size(Path(profile.local_dir))
    try:
        refused = tuple((r.name, r.reason) for r in ledger.refused())
        listed_at = ledger.last_listing()
        others = other_rows(profile, ledger)
    except LEDGER_ERRORS:
        log.exception("reading the ledger's listings failed")
        refused, listed_at, others = (), None, ()
    return DataSnapshot(
        rows=tuple(rows),
        health=health,
        local_size=size,
        local_files=files,
        listed_at=listed_at,
        refused=refused,
        error=error,
        version=version,
        others=others,
        folder_labels=folder_labels(profile.folders),
    )


def verify_local_reports(profile: Profile, ledger: Ledger, *,
                         progress: Callable[[int, int, str], None] | None = None,
                         cancelled: Callable[[], bool] | None = None) -> list[VerifyOutcome]:
    """Every report in the profile's local folder, verified (from the ledger's cache where the
    same bytes were verified before; new results are recorded), then the copies the local
    retention policy purged, with their last recorded result. Blocking: a thread worker's."""
    items = find_local_reports(Path(profile.local_dir).expanduser(), profile, ledger)
    if progress is not None:
        progress(0, len(items), "")
    outcomes = verify_local(items, ledger, progress=progress, cancelled=cancelled)
    return outcomes + purged_reports(ledger, profile)


def empty_reports(results: Iterable[VerifyResult]) -> list[VerifyResult]:
    """Reports with no data rows although the day they cover was open."""
    return [r for r in results if r.status == st.EMPTY]


def empty_reports_text(results: Sequence[VerifyResult]) -> str:
    """The warning for newly found empty reports (names escaped)."""
    if len(results) == 1:
        return (f"{escape_name(results[0].name)} has no data rows, but the day it covers was an "
                "open day. Open Verify (4) for what to do.")
    return f"{len(results)} new reports have no data rows on an open day. Open Verify (4) to see them."


# ---------------------------------------------------------------------------------------------
# The transfer board


@dataclass
class JobView:
    """One file in the queue, as shown. Changed only by its :class:`TransferBoard`."""

    name: str
    size: int = 0
    state: JobState = JobState.QUEUED
    bytes_done: int = 0
    rate: float = 0.0
    reason: str = ""
    attempt: int = 0
    job_id: int | None = None
    path: str = ""
    sha256: str = ""
    status: Placed | None = None  # how it was placed (Done)
    verification: VerifyStatus | None = None
    order: int = 0
    version: int = 0  # bumped on every change: the screen redraws changed rows only

    @property
    def beside_older_copy(self) -> bool:
        """The server's copy had changed: it was placed beside the older one."""
        return self.status == Placed.CHANGED

    @property
    def eta(self) -> float | None:
        if self.state != JobState.RUNNING or not self.rate or not self.size:
            return None
        return max(0.0, (self.size - self.bytes_done) / self.rate)


@dataclass
class TransferBoard:
    """Every file queued in this session, in the order it was queued.

    The app applies every transfer event (cheap) and posts one replaceable message, so the
    Queue screen redraws at most a few times a second (latest wins)."""

    jobs: dict[str, JobView] = field(default_factory=dict)
    paused: bool = False  # changed through set_paused (the rows of waiting jobs redraw)
    started_at: float | None = None
    version: int = 0

    def _touch(self, job: JobView) -> None:
        self.version += 1
        job.version = self.version

    def enqueue(self, name: str, size: int) -> JobView:
        """A file the user asked for (before the transfer queue has it)."""
        job = self.jobs.get(name)
        if job is None:
            job = JobView(name=name, size=size, order=len(self.jobs))
            self.jobs[name] = job
        else:
            job.state, job.bytes_done, job.rate, job.reason = JobState.QUEUED, 0, 0.0, ""
            job.size = size or job.size
        if self.started_at is None:
            self.started_at = time.monotonic()
        self._touch(job)
        return job

    def queue(self, names: Iterable[str], sizes: Mapping[str, int]) -> list[str]:
        """Put files on the board, skipping those still queued or running; returns those added."""
        added = []
        for name in names:
            job = self.jobs.get(name)
            if job is not None and job.state.active:
                continue
            self.enqueue(name, sizes.get(name, 0))
            added.append(name)
        return added

    def apply(self, event: TransferEvent) -> JobView | None:
        """Apply one transfer event; returns the job it changed."""
        job = self.jobs.get(event.name)
        if job is None:
            size = event.size if isinstance(event, (Queued, Done)) else event.total if isinstance(event, Running) else 0
            job = self.enqueue(event.name, size)
        job.job_id = event.job_id
        match event:
            case Queued(size=size):
                job.state = JobState.QUEUED
                job.size = size or job.size
            case Running(bytes=done, total=total, rate=rate):
                job.state = JobState.RUNNING
                job.bytes_done = done
                job.size = total or job.size
                job.rate = rate
            case Retrying(attempt=attempt, reason=reason):
                job.state = JobState.RETRYING
                job.attempt = attempt
                job.reason = reason
                job.rate = 0.0
            case Done(size=size, path=path, sha256=sha256, status=status):
                job.state = JobState.DONE
                job.size = size or job.size
                job.bytes_done = job.size
                job.path = path
                job.sha256 = sha256
                job.status = status
                job.rate = 0.0
                job.reason = ""  # a retry's reason is over
            case Failed(reason=reason, error=FileBusy()):
                # Another Report Keeper process is fetching it (or just did): left to it, as
                # sync lists it under skipped. Not a failure, and nothing to retry.
                job.state = JobState.SKIPPED
                job.reason = reason
                job.rate = 0.0
            case Failed(reason=reason):
                job.state = JobState.FAILED
                job.reason = reason or "failed"
                job.rate = 0.0
            case Cancelled():
                job.state = JobState.CANCELLED
                job.rate = 0.0
            case _:
                return None
        self._touch(job)
        return job

    def set_paused(self, paused: bool) -> None:
        """Hold or continue the queue; every job not ended is redrawn ("paused" or not)."""
        if paused == self.paused:
            return
        self.paused = paused
        for job in self.jobs.values():
            if job.state.active:
                self._touch(job)

    def set_verification(self, name: str, status: VerifyStatus | None) -> None:
        job = self.jobs.get(name)
        if job is not None:
            job.verification = status
            self._touch(job)

    def set_reason(self, name: str, reason: str) -> None:
        """Replace the reason shown for a job (a retry's or a failure's)."""
        job = self.jobs.get(name)
        if job is not None:
            job.reason = reason
            self._touch(job)

    def fail(self, name: str, reason: str) -> bool:
        """Mark a job that has not ended as failed; False when there is none."""
        job = self.jobs.get(name)
        if job is None or not job.state.active:
            return False
        job.state, job.reason, job.rate = JobState.FAILED, reason or "failed", 0.0
        self._touch(job)
        return True

    def cancel(self, name: str) -> bool:
        """Mark a job not handed to the transfer queue yet as cancelled."""
        job = self.jobs.get(name)
        if job is None or not job.state.active:
            return False
        job.state, job.rate = JobState.CANCELLED, 0.0
        self._touch(job)
        return True

    def fail_pending(self, reason: str) -> None:
        """Mark every job that has not ended as failed (the whole batch stopped)."""
        for job in self.jobs.values():
            if job.state.active:
                job.state = JobState.FAILED
                job.reason = reason
                job.rate = 0.0
                self._touch(job)

    def cancel_pending(self) -> None:
        for job in self.jobs.values():
            if job.state.active:
                job.state = JobState.CANCELLED
                job.rate = 0.0
                self._touch(job)

    def record_batch(self, result: SyncResult) -> None:
        """What a finished batch says: verifications, failures the events did not carry, and
        nothing left waiting."""
        for verdict in result.files:
            self.set_verification(verdict.name, verdict.status)
        for item in result.failed:
            self.fail(item["name"], item.get("error") or "failed")
        self.cancel_pending()

    # -- views
    def ordered(self) -> list[JobView]:
        return sorted(self.jobs.values(), key=lambda j: j.order)

    def names_in(self, *states: JobState) -> list[str]:
        return [j.name for j in self.ordered() if j.state in states]

    def counts(self) -> dict[JobState, int]:
        out = {s: 0 for s in JobState}
        for j in self.jobs.values():
            out[j.state] += 1
        return out

    @property
    def active(self) -> bool:
        return any(j.state.active for j in self.jobs.values())

    def totals(self) -> tuple[int, int]:
        """(bytes done, bytes total) over every job: a cancelled or failed file stays in the
        total, so cancelling never turns the overall bar into a finished one."""
        done = total = 0
        for j in self.jobs.values():
            total += j.size
            done += j.size if j.state == JobState.DONE else min(j.bytes_done, j.size or j.bytes_done)
        return done, total

    def rate(self) -> float:
        return sum(j.rate for j in self.jobs.values() if j.state == JobState.RUNNING)

    def left(self) -> tuple[int, int]:
        """(files, bytes) still to come: every job not ended (for a question before stopping)."""
        active = [j for j in self.jobs.values() if j.state.active]
        return len(active), sum(max(0, j.size - j.bytes_done) for j in active)


_VERDICT = {
    st.OK: "it verifies ok",
    st.EMPTY: "it has no data rows",
    st.EMPTY_CLOSED: "it is empty (a closed day)",
    st.SCHEMA: "it lacks the expected columns",
    st.UNREADABLE: "it is not a readable workbook",
    st.CHANGED: "it verifies ok",
    st.WRONG_DAY: "its rows describe another day",
}


def again_text(fetched: FetchedAgain) -> str:
    """What downloading a held copy again found, in one or two sentences (name escaped)."""
    name = escape_name(fetched.name)
    verdict = fetched.verification.status if fetched.verification is not None else None
    said = _VERDICT.get(verdict, "it is not verified yet") if verdict is not None else "it is not verified yet"
    placed = escape_name(Path(fetched.path).name)
    if fetched.outcome == AgainOutcome.IDENTICAL:
        if verdict in (st.OK, st.EMPTY_CLOSED):
            return f"{name}: the server's copy is identical to the one held, and {said}."
        return (f"{name}: the server's copy is identical to the one held, so the server's is "
                f"damaged too ({said}). Re-run the report in Alma (Health says by when).")
    if fetched.outcome == AgainOutcome.DIFFERENT:
        return (f"{name}: the server's copy differs from the one held; it is kept beside it as "
                f"'{placed}', and {said}.")
    return f"{name}: the copy here was gone; downloaded again as '{placed}', and {said}."


ToastSeverity = Literal["information", "warning", "error"]


def batch_text(board: TransferBoard, batch: Sequence[str], result: SyncResult) -> tuple[str, ToastSeverity]:
    """The one toast after a batch of downloads: this batch's counts (not the session's), the
    reason of a failure, and what downloading a held copy again found. ``(text, severity)``."""
    jobs = [board.jobs[n] for n in dict.fromkeys(batch) if n in board.jobs]
    again = {a.name: a for a in result.again}
    done = [j for j in jobs if j.state == JobState.DONE and j.name not in again]
    failed = [j for j in jobs if j.state == JobState.FAILED]
    cancelled = [j for j in jobs if j.state == JobState.CANCELLED]
    left = [j for j in jobs if j.state == JobState.SKIPPED]
    counts = []
    if done:
        counts.append(f"{len(done)} downloaded")
    if again:
        counts.append(f"{len(again)} downloaded again")
    if left:
        counts.append(f"{len(left)} left to another process")
    if failed:
        counts.append(f"{len(failed)} failed")
    if cancelled:
        counts.append(f"{len(cancelled)} cancelled")
    head = "Downloads stopped" if cancelled and not done and not again else "Downloads finished"
    text = f"{head}: {', '.join(counts) or 'nothing to do'}."
    severity: ToastSeverity = "information"
    if failed:
        first = failed[0]
        more = f" ({len(failed) - 1} more on the Queue screen, 3)" if len(failed) > 1 else ""
        text += f" {escape_name(first.name)}: {first.reason or 'failed'}{more}"
        severity = "error"
    if cancelled:
        text += " What arrived is kept; f on the Queue screen resumes it."
        severity = "warning" if severity == "information" else severity
    if len(again) == 1:
        only = next(iter(again.values()))
        text += " " + again_text(only)
        bad = only.verification is None or only.verification.status not in (st.OK, st.EMPTY_CLOSED)
        if bad and severity == "information":
            severity = "warning"
    elif again:
        same = sum(1 for a in again.values() if a.outcome == AgainOutcome.IDENTICAL)
        text += (f" Of those downloaded again, {same} {'is' if same == 1 else 'are'} identical to "
                 "the copy held; the Queue screen (3) says what each one found.")
    return text, severity


# ---------------------------------------------------------------------------------------------
# The sync service, as the app uses it


class SyncServiceLike(Protocol):
    """What the app needs of :class:`tui.sftp.sync.SyncService`."""

    last_listing: RemoteListing | None

    async def list_remote(self) -> RemoteListing: ...

    async def download(
        self,
        names: Iterable[str] | None = None,
        on_event: EventCallback | None = None,
        *,
        listing: RemoteListing | None = None,
        on_queue: Callable[[TransferQueue], object] | None = None,
    ) -> SyncResult: ...

    async def close(self) -> None: ...
