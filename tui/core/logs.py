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


def log_dir() -> Path:
    return Path(platformdirs.user_log_dir("report-keeper"))


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
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
        os.chmod(path, 0o600)
    except OSError:
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return path
