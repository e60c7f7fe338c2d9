"""Making what was written survive a power cut: the one home of the folder fsync.

A file's own ``fsync`` keeps its bytes; its name lives in the folder, so a file created,
renamed or deleted is only durable once the folder is fsync'ed too. Where a file system
cannot fsync a folder (some network shares), that is not an error: the step was still done.
"""

from __future__ import annotations

import os
from pathlib import Path


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Flush ``folder``'s entries (names created, renamed or removed in it) to the disk."""
    try:
        fd = os.open(Path(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
