"""The one clock of the product.

``REPORT_KEEPER_NOW`` (ISO 8601 date-time) replaces the clock everywhere, so tests and
demos are deterministic. A value without an offset is read as UTC.

Accepted values lie in ``EARLIEST`` .. ``LATEST`` (1970-01-01T00:00:00Z, the epoch SFTP
modification times count from, up to the end of 2099, UTC) with an offset between -12:00 and
+14:00 (the offsets clocks on Earth use). The range keeps every date the product computes from
"now" (deadlines, rescue-by and delete-on dates up to a century ahead, a history of decades
back) far from the limits of Python's dates, and keeps the schedule evaluation, which walks
every run day of a report's history, short. The same range decides which timestamps in
server file names are believable (:func:`plausible`).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta, tzinfo

ENV_VAR = "REPORT_KEEPER_NOW"

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
MIN_OFFSET = timedelta(hours=-12)
MAX_OFFSET = timedelta(hours=14)

_EXAMPLE = "use e.g. 2026-06-10T09:00:00+00:00, or unset it to use the real clock"


class ClockError(ValueError):
    """REPORT_KEEPER_NOW holds something that is not an accepted ISO 8601 date-time."""


def _shown(value: str) -> str:
    """The variable's value for a one-line message: quoted, escaped, at most 60 characters."""
    text = value if len(value) <= 60 else value[:57] + "..."
    return repr(text)


#: The latest modification time an SFTP server can give a file (SFTP version 3, which the
#: client speaks, counts seconds since 1970 in 32 unsigned bits).
FILE_TIME_MAX = datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC)
_FILE_SECONDS_MAX = 2**32 - 1


def file_time(seconds: float) -> datetime:
    """A file's modification time (seconds since 1970, from an SFTP server or the local disk)
    as an aware UTC datetime in ``EARLIEST`` .. ``FILE_TIME_MAX``, the times an SFTP server can
    give. A time outside (a file system with 64-bit times keeps one past the year 9999 or
    before year 1, which a date cannot hold) is the nearest end. Never raises, and converting
    the result to any time zone cannot overflow. Such a time is not :func:`plausible` past
    2099: whatever decides by it treats it as a broken clock."""
    if not seconds >= 0:  # before 1970, or not a number
        return EARLIEST
    if seconds >= _FILE_SECONDS_MAX:
        return FILE_TIME_MAX
    return datetime.fromtimestamp(seconds, UTC)


def plausible(moment: datetime) -> bool:
    """Whether an aware ``moment`` lies in the accepted range (``EARLIEST`` .. ``LATEST``)."""
    try:
        return EARLIEST <= moment <= LATEST
    except (OverflowError, TypeError):
        return False


#: The earliest time a delivery can carry. A report dated earlier comes from a broken clock or
#: name (a file without a timestamp whose modification time is 0 says 1 January 1970): its date
#: is unknown, and it must not make the schedule expect decades of runs.
EARLIEST_DELIVERY = datetime(2000, 1, 1, tzinfo=UTC)
#: How far past "now" a delivery's time may lie and still teach the schedule inference (a
#: server clock a little ahead); a delivery later than that is dated in the future.
FUTURE_SLACK = timedelta(days=1)


def dated_ahead(moment: datetime, now: datetime) -> bool:
    """Whether a delivery's ``moment`` lies more than ``FUTURE_SLACK`` after ``now``: it is
    dated in the future (a server clock or a name that is wrong), no delivery yet. The one
    rule for it: the schedule inference leaves such a delivery out, the health evaluation
    names it (bad-date) and puts it in no run, and the validator gives it no covered day
    (``ReportConfig.placed_run_day``)."""
    return moment > now + FUTURE_SLACK


def possible_delivery(moment: datetime, now: datetime | None = None) -> bool:
    """Whether ``moment`` can be a delivery's time at all: from ``EARLIEST_DELIVERY`` to
    ``LATEST``. One outside is a delivery of unknown date (it belongs to no run). Given
    ``now``, also not :func:`dated_ahead` of it."""
    if not (plausible(moment) and moment >= EARLIEST_DELIVERY):
        return False
    return now is None or not dated_ahead(moment, now)


def pinned() -> datetime | None:
    """The time ``REPORT_KEEPER_NOW`` pins, aware; None when it is unset or empty.

    Raises :class:`ClockError` with a one-line message saying what is wrong and what to do.
    """
    raw = os.environ.get(ENV_VAR, "")
    text = raw.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ClockError(f"{ENV_VAR}={_shown(raw)} is not an ISO 8601 date-time; {_EXAMPLE}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    offset = value.utcoffset()
    if offset is not None and not MIN_OFFSET <= offset <= MAX_OFFSET:
        raise ClockError(
            f"{ENV_VAR}={_shown(raw)} has an offset no clock uses (accepted: -12:00 to +14:00); "
            f"{_EXAMPLE}"
        )
    if not plausible(value):
        raise ClockError(
            f"{ENV_VAR}={_shown(raw)} is outside the accepted range 1970-01-01 to 2099-12-31 (UTC); "
            f"{_EXAMPLE}"
        )
    return value


def check() -> None:
    """Raise :class:`ClockError` now if ``REPORT_KEEPER_NOW`` is set to a value ``now()`` refuses."""
    pinned()


def now(tz: tzinfo | None = None) -> datetime:
    """The current time, aware; in ``tz`` when given, else UTC."""
    value = pinned()
    if value is None:
        value = datetime.now(UTC)
    return value.astimezone(tz or UTC)


def today(tz: tzinfo) -> date:
    return now(tz).date()
