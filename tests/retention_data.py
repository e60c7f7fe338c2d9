"""A small local history for the retention tests that need no server: real workbooks in a
local folder, recorded in a real ledger as nightly syncs would have (listing, download, real
verification), exports recorded as ``report-keeper export`` records them.

Run day i is 1 Mar 2026 + i (delivered 07:05 Chicago, covering i - 3 days); ``NOW`` is 07:00
on day 40, so with ``local_retention_days = 30`` runs 0..9 are past their age.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests import xlsx_factory as xf

REPORT = "Loans Per Patron From 3 Days Ago"
TZ = ZoneInfo("America/Chicago")
FIRST = date(2026, 3, 1)
DAYS = 40
NOW = datetime.combine(FIRST + timedelta(days=DAYS), time(7, 0), tzinfo=TZ)
NOW_ISO = NOW.isoformat()
OLD = range(0, 10)  # past 30 days at NOW

CONFIG = """\
[profile.default]
host = "127.0.0.1"
port = 9
username = "alma"
remote_dir = "reports"
local_dir = "{local}"
ledger = "{ledger}"
timezone = "America/Chicago"
{profile_extra}

[[profile.default.report]]
name = "{report}"
schedule = "daily"
at = "07:00"
grace = "2h"
lag_days = 3
{report_extra}
"""


def delivered(i: int) -> datetime:
    return datetime.combine(FIRST + timedelta(days=i), time(7, 5, 11), tzinfo=TZ)


def name(i: int) -> str:
    return f"{REPORT}_{delivered(i):%Y%m%d_%H%M%S}.xlsx"


def covered(i: int) -> date:
    return FIRST + timedelta(days=i - 3)


@dataclass
class Local:
    root: Path
    local: Path
    config: Path
    ledger_path: Path
    shas: dict[str, str] = field(default_factory=dict)  # by local file name

    def profile(self) -> Any:
        from tui.core.config import load_config

        return load_config(self.config).profile()

    def ledger(self) -> Any:
        from tui.core.ledger import Ledger

        return Ledger.open(self.ledger_path)

    def path(self, i: int) -> Path:
        return self.local / name(i)

    def export(self, ledger: Any, days: range | list[int], *, role: str = "rows") -> None:
        """Record an export that included these runs (as ``export`` records it)."""
        sources = [{"sha256": self.shas[name(i)], "name": name(i), "report": REPORT,
                    "run_day": (FIRST + timedelta(days=i)).isoformat(), "role": role, "rows": 5}
                   for i in days]
        ledger.record_export(out=str(self.root / "study.parquet"), format="parquet", reports=[REPORT],
                             since=None, until=None, pseudonymized_columns=None, key_id=None,
                             rows=5 * len(sources), files=len(sources), status="ok", sources=sources)

    def files(self) -> set[str]:
        return {p.name for p in self.local.iterdir() if not p.name.startswith(".")}


#: Run i's workbook as written the first time in this process: the same real workbook each
#: history holds, copied instead of written again (openpyxl's half cost ~20 ms each)
_WORKBOOKS: dict[int, bytes] = {}


def _workbook(i: int, path: Path) -> Path:
    """Run i's workbook at ``path``: a new file, whatever the other histories do with theirs."""
    data = _WORKBOOKS.get(i)
    if data is None:
        xf.write_report(path, xf.loan_rows(4 + i % 3, day=covered(i), seed=i), engine=xf.ENGINES[i % 2])
        _WORKBOOKS[i] = path.read_bytes()
    else:
        path.write_bytes(data)
    return path


#: Histories built in this process, by what they were built with (the settings, the pinned
#: clock, the reader's limits): the template folder and its files' sha256s. A later build
#: with the same copies it.
_HISTORIES: dict[tuple[str, str, int, str, int, float], tuple[Path, dict[str, str]]] = {}
_TEMPLATES = Path(tempfile.mkdtemp(prefix="rk-histories-"))
_OWNER = os.getpid()


@atexit.register
def _remove_templates() -> None:
    if os.getpid() == _OWNER:  # not a forked child's exit
        shutil.rmtree(_TEMPLATES, ignore_errors=True)


def build(root: Path, *, profile_extra: str = "local_retention_days = 30", report_extra: str = "",
          days: int = DAYS) -> Local:
    """Workbooks of ``days`` runs, downloaded and verified into a real ledger.

    Built for real the first time in this process for these settings, a pinned clock and the
    reader's limits; a later build is a copy of that one, as if built here: fresh files (new
    times, the same bytes and modes), the ledger's rows as they were (its timestamps are the
    pinned clock's and the given delivery times), its paths pointing here. Without a pinned
    clock every build is made for real (the ledger's own timestamps are then the build's)."""
    now = os.environ.get("REPORT_KEEPER_NOW")
    if not now:
        return _build(root, profile_extra=profile_extra, report_extra=report_extra, days=days)
    from tui.core import isolation

    pool = isolation.shared_pool()  # its limits are in a verification's context
    key = (profile_extra, report_extra, days, now, pool.memory_limit, pool.time_limit)
    if key not in _HISTORIES:
        template = _TEMPLATES / str(len(_HISTORIES))
        made = _build(template, profile_extra=profile_extra, report_extra=report_extra, days=days)
        _HISTORIES[key] = (template, dict(made.shas))
    template, shas = _HISTORIES[key]
    local, config = _home(root, profile_extra, report_extra)
    for i in range(days):
        shutil.copy(template / "local" / name(i), local / name(i))  # bytes and mode
    env = Local(root, local, config, root / "ledger.sqlite3", dict(shas))
    source = sqlite3.connect(template / "ledger.sqlite3")
    copy = sqlite3.connect(env.ledger_path)
    try:
        source.backup(copy)
        with copy:
            copy.execute("UPDATE downloads SET local_path = replace(local_path, ?, ?)",
                         (str(template / "local"), str(local)))
            copy.execute("UPDATE verifications SET path = replace(path, ?, ?)",
                         (str(template / "local"), str(local)))
    finally:
        copy.close()
        source.close()
    shutil.copymode(template / "ledger.sqlite3", env.ledger_path)
    return env


def _home(root: Path, profile_extra: str, report_extra: str) -> tuple[Path, Path]:
    """``root``'s local folder (made, private) and config (written): the two a history needs
    besides its ledger and its reports."""
    root.mkdir(parents=True, exist_ok=True)
    local = root / "local"
    local.mkdir(mode=0o700, exist_ok=True)
    config = root / "config.toml"
    config.write_text(CONFIG.format(local=local, ledger=root / "ledger.sqlite3", report=REPORT,
                                    profile_extra=profile_extra, report_extra=report_extra))
    return local, config


def _build(root: Path, *, profile_extra: str, report_extra: str, days: int) -> Local:
    """``build`` for real."""
    from tui.core.ledger import Ledger, verification_context
    from tui.core.model import RemoteFile
    from tui.core.names import parse_name
    from tui.core.validate import validate_file

    local, config = _home(root, profile_extra, report_extra)
    env = Local(root, local, config, root / "ledger.sqlite3")
    profile = env.profile()
    report = profile.report_for(REPORT)

    def report_of(f: Any) -> tuple[str, datetime]:
        parsed = parse_name(f.name, mtime=f.mtime, tz=TZ)
        return parsed.base, parsed.delivered_at

    with Ledger.open(env.ledger_path) as ledger:
        listing = []
        for i in range(days):
            path = _workbook(i, local / name(i))
            path.chmod(0o600)
            listing.append(RemoteFile(name(i), path.stat().st_size, delivered(i).astimezone(UTC)))
        ledger.record_listing(None, report_of, listing, when=NOW - timedelta(hours=1))
        for i, f in enumerate(listing):
            path = local / f.name
            sha = hashlib.sha256(path.read_bytes()).hexdigest()
            ledger.record_download(f.name, size=f.size, sha256=sha, local_path=str(path), mtime=f.mtime,
                                   when=delivered(i) + timedelta(hours=1))
            result = validate_file(path, report, delivered(i))
            ledger.record_verification(result, sha256=sha, context=verification_context(report, delivered(i)))
            env.shas[f.name] = sha
    return env
