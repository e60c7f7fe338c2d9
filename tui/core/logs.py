"""Logging to a file in the platform's log dir.

Never log cell values: reports hold patron data. Log file names, sizes, statuses and counts.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from pathlib import Path

import platformdirs

LOGGER = "report_keeper"
MAX_BYTES = 2_000_000  # the log file is rotated when it would grow past this
BACKUPS = 3  # rotated files kept: report-keeper.log.1 ... .3


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir("report-keeper"))


def setup_logging(level: int = logging.INFO, *, rotate: bool = True) -> Path | None:
    """Send the product's log records to ``report-keeper.log``; returns its path (None if the
    log dir cannot be written, in which case logging stays off rather than failing the run).

    ``rotate=False``: this process never rotates the file (a process of a run shared among
    processes: the run's first process does it, :func:`hold_rotation`)."""
    root = logging.getLogger(LOGGER)
    for handler in root.handlers:
        if isinstance(handler, logging.handlers.RotatingFileHandler):
            return Path(handler.baseFilename)
    path = log_dir() / "report-keeper.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=MAX_BYTES if rotate else 0,
                                                       backupCount=BACKUPS, encoding="utf-8")
        os.chmod(path, 0o600)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return path


def hold_rotation() -> None:
    """Before starting other processes that write to the same log file: rotate it now if it is
    full, then never again in this process (they are started with ``rotate=False``).

    Each process has its own handler on the file. Were each to rotate it when it fills up,
    one run would rotate it once per process: the backups shifted several times over (the
    older history dropped early) and the run's lines spread over files of a few lines each.
    So the file may grow past the limit by one run's lines; the next run rotates it."""
    for handler in logging.getLogger(LOGGER).handlers:
        if isinstance(handler, logging.handlers.RotatingFileHandler) and handler.maxBytes > 0:
            try:
                if os.path.getsize(handler.baseFilename) >= handler.maxBytes:
                    handler.doRollover()
            except OSError as exc:  # the run goes on; its lines go to the file as it is
                logging.getLogger(LOGGER).warning("could not rotate the log file: %s", exc)
            handler.maxBytes = 0
