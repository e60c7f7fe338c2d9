"""Small, pure formatting helpers shared by the screens (sizes, rates, ages, deadlines, states).

Everything here returns plain strings or ``rich.text.Text``; names from the server are never
interpreted as markup (``Text`` is built from plain strings, after
:func:`tui.core.names.escape_name`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

from rich.cells import cell_len, set_cell_size
from rich.console import Console, RenderableType
from rich.style import Style
from rich.table import Table
from rich.text import Text

from tui.core import status as st
from tui.core.health import NEAR_DELETION_DAYS
from tui.core.model import LocalState, ProblemKind
from tui.core.names import escape_name
from tui.core.sizes import byte_size
from tui.core.status import VerifyStatus

URGENT_DELETION_DAYS = 3


def human_size(n: int | float | None) -> str:
    """``512 B``, ``1.2 kB``, ``34 MB`` (decimal units, as file managers show them)."""
    if n is None:
        return "—"
    return byte_size(n, ("B", "kB", "MB", "GB"), step=1000, whole_from=10)


def size_of(done: int | float, total: int | float) -> str:
    """Progress in bytes as sizes are written everywhere: ``4.1/9.7 kB`` in one unit, else
    ``0 B/9.7 kB``."""
    have, whole = human_size(done), human_size(total)
    unit = whole.rsplit(" ", 1)[-1]
    if have.endswith(" " + unit):
        return f"{have[: -len(unit) - 1]}/{whole}"
    return f"{have}/{whole}"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 file``, ``2 files``; ``many`` for irregular plurals (``1 copy``, ``2 copies``)."""
    return f"{count:,} {word if count == 1 else (many or word + 's')}"


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


def report_file_text(name: str, report: str, width: int) -> Text:
    """A file name in ``width`` cells, shortened inside its report's name at a word boundary
    so that what tells the report's files apart (the timestamp after it) stays whole:
    ``Loans Per Patron From 3…_20261129_070020.xlsx``. Names that do not start with their
    report's name are shortened by :func:`name_text`."""
    shown = name if name.isprintable() else escape_name(name)
    if cell_len(shown) <= width:
        return Text(shown, no_wrap=True)
    base = report if report.isprintable() else escape_name(report)
    if base and shown.startswith(base):
        rest = shown[len(base):]
        room = width - cell_len(rest)
        if room >= min(6, cell_len(base)):
            return Text(fit_words(base, room) + rest, no_wrap=True)
    return name_text(name, width)


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


# --------------------------------------------------------------------------------------------
# Fitting text into a width: whole words and whole parts, never a word cut in the middle


ELLIPSIS = "…"


def fit_words(text: str, width: int) -> str:
    """``text`` shortened to ``width`` cells at a word boundary, ``…`` marking the cut.

    ``Loans Per Patron From 3 Days Ago`` in 18 cells is ``Loans Per Patron…``: the words
    shown are whole. Only a first word longer than the width is cut inside (nothing else
    would fit)."""
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    head = set_cell_size(text, width - 1)
    if text[len(head)] not in " _-" and " " in head:  # the next character continues a word
        head = head[: head.rfind(" ")]
    head = head.rstrip(" _-·,;:(")
    return (head or set_cell_size(text, width - 1)) + ELLIPSIS


def short_report_names(names: Iterable[str], width: int) -> dict[str, str]:
    """Each report's name in ``width`` cells, in whole words, told apart from the others:
    ``Loans Per Patron…`` when that is the only report so starting, else its first word and
    the words that differ, ``Loans…3 Days Ago`` and ``Loans…7 Days Ago``."""
    names = sorted(set(names))
    first = {name: fit_words(name, width) for name in names}
    clashes: dict[str, list[str]] = {}
    for name in names:
        clashes.setdefault(first[name], []).append(name)
    out = dict(first)
    for group in clashes.values():
        if len(group) < 2:
            continue
        split = [name.split(" ") for name in group]
        common = 0
        while all(len(w) > common for w in split) and len({tuple(w[: common + 1]) for w in split}) == 1:
            common += 1
        for name, words in zip(group, split, strict=True):
            if common == 0 or common >= len(words):
                continue
            out[name] = fit_words(words[0] + ELLIPSIS + " ".join(words[common:]), width)
    return out


def fit_parts(parts: Sequence[tuple[Text | str, int]], width: int, separator: str = " · ") -> Text:
    """One line of ``parts`` (text, rank) that fits ``width`` cells, in their order.

    When they do not all fit, whole parts are left out, the highest rank first (rank 0 is
    never left out): a line never ends in a label cut from its value (``· ETA``)."""
    kept = list(range(len(parts)))

    def length(indexes: list[int]) -> int:
        texts = [parts[i][0] for i in indexes]
        return sum(cell_len(t.plain if isinstance(t, Text) else t) for t in texts) + cell_len(separator) * max(
            0, len(texts) - 1)

    for rank in sorted({r for _t, r in parts if r > 0}, reverse=True):
        if length(kept) <= width:
            break
        for i in reversed(kept):
            if parts[i][1] == rank and length(kept) > width:
                kept.remove(i)
    line = Text(no_wrap=True, overflow="ellipsis")
    for n, i in enumerate(kept):
        if n:
            line.append(separator)
        part = parts[i][0]
        line.append_text(part if isinstance(part, Text) else Text(part))
    return line


def hang(lead: Text | str, body: RenderableType, indent: int = 0) -> Table:
    """``lead`` then ``body``, wrapped lines of the body starting under its first word
    (a hanging indent): ``→ Re-run … for loans`` / ``  of Wed 25 Nov …``."""
    lead_text = lead if isinstance(lead, Text) else Text(lead)
    if indent:
        lead_text = Text(" " * indent) + lead_text
    grid = Table.grid(expand=True)
    grid.add_column(width=lead_text.cell_len, no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_row(lead_text, body)
    return grid


_MEASURE = Console(file=io.StringIO(), width=400, color_system=None)


def hang_text(lead: Text | str, body: Text, width: int) -> Text:
    """Like :func:`hang`, as one ``Text`` wrapped at ``width`` cells (for a ``Static`` whose
    text is read back): the body's wrapped lines start under its first word."""
    lead_text = lead if isinstance(lead, Text) else Text(lead)
    room = max(10, width - lead_text.cell_len)
    lines = body.wrap(_MEASURE, room)
    out = Text()
    for i, line in enumerate(lines):
        if i:
            out.append("\n" + " " * lead_text.cell_len)
        else:
            out.append_text(lead_text)
        line.rstrip()
        out.append_text(line)
    if not lines:
        out.append_text(lead_text)
    return out


# --------------------------------------------------------------------------------------------
# NO_COLOR: weight instead of colour


_ALARM = {"red", "bright_red"}
_CAUTION = {"yellow", "bright_yellow", "magenta", "bright_magenta"}


def mono_style(style: str | Style) -> Style:
    """The style without colour, its urgency kept by weight: red (critical) becomes bold and,
    when it was bold already, reversed; yellow and magenta (warnings) bold; other colours
    plain. Textual's NO_COLOR filter would turn red into a dark grey, dimmer than a warning."""
    parsed = Style.parse(style) if isinstance(style, str) else style
    color = parsed.color.name if parsed.color is not None else ""
    bold = bool(parsed.bold)
    reverse = bool(parsed.reverse)
    if color in _ALARM:
        reverse = reverse or bold
        bold = True
    elif color in _CAUTION:
        bold = True
    return Style(bold=bold or None, reverse=reverse or None, italic=parsed.italic, underline=parsed.underline,
                 dim=parsed.dim if color not in _ALARM | _CAUTION else None)


def mono(text: Text, no_color: bool = True) -> Text:
    """``text`` with :func:`mono_style` applied to its style and spans (with ``no_color``)."""
    if not no_color:
        return text
    out = Text(text.plain, style=mono_style(text.style) if text.style else "", justify=text.justify,
               overflow=text.overflow, no_wrap=text.no_wrap, end=text.end)
    for span in text.spans:
        out.stylize(mono_style(span.style), span.start, span.end)
    return out
