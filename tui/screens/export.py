"""The export modal (``e`` on the Verify screen, or the command palette there).

A form for an :class:`~tui.core.export_request.ExportRequest`: which report, which covered
(loan) days, the format, whether to pseudonymize identifier columns (on by default: the file
is usually for someone else), and the file to write. ``Export`` asks the app to run it
(:meth:`tui.app.ReportKeeperApp.export_reports`: the workbooks are read by the isolated worker
processes, never here) with a progress bar; the modal then closes with the
:class:`~tui.core.export.ExportResult` and the caller shows a toast (:func:`export_toast`).
A usage problem (a bad day, an existing file) is shown in the form, one line, and nothing is
written. ``escape`` closes the form, or stops a running export (nothing is written then).
"""

from __future__ import annotations

import logging
from datetime import date, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, cast

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, ProgressBar, Select, Static
from textual.worker import Worker, WorkerState

from tui.core import clock
from tui.core.export_request import Cancelled, ExportError, ExportRequest, output_format, parse_day
from tui.core.names import escape_name, profile_file_part
from tui.messages import ExportProgress

if TYPE_CHECKING:
    from textual.app import App
    from textual.notifications import SeverityLevel

    from tui.app import ReportKeeperApp
    from tui.core.export import ExportResult

log = logging.getLogger("report_keeper.screens.export")

ALL_REPORTS = "\x00all"  # the Select's value for "every report" (no report can be named so)
FORMATS = (("Parquet (analysis tools)", ".parquet"), ("CSV (spreadsheets)", ".csv"))


def default_output(profile: str, today: date, suffix: str = ".parquet") -> Path:
    """``~/Documents/report-keeper-<profile>-<day>.parquet`` (the home folder without one), the
    profile's name as its other files' names hold it: one file name per profile."""
    home = Path.home()
    folder = home / "Documents" if (home / "Documents").is_dir() else home
    return folder / f"report-keeper-{profile_file_part(profile)}-{today.isoformat()}{suffix}"


def open_export(app: App[None], profile_name: str, timezone: tzinfo) -> None:
    """The export form over the current screen (the Verify screen's ``e`` and the palette's
    entry on any screen), then :func:`export_toast` when an export was written."""
    today = clock.now().astimezone(timezone).date()
    app.push_screen(ExportModal(profile_name, today=today),
                    callback=lambda result: export_toast(app, result) if result else None)


def export_toast(app: App[None], result: ExportResult) -> None:
    """The notification after an export: where the file is and what it covers."""
    code = int(result.exit_code)
    severity: SeverityLevel = "information" if code == 0 else "warning" if code == 1 else "error"
    app.notify(result.toast(), title="Export written", severity=severity, timeout=20, markup=False)


class ExportModal(ModalScreen["ExportResult | None"]):
    """Report, covered days, format, pseudonymize, file; then export with a progress bar."""

    DEFAULT_CSS = """
    ExportModal { align: center middle; }
    ExportModal > Vertical {
        width: 78; max-width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    ExportModal .title { text-style: bold; height: 1; margin-bottom: 1; }
    ExportModal .row { height: 1; margin-bottom: 1; }
    ExportModal .row Label { width: 14; }
    ExportModal .row .to { width: 4; text-align: center; }
    ExportModal #export-report, ExportModal #export-format, ExportModal #export-out { width: 1fr; }
    ExportModal #export-since, ExportModal #export-until { width: 16; }
    ExportModal #export-pseudonymize { margin-bottom: 1; }
    ExportModal #export-message { height: auto; min-height: 1; }
    ExportModal #export-progress-row { height: 1; display: none; }
    ExportModal #export-progress-row.running { display: block; }
    ExportModal #export-progress-label { width: auto; padding-right: 1; }
    ExportModal .buttons { height: 1; margin-top: 1; }
    ExportModal Button { margin-right: 2; min-width: 10; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel / stop", id="export.cancel")]

    def __init__(self, profile: str, *, today: date, reports: list[str] | None = None,
                 out: Path | None = None) -> None:
        super().__init__()
        self.today = today
        self._reports = reports
        self._out = out or default_output(profile, today)
        self._cancel = False
        self.running = False

    @property
    def app(self) -> ReportKeeperApp:  # type: ignore[override]  # narrower: the one app it runs in
        return cast("ReportKeeperApp", super().app)

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        options = [("All reports", ALL_REPORTS)] + [(escape_name(n), n) for n in self._reports or ()]
        with Vertical():
            yield Static("Export the kept reports as one table", classes="title")
            with Horizontal(classes="row"):
                yield Label("Report")
                yield Select(options, value=ALL_REPORTS, allow_blank=False, compact=True, id="export-report")
            with Horizontal(classes="row"):
                yield Label("Covered days")
                yield Input(placeholder="first YYYY-MM-DD", compact=True, id="export-since")
                yield Static("to", classes="to")
                yield Input(placeholder="last YYYY-MM-DD", compact=True, id="export-until")
            with Horizontal(classes="row"):
                yield Label("Format")
                suffix = self._out.suffix if self._out.suffix in (".parquet", ".csv") else ".parquet"
                yield Select(FORMATS, value=suffix, allow_blank=False, compact=True, id="export-format")
            with Horizontal(classes="row"):
                yield Label("File")
                yield Input(str(self._out), compact=True, id="export-out")
            yield Checkbox("Pseudonymize identifier columns (keyed hash; the key stays here)",
                           value=True, compact=True, id="export-pseudonymize")
            yield Static(Text("No days given: every day held. Only local copies are read.", style="dim"),
                         id="export-message")
            with Horizontal(id="export-progress-row"):
                yield Static("", id="export-progress-label")
                yield ProgressBar(id="export-progress", show_eta=False)
            with Horizontal(classes="buttons"):
                yield Button("Export", id="export-run", variant="primary", compact=True)
                yield Button("Cancel (esc)", id="export-cancel", compact=True)

    def on_mount(self) -> None:
        self.query_one("#export-run", Button).focus()
        if self._reports is None:
            self._load_reports()

    @work(thread=True, exclusive=True, group="export-names", exit_on_error=False)
    def _load_reports(self) -> None:
        names = self.app.export_report_names()
        self.app.call_from_thread(self._set_reports, names)

    def _set_reports(self, names: list[str]) -> None:
        self._reports = names
        select = self.query_one("#export-report", Select)
        select.set_options([("All reports", ALL_REPORTS)] + [(escape_name(n), n) for n in names])
        select.value = ALL_REPORTS

    # ------------------------------------------------------------------ form
    @on(Select.Changed, "#export-format")
    def _format_changed(self, event: Select.Changed) -> None:
        box = self.query_one("#export-out", Input)
        path = Path(box.value.strip() or str(self._out))
        if isinstance(event.value, str) and path.suffix.lower() != event.value:
            box.value = str(path.with_suffix(event.value))

    @on(Input.Changed, "#export-out")
    def _file_changed(self, event: Input.Changed) -> None:
        """The extension decides the format: the format shown follows the file typed."""
        suffix = Path(event.value.strip()).suffix.lower()
        select = self.query_one("#export-format", Select)
        if suffix in (".parquet", ".csv") and select.value != suffix:
            select.value = suffix  # its Changed finds the extension already right

    @on(Input.Changed, "#export-since")
    @on(Input.Changed, "#export-until")
    def _days_changed(self) -> None:
        """Say which days the export covers as they are typed (checked on Export)."""
        if self.running:
            return
        # what was typed is shown as text, control characters escaped
        since = escape_name(self.query_one("#export-since", Input).value.strip())
        until = escape_name(self.query_one("#export-until", Input).value.strip())
        if since and until:
            days = f"Covered days {since} to {until}."
        elif since:
            days = f"Covered days from {since} on."
        elif until:
            days = f"Covered days up to {until}."
        else:
            days = "No days given: every day held."
        self._say(f"{days} Only local copies are read.", style="dim")

    def _say(self, text: str, style: str = "bold red") -> None:
        self.query_one("#export-message", Static).update(Text(text, style=style))

    def request(self) -> ExportRequest:
        """The form as an ``ExportRequest``; raises ``ExportError`` with one line."""
        since_text = self.query_one("#export-since", Input).value.strip()
        until_text = self.query_one("#export-until", Input).value.strip()
        since = parse_day(since_text, "the first day") if since_text else None
        until = parse_day(until_text, "the last day") if until_text else None
        out_text = self.query_one("#export-out", Input).value.strip()
        if not out_text:
            raise ExportError("name the file to write, such as ~/loans.parquet")
        out = Path(out_text).expanduser()
        output_format(out)
        report = self.query_one("#export-report", Select).value
        reports = () if report in (ALL_REPORTS, Select.BLANK, None) else (str(report),)
        if since and until and since > until:
            raise ExportError(f"the first day {since} is after the last day {until}")
        return ExportRequest(out=out, reports=reports, since=since, until=until,
                             pseudonymize=self.query_one("#export-pseudonymize", Checkbox).value)

    @on(Button.Pressed, "#export-run")
    @on(Input.Submitted)  # Enter in a field runs it too, as in any form
    def action_run(self) -> None:
        if self.running:
            return
        try:
            request = self.request()
        except ExportError as exc:
            self._say(str(exc))
            return
        self.running = True
        self._cancel = False
        self.query_one("#export-run", Button).disabled = True
        self.query_one("#export-progress-row").add_class("running")
        self.query_one(ProgressBar).update(total=None, progress=0)
        self.query_one("#export-progress-label", Static).update("Reading the ledger…")
        self._say("Exporting… (esc stops it; nothing is written then)", style="italic")
        self._run(request)

    @on(Button.Pressed, "#export-cancel")
    def _cancel_pressed(self) -> None:
        self.action_cancel()

    def action_cancel(self) -> None:
        if self.running:
            self._cancel = True
            self._say("Stopping…", style="italic")
            return
        self.dismiss(None)

    # ------------------------------------------------------------------ running
    @work(exclusive=True, group="export", exit_on_error=False)
    async def _run(self, request: ExportRequest) -> None:
        def progress(done: int, total: int, name: str) -> None:  # called from the export's thread
            self.post_message(ExportProgress(done, total, name))

        try:
            result = await self.app.export_reports(request, progress=progress, cancelled=lambda: self._cancel)
        except Cancelled:
            self.running = False
            self.dismiss(None)
            self.app.notify("Export stopped; nothing was written.", timeout=5)
            return
        except ExportError as exc:
            self._stopped(str(exc))
            return
        self.running = False
        self.dismiss(result)

    def on_export_progress(self, message: ExportProgress) -> None:
        bar = self.query_one(ProgressBar)
        if message.name == "writing":
            bar.update(total=None)
            self.query_one("#export-progress-label", Static).update("Writing the table…")
            return
        bar.update(total=max(message.total, 1), progress=message.done)
        self.query_one("#export-progress-label", Static).update(f"Reading {message.done}/{message.total}")

    def _stopped(self, text: str) -> None:
        self.running = False
        self.query_one("#export-run", Button).disabled = False
        self.query_one("#export-progress-row").remove_class("running")
        self._say(text)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group not in ("export", "export-names") or event.state != WorkerState.ERROR:
            return
        event.stop()  # one sentence here; the traceback goes to the log
        log.error("export failed", exc_info=event.worker.error)
        if event.worker.group == "export":
            self._stopped(f"The export stopped on an unexpected error ({type(event.worker.error).__name__}); "
                          "the log file has the details. Nothing was written.")
