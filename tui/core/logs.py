"""Logging to a file in the platform's log dir.

Never log cell values: reports hold patron data. Log file names, sizes, statuses and counts.
"""

from __future__ import annotations

import fcntl
import io
import logging
import logging.handlers
import os
import stat
from pathlib import Path

import platformdirs

LOGGER = "report_keeper"
MAX_BYTES = 2_000_000  # the log file is rotated when it would grow past this
BACKUPS = 3  # rotated files kept: report-keeper.log.1 ... .3


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir("report-keeper"))


class SharedRotatingHandler(logging.handlers.RotatingFileHandler):
    """A rotating log file that other processes append to as well, each with a handler of its
    own: the app and a scheduled ``sync``, the processes of one ``sync --all-profiles`` run.

    A plain rotating handler knows only the file it opened. Once another process has rotated
    the log, that file is the first backup: the handler went on appending to the backup, and
    rotated once more when it found that file full, shifting the backups again (the older
    history dropped early). Here each record goes to the file that is the log now (after
    another process rotated or removed it, this handler opens the log anew), and a rotation is
    done under a lock on ``report-keeper.log.lock``, only if no other process did it meanwhile.
    """

    _identity: tuple[int, int] | None = None  # (device, inode) of the file this handler writes to
    #: The size of that file as the last look at the log found it (None: not known).
    _size: int | None = None

    def _open(self) -> io.TextIOWrapper:
        # Made private (0600) whatever the umask, also the new log a rotation starts; never
        # written through a link (server-chosen names are logged: not into a file it names).
        fd = os.open(self.baseFilename,
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            stream = open(fd, "a", encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise
        info = os.fstat(stream.fileno())
        self._identity = (info.st_dev, info.st_ino)
        return stream

    def _follow(self) -> bool:
        """Make sure this handler writes to the file that is the log now (the log may have
        been rotated or removed by another process); False if the log is not a regular file
        (never rotated, as the standard handler does)."""
        self._size = None
        try:
            now = os.stat(self.baseFilename)
        except OSError:
            now = None
        if now is not None and not stat.S_ISREG(now.st_mode):
            return False
        if self.stream is not None and (now is None or (now.st_dev, now.st_ino) != self._identity):
            try:
                fresh = self._open()
            except OSError:  # the log's folder is gone: on in the file this handler has
                return True
            self.stream.close()
            self.stream = fresh
            return True
        if self.stream is None:
            self.stream = self._open()
        elif now is not None:  # the file this handler writes to: its size, without asking again
            self._size = now.st_size
        return True

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        return self._full(len(self.format(record)) + len(self.terminator))

    def _full(self, size: int) -> bool:
        """Whether ``size`` more bytes would take the log past its limit (after following the
        log to the file that is the log now)."""
        if not self._follow() or self.maxBytes <= 0 or self.stream is None:
            return False
        have = self._size if self._size is not None else os.fstat(self.stream.fileno()).st_size
        return have + size >= self.maxBytes

    def emit(self, record: logging.LogRecord) -> None:
        """One record, one ``write()`` on the log's ``O_APPEND`` descriptor: Linux appends it
        whole to a regular file, so the records of processes writing at once never interleave
        (a text stream's buffering, which could hand a long record over in pieces, is not
        relied on). A character the encoding cannot take (a lone surrogate of a name that was
        not UTF-8) is written escaped, never a logging error on stderr."""
        try:
            # Formatted once: the size that decides a rotation is the size written.
            data = (self.format(record) + self.terminator).encode(self.encoding or "utf-8", "backslashreplace")
            if self._full(len(data)):
                self.doRollover()
            if self.stream is None:
                self.stream = self._open()
            fd = self.stream.fileno()
            while data:  # a regular file takes it in one call; a short write (disk full) goes on
                data = data[os.write(fd, data):]
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's own rule: a record never breaks the caller
            self.handleError(record)

    def doRollover(self) -> None:
        try:
            lock = os.open(self.baseFilename + ".lock",
                           os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        except OSError:
            lock = -1  # no lock file (a read-only folder): rotate as a plain handler would
        try:
            if lock >= 0:
                fcntl.flock(lock, fcntl.LOCK_EX)
            identity = self._identity
            self._follow()
            if self._identity != identity:  # another process rotated it meanwhile
                return
            if not os.path.isdir(os.path.dirname(self.baseFilename)):
                return  # the log's folder is gone: nothing to rotate, on in the file it has
            super().doRollover()
        finally:
            if lock >= 0:
                os.close(lock)  # releases the lock


def setup_logging(level: int = logging.INFO) -> Path | None:
    """Send the product's log records to ``report-keeper.log``; returns its path (None if the
    log dir cannot be written, in which case logging stays off rather than failing the run)."""
    root = logging.getLogger(LOGGER)
    for handler in root.handlers:
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            return Path(handler.baseFilename)
    path = log_dir() / "report-keeper.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = SharedRotatingHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
        os.chmod(path, 0o600)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"))
    # What no record shows is not gathered for each (the logging module's documented switches):
    # the caller's file, line and function (a walk up the stack per record), thread names and
    # the multiprocessing name. A sync logs a line or two per file.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return path
