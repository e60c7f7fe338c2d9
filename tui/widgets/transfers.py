"""The transfer board: what the Queue screen shows, built from the transfer events.

A plain model (no Textual): :meth:`TransferBoard.apply` takes the events of
:class:`tui.sftp.transfer.TransferQueue` (``Queued``, ``Running``, ``Retrying``, ``Done``,
``Failed``, ``Cancelled``; matched by class name so any object with the same fields works)
and keeps one :class:`JobView` per file name. The app applies every event (cheap) and posts
one replaceable message so the screen redraws at most a few times a second (latest wins).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

QUEUED = "queued"
RUNNING = "running"
RETRYING = "retrying"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"

ACTIVE = (QUEUED, RUNNING, RETRYING)
ENDED = (DONE, FAILED, CANCELLED)


@dataclass
class JobView:
    """One file in the queue, as shown."""

    name: str
    size: int = 0
    state: str = QUEUED
    bytes_done: int = 0
    rate: float = 0.0
    reason: str = ""
    attempt: int = 0
    job_id: int | None = None
    path: str = ""
    sha256: str = ""
    status: str = ""  # new | same | changed (Done)
    verification: str | None = None
    order: int = 0
    version: int = 0  # bumped on every change: the screen redraws changed rows only

    @property
    def eta(self) -> float | None:
        if self.state != RUNNING or not self.rate or not self.size:
            return None
        return max(0.0, (self.size - self.bytes_done) / self.rate)


@dataclass
class TransferBoard:
    """Every file queued in this session, in the order it was queued."""

    jobs: dict[str, JobView] = field(default_factory=dict)
    paused: bool = False
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
            job.state, job.bytes_done, job.rate, job.reason = QUEUED, 0, 0.0, ""
            job.size = size or job.size
        if self.started_at is None:
            self.started_at = time.monotonic()
        self._touch(job)
        return job

    def apply(self, event: Any) -> JobView | None:
        """Apply one transfer event; returns the job it changed."""
        kind = type(event).__name__
        name = getattr(event, "name", None)
        if name is None:
            return None
        job = self.jobs.get(name)
        if job is None:
            job = self.enqueue(name, int(getattr(event, "size", 0) or getattr(event, "total", 0) or 0))
        job.job_id = getattr(event, "job_id", job.job_id)
        if kind == "Queued":
            job.state = QUEUED
            job.size = int(getattr(event, "size", job.size) or job.size)
        elif kind == "Running":
            job.state = RUNNING
            job.bytes_done = int(getattr(event, "bytes", 0))
            job.size = int(getattr(event, "total", 0) or job.size)
            job.rate = float(getattr(event, "rate", 0.0) or 0.0)
        elif kind == "Retrying":
            job.state = RETRYING
            job.attempt = int(getattr(event, "attempt", 1))
            job.reason = str(getattr(event, "reason", ""))
            job.rate = 0.0
        elif kind == "Done":
            job.state = DONE
            job.size = int(getattr(event, "size", 0) or job.size)
            job.bytes_done = job.size
            job.path = str(getattr(event, "path", ""))
            job.sha256 = str(getattr(event, "sha256", ""))
            job.status = str(getattr(event, "status", ""))
            job.rate = 0.0
        elif kind == "Failed":
            job.state = FAILED
            job.reason = str(getattr(event, "reason", "")) or "failed"
            job.rate = 0.0
        elif kind == "Cancelled":
            job.state = CANCELLED
            job.rate = 0.0
        else:
            return None
        self._touch(job)
        return job

    def set_verification(self, name: str, status: str | None) -> None:
        job = self.jobs.get(name)
        if job is not None:
            job.verification = status
            self._touch(job)

    def fail_pending(self, reason: str) -> None:
        """Mark every job that has not ended as failed (the whole batch stopped)."""
        for job in self.jobs.values():
            if job.state in ACTIVE:
                job.state = FAILED
                job.reason = reason
                job.rate = 0.0
                self._touch(job)

    def cancel_pending(self) -> None:
        for job in self.jobs.values():
            if job.state in ACTIVE:
                job.state = CANCELLED
                job.rate = 0.0
                self._touch(job)

    # -- views
    def ordered(self) -> list[JobView]:
        return sorted(self.jobs.values(), key=lambda j: j.order)

    def names_in(self, *states: str) -> list[str]:
        return [j.name for j in self.ordered() if j.state in states]

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in (QUEUED, RUNNING, RETRYING, DONE, FAILED, CANCELLED)}
        for j in self.jobs.values():
            out[j.state] = out.get(j.state, 0) + 1
        return out

    @property
    def active(self) -> bool:
        return any(j.state in ACTIVE for j in self.jobs.values())

    def totals(self) -> tuple[int, int]:
        """(bytes done, bytes total) over every job not cancelled."""
        done = total = 0
        for j in self.jobs.values():
            if j.state == CANCELLED:
                continue
            total += j.size
            done += j.size if j.state == DONE else min(j.bytes_done, j.size or j.bytes_done)
        return done, total

    def rate(self) -> float:
        return sum(j.rate for j in self.jobs.values() if j.state == RUNNING)
