"""The first-run screen: what ``report-keeper init`` asks, as one form and a folder picker.

It reads the first-run app's :class:`tui.setup_state.SetupView` and posts its intents to the
app (``tui/setup_app.py``), which does the work in workers and answers with ``SetupChanged``.
Steps: the form (server, port, user, key, server folder if known, local folder, time zone) -> the new key's public
line (only when one was made) -> the folder picker over the server's listing -> the reports
found with their inferred schedules (keep, skip, edit) -> written, what is pending, what next.
Everything works from the keyboard at 80×24: tab and enter through the form, the footer shows
the keys of the step, F1 (or ``?`` outside a field) lists them all.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, ClassVar, cast
from zoneinfo import available_timezones

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.suggester import SuggestFromList
from textual.widgets import (
    Button,
    ContentSwitcher,
    DataTable,
    Input,
    Label,
    LoadingIndicator,
    OptionList,
    Select,
    Static,
)
from textual.widgets.option_list import Option

from tui.core import setup as su
from tui.core.names import escape_name
from tui.core.schedule import parse_at
from tui.messages import SetupChanged
from tui.setup_state import FormAnswers, KeyChoice, SetupStep, SetupView
from tui.widgets.footer import FitFooter

if TYPE_CHECKING:
    from datetime import time, timedelta

    from tui.setup_app import FirstRunApp

#: The form's fields: (id, label); the ids are those of ``answers_from_form``'s errors.
FIELDS = (
    ("host", "SFTP server"),
    ("port", "Port"),
    ("username", "User name"),
    ("key", "Log in with"),
    ("remote_dir", "Server folder"),
    ("local_dir", "Local folder"),
    ("timezone", "Time zone"),
)
_PLACEHOLDERS = {
    "host": "host name or a Host alias of ~/.ssh/config",
    "port": "22 (empty: from ~/.ssh/config)",
    "username": "empty: from ~/.ssh/config",
    "remote_dir": "empty: pick it from the server's folders",
    "local_dir": "where the downloaded reports go",
    "timezone": "IANA name, like America/Chicago",
}
# Which step each action belongs to (the footer shows only the current step's keys).
_STEP_ACTIONS: dict[str, tuple[SetupStep, ...]] = {
    "demo": (SetupStep.FORM,),
    "save_pending": (SetupStep.FORM, SetupStep.NEW_KEY),
    "connect_new_key": (SetupStep.NEW_KEY,),
    "copy_public_line": (SetupStep.NEW_KEY,),
    "use_folder": (SetupStep.FOLDER,),
    "folder_up": (SetupStep.FOLDER,),
    "go_to": (SetupStep.FOLDER,),
    "toggle_keep": (SetupStep.REPORTS,),
    "edit_report": (SetupStep.REPORTS,),
    "save": (SetupStep.REPORTS,),
    "back": (SetupStep.NEW_KEY, SetupStep.FOLDER, SetupStep.REPORTS),
    "finish": (SetupStep.DONE,),
}


class FirstRunScreen(Screen[None]):
    """Set up a profile: the form, the folder picker, the reports, done."""

    DEFAULT_CSS = """
    FirstRunScreen { layout: vertical; }
    FirstRunScreen #fr-title { height: auto; padding: 0 1; background: $boost; }
    FirstRunScreen ContentSwitcher { height: 1fr; padding: 0 1; }
    FirstRunScreen ContentSwitcher > Vertical { height: 1fr; }
    FirstRunScreen .intro { height: auto; color: $text-muted; margin-bottom: 1; }
    FirstRunScreen .row { height: 1; }
    FirstRunScreen .row Label { width: 15; }
    FirstRunScreen .row Input, FirstRunScreen .row Select { width: 1fr; }
    FirstRunScreen .field-error { height: auto; color: $error; padding-left: 15; }
    FirstRunScreen .buttons { height: 1; margin-top: 1; }
    FirstRunScreen .buttons Button { margin-right: 2; }
    FirstRunScreen #save-pending { display: none; }
    FirstRunScreen .text { height: auto; }
    FirstRunScreen #public-line { height: auto; margin: 1 0; background: $boost; }
    FirstRunScreen #folder-list, FirstRunScreen #report-table { height: 1fr; }
    FirstRunScreen #busy { height: 1; display: none; padding: 0 1; }
    FirstRunScreen #busy LoadingIndicator { width: 6; height: 1; min-height: 1; }
    FirstRunScreen #busy-text { width: 1fr; }
    FirstRunScreen #message { height: auto; max-height: 4; padding: 0 1; }
    FirstRunScreen #message.error { color: $error; text-style: bold; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "demo", "Try the demo", key_display="F2"),
        Binding("f3", "save_pending", "Save for later", key_display="F3"),
        Binding("c", "connect_new_key", "Connect now"),
        Binding("y", "copy_public_line", "Copy line"),
        Binding("u", "use_folder", "Use folder"),
        Binding("backspace", "folder_up", "Up"),
        Binding("g", "go_to", "Go to"),
        Binding("space", "toggle_keep", "Keep/skip"),
        Binding("e", "edit_report", "Edit"),
        Binding("w", "save", "Save"),
        Binding("escape", "back", "Back"),
        Binding("enter", "finish", "Open Report Keeper"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._shown_version = -1
        self._step: SetupStep | None = None
        self._folder_path: str | None = None
        self._keys: tuple[KeyChoice, ...] = ()
        self._chosen_with_enter = False

    @property
    def app(self) -> FirstRunApp:  # type: ignore[override]  # narrower: the one app it runs in
        return cast("FirstRunApp", super().app)

    # -- layout -----------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        view = self.app.view
        d = view.defaults
        yield Static(Text.assemble(
            ("First run: ", "bold"), "no configuration yet. Set up profile ",
            (f"'{escape_name(d.profile)}'", "bold"), " in ", (d.config_shown, "bold"),
            ", or try the demo (F2)."), id="fr-title")
        with ContentSwitcher(initial=SetupStep.FORM.value):
            with Vertical(id=SetupStep.FORM.value):
                yield Static("The server Alma delivers the reports to. Tab or enter moves on; "
                             "enter on the last field connects.", classes="intro")
                for name, label in FIELDS:
                    with Horizontal(classes="row"):
                        yield Label(label)
                        if name == "key":
                            # the keys are known already (ssh-agent's may come later): no blank entry
                            self._keys = d.keys
                            yield Select([(Text(escape_name(k.label)), i) for i, k in enumerate(d.keys)],
                                         allow_blank=not d.keys, value=0 if d.keys else Select.BLANK,
                                         compact=True, id="key")
                        else:
                            yield Input(_initial(view, name), placeholder=_PLACEHOLDERS[name], compact=True,
                                        id=name, suggester=_suggester(view, name))
                    yield Static("", classes="field-error", id=f"error-{name}")
                with Horizontal(classes="buttons"):
                    yield Button("Connect", id="connect", variant="primary", compact=True)
                    yield Button("Save for later (F3)", id="save-pending", compact=True)
                    yield Button("Try the demo (F2)", id="demo", compact=True)
            with Vertical(id=SetupStep.NEW_KEY.value):
                yield Static("", classes="text", id="new-key-text")
                yield Static("", id="public-line")
                yield Static("", classes="text", id="new-key-after")
                with Horizontal(classes="buttons"):
                    yield Button("Connect now (c)", id="connect-new", variant="primary", compact=True)
                    yield Button("Finish later (F3)", id="later", compact=True)
            with Vertical(id=SetupStep.FOLDER.value):
                yield Static("", classes="text", id="folder-path")
                yield OptionList(id="folder-list")
            with Vertical(id=SetupStep.REPORTS.value):
                yield Static("", classes="text", id="reports-title")
                yield DataTable(id="report-table", cursor_type="row", zebra_stripes=True)
            with Vertical(id=SetupStep.DONE.value):
                yield Static("", classes="text", id="done-text")
                with Horizontal(classes="buttons"):
                    yield Button("Open Report Keeper (enter)", id="open", variant="success", compact=True)
        with Horizontal(id="busy"):
            yield LoadingIndicator()
            yield Static("", id="busy-text")
        yield Static("", id="message")
        # Whole keys only: the new key's step has six, which fill 80 columns without the palette.
        yield FitFooter()

    def on_mount(self) -> None:
        table = self.query_one("#report-table", DataTable)
        table.add_columns("Keep", "Report", "Schedule", "Files", "Fits")
        self._show()
        self.query_one("#host", Input).focus()
        self.watch(self.query_one("#key", Select), "expanded", self._key_list_shown, init=False)

    # Enter moves on through the form: on 'Log in with' it opens the list, and a choice made
    # there with enter moves on too (the list would keep the focus, so enter after enter only
    # opened and closed it). Escape closes the list and stays.
    def on_key(self, event: events.Key) -> None:
        key = self.query_one("#key", Select)
        self._chosen_with_enter = event.key == "enter" and key.expanded

    def _key_list_shown(self, expanded: bool) -> None:
        if not expanded and self._chosen_with_enter:
            self._chosen_with_enter = False
            # after the list gives the focus back to its field (the app's next callback)
            self.app.call_later(self.focus_next)

    # -- the state, shown -------------------------------------------------------------------
    def on_setup_changed(self, message: SetupChanged) -> None:
        self._show()

    def _show(self) -> None:
        view = self.app.view
        if view.version == self._shown_version:
            return
        self._shown_version = view.version
        # Shown or hidden on the widgets themselves: a class on the screen restyles all of it.
        self.query_one("#busy").display = bool(view.busy)
        self.query_one("#save-pending").display = view.can_save_pending
        self.query_one("#busy-text", Static).update(Text(escape_name(view.busy)))
        self._show_keys(view)
        for name, _label in FIELDS:
            error = view.field_errors.get(name, "")
            widget = self.query_one(f"#error-{name}", Static)
            widget.update(Text(error))
            widget.display = bool(error)
        message = self.query_one("#message", Static)
        # Errors can quote a server's own words: shown as text, control characters escaped.
        message.update(Text(escape_name(view.error or _hint(view))))
        message.set_class(bool(view.error), "error")
        switcher = self.query_one(ContentSwitcher)
        switcher.current = view.step.value
        if view.step is SetupStep.NEW_KEY:
            self._show_new_key(view)
        elif view.step is SetupStep.FOLDER:
            self._show_folder(view)
        elif view.step is SetupStep.REPORTS:
            self._show_reports(view)
        elif view.step is SetupStep.DONE:
            self._show_done(view)
        if view.step is not self._step:
            self._step = view.step
            self._focus_step(view)
        elif view.step is SetupStep.FORM and view.field_errors:
            first = next(name for name, _label in FIELDS if name in view.field_errors)
            self.query_one(f"#{first}").focus()
        self.refresh_bindings()

    def _show_keys(self, view: SetupView) -> None:
        keys = view.defaults.keys
        if keys == self._keys:
            return
        select = cast("Select[int]", self.query_one("#key", Select))
        current = select.value
        # A choice other than the first (the default) is the user's: it stays chosen. The
        # default follows the new list (ssh-agent's keys found after start come before a new pair).
        chosen = self._keys[current] if isinstance(current, int) and 0 < current < len(self._keys) else None
        self._keys = keys
        select.set_options([(Text(escape_name(k.label)), i) for i, k in enumerate(keys)])
        index = keys.index(chosen) if chosen in keys else 0
        if select.value == index:  # the same number, another key: its label is shown anew
            select.mutate_reactive(Select.value)  # type: ignore[misc]  # the descriptor itself
        select.value = index

    def _show_new_key(self, view: SetupView) -> None:
        key = view.new_key
        if key is None:
            return
        self.query_one("#new-key-text", Static).update(Text.assemble(
            "New key pair: ", (key.path, "bold"), " (private, readable only by you) and ",
            (f"{key.path}.pub", "bold"), f".\n{key.fingerprint}\n\n",
            ("Send this line to your SFTP server's administrator", "bold"),
            " (it is the public half, safe to send); they add it to the account's authorized keys:"))
        self.query_one("#public-line", Static).update(Text(key.public_line))
        self.query_one("#new-key-after", Static).update(Text(
            f"The same line is in {key.path}.pub; y copies it (where the terminal allows). Once "
            "it is added, connect now (c). Or finish later (F3): the config is written with this "
            "noted as pending, and the app opens."))

    def _show_folder(self, view: SetupView) -> None:
        folder = view.folder
        if folder is None:
            return
        counts = f"{folder.files} file{'s' if folder.files != 1 else ''} here, {folder.reports} Excel"
        refused = f"; {folder.refused} unsafe names set aside" if folder.refused else ""
        self.query_one("#folder-path", Static).update(Text.assemble(
            "Which folder does Alma deliver to? ", ("Now in ", "dim"), (escape_name(folder.path), "bold"),
            "\n", (counts + refused, "dim")))
        if folder.path == self._folder_path:
            return
        self._folder_path = folder.path
        options = [Option(Text.assemble(("✓ Use this folder", "bold green"), f"  ({counts})"), id="use")]
        if not folder.top:
            options.append(Option(Text("↑ ..  (the folder above)"), id="up"))
        options += [Option(Text(f"▸ {escape_name(name)}/"), id=f"child-{i}") for i, name in enumerate(folder.folders)]
        listing = self.query_one("#folder-list", OptionList)
        listing.set_options(options)
        listing.highlighted = 0

    def _show_reports(self, view: SetupView) -> None:
        kept = sum(1 for p in view.proposals if p.keep)
        where = escape_name(view.remote_dir)
        if view.proposals:
            title = (f"Reports in {where}: {len(view.proposals)} found, {kept} kept with the schedule "
                     "its history suggests. space keeps or skips, e edits; skipped ones are still "
                     "tracked, their schedule inferred as history grows. w tests and saves.")
        else:
            title = (f"No Excel reports in {where} yet: every report that arrives will be tracked, "
                     "its schedule inferred from its history. w tests the connection and saves.")
        self.query_one("#reports-title", Static).update(Text(title))
        table = self.query_one("#report-table", DataTable)
        row = table.cursor_row
        table.clear()
        for p in view.proposals:
            fits = f"{p.confidence:.0%}" if p.files > 1 else "1 file"
            # Text, never markup: the names are the server's.
            table.add_row(Text("[x]" if p.keep else "[ ]"), Text(escape_name(p.name)), Text(p.describe()),
                          Text(str(p.files), justify="right"), Text(fits, justify="right"))
        if view.proposals:
            table.move_cursor(row=min(row, len(view.proposals) - 1))

    def _show_done(self, view: SetupView) -> None:
        # the title said "no configuration yet": not so any more
        self.query_one("#fr-title", Static).update(Text.assemble(
            ("First run: ", "bold"), "done. Profile ", (f"'{escape_name(view.defaults.profile)}'", "bold"),
            " is set up in ", (view.defaults.config_shown, "bold"), "."))
        text = Text()
        text.append(f"Wrote {view.written}", style="bold")
        text.append(" (readable only by you)")
        text.append(".\n")
        if view.test is not None:
            text.append("Connection test (upload, download, delete a probe file): ")
            text.append(view.test.message + "\n", style="green" if view.test.ok else "bold red")
        if view.pending:
            text.append("\nPending:\n", style="bold yellow")
            for note in view.pending:
                text.append(f"  - {note}\n")
        for line in view.next_steps:
            text.append(f"\n{line}")
        self.query_one("#done-text", Static).update(text)

    def _focus_step(self, view: SetupView) -> None:
        target = {
            SetupStep.FORM: "#host",
            SetupStep.NEW_KEY: "#connect-new",
            SetupStep.FOLDER: "#folder-list",
            SetupStep.REPORTS: "#report-table",
            SetupStep.DONE: "#open",
        }[view.step]
        self.query_one(target).focus()

    # -- bindings per step ------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        steps = _STEP_ACTIONS.get(action)
        if steps is None:
            return True
        view = self.app.view
        if view.step not in steps:
            return False
        if view.busy and action != "demo":
            return None  # shown, not usable while the worker runs
        if action == "save_pending":
            return view.can_save_pending
        if action == "folder_up":
            return view.folder is not None and not view.folder.top
        return True

    # -- the form ---------------------------------------------------------------------------
    def _form(self) -> FormAnswers:
        def text(name: str) -> str:
            return self.query_one(f"#{name}", Input).value

        value = self.query_one("#key", Select).value
        keys = self.app.view.defaults.keys
        key = keys[value] if isinstance(value, int) and 0 <= value < len(keys) else keys[-1]
        return FormAnswers(host=text("host"), port=text("port"), username=text("username"), key=key,
                           remote_dir=text("remote_dir"), local_dir=text("local_dir"),
                           timezone=text("timezone"))

    @on(Input.Changed)
    @on(Select.Changed)
    def _edited(self, event: Input.Changed | Select.Changed) -> None:
        event.stop()
        defaults = self.app.view.defaults
        if isinstance(event, Input.Changed) and event.input.id == "host" and event.value.strip() in defaults.aliases:
            # A Host alias of ~/.ssh/config brings its own port and user (as init asks them):
            # the offered defaults would override them, so they are cleared (left to it).
            for name, offered in (("port", "22"), ("username", defaults.username)):
                field = self.query_one(f"#{name}", Input)
                if field.value == offered:
                    field.value = ""
        if self.app.view.can_save_pending:
            self.app.form_edited(self._form())

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "timezone":
            self.app.submit_form(self._form())
        else:
            self.focus_next()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        event.stop()
        match event.button.id:
            case "connect":
                self.app.submit_form(self._form())
            case "save-pending" | "later":
                self.action_save_pending()
            case "demo":
                self.action_demo()
            case "connect-new":
                self.action_connect_new_key()
            case "open":
                self.action_finish()

    # -- the folder picker ------------------------------------------------------------------
    @on(OptionList.OptionSelected, "#folder-list")
    def _folder_chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        folder = self.app.view.folder
        option = event.option.id or ""
        if option == "use":
            self.app.use_folder()
        elif option == "up":
            self.app.folder_up()
        elif option.startswith("child-") and folder is not None:
            self.app.folder_child(folder.folders[int(option.removeprefix("child-"))])

    # -- actions ----------------------------------------------------------------------------
    def action_demo(self) -> None:
        self.app.try_demo()

    def action_save_pending(self) -> None:
        self.app.save_pending()

    def action_connect_new_key(self) -> None:
        self.app.connect_new_key()

    def action_copy_public_line(self) -> None:
        key = self.app.view.new_key
        if key is not None:
            self.app.copy_to_clipboard(key.public_line)
            self.notify(f"Copied, where the terminal allows it; the line is also in {key.path}.pub.")

    def action_use_folder(self) -> None:
        self.app.use_folder()

    def action_folder_up(self) -> None:
        self.app.folder_up()

    def action_go_to(self) -> None:
        def done(typed: str | None) -> None:
            if typed:
                self.app.folder_typed(typed)

        self.app.push_screen(GoToModal(), callback=done)

    def action_back(self) -> None:
        self.app.back()

    def action_toggle_keep(self) -> None:
        proposals = self.app.view.proposals
        row = self.query_one("#report-table", DataTable).cursor_row
        if 0 <= row < len(proposals):
            self.app.set_keep(row, not proposals[row].keep)

    def action_edit_report(self) -> None:
        proposals = self.app.view.proposals
        row = self.query_one("#report-table", DataTable).cursor_row
        if not 0 <= row < len(proposals):
            return
        proposal = proposals[row]

        def done(result: tuple[str, time, timedelta] | None) -> None:
            if result is not None:
                self.app.edit_report(row, *result)

        self.app.push_screen(ReportEditModal(proposal), callback=done)

    def action_save(self) -> None:
        self.app.save()

    def action_finish(self) -> None:
        self.app.finish()


class ReportEditModal(ModalScreen["tuple[str, time, timedelta] | None"]):
    """A report's schedule, time and grace, checked as ``init`` checks them."""

    DEFAULT_CSS = """
    ReportEditModal { align: center middle; }
    ReportEditModal > Vertical {
        width: 76; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    ReportEditModal .title { text-style: bold; margin-bottom: 1; }
    ReportEditModal .row { height: 1; }
    ReportEditModal .row Label { width: 12; }
    ReportEditModal .row Input { width: 1fr; }
    ReportEditModal #edit-error { height: auto; color: $error; }
    ReportEditModal .hint { color: $text-muted; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, proposal: su.ReportProposal) -> None:
        super().__init__()
        self.proposal = proposal

    def compose(self) -> ComposeResult:
        p = self.proposal
        minutes = int(p.grace.total_seconds() // 60)
        grace = f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"
        with Vertical():
            yield Static(Text.assemble("Schedule of ", (escape_name(p.name), "bold")), classes="title")
            for name, label, value, hint in (
                ("schedule", "Schedule", p.schedule, "daily, weekly:MON,THU, monthly:1, every 2 days"),
                ("at", "Runs at", f"{p.at:%H:%M}", "HH:MM"),
                ("grace", "Late after", grace, "like 2h or 90m"),
            ):
                with Horizontal(classes="row"):
                    yield Label(label)
                    yield Input(value, placeholder=hint, compact=True, id=f"edit-{name}")
            yield Static("", id="edit-error")
            yield Static("enter: keep these · escape: cancel", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#edit-schedule", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        values = {name: self.query_one(f"#edit-{name}", Input).value for name in ("schedule", "at", "grace")}
        try:
            schedule = su.check_schedule(values["schedule"])
            at = parse_at(values["at"])
            grace = su.check_grace(values["grace"])
        except ValueError as exc:
            self.query_one("#edit-error", Static).update(Text(str(exc)))  # it quotes what was typed
            return
        self.dismiss((schedule, at, grace))

    def action_cancel(self) -> None:
        self.dismiss(None)


class GoToModal(ModalScreen["str | None"]):
    """A folder of the server by its path (one the listing does not lead to, like a link)."""

    DEFAULT_CSS = """
    GoToModal { align: center middle; }
    GoToModal > Vertical {
        width: 76; max-width: 100%; height: auto; border: thick $accent; background: $surface;
        padding: 0 1;
    }
    GoToModal .hint { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Go to a folder: a path from the folder shown, or from / (absolute)"))
            yield Input(placeholder="upload/ALMA or /data/alma", compact=True, id="go-to")
            yield Static(Text("enter: open it · escape: cancel"), classes="hint")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _initial(view: SetupView, name: str) -> str:
    d = view.defaults
    return {"port": "22", "username": d.username, "local_dir": d.local_dir, "timezone": d.timezone}.get(name, "")


def _suggester(view: SetupView, name: str) -> SuggestFromList | None:
    """~/.ssh/config's aliases for the server, the IANA names for the time zone."""
    if name == "host":
        return SuggestFromList(view.defaults.aliases)
    if name == "timezone":
        return SuggestFromList(_zone_names(), case_sensitive=False)
    return None


def _hint(view: SetupView) -> str:
    if view.step is SetupStep.FORM:
        return "Nothing is written until the end; ctrl+q leaves without writing anything."
    return ""


@functools.cache
def _zone_names() -> list[str]:
    """The IANA zone names, read from the tz database once (a walk over its files)."""
    return sorted(available_timezones())
