"""Statuses, severities and exit codes shared by every command (docs/DOMAIN.md).

Exit codes follow the monitoring-plugin convention: 0 ok, 1 warning, 2 critical, 3 usage or
configuration error. Statuses are ``StrEnum`` members: each equals its string, so the JSON
documents and the ledger hold the plain words.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, StrEnum


class Exit(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    USAGE = 3


class Severity(StrEnum):
    """How bad: the overall ``status`` of a command's JSON, and a problem's ``severity``."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"


class VerifyStatus(StrEnum):
    """The validator's verdict on one workbook."""

    OK = "ok"  # rows >= min_rows, expected columns present
    EMPTY = "empty"  # no data rows (or only a message) on an open day
    EMPTY_CLOSED = "empty-closed"  # no data rows on a configured closed day: fine
    SCHEMA = "schema"  # expected columns missing or renamed
    UNREADABLE = "unreadable"  # not a readable xlsx (corrupt, truncated, wrong format, hostile)
    CHANGED = "changed"  # the server's copy changed after it was downloaded
    WRONG_DAY = "wrong-day"  # most dates of the date column fall on another day than covered


OK = VerifyStatus.OK
EMPTY = VerifyStatus.EMPTY
EMPTY_CLOSED = VerifyStatus.EMPTY_CLOSED
SCHEMA = VerifyStatus.SCHEMA
UNREADABLE = VerifyStatus.UNREADABLE
CHANGED = VerifyStatus.CHANGED
WRONG_DAY = VerifyStatus.WRONG_DAY

VALIDATOR_STATUSES: tuple[VerifyStatus, ...] = tuple(VerifyStatus)

_SEVERITY = {
    OK: Exit.OK,
    EMPTY_CLOSED: Exit.OK,
    EMPTY: Exit.WARNING,
    CHANGED: Exit.WARNING,
    SCHEMA: Exit.CRITICAL,
    UNREADABLE: Exit.CRITICAL,
    WRONG_DAY: Exit.CRITICAL,
}

OVERALL_NAMES = {Exit.OK: Severity.OK, Exit.WARNING: Severity.WARNING, Exit.CRITICAL: Severity.CRITICAL}


def severity(status: str) -> Exit:
    """Severity of a validator status, as an exit code."""
    return _SEVERITY[VerifyStatus(status)]


def worst(codes: Iterable[int]) -> Exit:
    """The worst of several exit codes (OK for none)."""
    return max((Exit(c) for c in codes), default=Exit.OK)


def overall_name(code: int) -> Severity:
    """``ok|warning|critical`` for the JSON ``status`` field."""
    return OVERALL_NAMES[Exit(min(int(code), int(Exit.CRITICAL)))]
