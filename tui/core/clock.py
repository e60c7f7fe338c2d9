"""The one clock of the product.

``REPORT_KEEPER_NOW`` (ISO 8601 date-time) replaces the clock everywhere, so tests and
demos are deterministic. A value without an offset is read as UTC.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone, tzinfo

ENV_VAR = "REPORT_KEEPER_NOW"


class ClockError(ValueError):
    """REPORT_KEEPER_NOW holds something that is not an ISO 8601 date-time."""


def now(tz: tzinfo | None = None) -> datetime:
    """The current time, aware; in ``tz`` when given, else UTC."""
    pinned = os.environ.get(ENV_VAR, "").strip()
    if pinned:
        try:
            value = datetime.fromisoformat(pinned.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ClockError(
                f"{ENV_VAR}={pinned!r} is not an ISO 8601 date-time; "
                "use e.g. 2026-06-10T09:00:00+00:00 or unset it"
            ) from exc
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
    else:
        value = datetime.now(timezone.utc)
    return value.astimezone(tz or timezone.utc)


def today(tz: tzinfo) -> "datetime.date":
    return now(tz).date()
