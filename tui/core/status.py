"""Statuses, severities and exit codes shared by every command.

Exit codes follow the monitoring-plugin convention (SPEC "Command-line contract").
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    WARNING = 1
    CRITICAL = 2
    USAGE = 3


# Validator statuses (SPEC "Excel reports").
OK = "ok"
EMPTY = "empty"
EMPTY_CLOSED = "empty-closed"
SCHEMA = "schema"
UNREADABLE = "unreadable"
CHANGED = "changed"
#: Most dates of the report's date column fall on another day than the one it covers.
WRONG_DAY = "wrong-day"

VALIDATOR_STATUSES = (OK, EMPTY, EMPTY_CLOSED, SCHEMA, UNREADABLE, CHANGED, WRONG_DAY)

_SEVERITY = {
    OK: Exit.OK,
    EMPTY_CLOSED: Exit.OK,
    EMPTY: Exit.WARNING,
    CHANGED: Exit.WARNING,
    SCHEMA: Exit.CRITICAL,
    UNREADABLE: Exit.CRITICAL,
    WRONG_DAY: Exit.CRITICAL,
}

OVERALL_NAMES = {Exit.OK: "ok", Exit.WARNING: "warning", Exit.CRITICAL: "critical"}


def severity(status: str) -> Exit:
    """Severity of a validator status, as an exit code."""
    return _SEVERITY[status]


def worst(codes) -> Exit:
    """The worst of several exit codes (OK for none)."""
    return max((Exit(c) for c in codes), default=Exit.OK)


def overall_name(code: Exit) -> str:
    """``ok|warning|critical`` for the JSON ``status`` field."""
    return OVERALL_NAMES[Exit(min(int(code), int(Exit.CRITICAL)))]
