"""Hold the block writes of big downloads until the test lets them go.

A download of ``THREADED_WRITES_FROM`` bytes or more writes its part file through a writer
thread of its own (``tui.sftp.download``). On a loaded machine that thread can be late: the
write of a block the download has already received and reported may still be on its way to
the part file while the download is being stopped. ``HeldWrites`` makes that moment last as
long as a test needs, so what the download (and the sync around it) does then is checked
deterministically, not left to the machine's load.

Only the writer thread's writes are held (small files are written on the event loop's thread,
which must never block).
"""

from __future__ import annotations

import errno
import threading

import pytest

from tui.sftp import download as download_mod

#: A held write gives up after this long (a test that forgot to release fails, never hangs).
HOLD_AT_MOST = 60.0


class HeldWrites:
    """``held`` is set once a write is waiting; ``release()`` lets every write go."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self._release = threading.Event()
        self.writes = 0  # writes done (after their release)

    def release(self) -> None:
        self._release.set()

    def wrap(self, write):
        def held_write(fd: int, h, data: bytes) -> int:
            if threading.current_thread().name.startswith("rk-write"):
                self.held.set()
                if not self._release.wait(HOLD_AT_MOST):
                    raise OSError(errno.EIO, "a held write was never released")
            n = write(fd, h, data)
            self.writes += 1
            return n

        return held_write


@pytest.fixture
def held_writes(monkeypatch):
    """Every block the downloads' writer threads write waits until ``held_writes.release()``
    (released at the latest when the test ends)."""
    hold = HeldWrites()
    monkeypatch.setattr(download_mod, "_write_and_hash", hold.wrap(download_mod._write_and_hash))
    yield hold
    hold.release()
