"""Downloads the ledger could not record: a note in the private working folder.

When the ledger refuses the record of a file a sync has placed (a full disk, a lock another
program holds too long) the file is on disk, complete, but the ledger does not know it. Without
a note the next sync fetches the same bytes again to find them in place. So the sync writes
what each record would have held into ``<local_dir>/.report-keeper/unrecorded.json`` (the
private working folder: no server name can reach it), and the next sync records a noted file
from there instead of fetching it, once it has hashed the file again and found the noted bytes
under the noted name for the very server copy it lists.

Public API::

    add(local_dir, notes)            # note files placed but not recorded (raises OSError)
    read(local_dir) -> list[Note]    # what is noted (nothing when the note is absent or bad)
    remove(local_dir, notes)         # forget notes (recorded now, or no longer true)

The note is replaced whole (a temporary file renamed over it), never edited in place; a note
that cannot be read is ignored (the files are then fetched again: nothing is lost).
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import stat as statmod
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from tui.core.durable import fsync_dir
from tui.core.names import WORK_DIR_NAME
from tui.sftp import parts

log = logging.getLogger("report_keeper.sftp.unrecorded")

NOTE_NAME = "unrecorded.json"
#: A note larger than this is not read (tens of thousands of files; then they are fetched again).
MAX_BYTES = 16 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Note:
    """What the ledger's record of one placed file would have held."""

    name: str  # the ledger's name of the file
    size: int
    mtime: datetime  # the server's modification time of the copy fetched (aware)
    sha256: str
    path: str  # the copy on disk, directly in the local folder


def note_path(local_dir: Path | str) -> Path:
    return Path(local_dir) / WORK_DIR_NAME / NOTE_NAME


def read(local_dir: Path | str) -> list[Note]:
    """The notes of ``local_dir`` (an empty list when there is none or it cannot be read)."""
    path = note_path(local_dir)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        with os.fdopen(fd, "rb") as f:
            if not statmod.S_ISREG(os.fstat(f.fileno()).st_mode):
                return []
            raw = f.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            log.warning("%s is too large to read; its files are fetched again", path)
            return []
        items = json.loads(raw)
        notes = []
        for item in items if isinstance(items, list) else []:
            note = _note(item)
            if note is not None:
                notes.append(note)
        return notes
    except (OSError, ValueError, RecursionError):  # deeply nested JSON exhausts the parser's stack
        log.warning("%s cannot be read; its files are fetched again", path)
        return []


def _note(item: object) -> Note | None:
    if not isinstance(item, dict):
        return None
    name, size, mtime, sha256, path = (item.get(k) for k in ("name", "size", "mtime", "sha256", "path"))
    if not (isinstance(name, str) and type(size) is int and size >= 0 and isinstance(mtime, str)
            and isinstance(sha256, str) and _SHA256.fullmatch(sha256) and isinstance(path, str)):
        return None
    try:
        when = datetime.fromisoformat(mtime)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return Note(name, size, when, sha256, path)


def add(local_dir: Path | str, notes: Iterable[Note]) -> None:
    """Note these files (replacing older notes of the same name). Raises ``OSError`` when the
    note cannot be written (then the files are fetched again next time)."""
    new = list(notes)
    if not new:
        return
    names = {n.name for n in new}
    _write(local_dir, [n for n in read(local_dir) if n.name not in names] + new)


def remove(local_dir: Path | str, notes: Iterable[Note]) -> None:
    """Forget these notes; errors are logged (a stale note is checked again before use)."""
    gone = set(notes)
    if not gone:
        return
    kept = [n for n in read(local_dir) if n not in gone]
    try:
        if kept:
            _write(local_dir, kept)
        else:
            os.unlink(note_path(local_dir))
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("could not update %s: %s", note_path(local_dir), exc)


def _write(local_dir: Path | str, notes: list[Note]) -> None:
    parts.ensure_work_dir(local_dir)  # <local_dir>/.report-keeper, 0700, a real folder of ours
    path = note_path(local_dir)
    tmp = path.with_name(f".{NOTE_NAME}.{secrets.token_hex(8)}.tmp")
    data = json.dumps([{**asdict(n), "mtime": n.mtime.isoformat()} for n in notes]).encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
