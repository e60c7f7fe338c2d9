"""A second process holding a file lock, as a running download (the app, a cron sync) does."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HOLDER = (
    "import fcntl, sys, time; f = open(sys.argv[1], 'r+b'); fcntl.flock(f, fcntl.LOCK_EX);"
    " print('locked', flush=True); time.sleep(60)"
)


@contextmanager
def flock_held_elsewhere(path: Path) -> Iterator[None]:
    """Another process holds an exclusive ``flock`` on ``path`` inside the block."""
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked", "the lock holder did not start"
        yield
    finally:
        holder.kill()
        holder.wait()
