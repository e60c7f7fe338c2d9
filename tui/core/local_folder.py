"""Whether ``local_dir`` is the empty stand-in of a share that is not mounted.

A folder on a network share (or a removable disk) that is not mounted shows its mount point: an
existing, empty folder. Taken at its word, the purge would record every old copy as deleted by
hand (the copies are on the share, and would keep their patron data for ever once it is back,
the ledger saying they were gone), and a sync would fetch every file again onto the machine's
own disk. The sign (docs/RETENTION.md, "A share not mounted"): the folder holds nothing at all,
while the ledger holds copies in it. A folder the product has written to holds its working
folder (``.report-keeper``) as well as its copies, so a mounted share is never empty; a new
folder has no copies in the ledger. Copies deleted on purpose, the folder emptied with them:
any file put in the folder says so.

Public API: ``stand_in_refusal(local_dir, ledger) -> str | None``: the one-line refusal, or
None when the folder may be used.
"""

from __future__ import annotations

import os
from pathlib import Path

from tui.core.ledger import Ledger
from tui.core.names import escape_name


def _empty(folder: Path) -> bool:
    """An existing folder with no entry at all (hidden ones included). A folder that is missing
    or cannot be read is not empty: the other rules about it apply."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except (OSError, ValueError):
        return False


def stand_in_refusal(local_dir: str | Path, ledger: Ledger) -> str | None:
    """Why ``local_dir`` must not be used now, in one line; None when it may. Looks at the
    folder first: the ledger is read only when the folder is empty."""
    folder = Path(local_dir).expanduser()
    if not _empty(folder):
        return None
    n = ledger.copies_in(os.path.abspath(folder))
    if not n:
        return None  # a new folder
    return (f"the local folder '{escape_name(str(folder))}' is empty but the ledger holds {n} "
            f"cop{'y' if n == 1 else 'ies'} there: is the share mounted? Mount it and run again; "
            "if the copies were deleted on purpose, put any file in the folder first")
