"""Local retention: held copies are temporary storage of patron data (docs/RETENTION.md).

A report (or a whole profile) with ``local_retention_days = N`` keeps each local copy for N
days after its delivery (the ledger's ``delivered_at``). A copy delivered *more* than N days
ago is **purged**: its file is deleted, and so are the export cache's tables of that content;
the ledger keeps its record (name, size, sha256, rows, verification, fingerprint, date
coverage: no cell value), and the delivery is never downloaded again, even while the server
still has it. Every copy of a delivery follows the rule on its own: the copy the server
changed later (``NAME (changed ...).xlsx``) as much as the first one. A part file left for a
purged delivery is removed with it (it can never be completed).

``keep_until_exported`` (the default when a retention is set): only a content (sha256) that
an export has included (its rows, or as an empty day) is purged. A copy past its age that no
export has included is kept and listed as *waiting for export*, with why: not exported yet,
or an export passed it over (``superseded`` by another copy of its run day, ``excluded`` as
unreadable, of the wrong day, ...). The study's data is never lost to the policy.

The order of a purge, so that a crash at any point loses nothing and mislabels nothing:

1. the ledger records the decision (``purge_started``) for every copy about to go: from now
   on the copy is never ``missing-locally``, ``lost`` or fetched again;
2. the part files of those deliveries go (they can never complete now; one left linked to
   its copy by a download killed while placing it would be a second name of the copy);
3. each file is checked (a regular file with the recorded size and sha256: never delete what
   is not the downloaded copy) and deleted, and the folder fsynced;
4. the ledger records ``purged_at`` for the files really gone (and, for a file that had other
   names, how many and its inode), and withdraws the decision for those that could not be
   deleted (reported, never a traceback);
5. export-cache tables of contents no longer held go, and so does the cache of a ledger moved
   away (``export_cache.forget_moved``, as every export does).

A copy whose file has other names (hard links: a ``cp -l``, a backup tool's snapshot) loses
only its own name: its bytes stay on disk under the others. It leaves the folder as the policy
says and is recorded purged, but is reported apart (``Copy.linked``: how many other names, its
inode, the file system to search), and the purge is a warning: which names they are cannot be
known without searching the whole file system, so a person must look.

A purge that died between 1 and 4 is finished by the next one: a file already gone is
recorded purged; a file still there is deleted if the policy still allows it, else the
decision is withdrawn. ``dry_run`` decides the same and changes nothing (no file, no record).

Public API: ``purge(profile, ledger, *, dry_run=False, now=None, remove_parts=None) ->
PurgeResult``; ``policy_set(profile)``; ``policies(profile, ledger)``; ``still_on_disk(path,
others, inode)``: what to say of a purged copy whose file had other names.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import shlex
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypedDict

from tui.core import clock, model
from tui.core import ledger as ledger_mod
from tui.core import status as st
from tui.core.config import Profile, ReportConfig
from tui.core.ledger import LEDGER_ERRORS, Download, Ledger, LedgerError
from tui.core.local_folder import stand_in_refusal
from tui.core.model import JSONObject
from tui.core.names import escape_name, size_text

log = logging.getLogger("report_keeper.retention")

#: What pruning the export cache may meet: the ledger (its held contents), the folder.
_PRUNE_ERRORS: tuple[type[Exception], ...] = (*LEDGER_ERRORS, OSError)

#: Why a copy past its age is kept under ``keep_until_exported``.
NOT_EXPORTED = "not-exported"  # no export has looked at it yet
SUPERSEDED = "superseded"  # an export chose another copy of its run day
EXCLUDED = "excluded"  # an export could not use it (unreadable, wrong day, stale, ...)
UNVERIFIED = "unverified"  # never verified: the ledger would keep no result of it
_REASON_TEXT = {
    NOT_EXPORTED: "no export has included it yet",
    SUPERSEDED: "an export used another copy of its run day instead",
    EXCLUDED: "an export could not use it",
    UNVERIFIED: "it was never verified (the next sync verifies it)",
}

#: ``remove_parts(local_dir, names) -> count``: removes the part files of these remote names
#: (``tui.sftp.parts.remove_stale_parts``; the SFTP side owns the part files' layout).
RemoveParts = Callable[[Path, set[str]], int]


class Policy(TypedDict):
    """One report's retention settings, as the JSON documents show them."""

    local_retention_days: int
    keep_until_exported: bool


@dataclass(frozen=True)
class Linked:
    """Other names (hard links) of a copy's file: deleting the copy's own name leaves its data
    on disk under them. Which names they are is not known (finding them means searching the
    file system); they are on the same file system, the one mounted at ``mount_point``."""

    others: int  # how many other names the file had when it was looked at (deleted)
    inode: int
    mount_point: str

    @property
    def find(self) -> str:
        """The command that lists the other names (run by a user who can read every folder)."""
        return f"find {shlex.quote(self.mount_point)} -xdev -inum {self.inode}"


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding ``path`` (its nearest existing folder's)."""
    here = Path(os.path.abspath(path))
    while not here.exists() and here != here.parent:
        here = here.parent
    while not os.path.ismount(here) and here != here.parent:
        here = here.parent
    return here


def still_on_disk(path: Path | str, others: int, inode: int | None) -> str:
    """What to say of a purged copy whose file had ``others`` other names (hard links) when the
    purge deleted its own: its patron data is still on disk, and how to find the names.
    Looks at the disk (the mount point): call it off the UI thread."""
    names = f"{others} other name{'s' if others != 1 else ''}"
    where = ""
    if inode is not None:
        where = f": '{Linked(others, inode, str(mount_point(Path(path).parent))).find}' lists them"
    return (f"its file had {names} (hard links: a 'cp -l', a backup tool's snapshot) when the purge deleted "
            f"it from the folder; {'they still hold' if others != 1 else 'it still holds'} its patron data. "
            f"Which names cannot be known without searching the disk{where}.")


@dataclass(frozen=True)
class Copy:
    """One local copy of a delivery, as the ledger recorded it."""

    name: str  # the server's name of the delivery
    report: str
    path: Path
    sha256: str
    size: int
    delivered_at: datetime
    purge_after: datetime | None  # None: the report keeps every copy
    latest: bool  # the delivery's latest download (else an older copy kept beside it)
    verification: str | None = None
    interrupted: bool = False  # a purge decided to delete it and did not finish
    #: Not in its place when the purge looked (moved, renamed or deleted by hand): recorded
    #: purged, but this purge deleted nothing (its content may still be elsewhere).
    absent: bool = False
    #: Its file has other names (hard links): deleting this one leaves its data on disk.
    linked: Linked | None = None

    @property
    def file(self) -> str:
        return self.path.name

    @property
    def key(self) -> tuple[str, str]:
        return self.name, str(self.path)

    def to_json(self) -> JSONObject:
        return {
            "name": escape_name(self.name),
            "file": escape_name(self.file),
            "path": escape_name(str(self.path)),
            "report": self.report,
            "delivered_at": model.iso(self.delivered_at),
            "purge_after": model.iso(self.purge_after),
            "sha256": self.sha256,
            "size": self.size,
            "verification": self.verification,
            "changed_copy": not self.latest,
        }


@dataclass
class PurgeResult:
    """What one purge did (or, with ``dry_run``, would do). ``to_json()`` is ``purge --json``."""

    dry_run: bool
    now: datetime
    policy: dict[str, Policy] = field(default_factory=dict)  # report -> its settings
    purged: list[Copy] = field(default_factory=list)
    waiting: list[tuple[Copy, str]] = field(default_factory=list)  # (copy, reason)
    errors: list[tuple[Copy, str]] = field(default_factory=list)  # (copy, why not deleted)
    finished: list[Copy] = field(default_factory=list)  # an interrupted purge, completed
    undone: list[Copy] = field(default_factory=list)  # an interrupted purge, withdrawn
    parts_removed: int = 0
    cache_removed: int = 0
    #: Why nothing was deleted: the clock is past even the newest delivery's purge moment
    #: (a clock set ahead, a pinned REPORT_KEEPER_NOW left behind). None: the clock was trusted.
    refused: str | None = None

    @property
    def exit_code(self) -> st.Exit:
        """Warning while the policy is not fully applied (a copy could not be deleted, waits
        for an export, or its data is still on disk under another name); nothing here is
        critical: no data is at risk."""
        return (st.Exit.WARNING if (self.errors or self.waiting or self.refused or self.still_linked)
                else st.Exit.OK)

    @property
    def still_linked(self) -> list[Copy]:
        """The copies gone from the folder (or that would go) whose data other names still hold."""
        return [c for c in self.gone if c.linked is not None]

    @property
    def status(self) -> str:
        return st.overall_name(self.exit_code)

    @property
    def gone(self) -> list[Copy]:
        """Every copy this purge deleted (or would), and those an interrupted purge had
        deleted, oldest delivery first."""
        return sorted([*self.purged, *self.finished], key=_oldest_first)

    def waiting_json(self) -> list[JSONObject]:
        out = []
        for copy, reason in self.waiting:
            doc = copy.to_json()
            doc["reason"] = reason
            doc["days_waiting"] = (self.now - copy.purge_after).days if copy.purge_after else None
            out.append(doc)
        return out

    def to_json(self) -> JSONObject:
        return {
            "status": self.status,
            "dry_run": self.dry_run,
            "policy": {name: {"local_retention_days": p["local_retention_days"],
                              "keep_until_exported": p["keep_until_exported"]}
                       for name, p in self.policy.items()},
            "purged": [c.to_json() | {"interrupted": c.interrupted, "already_gone": c.absent,
                                      "other_links": c.linked.others if c.linked else 0,
                                      "inode": c.linked.inode if c.linked else None,
                                      "mount_point": escape_name(c.linked.mount_point) if c.linked else None}
                       for c in self.gone],
            "waiting_for_export": self.waiting_json(),
            "errors": self.to_json_errors(),
            "withdrawn": [c.to_json() for c in self.undone],
            "parts_removed": self.parts_removed,
            "cache_entries_removed": self.cache_removed,
            "refused": self.refused,
        }

    def to_json_errors(self) -> list[JSONObject]:
        """The copies that could not be deleted, with why (``errors``)."""
        return [c.to_json() | {"error": why} for c, why in self.errors]

    def summary_lines(self, limit: int = 8) -> list[str]:
        """The human output of ``purge`` (and the purge part of ``sync``); ``refused`` is said
        by each command (``sync`` as one of its purge errors)."""
        lines: list[str] = []
        if not self.policy:
            return ["No local retention is configured (local_retention_days): every local copy is kept."]
        gone = [c for c in self.gone if not c.absent and c.linked is None]
        absent = [c for c in self.gone if c.absent]
        linked = self.still_linked
        verb = "would be deleted" if self.dry_run else "deleted"
        if gone:
            size = sum(c.size for c in gone)
            lines.append(f"Purged: {len(gone)} local cop{'y' if len(gone) == 1 else 'ies'} past local_retention_days "
                         f"{verb} ({size_text(size)}); the ledger keeps their records.")
            for c in gone[:limit]:
                lines.append(f"  {'WOULD PURGE' if self.dry_run else 'PURGED':12} {escape_name(c.file)}")
            if len(gone) > limit:
                lines.append(f"  ... and {len(gone) - limit} more (see --json)")
        if absent:
            n = len(absent)
            lines.append(f"Not found: {n} local cop{'y' if n == 1 else 'ies'} past local_retention_days "
                         f"{'was' if n == 1 else 'were'} not in {'its' if n == 1 else 'their'} place "
                         "(moved, renamed or deleted by hand): nothing deleted; recorded purged, never "
                         "fetched again. A copy saved under another name still holds its patron data.")
            for c in absent[:limit]:
                lines.append(f"  NOT FOUND    {escape_name(c.file)}")
            if n > limit:
                lines.append(f"  ... and {n - limit} more (see --json)")
        if linked:
            n = len(linked)
            were = "would be" if self.dry_run else ("was" if n == 1 else "were")
            lines.append(f"Still on disk: {n} local cop{'y' if n == 1 else 'ies'} past local_retention_days "
                         f"{were} deleted from the folder, but not {'its' if n == 1 else 'their'} data: "
                         f"{'its file has' if n == 1 else 'each file has'} "
                         "other names (hard links: a 'cp -l', a backup tool's snapshot) that still hold its "
                         "patron data. Which names cannot be known without searching the disk: the command on "
                         "each line lists them (run it as a user who can read every folder). Delete them, or "
                         "make sure the backup's own retention covers them.")
            for c in linked[:limit]:
                if c.linked is not None:
                    others = f"{c.linked.others} other name{'s' if c.linked.others != 1 else ''}"
                    lines.append(f"  STILL ON DISK {escape_name(c.file)}: {others}; {escape_name(c.linked.find)}")
            if n > limit:
                lines.append(f"  ... and {n - limit} more (see --json)")
        if self.waiting:
            n = len(self.waiting)
            lines.append(f"Waiting for export: {n} local cop{'y is' if n == 1 else 'ies are'} past "
                         "local_retention_days but kept (keep_until_exported):")
            for c, reason in self.waiting[:limit]:
                lines.append(f"  KEPT         {escape_name(c.file)}: {_REASON_TEXT[reason]}")
            if n > limit:
                lines.append(f"  ... and {n - limit} more (see --json)")
            if any(r == NOT_EXPORTED for _, r in self.waiting):
                lines.append("  Export them ('report-keeper export --out FILE.parquet', or e on the Verify "
                             "screen); the next sync or purge then deletes them.")
        for c, why in self.errors[:limit]:
            lines.append(f"  NOT DELETED  {escape_name(c.file)}: {escape_name(why)}")
        if len(self.errors) > limit:
            lines.append(f"  ... and {len(self.errors) - limit} more not deleted (see --json)")
        if not gone and not absent and not linked and not self.waiting and not self.errors and not self.refused:
            lines.append("Purge: no local copy is past local_retention_days.")
        return lines


# ----------------------------------------------------------------------------- the policy


def policy_set(profile: Profile) -> bool:
    """Some report of the profile (or its defaults, for discovered reports) has a retention."""
    return profile.defaults.local_retention_days is not None or any(
        r.local_retention_days is not None for r in profile.reports)


def policies(profile: Profile, report_names: Iterable[str]) -> dict[str, Policy]:
    """The settings of every named report that has a retention (for the JSON and the output)."""
    out: dict[str, Policy] = {}
    for name in report_names:
        cfg = profile.report_for(name)
        if cfg.local_retention_days is not None:
            out[name] = Policy(local_retention_days=cfg.local_retention_days,
                               keep_until_exported=cfg.keeps_until_exported)
    return out


def _look(path: Path, size: int) -> os.stat_result | None:
    """The copy's file as it is now, when it is in its place (a regular file of its size)."""
    try:
        info = os.lstat(path)
    except (OSError, ValueError):
        return None
    return info if stat.S_ISREG(info.st_mode) and info.st_size == size else None


def _other_at(path: Path) -> str | None:
    """Why what is at a copy's name (not the copy: :func:`_look` found no regular file of its
    size there) is not deleted; None when nothing is there (the copy is gone)."""
    try:
        info = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    except OSError as exc:
        return f"it cannot be looked at ({exc.strerror or exc}); check the folder's permissions"
    return _NOT_REGULAR if not stat.S_ISREG(info.st_mode) else _NOT_OURS


def _linked(path: Path, info: os.stat_result) -> Linked | None:
    """The other names of the file ``info`` describes (named ``path``), if it has any."""
    if info.st_nlink <= 1:
        return None
    return Linked(info.st_nlink - 1, info.st_ino, str(mount_point(path.parent)))


@dataclass
class _Plan:
    purge: list[Copy] = field(default_factory=list)  # to delete (interrupted ones included)
    waiting: list[tuple[Copy, str]] = field(default_factory=list)
    finish: list[Copy] = field(default_factory=list)  # interrupted, file already gone
    undo: list[Copy] = field(default_factory=list)  # interrupted, no longer allowed, file there
    newest: datetime | None = None  # the newest delivery the ledger knows (the server's clock)
    #: Not in place, and neither is their folder (a share not mounted): nothing is decided.
    unreachable: list[tuple[Copy, str]] = field(default_factory=list)
    #: Due, but their name holds something else (a link, another size): left, with why.
    kept: list[tuple[Copy, str]] = field(default_factory=list)


def _plan(profile: Profile, ledger: Ledger, now: datetime) -> _Plan:
    """Which copies go, which wait, which interrupted purges to finish or withdraw."""
    deliveries = {d.name: d for d in ledger.deliveries()}
    by_name: dict[str, list[Download]] = {}
    for dl in ledger.downloads():
        by_name.setdefault(dl.name, []).append(dl)
    roles = ledger.export_roles()
    verified = ledger.verifications_of({dl.sha256 for rows in by_name.values() for dl in rows})
    plan = _Plan(newest=max((_server_time(d) for d in deliveries.values()), default=None))
    configs: dict[str, ReportConfig] = {}
    for name, rows in by_name.items():
        delivery = deliveries.get(name)
        if delivery is None:  # a download without its listing record: nothing to judge by
            continue
        cfg = configs.get(delivery.report)
        if cfg is None:
            cfg = configs[delivery.report] = profile.report_for(delivery.report)
        copies: dict[str, Download] = {}
        for dl in rows:  # oldest first: a path downloaded again keeps its latest record
            copies[dl.local_path] = dl
        latest_path = rows[-1].local_path
        due = cfg.purge_after(delivery.delivered_at, profile.timezone)
        for path, dl in copies.items():
            if dl.purged_at is not None:
                continue
            v = verified.get(dl.sha256)
            copy = Copy(name=name, report=delivery.report, path=Path(path), sha256=dl.sha256,
                        size=dl.size, delivered_at=delivery.delivered_at, purge_after=due,
                        latest=path == latest_path, verification=v.status if v else None,
                        interrupted=dl.purge_started is not None)
            info = _look(copy.path, copy.size)
            present = info is not None
            old = due is not None and now > due
            exported = bool(roles.get(dl.sha256, set()) & {"rows", "empty"})
            # A copy is never purged unverified: its record would hold no rows, no result.
            allowed = old and v is not None and (exported or not cfg.keeps_until_exported)
            other = None if present or not (allowed or copy.interrupted) else _other_at(copy.path)
            if other is not None and allowed:
                # Its name holds something else (a link, a file edited to another size): not
                # the download, and not gone. Left, and said, as the purge itself would say it;
                # recorded purged, its patron data would stay on disk under a purged record.
                plan.kept.append((copy, other))
                if copy.interrupted:
                    plan.undo.append(copy)
                continue
            if not present and (allowed or copy.interrupted) and not os.path.isdir(copy.path.parent):
                # Its folder is missing, not the copy (local_dir on a share not mounted): a
                # copy recorded purged now would keep its data for ever once the share is back.
                plan.unreachable.append((copy, _FOLDER_MISSING.format(folder=escape_name(str(copy.path.parent)))))
                continue
            if copy.interrupted and not present and other is None:
                plan.finish.append(copy)  # the file went before the purge could record it
                continue
            if allowed:
                if info is not None:  # what the dry run tells; the purge looks again as it deletes
                    plan.purge.append(replace(copy, linked=_linked(copy.path, info)))
                else:
                    plan.purge.append(copy if copy.interrupted else replace(copy, absent=True))
                continue
            if copy.interrupted:
                plan.undo.append(copy)
            if not old:
                continue
            if not present:
                # Not held: the latest copy is missing-locally (sync fetches it again, or it is
                # lost), an older one was removed by hand. Nothing to delete, nothing to wait for.
                continue
            seen = roles.get(dl.sha256, set())
            if v is None:
                reason = UNVERIFIED
            else:
                reason = SUPERSEDED if "superseded" in seen else (EXCLUDED if "excluded" in seen else NOT_EXPORTED)
            plan.waiting.append((copy, reason))
    plan.purge.sort(key=_oldest_first)
    plan.finish.sort(key=_oldest_first)
    plan.waiting.sort(key=lambda item: _oldest_first(item[0]))
    return plan


def _oldest_first(c: Copy) -> tuple[datetime, str, str]:
    return c.delivered_at, c.name, str(c.path)


# ----------------------------------------------------------------------------- purging


def purge(profile: Profile, ledger: Ledger, *, dry_run: bool = False, now: datetime | None = None,
          remove_parts: RemoveParts | None = None, trust_clock: bool = False) -> PurgeResult:
    """Apply the profile's retention policy (see the module's text). Raises ``LedgerError``
    only when the ledger cannot record the decision; no file is touched before it is.

    A clock past the purge moment of the newest delivery the ledger knows deletes nothing
    (``PurgeResult.refused`` says why) unless ``trust_clock``: see :func:`_clock_refusal`."""
    now = now or clock.now()
    result = PurgeResult(dry_run=dry_run, now=now,
                         policy=policies(profile, _report_names(profile, ledger)))
    if not result.policy and not _interrupted(ledger):
        return result
    stand_in = stand_in_refusal(profile.local_dir, ledger)
    if stand_in is not None:
        # Every copy would read as deleted by hand: nothing is decided or recorded.
        log.warning("purge refused: %s", stand_in)
        result.refused = f"Nothing was deleted: {stand_in}"
        return result
    if dry_run:
        return _purge(profile, ledger, now, result, remove_parts, trust_clock=trust_clock, dry_run=True)
    with _purging_alone(ledger):
        return _purge(profile, ledger, now, result, remove_parts, trust_clock=trust_clock, dry_run=False)


def _purge(profile: Profile, ledger: Ledger, now: datetime, result: PurgeResult,
           remove_parts: RemoveParts | None, *, trust_clock: bool, dry_run: bool) -> PurgeResult:
    """The plan, then (unless ``dry_run``) the steps 1-4 of the module's text."""
    plan = _plan(profile, ledger, now)
    result.waiting = plan.waiting
    result.errors.extend(plan.unreachable)
    result.errors.extend(plan.kept)
    if plan.purge and not trust_clock:
        result.refused = _clock_refusal(profile, result.policy, plan.newest, now)
        if result.refused is not None:
            log.warning("purge refused: the clock reads %s, past the newest delivery's retention",
                        model.iso(now))
            # Interrupted decisions stay as they are (they read as purged; the next purge with
            # a clock it trusts finishes them); what is already gone is recorded as always.
            plan.purge = []
    if dry_run:
        result.purged = [c for c in plan.purge]
        result.finished = plan.finish
        result.undone = plan.undo
        return result
    if plan.purge:
        # 1. The decision first: from here on these copies are never missing or lost.
        ledger.mark_purging([c.key for c in plan.purge], when=now)
    # 2. Their deliveries' part files: never completed now, and one left linked to its copy (a
    # download killed while placing it) would keep the copy's bytes under a second name.
    going = {c.name for c in [*plan.purge, *plan.finish] if c.latest}
    if going:
        result.parts_removed = _remove_parts(profile, ledger, going, remove_parts)
    deleted: list[Copy] = []
    failed: list[Copy] = []
    folders = _Folders(Path(profile.local_dir).expanduser())
    try:
        for copy in plan.purge:
            # 3. Each file, checked to be the downloaded copy, then deleted.
            outcome = _delete(copy, folders)
            if isinstance(outcome, str):
                failed.append(copy)
                result.errors.append((copy, outcome))
                log.warning("purge: %s not deleted: %s", escape_name(copy.file), outcome)
                continue
            deleted.append(replace(copy, linked=outcome))
            if outcome is not None:
                log.warning("purge: %s deleted, but its file has %d other name(s): its data is still on disk",
                            escape_name(copy.file), outcome.others)
        if deleted:
            folders.sync()
    finally:
        folders.close()
    # 4. Only what is really gone is recorded purged; the rest is held again.
    if deleted or plan.finish:
        links = {c.key: (c.linked.others, c.linked.inode) for c in deleted if c.linked is not None}
        ledger.mark_purged([c.key for c in [*deleted, *plan.finish]], when=now, links=links)
    if failed or plan.undo:
        ledger.clear_purging([c.key for c in [*failed, *plan.undo]])
    result.purged, result.finished, result.undone = deleted, plan.finish, plan.undo
    # 5. What goes with them: cached tables of their content.
    if deleted or plan.finish:
        result.cache_removed = _prune_cache(ledger)
    if deleted or plan.finish or failed:
        log.info("purge: %d deleted (%d still on disk under other names), %d finished, %d not deleted, "
                 "%d waiting for export", len(deleted), len(result.still_linked), len(plan.finish),
                 len(failed), len(plan.waiting))
    return result


class PurgeBusy(LedgerError):
    """Another process's purge of the same ledger's copies held this one up for longer than the
    ledger's lock wait; ``str()`` says so and what to do (nothing was deleted)."""


@contextmanager
def _purging_alone(ledger: Ledger) -> Iterator[None]:
    """One purge at a time per ledger file (a ``purge`` run by hand while a scheduled ``sync``
    ends with its own): planned while another deletes, both would delete the same copies and
    each report them as its own, or take the other's decision for an interrupted purge. The
    lock (``flock`` on ``<ledger>.purge.lock``, gone with its process) is waited for as long as
    the ledger's own lock; a purge held longer (a stopped process) is an error that says so."""
    if ledger.path is None:
        yield
        return
    lock_path = ledger.path.with_name(ledger.path.name + ".purge.lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:  # the ledger's folder refuses it: the ledger's own write will say why
        log.warning("purge: cannot open %s (%s); purging without it", lock_path, exc.strerror or exc)
        yield
        return
    try:
        deadline = time.monotonic() + ledger_mod.BUSY_TIMEOUT
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not said:
                    log.info("purge: another process is purging the copies of %s; waiting for it",
                             ledger.path)
                    said = True
                if time.monotonic() > deadline:
                    failure = (f"another report-keeper process has been purging the copies of the "
                               f"ledger {ledger.path} for more than {ledger_mod.BUSY_TIMEOUT:g} s")
                    advice = ("let it finish, or end it if it is stopped; nothing was deleted by "
                              "this run, and the next sync or purge finishes the job")
                    raise PurgeBusy(f"{failure}: {advice}", failure=failure, advice=advice) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)


def _server_time(d: model.Delivery) -> datetime:
    """When the delivery came, as far as it can vouch for the clock: its name's stamp, but
    never later than the server's own modification time for the file (a stray name stamped
    2099 would otherwise vouch for any clock up to then), nor than when this machine first
    saw it listed (``first_seen``: a file whose name and modification time both say 2099,
    from a server clock set there or an upload that set its time, seen while this clock read
    the real time, would vouch for this clock set ahead to 2099 later)."""
    times = [d.delivered_at, d.first_seen]
    if d.mtime is not None:
        times.append(d.mtime)
    return min(times)


def _clock_refusal(profile: Profile, policy: dict[str, Policy], newest: datetime | None,
                   now: datetime) -> str | None:
    """Why the clock is not taken on its word, or None.

    Every delivery's time comes from the server's side (the stamp in its name, else the
    server's modification time), not from this machine's clock. When the clock is past the
    moment even the newest delivery the ledger knows would be purged (by the shortest
    retention of the profile), then by it every copy is old: either nothing was delivered for
    a whole retention period, or the clock is wrong (set ahead, a ``REPORT_KEEPER_NOW`` left in
    a cron line). A wrong clock would delete copies meant to be kept for months, for good (with
    ``keep_until_exported = false`` never exported); keeping them a while longer loses nothing.
    So a person decides (``purge --trust-clock``); the next delivery ends it by itself."""
    if newest is None or not policy:
        return None
    days = min(p["local_retention_days"] for p in policy.values())
    limit = newest + timedelta(days=days)
    if now <= limit:
        return None
    return (f"Nothing was deleted: the clock reads {model.iso(now)}, which is past even the newest "
            f"delivery's retention (delivered {model.iso(newest)} or earlier, {days} days), so by it every local "
            "copy is old. If the clock is wrong (set ahead, or REPORT_KEEPER_NOW left set), fix it; if "
            "nothing was really delivered for that long, run 'report-keeper purge --trust-clock'.")


def _report_names(profile: Profile, ledger: Ledger) -> list[str]:
    names = [r.name for r in profile.reports]
    names.extend(n for n in ledger.reports() if n not in names)
    return names


def _interrupted(ledger: Ledger) -> bool:
    """A purge started and did not finish (the policy may have been removed since)."""
    return any(dl.purge_started is not None and dl.purged_at is None for dl in ledger.downloads())


class _Folders:
    """The folders of one purge, each opened once, and never through a link below local_dir.

    ``local_dir`` itself is opened as configured (it may be a link the library set up: a share
    mounted elsewhere); every folder below it is opened with ``O_NOFOLLOW``, so a sub-folder the
    user replaced by a link (to an archive of the same files) is never deleted through. A
    copy's path outside ``local_dir`` (the setting was changed since it was downloaded) is
    reached through its own folder, as recorded. Each folder is opened once per purge: a folder
    moved away and replaced by a link meanwhile is not followed, the purge deletes in the folder
    it checked. The file itself is looked at, hashed and deleted relative to its folder's
    descriptor (``stat``/``open``/``unlink`` with ``dir_fd``)."""

    def __init__(self, local_dir: Path) -> None:
        self.root = Path(os.path.abspath(local_dir))
        self.fds: dict[Path, int] = {}

    def _open(self, folder: Path, parent: int | None, name: str | None) -> int:
        fd = self.fds.get(folder)
        if fd is None:
            if parent is None or name is None:
                fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            else:
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW, dir_fd=parent)
            self.fds[folder] = fd
        return fd

    def folder_of(self, path: Path) -> int:
        """The descriptor of ``path``'s folder. Raises ``OSError`` (``ELOOP``/``ENOTDIR``: a
        folder on the way below local_dir is a link or no folder)."""
        path = Path(os.path.abspath(path))
        parent = path.parent
        try:
            below = parent.relative_to(self.root).parts
        except ValueError:
            return self._open(parent, None, None)
        fd = self._open(self.root, None, None)
        here = self.root
        for part in below:
            if part in ("..", "."):
                raise OSError(errno.ENOTDIR, "not a plain folder path")
            here = here / part
            fd = self._open(here, fd, part)
        return fd

    def sync(self) -> None:
        for fd in self.fds.values():
            try:
                os.fsync(fd)
            except OSError:
                pass

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def _delete(copy: Copy, folders: _Folders) -> str | Linked | None:
    """Delete the copy if it is the file that was downloaded: None when it is gone, its
    :class:`Linked` when its name is gone but other names of its file keep the bytes, else why
    not (one sentence, no traceback).

    The other names are counted from the last look at the name before it is deleted: after
    it, a network file system may count a name of its own for a file still open (NFS renames
    it ``.nfsXXXX`` until it is closed)."""
    path = copy.path
    name = path.name
    try:
        folder = folders.folder_of(path)
    except FileNotFoundError:
        return None  # its folder is gone, and the copy with it
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return (f"a folder on its way ({escape_name(str(path.parent))}) is a link or no folder "
                    "any more: nothing is deleted through a link; left as it is")
        return f"its folder cannot be opened ({exc.strerror or exc}); check the folder's permissions"
    try:
        info = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None  # already gone (a purge interrupted after deleting it)
    except OSError as exc:
        return f"it cannot be looked at ({exc.strerror or exc}); check the folder's permissions"
    if not stat.S_ISREG(info.st_mode):
        return _NOT_REGULAR
    if info.st_size != copy.size:
        return _NOT_OURS
    try:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK, dir_fd=folder)
    except OSError as exc:
        return f"it cannot be read to check it ({exc.strerror or exc}); left as it is"
    try:
        if not _same_file(os.fstat(fd), info):
            return _REPLACED
        if _sha256(fd) != copy.sha256:
            return _NOT_OURS
        # The name must still be the file just hashed: a workbook saved over it meanwhile (a
        # new file renamed into place) is the user's.
        try:
            now = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not _same_file(now, info) or not _same_file(os.fstat(fd), info):
            return _REPLACED
        try:
            os.unlink(name, dir_fd=folder)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return (f"it cannot be deleted ({exc.strerror or exc}); check the permissions of "
                    f"{escape_name(str(path.parent))} (the next sync or purge tries again)")
    finally:
        os.close(fd)
    return _linked(path, now)


_FOLDER_MISSING = ("its folder {folder} is missing (a share not mounted, a folder moved?); nothing was "
                   "deleted or recorded: the next purge with the folder back decides")
_NOT_REGULAR = "it is no longer a regular file (a link or a folder is there); left as it is"
_NOT_OURS = ("its content is no longer what was downloaded (another size or sha256); it was "
             "left as it is: move it out of local_dir if it is yours")
_REPLACED = ("it was replaced while it was being checked (saved over, moved); it was left as it "
             "is: the next purge checks it again")


def _sha256(fd: int) -> str | None:
    """The sha256 of an open file, read from its start (the descriptor stays open)."""
    digest = hashlib.sha256()
    offset = 0
    try:
        while chunk := os.pread(fd, 1 << 20, offset):
            digest.update(chunk)
            offset += len(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def _remove_parts(profile: Profile, ledger: Ledger, names: set[str], remove_parts: RemoveParts | None) -> int:
    """Part files (and the ledger's partial records) of purged deliveries: never completed now."""
    removed = 0
    if remove_parts is not None:
        try:
            # Part files live in each folder's local folder and are named by the server's name
            # (``folder/name`` identities when several folders are watched).
            by_dir: dict[Path, set[str]] = {}
            for name in names:
                folder, _slash, server_name = name.rpartition("/")
                by_dir.setdefault(profile.local_dir_of(folder or profile.folders[0]), set()).add(server_name)
            removed = sum(remove_parts(local, server_names) for local, server_names in by_dir.items())
        except OSError as exc:
            log.warning("purge: part files not removed: %s", exc.strerror or exc)
    try:
        partial = set(ledger.partials())
        for name in names & partial:
            ledger.clear_partial(name)
    except LEDGER_ERRORS as exc:  # a stale partial record only costs a resume attempt
        log.warning("purge: partial records not cleared: %s", type(exc).__name__)
    return removed


def _prune_cache(ledger: Ledger) -> int:
    """The export cache's tables of contents no copy holds any more (they hold the same
    patron data as the files), and the whole cache of a ledger moved away from where an
    export noted it (it holds the purged contents' tables too), as the export removes it."""
    if ledger.path is None:
        return 0
    # start-up time: the cache module loads polars, which a sync that deletes nothing never needs
    from tui.core.export_cache import TableCache, adopt_legacy, cache_dir, forget_moved  # noqa: PLC0415 - see above

    forget_moved(Path(ledger.path))
    adopt_legacy(Path(ledger.path))  # an earlier release's folder holds the purged contents' tables too
    folder = cache_dir(Path(ledger.path))
    if not folder.is_dir():
        return 0
    try:
        return TableCache(folder).prune(ledger.held_sha256s())
    except (*_PRUNE_ERRORS,) as exc:  # reported; the next purge or export tries again
        log.warning("purge: export cache not pruned: %s", type(exc).__name__)
        return 0


__all__ = ["EXCLUDED", "NOT_EXPORTED", "SUPERSEDED", "UNVERIFIED", "Copy", "Linked", "PurgeResult", "RemoveParts",
           "mount_point", "policies", "policy_set", "purge", "still_on_disk"]
