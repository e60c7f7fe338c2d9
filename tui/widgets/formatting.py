"""Small, pure formatting helpers shared by the screens (sizes, rates, ages, deadlines, states).

Everything here returns plain strings or ``rich.text.Text``; names from the server are never
interpreted as markup (``Text`` is built from plain strings, after
:func:`tui.core.names.escape_name`).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

from rich.text import Text

from tui.core import status as st
from tui.core.health import NEAR_DELETION_DAYS
from tui.core.model import LocalState, ProblemKind
from tui.core.names import escape_name
from tui.core.status import VerifyStatus

URGENT_DELETION_DAYS = 3


def human_size(n: int | float | None) -> str:
    """``512 B``, ``1.2 kB``, ``34 MB`` (decimal units, as file managers show them)."""
    if n is None:
        return "—"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.1f} {unit}" if abs(n) < 10 else f"{n:.0f} {unit}"
        n /= 1000
    return f"{n:.0f} TB"  # pragma: no cover - the loop always returns


def human_rate(bytes_per_second: float | None) -> str:
    if not bytes_per_second:
        return "—"
    return f"{human_size(bytes_per_second)}/s"


def human_eta(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def human_age(delta: timedelta) -> str:
    """Age of a delivery: ``5h``, ``3d``, ``12d``."""
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def local_time(when: datetime | None, tz: tzinfo | None, *, with_year: bool = False) -> str:
    """``2026-10-03 07:00`` in the library's time zone (``—`` when unknown)."""
    if when is None:
        return "—"
    value = when.astimezone(tz) if tz is not None and when.tzinfo is not None else when
    return value.strftime("%Y-%m-%d %H:%M" if with_year else "%m-%d %H:%M")


def short_day(day: date | None) -> str:
    """``Tue 2 Jun`` (no year)."""
    if day is None:
        return "—"
    return f"{day:%a} {day.day} {day:%b}"


def deletion_cell(days_left: int | None, downloaded: bool) -> Text:
    """Days until the server deletes a file, with colour AND glyph as the date nears.

    A file already downloaded is safe: shown dim. Not downloaded: ``!`` within 14 days
    (warning, yellow), ``‼`` within 3 days (red), ``✗`` when the date has passed.
    """
    if days_left is None:
        return Text("—", style="dim")
    label = f"{days_left}d"
    if downloaded:
        return Text(f"  {label}", style="dim")
    if days_left < 0:
        return Text(f"✗ {label}", style="bold red")
    if days_left <= URGENT_DELETION_DAYS:
        return Text(f"‼ {label}", style="bold red")
    if days_left <= NEAR_DELETION_DAYS:
        return Text(f"! {label}", style="yellow")
    return Text(f"  {label}", style="green")


# Local states, each with a glyph and colour (any other is shown as its word).
STATE_STYLE = {
    LocalState.NEW: ("● new", "bold cyan"),
    LocalState.DOWNLOADED: ("✓ downloaded", "green"),
    LocalState.CHANGED: ("≠ changed", "yellow"),
    LocalState.PARTIAL: ("◐ partial", "magenta"),
    # Deleted on purpose by the local retention policy; never downloaded again.
    LocalState.PURGED: ("⊘ purged", "dim"),
    LocalState.MISSING_LOCALLY: ("✗ missing", "bold red"),  # downloaded, gone from the disk
}


def state_cell(state: LocalState | None) -> Text:
    if state is None:
        return Text("—")
    text, style = STATE_STYLE.get(state, (str(state), ""))
    return Text(text, style=style)


#: A file's status as the lists show it: the validator's, or what the history found.
VERIFY_STYLE: dict[VerifyStatus | ProblemKind, tuple[str, str]] = {
    st.OK: ("✓ ok", "green"),
    st.EMPTY: ("∅ empty", "bold yellow"),
    st.EMPTY_CLOSED: ("∅ closed", "dim"),
    st.SCHEMA: ("✗ schema", "bold red"),
    st.UNREADABLE: ("✗ unreadable", "bold red"),
    st.CHANGED: ("≠ changed", "yellow"),
    st.WRONG_DAY: ("↔ wrong day", "bold red"),
    # Judged from the history (the health evaluation), shown where the file's status would be.
    ProblemKind.STALE: ("≡ stale", "bold magenta"),
    ProblemKind.FEW_ROWS: ("▁ few rows", "bold yellow"),
}


def verify_cell(status: VerifyStatus | ProblemKind | None) -> Text:
    if status is None:
        return Text("—", style="dim")
    text, style = VERIFY_STYLE[status]
    return Text(text, style=style)


def name_text(name: str, width: int | None = None, *, keep_end: bool = False) -> Text:
    """An untrusted file name as plain text (escaped, never markup), truncated in the middle.

    Narrow columns keep the start (the report) and the extension, or with ``keep_end`` the
    end (the timestamp); wide ones keep both ends."""
    shown = name if name.isprintable() else escape_name(name)  # fast path: nothing to escape
    if width is not None and len(shown) > width > 3:
        suffix = shown[shown.rfind("."):] if "." in shown[-8:] else ""
        if keep_end:
            return Text("…" + shown[len(shown) - width + 1:], no_wrap=True, overflow="ellipsis")
        tail = len(suffix) if width < 30 else min(len(shown) // 2, max(8, width * 2 // 3))
        head = width - 1 - tail
        if head < 1:
            head, tail = 1, width - 2
        shown = shown[:head] + "…" + shown[len(shown) - tail:]
    return Text(shown, no_wrap=True, overflow="ellipsis")


SEVERITY_STYLE = {
    "critical": ("✗", "bold red"),
    "warning": ("!", "bold yellow"),
    "ok": ("✓", "bold green"),
}


def severity_text(severity: str, label: str | None = None) -> Text:
    glyph, style = SEVERITY_STYLE.get(severity, ("?", ""))
    return Text(f"{glyph} {label if label is not None else severity.upper()}", style=style)


def home_relative(path: str | Path) -> str:
    """``~/reports`` for a path under the home folder, else the path (escaped)."""
    p = Path(path).expanduser()
    try:
        return escape_name("~/" + str(p.relative_to(Path.home())))
    except ValueError:
        return escape_name(str(p))


def bar_text(done: int | float, total: int | float | None, width: int = 12) -> Text:
    """A text progress bar (``█████▌      ``) for table cells."""
    if not total:
        fraction = 1.0 if done else 0.0
    else:
        fraction = max(0.0, min(1.0, done / total))
    eighths = int(round(fraction * width * 8))
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part and full < width else ""
    bar = "█" * full + partial
    return Text(bar.ljust(width), style="green" if fraction >= 1 else "cyan")
