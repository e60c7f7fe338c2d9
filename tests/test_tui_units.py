"""Unit tests of the TUI's plain parts: formatting, the transfer board, the bulk table, the footer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.geometry import Region
from textual.widgets import DataTable, Static
from textual.widgets._footer import FooterKey
from textual.widgets.data_table import RowKey

from tui.core.model import CANCELLED, DONE, FAILED, QUEUED, RETRYING, RUNNING
from tui.sftp.queue import Done, Failed, Queued, Retrying, Running
from tui.state import TransferBoard
from tui.widgets import formatting as fmt
from tui.widgets.footer import FitFooter
from tui.widgets.table import FastTable

#: Byte counts in the three conventions (commands, validator messages, screens): the outputs
#: of the three formatters the product had before they became one.
SIZES = [
    (0, "0 B", "0 bytes", "0 B"), (999, "999 B", "999 bytes", "999 B"),
    (1000, "1000 B", "1000 bytes", "1.0 kB"), (1023, "1023 B", "1023 bytes", "1.0 kB"),
    (1024, "1.0 KB", "1.0 KiB", "1.0 kB"), (9999, "9.8 KB", "9.8 KiB", "10.0 kB"),
    (10_240, "10.0 KB", "10.0 KiB", "10 kB"), (999_500, "976.1 KB", "976.1 KiB", "1000 kB"),
    (1_048_575, "1024.0 KB", "1024.0 KiB", "1.0 MB"), (1_048_576, "1.0 MB", "1.0 MiB", "1.0 MB"),
    (123_456_789, "117.7 MB", "117.7 MiB", "123 MB"), (5 << 30, "5.0 GB", "5.0 GiB", "5.4 GB"),
    (3 << 40, "3072.0 GB", "3.0 TiB", "3299 GB"), (1 << 50, "1048576.0 GB", "1024.0 TiB", "1125900 GB"),
]


def test_byte_counts_in_the_three_conventions():
    from tui.core.names import size_text
    from tui.core.validate import _human_bytes

    for n, command, validator, screen in SIZES:
        assert (size_text(n), _human_bytes(n), fmt.human_size(n)) == (command, validator, screen), n
    assert fmt.human_size(999.7) == "999 B" and fmt.human_rate(999.7) == "999 B/s"
    assert fmt.human_size(-2500) == "-2.5 kB" and fmt.human_size(None) == "—"


def test_sizes_rates_and_etas():
    assert fmt.human_size(0) == "0 B"
    assert fmt.human_size(999) == "999 B"
    assert fmt.human_size(8_800) == "8.8 kB"
    assert fmt.human_size(12_345) == "12 kB"
    assert fmt.human_size(300_000_000) == "300 MB"
    assert fmt.human_rate(2_500_000) == "2.5 MB/s"
    assert fmt.human_rate(0) == "—"
    assert fmt.human_eta(5.4) == "5s"
    assert fmt.human_eta(125) == "2m05s"
    assert fmt.human_eta(3 * 3600 + 120) == "3h02m"
    assert fmt.human_eta(None) == "—"
    assert fmt.human_age(timedelta(hours=5)) == "5h"
    assert fmt.human_age(timedelta(days=12, hours=3)) == "12d"


def test_deletion_cell_has_colour_and_glyph_as_it_nears():
    far = fmt.deletion_cell(40, downloaded=False)
    near = fmt.deletion_cell(10, downloaded=False)
    urgent = fmt.deletion_cell(2, downloaded=False)
    overdue = fmt.deletion_cell(-1, downloaded=False)
    safe = fmt.deletion_cell(2, downloaded=True)
    assert far.plain.strip() == "40d" and "green" in str(far.style)
    assert near.plain.startswith("!") and "yellow" in str(near.style)
    assert urgent.plain.startswith("‼") and "red" in str(urgent.style)
    assert overdue.plain.startswith("✗")
    assert "‼" not in safe.plain and "dim" in str(safe.style)  # downloaded: nothing to fear


def test_untrusted_names_are_plain_text_never_markup():
    hostile = "[bold red]Loans[/] $(rm -rf ~) \x1b[31m\u202eevil.xlsx"
    text = fmt.name_text(hostile)
    assert isinstance(text, Text)
    assert "[bold red]Loans[/]" in text.plain  # shown literally
    assert "\x1b" not in text.plain and "\\u001b" in text.plain
    assert "\u202e" not in text.plain and "\\u202e" in text.plain
    assert not text.spans  # no style came from the name


def test_name_truncation_keeps_what_matters():
    name = "Loans Per Patron From 3 Days Ago_20261015_070024.xlsx"
    narrow = fmt.name_text(name, 18).plain
    assert len(narrow) == 18 and narrow.startswith("Loans") and narrow.endswith(".xlsx")
    tail = fmt.name_text(name, 24, keep_end=True).plain
    assert len(tail) == 24 and tail.endswith("20261015_070024.xlsx")
    wide = fmt.name_text(name, 40).plain
    assert len(wide) == 40 and "070024.xlsx" in wide and wide.startswith("Loans")
    assert fmt.name_text(name, 80).plain == name


def test_local_time_uses_the_library_zone():
    from zoneinfo import ZoneInfo

    when = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)
    assert fmt.local_time(when, ZoneInfo("America/Chicago")) == "10-15 07:00"
    assert fmt.local_time(when, ZoneInfo("America/Chicago"), with_year=True) == "2026-10-15 07:00"
    assert fmt.local_time(None, None) == "—"


def test_transfer_board_follows_the_queue_events():
    board = TransferBoard()
    board.enqueue("a.xlsx", 100)
    board.enqueue("b.xlsx", 50)
    assert board.counts()[QUEUED] == 2 and board.active
    board.apply(Queued(1, "a.xlsx", 100))
    board.apply(Running(1, "a.xlsx", bytes=40, total=100, rate=20.0))
    job = board.jobs["a.xlsx"]
    assert job.state == RUNNING and job.eta == 3.0
    assert board.totals() == (40, 150)
    board.apply(Retrying(1, "a.xlsx", attempt=1, reason="The connection was lost.", delay=1.0))
    assert job.state == RETRYING and job.reason.startswith("The connection")
    board.apply(Done(1, "a.xlsx", size=100, sha256="ab", path="/x/a.xlsx"))
    board.apply(Failed(2, "b.xlsx", reason="gone"))
    assert board.counts()[DONE] == 1 and board.counts()[FAILED] == 1
    assert not board.active
    assert board.totals() == (100, 150)
    assert board.names_in(FAILED) == ["b.xlsx"]
    # versions only grow: the screens redraw changed rows only
    before = board.jobs["b.xlsx"].version
    board.set_verification("a.xlsx", "ok")
    assert board.jobs["a.xlsx"].version > before
    board.enqueue("b.xlsx", 50)  # retry
    assert board.jobs["b.xlsx"].state == QUEUED and board.jobs["b.xlsx"].reason == ""
    board.cancel_pending()
    assert board.jobs["b.xlsx"].state == CANCELLED


def test_progress_bar_text():
    assert fmt.bar_text(0, 100, 8).plain == " " * 8
    assert fmt.bar_text(100, 100, 8).plain == "█" * 8
    half = fmt.bar_text(50, 100, 8).plain
    assert half.startswith("████") and len(half) == 8


class _Tables(App):
    def compose(self) -> ComposeResult:
        yield DataTable(id="plain")
        yield FastTable(id="fast")


def _rows(n: int) -> list:
    return [(f"k{i}", [Text(f"name {i}"), f"{i:05d}", Text(str(i * 3), justify="right")]) for i in range(n)]


def _tables(app: App) -> tuple[DataTable, FastTable]:
    """Textual's table and ours, with the same columns."""
    plain = app.query_one("#plain", DataTable)
    fast = app.query_one("#fast", FastTable)
    for table in (plain, fast):
        table.add_column("Name", key="name", width=12)
        table.add_column("Id", key="id", width=6)
        table.add_column("N", key="n", width=5)
    return plain, fast


async def test_fast_table_matches_add_row():
    app = _Tables()
    rows = _rows(500)
    async with app.run_test(size=(80, 24)) as pilot:
        plain, fast = _tables(app)
        for key, cells in rows:
            plain.add_row(*cells, key=key)
        assert fast.add_keyed_rows(rows) == 500
        await pilot.pause()
        assert fast.row_count == plain.row_count == 500
        assert fast.virtual_size == plain.virtual_size
        for key in ("k0", "k250", "k499"):
            assert fast.get_row(key) == plain.get_row(key)
            assert fast.get_row_index(key) == plain.get_row_index(key)
        fast.update_cell("k3", "id", "X")
        assert fast.get_cell("k3", "id") == "X"
        fast.move_cursor(row=499)
        await pilot.pause()
        assert fast.cursor_row == 499
        try:
            fast.add_keyed_rows([("k1", ["dup", "", ""])])
        except Exception as exc:  # noqa: BLE001 - whatever it raises, its text is asserted
            assert "already exists" in str(exc)
        else:  # pragma: no cover
            raise AssertionError("a duplicate key must be refused")


class _TwoTables(App):
    CSS = """
    DataTable { width: 40; height: 12; }
    Screen.alt DataTable > .datatable--cursor { background: red; }
    """
    AUTO_FOCUS = None  # neither table focused: both drawn alike

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield DataTable(id="plain", cursor_type="row", zebra_stripes=True)
            yield FastTable(id="fast", cursor_type="row", zebra_stripes=True)


def _drawn(table: DataTable) -> list[list[tuple[str, str]]]:
    """The table's lines as the terminal gets them: text and style of every segment."""
    return [[(segment.text, str(segment.style)) for segment in strip]
            for strip in table.render_lines(Region(0, 0, *table.size))]


async def test_fast_table_cell_updates_draw_as_datatable_and_only_their_rows():
    app = _TwoTables()
    rows = _rows(100)
    async with app.run_test(size=(80, 24)) as pilot:
        plain, fast = _tables(app)
        for table in (plain, fast):
            for key, cells in rows:
                table.add_row(*cells, key=key)
        await pilot.pause()
        assert _drawn(fast) == _drawn(plain)
        cells = fast._cell_render_cache
        drawn_before = {key: cells.get(key) for key in list(cells.keys())}
        # a visible row, the cursor's row (twice), a row below the view
        changes = [("k2", "id", Text("X", style="bold red")), ("k0", "name", "cursor here"),
                   ("k0", "n", Text("7", justify="right")), ("k50", "name", Text("far below"))]
        for table in (plain, fast):
            for row, column, value in changes:
                table.update_cell(row, column, value)
        await pilot.pause()
        assert _drawn(fast) == _drawn(plain)
        drawn_again = {key[0] for key in list(cells.keys()) if cells.get(key) is not drawn_before.get(key)}
        assert drawn_again == {RowKey("k0"), RowKey("k2")}  # DataTable's: every row in view
        for table in (plain, fast):
            table.move_cursor(row=50, animate=False)
        await pilot.pause()
        assert _drawn(fast) == _drawn(plain)
        assert str(fast.get_cell("k50", "name")) == "far below"
        # focused, its cursor is drawn in other colours; unfocused again, as before
        drawn = {}
        for table in (plain, fast):
            table.focus()
            await pilot.pause()
            drawn[table.id] = _drawn(table)
        assert drawn["fast"] == drawn["plain"] != _drawn(plain)
        app.set_focus(None)
        await pilot.pause()
        assert _drawn(fast) == _drawn(plain)
        before = _drawn(fast)
        app.screen.add_class("alt")  # only the cursor's style changes: drawn again
        await pilot.pause()
        assert _drawn(fast) == _drawn(plain) != before
        for table in (plain, fast):  # the cursor's row changed, then the rows filled again
            table.update_cell("k50", "id", "Y")
            table.clear()
            table.add_row("again", "1", "2", key="k0")
        await pilot.pause()
        assert _drawn(fast) == _drawn(plain)


class _Spot(Static, can_focus=True):
    pass


class _Keys(App):
    BINDINGS = [Binding("a", "first", "First"), Binding("b", "second", "Second"),
                Binding("question_mark", "help", "Help")]
    second_enabled = True

    def compose(self) -> ComposeResult:
        yield _Spot("one", id="one")
        yield _Spot("two", id="two")
        yield FitFooter()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if action == "second" and not self.second_enabled else True


async def test_the_footer_builds_its_keys_again_only_when_they_change():
    app = _Keys()
    async with app.run_test(size=(80, 10)) as pilot:
        footer = app.query_one(FitFooter)
        await pilot.pause()
        keys = list(footer.query(FooterKey))
        assert [k.description for k in keys] == ["First", "Second", "Help", "palette"]
        assert not any(k.has_class("-compact") for k in keys[:3]) and keys[3].has_class("-compact")
        # focus moves, bindings refreshed (several times a frame): the same keys stay
        for spot in ("#two", "#one", "#two"):
            app.query_one(spot).focus()
            app.screen.refresh_bindings()
            app.screen.refresh_bindings()
            await pilot.pause()
        assert list(footer.query(FooterKey)) == keys
        app.second_enabled = False  # a key's state changed: shown
        app.screen.refresh_bindings()
        await pilot.pause()
        assert [k.has_class("-disabled") for k in footer.query(FooterKey)] == [False, True, False, False]
        await pilot.resize_terminal(20, 10)  # narrower: whole keys left out, help kept
        await pilot.pause()
        await pilot.pause()
        assert [k.description for k in footer.query(FooterKey)] == ["First", "Help"]


def test_the_same_text_is_told_from_text_that_draws_otherwise():
    from tui.widgets.hanging import same_text

    assert same_text("a", "a") and not same_text("a", "b")
    bold = Text("x", style="bold")
    assert same_text(bold, Text("x", style="bold"))
    assert not same_text(bold, Text("x"))  # Text's own == leaves the base style out
    assert not same_text(Text("x", justify="right"), Text("x"))
    assert not same_text(Text("x", no_wrap=True), Text("x"))
    assert not same_text(Text.assemble(("x", "red")), Text.assemble(("x", "blue")))
    assert not same_text(bold, bold)  # one object: it may have changed in place since
    assert not same_text("x", Text("x"))


class _Sections(App):
    def compose(self) -> ComposeResult:
        from tui.widgets.hanging import HangingText

        yield Static("", id="one")
        yield HangingText(id="lines")


async def test_a_static_given_what_it_shows_already_lays_out_nothing_again():
    from tui.widgets.hanging import HangingText, update_static

    app = _Sections()
    async with app.run_test(size=(40, 10)) as pilot:
        one = app.query_one("#one", Static)
        lines = app.query_one("#lines", HangingText)
        update_static(one, Text("status: fine", style="bold"))
        lines.set_lines([("a ", Text("first line"))])
        await pilot.pause()
        assert not one._layout_required and not lines._layout_required
        update_static(one, Text("status: fine", style="bold"))  # what it shows: nothing to do
        lines.set_lines([("a ", Text("first line"))])
        assert not one._layout_required and not lines._layout_required
        update_static(one, Text("status: late", style="bold"))  # a change: laid out and drawn
        lines.set_lines([("a ", Text("first line")), ("b ", Text("second"))])
        assert one._layout_required and lines._layout_required
        await pilot.pause()
        assert "status: late" in str(one.render()) and "second" in str(lines.render())


class _Asks:
    """Apps of the product's base class, with CSS of their own that uses the theme."""

    @staticmethod
    def make(theme: str | None = None):
        from tui.screens.modals import SshQuestionsApp

        class Asks(SshQuestionsApp[None]):
            CSS = "#one { background: $accent; color: $text; border: round $primary; }"

            def compose(self) -> ComposeResult:
                yield Static("parsed once", id="one")

            def on_mount(self) -> None:
                if theme is not None:
                    self.theme = theme

        return Asks()


async def _screen_of(app) -> str:
    async with app.run_test(size=(30, 5)) as pilot:
        await pilot.pause()
        return app.export_screenshot()


async def test_a_second_app_parses_no_css_again_and_draws_the_same():
    from tui.widgets import css_cache

    first = await _screen_of(_Asks.make())
    parsed = len(css_cache._PARSED._cache)
    assert parsed > 0
    assert await _screen_of(_Asks.make()) == first
    assert len(css_cache._PARSED._cache) == parsed  # nothing parsed again
    # another theme (its colours are substituted while parsing): drawn in it, and the next
    # app in the default theme is drawn as the first
    light = await _screen_of(_Asks.make("textual-light"))
    assert light != first
    assert await _screen_of(_Asks.make()) == first


def test_a_stylesheet_without_the_variables_it_is_keyed_by_keeps_its_own_entries():
    # A Textual whose stylesheet no longer has the private name: no error while parsing, and
    # no rules shared with another stylesheet (they may have been parsed under other colours).
    from tui.widgets import css_cache

    class Bare:
        pass

    one, other = css_cache.SharedParseCache(Bare()), css_cache.SharedParseCache(Bare())  # type: ignore[arg-type]
    key = ("Screen { color: red; }", ("nowhere", ""))
    assert key not in one
    one[key] = []
    assert key in one and one[key] == []
    assert key not in other
