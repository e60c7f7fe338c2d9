"""The Textual app: one factory (:func:`create_app`) used by the CLI and the tests.

Screens (as app *modes*, keys 1-5, from :data:`tui.state.SCREENS`): Health, Remote, Queue,
Verify, Heatmap; ``?`` help, ``ctrl+p`` command palette (every action is a command), ``q``
quit, ``r`` refresh, ``t`` test the connection. docs/KEYS.md lists every key.

The app holds the state the screens read (``profile``, ``snapshot``, ``board``,
``connection``: :mod:`tui.state`) and wires its workers to messages (:mod:`tui.messages`):

- network work (listing, downloads, the connection test) runs in async workers through the
  sync service (:class:`tui.state.SyncServiceLike`) and :mod:`tui.sftp.conntest`;
- the snapshot (ledger, health evaluation, local folder size) is built in a thread worker
  (:func:`tui.state.build_snapshot`) and comes back as a :class:`DataRefreshed` message; while
  files land it is built again at most once every :data:`LIVE_REFRESH_SECONDS` (one build
  for any number of files), so Health and the heatmap follow a long or paused batch;
- transfer events update the :class:`tui.state.TransferBoard`; one replaceable
  :class:`QueueChanged` message follows, so a flood of progress events costs one redraw.

Cancelling all downloads and quitting while they run ask first (:class:`ConfirmModal`), as
does queueing onto a paused queue (resume now?); the toast after a batch of downloads counts
that batch and gives the reason of a failure.

Screens ask for changes through :meth:`queue_downloads`, :meth:`cancel_one`,
:meth:`verify_local_reports`, :meth:`export_reports` and the app's actions. Unexpected worker failures are handled in
one ``on_worker_state_changed`` handler: logged with their traceback, shown to the user as one
clear sentence, never a crash.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App, ScreenStackError, SystemCommand, UnknownModeError
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message import Message
from textual.notifications import Notify, SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerCancelled, WorkerFailed, WorkerState

from tui.core import clock, isolation
from tui.core.config import ConfigError, Profile, load_config
from tui.core.export_request import ExportRequest, report_names
from tui.core.ledger import Ledger, LedgerError
from tui.core.local_reports import VerifyOutcome
from tui.core.model import ConnTestResult, JobState, LocalState
from tui.core.names import escape_name
from tui.messages import ConnectionChanged, DataRefreshed, LedgerWaiting, QueueChanged, ReportsVerified
from tui.screens.base import AppScreen, PaletteCommand
from tui.screens.confirm import ConfirmModal
from tui.screens.export import open_export
from tui.screens.health import HealthScreen
from tui.screens.heatmap import HeatmapScreen
from tui.screens.help import HelpScreen
from tui.screens.modals import HostKeyChangedModal, SshQuestionsApp
from tui.screens.queue import QueueScreen
from tui.screens.remote import RemoteScreen
from tui.screens.verify import VerifyScreen
from tui.sftp.client import ConnectOptions
from tui.sftp.conntest import connect_and_test
from tui.sftp.errors import HostKeyChanged, SftpError
from tui.sftp.queue import Failed, TransferEvent, TransferQueue
from tui.sftp.sync import Listed, Recorded, SyncEvent, SyncResult, SyncService, Verified
from tui.state import (
    SCREENS,
    ConnectionInfo,
    ConnectionState,
    DataSnapshot,
    ScreenName,
    SyncServiceLike,
    TransferBoard,
    again_text,
    batch_text,
    build_snapshot,
    empty_reports,
    partial_names,
    verify_local_reports,
)
from tui.widgets import toasts
from tui.widgets.formatting import home_relative, human_size, plural

if TYPE_CHECKING:
    from tui.core.export import ExportResult

log = logging.getLogger("report_keeper.app")

ServiceFactory = Callable[["ReportKeeperApp"], SyncServiceLike]

_SCREEN_CLASSES: dict[ScreenName, type[AppScreen]] = {
    ScreenName.HEALTH: HealthScreen,
    ScreenName.REMOTE: RemoteScreen,
    ScreenName.QUEUE: QueueScreen,
    ScreenName.VERIFY: VerifyScreen,
    ScreenName.HEATMAP: HeatmapScreen,
}

_CONNECTION_GLYPH = {
    ConnectionState.IDLE: "○ not connected",
    ConnectionState.CONNECTING: "◌ connecting…",
    ConnectionState.CONNECTED: "● connected",
    ConnectionState.FAILED: "✗ connection failed",
}

#: Local states of a file "download all new" fetches: not held here in its server version.
_NOT_HELD = (LocalState.NEW, LocalState.PARTIAL, LocalState.CHANGED, LocalState.MISSING_LOCALLY)

#: While files land, the snapshot is built again at most once per this many seconds (and
#: once at the end of the batch): one build for any number of files.
LIVE_REFRESH_SECONDS = 1.0

#: What a failed worker of each group was doing, for the one-line message.
_WORKER_WHAT = {
    "listing": "Listing the server",
    "download": "Downloading",
    "conntest": "The connection test",
    "snapshot": "Reading the ledger",
}


# ---------------------------------------------------------------------------------------------
# Command palette


class ReportKeeperCommands(Provider):
    """Every action of the app as a palette command (the current screen's first)."""

    def _commands(self) -> list[tuple[str, Callable[[], object], str]]:
        app = self.app
        assert isinstance(app, ReportKeeperApp)
        out: list[tuple[str, Callable[[], object], str]] = []
        # The screen the palette was opened on (``app.screen`` is the palette itself by now).
        screen = self.screen
        if isinstance(screen, AppScreen):
            for title, action, help_text in screen.PALETTE_COMMANDS:
                out.append((title, partial(app.run_action, action, screen), help_text))
        for title, action, help_text in app.PALETTE_COMMANDS:
            out.append((title, partial(app.run_action, action), help_text))
        return out

    async def discover(self) -> Hits:
        for title, callback, help_text in self._commands():
            yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)


# ---------------------------------------------------------------------------------------------
# The app


class ReportKeeperApp(SshQuestionsApp[None]):
    """Report Keeper's terminal UI."""

    TITLE = "Report Keeper"
    CSS = """
    Screen { layout: vertical; }
    .banner { height: auto; padding: 0 1; text-style: bold; }
    .banner.ok { background: $success 30%; }
    .banner.warning { background: $warning 30%; }
    .banner.critical { background: $error 40%; }
    .statusline { height: 1; padding: 0 1; color: $text-muted; }
    """ + toasts.CSS
    NOTIFICATION_TIMEOUT = toasts.TIMEOUT
    COMMANDS = App.COMMANDS | {ReportKeeperCommands}
    MODES: ClassVar[dict[str, str | Callable[[], Screen]]] = {
        str(s.name): _SCREEN_CLASSES[s.name] for s in SCREENS
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(s.key, f"switch_mode('{s.name}')", s.label, show=False, id=f"screen.{s.name}")
          for s in SCREENS),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("r", "refresh", "Refresh", show=False, id="refresh"),
        Binding("t", "test_connection", "Test connection", show=False, id="test"),
        Binding("q", "quit", "Quit", id="quit"),
        # Toasts go by a click or their time otherwise (an export's stays 20 s); a screen
        # whose escape closes something (a filter, details, a selection) does that first.
        # No description: the help's first page keeps the current screen's keys in view
        # (docs/KEYS.md says it).
        Binding("escape", "dismiss_toasts", "", show=False, id="dismiss"),
    ]
    PALETTE_COMMANDS: ClassVar[tuple[PaletteCommand, ...]] = (
        *((f"Go to {s.label}", f"switch_mode('{s.name}')", f"{s.key}: {s.about}") for s in SCREENS),
        ("Refresh", "refresh", "r: list the server again and re-evaluate"),
        ("Test connection", "test_connection", "t: upload, download and delete a probe file"),
        ("Download all new files", "download_all_new", "queue every file not yet downloaded"),
        ("Retry failed downloads", "retry_failed", "queue the failed files again"),
        ("Pause or resume downloads", "toggle_pause", "hold or continue the transfers"),
        ("Cancel all downloads", "cancel_all", "stop every queued and running transfer"),
        ("Export the kept reports as one table (parquet or csv)", "export",
         "e on Verify: a form for reports, days, format and pseudonyms"),
        ("Help", "help", "?: every key binding"),
        ("Quit", "quit", "q: leave Report Keeper"),
    )

    def __init__(
        self,
        profile: Profile,
        ledger: Ledger,
        *,
        service_factory: ServiceFactory | None = None,
        demo: bool = False,
        auto_connect: bool = True,
        ansi_color: bool = False,
    ) -> None:
        super().__init__(ansi_color=ansi_color)
        self.profile = profile
        self.ledger = ledger
        self.demo = demo
        self.auto_connect = auto_connect
        self.snapshot = DataSnapshot()
        self.board = TransferBoard()
        self.connection = ConnectionInfo()
        self._service_factory = service_factory or default_service_factory
        self._service: SyncServiceLike | None = None
        self._pending: list[str] = []  # names asked for, not handed to the transfer queue yet
        self._queue_posted = False
        self._snapshot_version = 0
        #: Files landed or verified since the last snapshot build started (the live refresh).
        self._landed = False
        self._live_refresh: Worker[None] | None = None
        self._transfer_control: TransferQueue | None = None  # the running queue (cancel, pause)
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        #: Writes to the ledger wait for another process's lock: who holds it ("" unknown);
        #: None while nothing waits.
        self.ledger_wait: str | None = None
        self._unwatch_ledger: Callable[[], None] | None = None
        self._update_subtitle()

    @property
    def config_shown(self) -> str:
        """Which config file the app uses, as the help names it."""
        name = escape_name(self.profile.name)
        if self.demo:
            return "the demo, no config file"
        if self.profile.source is None:
            return f"profile '{name}', no config file"
        return f"config {escape_name(home_relative(self.profile.source))} · profile '{name}'"

    #: Textual's own palette entries left out: its Quit (ours asks while downloads run; it
    #: would be listed twice), Screenshot (it writes an SVG into a folder the user did not
    #: choose, and fails where there is none) and Keys (a side panel of Textual's own key
    #: descriptions that takes a third of 80 columns and that escape does not close; the
    #: palette's Help is the app's, ``?``).
    _SYSTEM_LEFT_OUT = frozenset({"Quit", "Screenshot", "Keys"})

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title not in self._SYSTEM_LEFT_OUT:
                yield command

    # -- services ---------------------------------------------------------------------------
    @property
    def service(self) -> SyncServiceLike:
        if self._service is None:
            self._service = self._service_factory(self)
        return self._service

    # -- lifecycle --------------------------------------------------------------------------
    def on_mount(self) -> None:
        # The profile's workbook reader limits, before any workbook is read (the app's own pool).
        isolation.use_reader_limits([self.profile])
        self.switch_mode(ScreenName.HEALTH)
        # A write waiting for another process's lock waits in a thread; the app says so.
        self._unwatch_ledger = self.ledger.watch_waits(
            lambda waiting, holder: self.post_message(LedgerWaiting(waiting, holder)))
        self.load_snapshot()
        # A ledger or folder an earlier release kept under the profile's raw name, used where
        # it is: said to the person at the screen too, with the line that makes it explicit.
        for kept in self.profile.earlier_paths:
            self.notify(kept.message, title="An earlier release's file in use", severity="warning",
                        markup=False, timeout=30)
        if self.auto_connect:
            self.refresh_listing()

    async def on_unmount(self) -> None:
        if self._unwatch_ledger is not None:
            self._unwatch_ledger()
        if self._transfer_control is not None:
            self._transfer_control.cancel_all()
        for worker in list(self.workers):
            worker.cancel()
        if self._service is not None:
            try:
                await self._service.close()
            except Exception:  # leaving anyway: nothing may stop the exit
                log.debug("closing the sync service failed", exc_info=True)
        # Stops workbook readers still running, so no thread waits on one; the defaults back.
        isolation.configure()

    def _update_subtitle(self) -> None:
        name = self.profile.name
        demo = " (demo)" if self.demo and name != "demo" else ""
        # The header is on every screen: a paused queue is said there first, so it is never
        # cut off and never only known to the Queue screen.
        paused = "‖ PAUSED · " if self.board.paused else ""
        if self.ledger_wait is not None:  # said first too: nothing is recorded meanwhile
            paused += "⧗ waiting for the ledger · "
        self.sub_title = (f"{paused}{name}{demo} · {self.profile.host} · "
                          f"{_CONNECTION_GLYPH[self.connection.state]}")

    def set_connection(self, state: ConnectionState, message: str = "") -> None:
        self.connection.state = state
        self.connection.message = message
        self._update_subtitle()
        self._forward(ConnectionChanged())

    def on_ledger_waiting(self, message: LedgerWaiting) -> None:
        """The ledger's writes wait for another process (or no longer do): the header says so
        while they wait, a toast when it starts and when it is over."""
        was = self.ledger_wait
        self.ledger_wait = (message.holder or "") if message.waiting else None
        self._update_subtitle()
        if message.waiting and was is None:
            who = (f"Another process ({message.holder})" if message.holder else
                   "Another process (a scheduled sync or purge, or a program that opened the file)")
            where = f" {home_relative(self.ledger.path)}" if self.ledger.path is not None else ""
            self.notify(f"{who} is writing the ledger{where}, so "
                        "Report Keeper waits to record what it does. Downloads go on meanwhile and "
                        "nothing is lost; the records are written as soon as it is done.",
                        title="Waiting for another process", severity="warning", timeout=15)
        elif not message.waiting and was is not None:
            self.notify("The other process is done with the ledger: records are written again.")

    def _forward(self, message: Message) -> None:
        """Deliver a message to the screen now shown (modes keep their screens mounted)."""
        try:
            screen = self.screen
        except (ScreenStackError, UnknownModeError):  # no screen yet (during start-up)
            return
        screen.post_message(message)
        # A modal on top: the screen below must still be current when the modal closes.
        for under in self.screen_stack[:-1]:
            if under is not screen:
                under.post_message(message)

    # -- workers: data ----------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="snapshot", exit_on_error=False)
    def load_snapshot(self) -> None:
        # Before reading anything: what lands from now on asks for the next build.
        self._landed = False
        self._snapshot_version += 1
        listing = self._service.last_listing if self._service is not None else None
        snapshot = build_snapshot(self.profile, self.ledger, connection=self.connection.status(),
                                  version=self._snapshot_version, partial=partial_names(listing))
        self.call_from_thread(self._apply_snapshot, snapshot)

    def _apply_snapshot(self, snapshot: DataSnapshot) -> None:
        # Snapshot workers are exclusive, but a cancelled thread worker still finishes: an
        # older snapshot arriving after a newer one must not replace it.
        if snapshot.version < self.snapshot.version:
            return
        self.snapshot = snapshot
        self._forward(DataRefreshed(snapshot))

    def _files_landed(self) -> None:
        """A file was placed or verified during a batch: the snapshot follows, coalesced."""
        self._landed = True
        if self._live_refresh is None or self._live_refresh.is_finished:
            self._live_refresh = self._refresh_while_landing()

    @work(group="live-snapshot", exit_on_error=False)
    async def _refresh_while_landing(self) -> None:
        """Build the snapshot at once, then again at most every ``LIVE_REFRESH_SECONDS`` while
        files go on landing; ends after an interval in which none did. A build of its own
        never overlaps the previous one (it is awaited), so slow builds space out further."""
        while self._landed:
            try:
                await self.load_snapshot().wait()
            except (WorkerCancelled, WorkerFailed):
                pass  # replaced by a newer build, or failed (on_worker_state_changed says so)
            await asyncio.sleep(LIVE_REFRESH_SECONDS)

    def _end_live_refresh(self) -> None:
        """A batch ended: its own build (started next) covers every file landed so far."""
        if self._live_refresh is not None:
            self._live_refresh.cancel()
            self._live_refresh = None

    @work(exclusive=True, group="listing", exit_on_error=False)
    async def refresh_listing(self) -> None:
        """List the server folder (recorded in the ledger), then rebuild the snapshot."""
        self.set_connection(ConnectionState.CONNECTING)
        try:
            listing = await self.service.list_remote()
        except SftpError as exc:
            log.info("listing failed: %s", exc.kind)
            self.connection.listing_error = str(exc)
            self.set_connection(ConnectionState.FAILED, str(exc))
            if isinstance(exc, HostKeyChanged):
                self.push_screen(HostKeyChangedModal(exc))
        else:
            self.connection.listing_error = ""
            self.set_connection(ConnectionState.CONNECTED, f"{len(listing.entries)} files listed")
        self.load_snapshot()

    @work(exclusive=True, group="conntest", exit_on_error=False)
    async def run_connection_test(self) -> None:
        self.connection.testing = True
        self._forward(ConnectionChanged())
        try:
            result = await connect_and_test(
                ConnectOptions.from_profile(self.profile),
                self.profile.remote_dir,
                host_key_policy=self.confirm_host_key,
                passphrase_cb=self.ask_passphrase,
            )
        finally:
            self.connection.testing = False
        self.connection.test = result
        self.connection.tested_at = clock.now()
        self.set_connection(ConnectionState.CONNECTED if result.ok else ConnectionState.FAILED,
                            result.message)
        self.notify(
            ("Connection test: " + ("passed" if result.write_test == "ok" else result.write_test)) if result.ok
            # its steps were skipped: what failed is the connection itself
            else f"Connection test failed: {result.message}",
            severity="information" if result.ok else "error",
        )
        self.load_snapshot()

    # -- intents of the screens -------------------------------------------------------------
    def queue_downloads(self, names: Iterable[str]) -> int:
        """Put files on the download queue; returns how many were added. A purged file (its
        local copy deleted by the retention policy) is never queued. Onto a paused queue the
        user is told so and offered to resume."""
        purged = {r.name for r in self.snapshot.rows if r.state == LocalState.PURGED}
        added = self.board.queue([n for n in names if n not in purged],
                                 {r.name: r.size for r in self.snapshot.rows})
        if added:
            self._pending.extend(added)
            self._post_queue_changed()
            if not self._download_running():
                self.run_downloads()
            if self.board.paused:
                self._offer_resume(len(added))
        return len(added)

    def _offer_resume(self, added: int) -> None:
        files = f"{added} file{'s' if added != 1 else ''}"

        def answered(resume: bool | None) -> None:
            if resume:
                self._set_paused(False)
                self.notify("Downloads resumed.")
            else:
                self.notify(f"{files} wait in the paused queue: p on the Queue screen (3) resumes it.",
                            severity="warning")

        self._ask(ConfirmModal(
            "Downloads are paused",
            f"{files} {'were' if added != 1 else 'was'} added to the queue, but downloads are "
            "paused: nothing starts until they are resumed.",
            yes="Resume now", no="Keep paused", safe_is_yes=True,
        ), answered)

    def cancel_one(self, name: str) -> bool:
        """Cancel one file of the queue (its part file is kept); False when it had ended."""
        job = self.board.jobs.get(name)
        if job is None or not job.state.active:
            return False
        if name in self._pending:
            self._pending.remove(name)
            self.board.cancel(name)
        else:
            control = self._transfer_control
            if control is None or job.job_id is None:
                self.notify("This file is already being transferred; x cancels the whole batch.",
                            severity="warning")
                return False
            control.cancel(job.job_id)
        self._post_queue_changed()
        return True

    def verify_local_reports(self, *, progress: Callable[[int, int, str], None] | None = None,
                             cancelled: Callable[[], bool] | None = None) -> list[VerifyOutcome]:
        """Verify every local report, recording new results in the ledger (blocking: call it
        from a thread worker). Post :class:`ReportsVerified` when new results were recorded.

        The reader limits are the profile's as the config file says now: the unreadable
        message tells the user to raise them there and verify again, with the app running."""
        self.apply_current_reader_limits()
        return verify_local_reports(self.profile, self.ledger, progress=progress, cancelled=cancelled)

    def apply_current_reader_limits(self) -> None:
        """Read the config file again and give the workbook readers the profile's limits as it
        says now (blocking: call it from a thread worker). A config that no longer loads keeps
        the limits in use, and a toast says why; reads running meanwhile (a download's
        verification, an export) end under the limits they started with."""
        held = self.profile
        # The demo's profile is built in code (its source only names it "demo"): no file to read
        if held.source is None or self.demo:
            return
        try:
            fresh = load_config(held.source).profile(held.name)
        except ConfigError as exc:
            log.warning("the config could not be read again: %s", exc)
            # notify is thread-safe (it posts a message), and never waits on a closing app
            self.notify(f"{exc}. Until it is fixed the reader limits stay {_limits_text(held)}.",
                        title="The config was not read again", severity="warning", timeout=15)
            return
        if isolation.reader_limits([fresh]) == isolation.reader_limits([held]):
            return
        self.profile = replace(held, reader_memory_mib=fresh.reader_memory_mib,
                               reader_seconds=fresh.reader_seconds)
        isolation.use_reader_limits([self.profile], let_jobs_finish=True)
        log.info("reader limits changed in the config: %s", _limits_text(self.profile))
        self.notify(f"Reader limits from the config: {_limits_text(self.profile)}.")

    def export_report_names(self) -> list[str]:
        """The reports an export can name (blocking: it reads the ledger)."""
        return report_names(self.profile, self.ledger)

    async def export_reports(self, request: ExportRequest, *, progress: Callable[[int, int, str], None],
                             cancelled: Callable[[], bool]) -> ExportResult:
        """Run ``request`` in a thread (the workbooks are read in the isolated workers) and
        record it in the ledger. Raises ``ExportError`` (one line) when nothing was written."""
        # polars (a quarter of a second) loads when the user exports, not at start-up.
        from tui.core.export import run_export  # noqa: PLC0415 - see above

        return await asyncio.to_thread(run_export, self.profile, self.ledger, request,
                                       progress=progress, cancelled=cancelled)

    def on_reports_verified(self, message: ReportsVerified) -> None:
        """The Verify screen recorded new results: health and the Remote screen follow."""
        self.load_snapshot()

    # -- workers: downloads -----------------------------------------------------------------
    def _download_running(self) -> bool:
        return any(w.group == "download" and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
                   for w in self.workers)

    def _on_transfer_event(self, event: SyncEvent) -> None:
        """Called for every transfer event (on the app's loop): cheap, then one redraw."""
        match event:
            case Verified(name=name, result=result):
                self.board.set_verification(name, result.status)
                self._files_landed()
            case Listed():
                return
            case Recorded():
                # The snapshot follows the ledger: a Done may come before its record is written.
                self._files_landed()
                return
            case TransferEvent():
                job = self.board.apply(event)
                if job is not None and isinstance(event, Failed):
                    log.info("download failed: %s", escape_name(job.name))
        self._post_queue_changed()

    def _post_queue_changed(self) -> None:
        if not self._queue_posted:
            self._queue_posted = True
            self.call_later(self._deliver_queue_changed)

    def _deliver_queue_changed(self) -> None:
        self._queue_posted = False
        self._forward(QueueChanged())

    @work(group="download", exit_on_error=False)
    async def run_downloads(self) -> None:
        """Download every pending file, batch after batch, through the sync service."""
        service = self.service
        while self._pending:
            await self._unpaused.wait()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            try:
                if service.last_listing is None:
                    await service.list_remote()
                result = await service.download(batch, on_event=self._on_transfer_event,
                                                on_queue=self._set_transfer_control)
            except SftpError as exc:
                self.board.fail_pending(str(exc))
                self.set_connection(ConnectionState.FAILED, str(exc))
                self.notify(str(exc), title="Download stopped", severity="error", timeout=10)
                self._post_queue_changed()
                continue
            except asyncio.CancelledError:
                self.board.cancel_pending()
                self._post_queue_changed()
                raise
            finally:
                self._transfer_control = None
            self._after_batch(result, batch)
        if self.board.paused and not self.board.active:
            self._set_paused(False)  # nothing left to hold: a later batch starts at once
        self._end_live_refresh()
        self.load_snapshot()

    def _set_transfer_control(self, queue: TransferQueue) -> None:
        self._transfer_control = queue
        if self.board.paused:
            queue.pause()

    def _after_batch(self, result: SyncResult, batch: list[str]) -> None:
        self.board.record_batch(result)
        again = {a.name: a for a in result.again}
        for name, fetched in again.items():
            self.board.set_reason(name, again_text(fetched))
        # A newly verified report with no data on an open day is worth a toast of its own:
        # that day's loans are anonymized within days.
        toasts.empty_reports(self, empty_reports(result.files))
        if result.error:
            self.set_connection(ConnectionState.FAILED, result.error)
        if self.connection.state != ConnectionState.FAILED:
            self.set_connection(ConnectionState.CONNECTED, self.connection.message)
        self._post_queue_changed()
        self._end_live_refresh()
        self.load_snapshot()
        text, severity = batch_text(self.board, batch, result)
        self.notify(text, severity=severity, markup=False, timeout=8 if severity == "information" else 12)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """A toast, always as plain text: toasts repeat file names and what a server said
        (its error replies), where square brackets are words, not markup, and a stray
        closing tag would stop the app. Screens' ``notify`` comes here too."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def on_notify(self, event: Notify) -> None:
        """Before Textual shows a new toast: take away those it replaces or crowds out
        (``tui.widgets.toasts``)."""
        new = event.notification
        for old in toasts.crowded(list(self._notifications), new.message, new.title):
            self._unnotify(old, refresh=False)

    # -- actions ----------------------------------------------------------------------------
    def action_switch_mode(self, mode: str) -> None:  # type: ignore[override]  # sync: modes are mounted
        self.switch_mode(mode)

    def action_export(self) -> None:
        """The export form (over any screen), then a toast with the path and the coverage."""
        open_export(self, self.profile.name, self.profile.timezone)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_refresh(self) -> None:
        self.refresh_listing()

    def action_dismiss_toasts(self) -> None:
        self.clear_notifications()

    def action_test_connection(self) -> None:
        if self.connection.testing:
            self.notify("The connection test is already running.")
            return
        self.run_connection_test()

    def unlisted_text(self) -> str | None:
        """Why nothing is known to download when the latest listing failed (None: it worked):
        "every file is held here" would be a guess about a server nobody could see."""
        if not self.connection.listing_error:
            return None
        return ("The server could not be listed, so nothing new is known to download (Health, 1, "
                "says why); r lists it again.")

    def action_download_all_new(self) -> None:
        names = [r.name for r in self.snapshot.rows if r.state in _NOT_HELD]
        if not names:
            unlisted = self.unlisted_text()
            self.notify(unlisted or "Nothing to download: every file on the server is held here.",
                        severity="warning" if unlisted else "information")
            return
        added = self.queue_downloads(names)
        if not self.board.paused:  # else the question about resuming says it
            self.notify(f"{plural(added, 'file')} queued.")

    def action_retry_failed(self) -> None:
        names = self.board.names_in(JobState.FAILED, JobState.CANCELLED)
        if not names:
            self.notify("No failed downloads to retry.")
            return
        self.queue_downloads(names)
        if not self.board.paused:  # else the question about resuming says it
            self.notify(f"{plural(len(names), 'file')} queued again.")

    def action_toggle_pause(self) -> None:
        if not self.board.paused and not self.board.active:
            self.notify("Nothing to pause: no download is queued or running.")
            return
        self._set_paused(not self.board.paused)
        self.notify("Downloads paused: p resumes them." if self.board.paused else "Downloads resumed.")

    def _set_paused(self, paused: bool) -> None:
        self.board.set_paused(paused)
        if paused:
            self._unpaused.clear()
        else:
            self._unpaused.set()
        control = self._transfer_control
        if control is not None:
            if paused:
                control.pause()
            else:
                control.resume()
        self._update_subtitle()
        self._post_queue_changed()

    def action_cancel_all(self) -> None:
        """Cancel every queued and running download, after asking (part files are kept)."""
        if not self.board.active and not self._pending:
            self.notify("Nothing to cancel: no download is queued or running.")
            return

        def answered(cancel: bool | None) -> None:
            if cancel:
                self._cancel_all()

        def body() -> str:
            return (f"{self._left_text()} still to come. What has arrived is kept in part files: "
                    "f on the Queue screen (or d on Remote) resumes them later.")

        self._ask(ConfirmModal("Cancel every download?", body(), yes="Cancel downloads",
                               no="Keep downloading", body_of=body), answered)

    def action_help_quit(self) -> None:
        """ctrl+c does not quit (Textual's choice: it copies in a field): say how, in words.
        Textual's own toast has markup in it, and toasts here are plain text."""
        self.notify("Press q to quit (ctrl+q while typing in a field).", title="Do you want to quit?")

    async def action_quit(self) -> None:
        """Quit; while downloads run, only after asking (what arrived is kept and resumed)."""
        if not self.board.active:
            self.exit()
            return

        def answered(leave: bool | None) -> None:
            if leave:
                self.exit()

        def body() -> str:
            return (f"{self._left_text()} still to come. What has arrived is kept in part files; "
                    "the next start (d on Remote) or 'report-keeper sync' resumes them.")

        self._ask(ConfirmModal("Quit while downloading?", body(), yes="Quit", no="Stay", body_of=body),
                  answered)

    def _ask(self, question: ConfirmModal, answered: Callable[[bool | None], None]) -> None:
        """Ask one question at a time: a key pressed again under a question asks nothing more."""
        if isinstance(self.screen, ConfirmModal):
            return
        self.push_screen(question, callback=answered)

    def _left_text(self) -> str:
        files, size = self.board.left()
        return f"{files} file{'s' if files != 1 else ''} ({human_size(size)})"

    def _cancel_all(self) -> None:
        self._pending.clear()
        control = self._transfer_control
        if control is not None:
            control.cancel_all()
        else:  # no handle on the transfer queue: stop the batch (part files are kept)
            for worker in self.workers:
                if worker.group == "download":
                    worker.cancel()
        self.board.cancel_pending()
        self._set_paused(False)
        if control is None:  # else the batch's own toast says what was cancelled
            self.notify("Downloads cancelled; what arrived is kept in part files.")

    # -- failures ---------------------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place unexpected worker failures end up: logged, shown, never a crash."""
        worker = event.worker
        if event.state != WorkerState.ERROR:
            return
        error = worker.error
        log.error("worker %s failed", worker.name, exc_info=error)
        what = _WORKER_WHAT.get(worker.group, "A background task")
        # Errors written for people (they hold no cell values) are shown as they are.
        text = str(error) if isinstance(error, (SftpError, LedgerError)) else (
            f"{type(error).__name__}; details are in the log file"
        )
        if worker.group in ("listing", "conntest"):
            self.set_connection(ConnectionState.FAILED, text)
        if worker.group == "download":
            self.board.fail_pending(text)
            self._post_queue_changed()
        self.notify(f"{what} failed: {text}", severity="error", timeout=10)


def _limits_text(profile: Profile) -> str:
    return f"{profile.reader_memory_mib} MiB and {profile.reader_seconds:g} s per workbook"


def default_service_factory(app: ReportKeeperApp) -> SyncService:
    """The sync service of the app's profile and ledger, with the app's modals as host-key
    and passphrase callbacks."""
    return SyncService(
        app.profile,
        app.ledger,
        host_key_policy=app.confirm_host_key,
        passphrase_cb=app.ask_passphrase,
    )


def create_app(
    profile: Profile,
    *,
    ledger: Ledger | None = None,
    demo: bool = False,
    auto_connect: bool = True,
    service_factory: ServiceFactory | None = None,
    connection_test: ConnTestResult | None = None,
) -> ReportKeeperApp:
    """The app for ``profile``; the CLI and the tests both use this. ``ledger``: an open
    ledger (default: the profile's). ``auto_connect=False`` shows the ledger only until ``r``
    is pressed. ``connection_test``: one just made (by the first run), shown as the last."""
    if ledger is None:
        ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    app = ReportKeeperApp(
        profile,
        ledger,
        service_factory=service_factory,
        demo=demo,
        auto_connect=auto_connect,
    )
    if connection_test is not None:
        app.connection.test = connection_test
        app.connection.tested_at = clock.now()
    return app
