"""A daily report whose files have rows, but not always the right ones: real workbooks from both
writers, a real ledger, and what the content checks must find.

"Loans Per Patron From 3 Days Ago", daily at 07:00 (America/Chicago), lag 3, anonymized after
7 days, ``min_share = 0.4``, runs from Tue 20 Oct to Fri 11 Dec 2026; "now" is Fri 11 Dec
10:00. Weekday loan days have 95-120 rows, Saturdays about 30, Sundays about 15 (a weekly
pattern that must not look like "few rows"). The week of 23-27 Nov is a configured closed range
(Thanksgiving week: 4 rows a day from the skeleton staff, never "few rows", and never part of
the usual counts). Each file is written by xlsxwriter or openpyxl in turn, with its own title
line and document timestamps, so no two files share their bytes. Then:

- Fri 30 Oct (covers Tue 27 Oct, the 2nd Tuesday): 10 rows, not judged (fewer than 4
  comparable Tuesdays yet);
- Wed 9 Dec (covers Sun 6 Dec): exactly the rows of Tue 8 Dec's file (loans of Sat 5 Dec),
  written by the other writer: **stale** (warning) and **wrong-day** (critical, rescue by Sun
  13 Dec);
- Thu 10 Dec (covers Mon 7 Dec): fresh rows, but of Sun 6 Dec (the filter drifted a day):
  **wrong-day** (critical, rescue by Mon 14 Dec);
- Fri 11 Dec (covers Tue 8 Dec): a third of the usual rows after six normal Tuesdays:
  **few-rows** (warning, rescue by Tue 15 Dec).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests import xlsx_factory as xf

TZ = ZoneInfo("America/Chicago")
NOW = datetime(2026, 12, 11, 10, 0, tzinfo=TZ)
NOW_ISO = NOW.isoformat()
TODAY = NOW.date()
FIRST = date(2026, 10, 20)
REPORT = "Loans Per Patron From 3 Days Ago"
LAG = 3
CLOSED = (date(2026, 11, 23), date(2026, 11, 27))

EARLY_LOW = date(2026, 10, 30)
STALE_DAY = date(2026, 12, 9)
STALE_OF = date(2026, 12, 8)
WRONG_DAY = date(2026, 12, 10)
FEW_DAY = date(2026, 12, 11)


@dataclass(frozen=True)
class Planned:
    run_day: date
    rows: int
    loan_day: date  # the day the rows describe
    seed: int
    engine: str

    @property
    def covered(self) -> date:
        return self.run_day - timedelta(days=LAG)

    @property
    def delivered_at(self) -> datetime:
        return datetime.combine(self.run_day, time(7, 3 + self.run_day.day % 5, 11), tzinfo=TZ)

    @property
    def name(self) -> str:
        return f"{REPORT}_{self.delivered_at:%Y%m%d_%H%M%S}.xlsx"


def closed(day: date) -> bool:
    return CLOSED[0] <= day <= CLOSED[1]


def usual_rows(covered: date) -> int:
    if closed(covered):
        return 4
    if covered.weekday() == 5:
        return 30 + covered.toordinal() % 5
    if covered.weekday() == 6:
        return 15 + covered.toordinal() % 4
    return 95 + covered.toordinal() % 26


def plan() -> list[Planned]:
    out = []
    day = FIRST
    i = 0
    while day <= TODAY:
        covered = day - timedelta(days=LAG)
        engine = xf.ENGINES[i % 2]
        rows, loan_day = usual_rows(covered), covered
        if day == EARLY_LOW:
            rows = 10
        elif day == WRONG_DAY:
            loan_day = covered - timedelta(days=1)
        elif day == FEW_DAY:
            rows = 35  # a third of a Tuesday's 95-120
        out.append(Planned(day, rows, loan_day, seed=1000 + i, engine=engine))
        day += timedelta(days=1)
        i += 1
    by_day = {p.run_day: p for p in out}
    original = by_day[STALE_OF]
    stale = by_day[STALE_DAY]
    # The same rows again (the same generator seed and loan day), from the other writer.
    out[out.index(stale)] = Planned(STALE_DAY, original.rows, original.loan_day, original.seed,
                                    xf.ENGINES[(xf.ENGINES.index(original.engine) + 1) % 2])
    return out


PLAN = plan()


def planned(run_day: date) -> Planned:
    return next(p for p in PLAN if p.run_day == run_day)


def config_toml(*, host: str = "127.0.0.1", port: int = 22, username: str = "alma",
                key: str | None = None, known_hosts: str | None = None, remote_dir: str = "reports",
                local_dir: str = "local", ledger: str = "ledger.sqlite3",
                ssh_config: str | None = None, min_share: float = 0.4, closed: bool = True) -> str:
    lines = ["[profile.default]", f'host = "{host}"', f"port = {port}", f'username = "{username}"']
    if key:
        lines.append(f'key = "{key}"')
    if known_hosts:
        lines.append(f'known_hosts = "{known_hosts}"')
    if ssh_config:
        lines.append(f'ssh_config = "{ssh_config}"')
    lines += [
        f'remote_dir = "{remote_dir}"', f'local_dir = "{local_dir}"', f'ledger = "{ledger}"',
        'timezone = "America/Chicago"', "",
        "[[profile.default.report]]", f'name = "{REPORT}"', 'schedule = "daily"', 'at = "07:00"',
        'grace = "2h"', f"lag_days = {LAG}", "anonymize_days = 7", "retention_days = 60",
        f'closed_days = ["{CLOSED[0]}..{CLOSED[1]}"]' if closed else "closed_days = []",
        "expected_columns = [" + ", ".join(f'"{c}"' for c in xf.LOANS_COLUMNS) + "]",
        'date_column = "Loan Date"', f"min_share = {min_share}", "",
    ]
    return "\n".join(lines)


def profile(**kwargs):
    import tomllib

    from tui.core.config import parse_config

    return parse_config(tomllib.loads(config_toml(**kwargs))).profile("default")


def write_file(p: Planned, folder: Path) -> Path:
    """The workbook Alma delivered: its own title line and document timestamp."""
    path = folder / p.name
    rows = xf.loan_rows(p.rows, day=p.loan_day, seed=p.seed)
    xf.write_report(path, rows, engine=p.engine, title=REPORT,
                    subtitle=f"Run {p.delivered_at:%Y-%m-%d %H:%M:%S}; Loan Date is {p.covered}")
    ts = p.delivered_at.timestamp()
    os.utime(path, (ts, ts))
    return path


def write_files(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    return {p.name: write_file(p, folder).read_bytes() for p in PLAN}


def fill_server_dir(server_dir: Path, content: dict[str, bytes]) -> None:
    server_dir.mkdir(parents=True, exist_ok=True)
    for p in PLAN:
        target = server_dir / p.name
        target.write_bytes(content[p.name])
        ts = p.delivered_at.timestamp()
        os.utime(target, (ts, ts))


def seed_ledger(ledger, content: dict[str, bytes], local_dir: Path, *, profile_=None) -> None:
    """Listed, downloaded and verified with the real validator, as daily syncs would have."""
    from tui.core.model import RemoteFile
    from tui.core.validate import validate_many

    prof = profile_ or profile()
    report = prof.report_for(REPORT)
    local_dir.mkdir(parents=True, exist_ok=True)
    listing = [RemoteFile(p.name, len(content[p.name]), p.delivered_at.astimezone(UTC)) for p in PLAN]
    ledger.record_listing(None, lambda f: (REPORT, f.mtime), listing, when=NOW)
    items, shas = [], []
    for p in PLAN:
        target = local_dir / p.name
        target.write_bytes(content[p.name])
        sha = hashlib.sha256(content[p.name]).hexdigest()
        ledger.record_download(p.name, size=len(content[p.name]), sha256=sha, local_path=str(target),
                               mtime=p.delivered_at, when=p.delivered_at + timedelta(minutes=30))
        items.append((target, report, p.delivered_at, {"name": p.name}))
        shas.append(sha)
    from tui.core.ledger import verification_context

    for (target, _r, at, _kw), sha, result in zip(items, shas, validate_many(items)):
        ledger.record_verification(result, sha256=sha, context=verification_context(report, at))


def expected_problems() -> list[dict]:
    """What ``check --json`` must list (kind, severity, day, file, rescue_by)."""
    def p(kind, severity, day):
        return {"kind": kind, "severity": severity, "day": day.isoformat(), "file": planned(day).name,
                "rescue_by": (day - timedelta(days=LAG) + timedelta(days=7)).isoformat()}

    return [
        p("stale", "warning", STALE_DAY),
        p("wrong-day", "critical", STALE_DAY),
        p("wrong-day", "critical", WRONG_DAY),
        p("few-rows", "warning", FEW_DAY),
    ]
