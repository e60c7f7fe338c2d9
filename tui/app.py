"""The Textual app: one factory (:func:`create_app`) used by the CLI and the tests.

Screens (as app *modes*, keys 1-5): Health, Remote, Queue, Verify, Heatmap; ``?`` help,
``ctrl+p`` command palette (every action is a command), ``q`` quit, ``r`` refresh, ``t`` test
the connection.

The app owns the data the screens render and the work that produces it:

- network work (listing, downloads, the connection test) runs in async workers and goes
  through :class:`tui.sftp.sync.SyncService` and :mod:`tui.sftp.conntest`;
- the ledger, the health evaluation (polars) and the local folder size run in thread workers
  (:meth:`ReportKeeperApp.load_snapshot`) and come back as a :class:`DataRefreshed` message;
- transfer events update a :class:`TransferBoard`; one replaceable :class:`QueueChanged`
  message follows, so a flood of progress events costs one redraw (latest wins).

Unexpected worker failures are handled in one ``on_worker_state_changed`` handler: logged
with their traceback, shown to the user as one clear sentence, never a crash.

Attributes other screens may use: ``app.profile`` (config Profile), ``app.ledger``
(tui.core.ledger.Ledger), ``app.snapshot`` (:class:`DataSnapshot`: ``.health`` is the latest
``tui.core.health.HealthReport``), ``app.board`` (the transfer board), ``app.connection``.
Screens that define ``on_data_refreshed(message)`` receive every new snapshot while shown
and should read ``app.snapshot`` in ``on_screen_resume``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.worker import Worker, WorkerState

from tui.core import clock
from tui.core import status as st
from tui.core.names import escape_name
from tui.widgets.messages import (
    ConnectionChanged,
    ConnectionInfo,
    DataRefreshed,
    DataSnapshot,
    QueueChanged,
    RemoteRow,
)
from tui.widgets.transfers import ACTIVE, FAILED, TransferBoard
from tui.screens.verify import zero_row_toast

log = logging.getLogger("report_keeper.app")



# ---------------------------------------------------------------------------------------------
# The data snapshot (built in a thread)


def _folder_size(folder: Path) -> tuple[int, int]:
    """(bytes, files) of the downloaded reports under ``folder`` (hidden part files excluded)."""
    total = count = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0, 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and not entry.name.startswith("."):
                total += entry.stat(follow_symlinks=False).st_size
                count += 1
            elif entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                sub = _folder_size(Path(entry.path))
                total += sub[0]
                count += sub[1]
        except OSError:
            continue
    return total, count


def build_snapshot(profile: Any, ledger: Any, *, connection: Any = None, version: int = 0,
                   partial: frozenset[str] = frozenset()) -> DataSnapshot:
    """Read the ledger, evaluate health, size the local folder. Runs in a thread worker.

    ``partial``: names the latest listing found a part file for (shown as partial while the
    ledger still calls them new)."""
    now = clock.now()
    tz = profile.timezone
    today = now.astimezone(tz).date()
    deliveries = ledger.deliveries()
    rows = []
    for d in deliveries:
        if not d.on_server:
            continue
        cfg = profile.report_for(d.report)
        delete_on = None
        days_left = None
        if d.delivered_at is not None:
            delete_on = d.delivered_at.astimezone(tz).date() + timedelta(days=cfg.retention_days)
            days_left = (delete_on - today).days
        state = d.extra.get("local_state", "downloaded" if d.downloaded else "new")
        if state == "new" and d.name in partial:
            state = "partial"
        rows.append(
            RemoteRow(
                name=d.name,
                report=d.report,
                delivered_at=d.delivered_at,
                size=d.size,
                delete_on=delete_on,
                days_left=days_left,
                state=state,
                verification=d.verification,
                message=d.message,
                local_path=d.local_path,
                age_seconds=(now - d.delivered_at).total_seconds() if d.delivered_at else 0.0,
            )
        )
    health = None
    error = ""
    try:
        from tui.core.health import evaluate

        health = evaluate(profile, deliveries, now=now, connection=connection)
    except Exception as exc:  # noqa: BLE001 - the screens show what failed; the log has why
        log.exception("health evaluation failed")
        error = f"The health evaluation failed ({type(exc).__name__}); see the log file for details."
    size, files = _folder_size(Path(profile.local_dir))
    try:
        refused = tuple((r.name, r.reason) for r in ledger.refused())
        listed_at = ledger.last_listing()
    except Exception:  # noqa: BLE001
        log.exception("reading the ledger's listings failed")
        refused, listed_at = (), None
    return DataSnapshot(
        rows=tuple(rows),
        health=health,
        local_size=size,
        local_files=files,
        listed_at=listed_at,
        refused=refused,
        error=error,
        version=version,
    )


# ---------------------------------------------------------------------------------------------
# Command palette


class ReportKeeperCommands(Provider):
    """Every action of the app as a palette command (the current screen's first)."""

    def _commands(self) -> list[tuple[str, Callable[[], Any], str]]:
        app: ReportKeeperApp = self.app  # type: ignore[assignment]
        out: list[tuple[str, Callable[[], Any], str]] = []
        screen = app.screen
        for title, action, help_text in getattr(screen, "PALETTE_COMMANDS", ()):
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


class ReportKeeperApp(App):
    """Report Keeper's terminal UI."""

    TITLE = "Report Keeper"
    CSS = """
    Screen { layout: vertical; }
    .banner { height: auto; padding: 0 1; text-style: bold; }
    .banner.ok { background: $success 30%; }
    .banner.warning { background: $warning 30%; }
    .banner.critical { background: $error 40%; }
    .statusline { height: 1; padding: 0 1; color: $text-muted; }
    """
    COMMANDS = App.COMMANDS | {ReportKeeperCommands}
    BINDINGS = [
        Binding("1", "switch_mode('health')", "Health", show=False, id="screen.health"),
        Binding("2", "switch_mode('remote')", "Remote", show=False, id="screen.remote"),
        Binding("3", "switch_mode('queue')", "Queue", show=False, id="screen.queue"),
        Binding("4", "switch_mode('verify')", "Verify", show=False, id="screen.verify"),
        Binding("5", "switch_mode('heatmap')", "Heatmap", show=False, id="screen.heatmap"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("r", "refresh", "Refresh", show=False, id="refresh"),
        Binding("t", "test_connection", "Test connection", show=False, id="test"),
        Binding("q", "quit", "Quit", id="quit"),
    ]
    PALETTE_COMMANDS: tuple[tuple[str, str, str], ...] = (
        ("Go to Health", "switch_mode('health')", "1: overall status, problems, connection"),
        ("Go to Remote", "switch_mode('remote')", "2: the server folder"),
        ("Go to Queue", "switch_mode('queue')", "3: downloads in progress"),
        ("Go to Verify", "switch_mode('verify')", "4: verification of local reports"),
        ("Go to Heatmap", "switch_mode('heatmap')", "5: deliveries calendar"),
        ("Refresh", "refresh", "r: list the server again and re-evaluate"),
        ("Test connection", "test_connection", "t: upload, download and delete a probe file"),
        ("Download all new files", "download_all_new", "queue every file not yet downloaded"),
        ("Retry failed downloads", "retry_failed", "queue the failed files again"),
        ("Pause or resume downloads", "toggle_pause", "hold or continue the transfers"),
        ("Cancel all downloads", "cancel_all", "stop every queued and running transfer"),
        ("Help", "help", "?: every key binding"),
        ("Quit", "quit", "q: leave Report Keeper"),
    )

    def __init__(
        self,
        profile: Any,
        ledger: Any,
        *,
        service_factory: Callable[["ReportKeeperApp"], Any] | None = None,
        demo: bool = False,
        auto_connect: bool = True,
        ansi_color: bool = False,
    ) -> None:
        modes: dict[str, Any] = {}
        from tui.screens.health import HealthScreen
        from tui.screens.heatmap import HeatmapScreen
        from tui.screens.queue import QueueScreen
        from tui.screens.remote import RemoteScreen
        from tui.screens.verify import VerifyScreen

        modes["health"] = HealthScreen
        modes["remote"] = RemoteScreen
        modes["queue"] = QueueScreen
        modes["verify"] = VerifyScreen
        modes["heatmap"] = HeatmapScreen
        self.MODES = modes
        super().__init__(ansi_color=ansi_color)
        self.profile = profile
        self.ledger = ledger
        self.demo = demo
        self.auto_connect = auto_connect
        self.snapshot = DataSnapshot()
        self.board = TransferBoard()
        self.connection = ConnectionInfo()
        self._service_factory = service_factory or default_service_factory
        self._service: Any = None
        self._pending: list[str] = []
        self._queue_posted = False
        self._snapshot_version = 0
        self._transfer_control: Any = None  # the running TransferQueue (cancel, pause)
        self._unpaused = asyncio.Event()
        self._unpaused.set()
        self._update_subtitle()

    # -- services ---------------------------------------------------------------------------
    @property
    def service(self) -> Any:
        if self._service is None:
            self._service = self._service_factory(self)
        return self._service

    async def confirm_host_key(self, info: Any) -> str:
        """Host-key policy for the SFTP client: ask the user in a modal."""
        from tui.screens.modals import HostKeyModal

        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def done(decision: str | None) -> None:
            if not future.done():
                future.set_result(decision or "reject")

        self.push_screen(HostKeyModal(info), callback=done)
        return await future

    async def ask_passphrase(self, path: Path) -> str | None:
        """Passphrase callback for the SFTP client: ask the user in a modal."""
        from tui.screens.modals import PassphraseModal

        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

        def done(value: str | None) -> None:
            if not future.done():
                future.set_result(value)

        self.push_screen(PassphraseModal(path), callback=done)
        return await future

    # -- lifecycle --------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.switch_mode("health")
        self.load_snapshot()
        if self.auto_connect:
            self.refresh_listing()

    async def on_unmount(self) -> None:
        control = self._transfer_control
        if control is not None:
            try:
                control.cancel_all()
            except Exception:  # noqa: BLE001 - leaving anyway
                log.debug("cancelling transfers on exit failed", exc_info=True)
        for worker in list(self.workers):
            worker.cancel()
        if self._service is not None:
            try:
                await self._service.close()
            except Exception:  # noqa: BLE001 - leaving anyway
                log.debug("closing the sync service failed", exc_info=True)
        from tui.core import isolation

        isolation.shutdown()  # stops workbook readers still running, so no thread waits on one

    def _update_subtitle(self) -> None:
        glyph = {
            "idle": "○ not connected",
            "connecting": "◌ connecting…",
            "connected": "● connected",
            "failed": "✗ connection failed",
        }.get(self.connection.state, self.connection.state)
        profile = getattr(self.profile, "name", "?")
        host = getattr(self.profile, "host", "?")
        demo = " (demo)" if self.demo and profile != "demo" else ""
        self.sub_title = f"{profile}{demo} · {host} · {glyph}"

    def set_connection(self, state: str, message: str = "") -> None:
        self.connection.state = state
        self.connection.message = message
        self._update_subtitle()
        self._forward(ConnectionChanged())

    def _forward(self, message: Any) -> None:
        """Deliver a message to the screen now shown (modes keep their screens mounted)."""
        try:
            screen = self.screen
        except Exception:  # noqa: BLE001 - no screen yet (during start-up)
            return
        screen.post_message(message)
        # A modal on top: the screen below must still be current when the modal closes.
        for under in self.screen_stack[:-1]:
            if under is not screen:
                under.post_message(message)

    # -- workers: data ----------------------------------------------------------------------
    def connection_status(self) -> Any:
        """What the health evaluation is told about the connection."""
        try:
            from tui.core.health import ConnectionStatus
        except ImportError:
            return None
        if self.connection.test is not None:
            return ConnectionStatus.from_result(self.connection.test)
        if self.connection.state == "failed":
            return ConnectionStatus(ok=False, message=self.connection.message, write_test="skipped")
        if self.connection.state == "connected":
            return ConnectionStatus(ok=True, message="the folder was listed (connection test not run yet)",
                                    write_test="skipped")
        return None

    @work(thread=True, exclusive=True, group="snapshot", exit_on_error=False)
    def load_snapshot(self) -> None:
        self._snapshot_version += 1
        listing = getattr(self._service, "last_listing", None)
        partial = frozenset(
            e.name for e in getattr(listing, "entries", ()) if getattr(e, "local_state", "") == "partial"
        )
        snapshot = build_snapshot(self.profile, self.ledger, connection=self.connection_status(),
                                  version=self._snapshot_version, partial=partial)
        self.call_from_thread(self._apply_snapshot, snapshot)

    def _apply_snapshot(self, snapshot: DataSnapshot) -> None:
        # Snapshot workers are exclusive, but a cancelled thread worker still finishes: an
        # older snapshot arriving after a newer one must not replace it.
        if snapshot.version < getattr(self.snapshot, "version", 0):
            return
        self.snapshot = snapshot
        self._forward(DataRefreshed(snapshot))

    @work(exclusive=True, group="listing", exit_on_error=False)
    async def refresh_listing(self) -> None:
        """List the server folder (recorded in the ledger), then rebuild the snapshot."""
        from tui.sftp.errors import HostKeyChanged, SftpError

        self.set_connection("connecting")
        try:
            listing = await self.service.list_remote()
        except SftpError as exc:
            log.info("listing failed: %s", exc.kind)
            self.connection.listing_error = str(exc)
            self.set_connection("failed", str(exc))
            if isinstance(exc, HostKeyChanged):
                from tui.screens.modals import HostKeyChangedModal

                self.push_screen(HostKeyChangedModal(exc))
        else:
            self.connection.listing_error = ""
            count = len(getattr(listing, "entries", None) or getattr(listing, "files", None) or ())
            self.set_connection("connected", f"{count} files listed")
        self.load_snapshot()

    @work(exclusive=True, group="conntest", exit_on_error=False)
    async def run_connection_test(self) -> None:
        from tui.sftp.conntest import connect_and_test
        from tui.sftp.client import ConnectOptions

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
        if result.ok:
            self.set_connection("connected", result.message)
        else:
            self.set_connection("failed", result.message)
        self.notify(
            "Connection test: " + ("passed" if result.ok and result.write_test == "ok" else result.write_test),
            severity="information" if result.ok else "error",
        )
        self.load_snapshot()

    # -- workers: downloads -----------------------------------------------------------------
    def queue_downloads(self, names: Iterable[str]) -> int:
        """Put files on the download queue; returns how many were added."""
        sizes = {r.name: r.size for r in self.snapshot.rows}
        added = 0
        for name in names:
            job = self.board.jobs.get(name)
            if job is not None and job.state in ACTIVE:
                continue
            self.board.enqueue(name, sizes.get(name, 0))
            self._pending.append(name)
            added += 1
        if added:
            self._post_queue_changed()
            if not self._download_running():
                self.run_downloads()
        return added

    def _download_running(self) -> bool:
        return any(w.group == "download" and w.state in (WorkerState.PENDING, WorkerState.RUNNING)
                   for w in self.workers)

    def _on_transfer_event(self, event: Any) -> None:
        """Called for every transfer event (on the app's loop): cheap, then one redraw."""
        if type(event).__name__ == "Verified":
            result = getattr(event, "result", None)
            self.board.set_verification(event.name, getattr(result, "status", None))
            self._post_queue_changed()
            return
        job = self.board.apply(event)
        if job is not None and type(event).__name__ == "Failed":
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
        from tui.sftp.errors import SftpError

        service = self.service
        supports_queue_hook = "on_queue" in inspect.signature(service.download).parameters
        while self._pending:
            await self._unpaused.wait()
            batch, self._pending = self._pending, []
            if not batch:
                continue
            kwargs: dict[str, Any] = {"on_event": self._on_transfer_event}
            if supports_queue_hook:
                kwargs["on_queue"] = self._set_transfer_control
            try:
                if getattr(service, "last_listing", True) is None:
                    await service.list_remote()
                result = await service.download(batch, **kwargs)
            except SftpError as exc:
                self.board.fail_pending(str(exc))
                self.set_connection("failed", str(exc))
                self.notify(str(exc), title="Download stopped", severity="error", timeout=10)
                self._post_queue_changed()
                continue
            except asyncio.CancelledError:
                self.board.cancel_pending()
                self._post_queue_changed()
                raise
            finally:
                self._transfer_control = None
            self._after_batch(result)
        self.load_snapshot()

    def _set_transfer_control(self, queue: Any) -> None:
        self._transfer_control = queue
        if self.board.paused:
            queue.pause()

    def _after_batch(self, result: Any) -> None:
        empty = []
        for item in getattr(result, "files", ()) or ():
            name = getattr(item, "name", None)
            if name is not None:
                self.board.set_verification(name, getattr(item, "status", None))
            if getattr(item, "status", None) == st.EMPTY:
                empty.append(item)
        # A newly verified report with no data on an open day is worth a toast of its own:
        # that day's loans are anonymized within days (issue 6, zero-row warnings).
        zero_row_toast(self, empty)
        failed = getattr(result, "failed", ()) or ()
        for item in failed:
            name = item.get("name") if isinstance(item, dict) else getattr(item, "name", None)
            reason = item.get("error") if isinstance(item, dict) else getattr(item, "error", "")
            job = self.board.jobs.get(name) if name else None
            if job is not None and job.state not in (FAILED, "cancelled", "done"):
                job.state, job.reason = FAILED, str(reason or "failed")
                self.board._touch(job)
        self.board.cancel_pending()
        error = getattr(result, "error", None)
        if error:
            self.set_connection("failed", str(error))
        if self.connection.state != "failed":
            self.set_connection("connected", self.connection.message)
        self._post_queue_changed()
        self.load_snapshot()
        done = self.board.counts()
        self.notify(f"Downloads finished: {done['done']} done, {done['failed']} failed.",
                    severity="warning" if done["failed"] else "information")

    # -- actions ----------------------------------------------------------------------------
    def action_switch_mode(self, mode: str) -> None:  # type: ignore[override]
        self.switch_mode(mode)

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_refresh(self) -> None:
        self.refresh_listing()

    def action_test_connection(self) -> None:
        if self.connection.testing:
            self.notify("The connection test is already running.")
            return
        self.run_connection_test()

    def action_download_all_new(self) -> None:
        names = [r.name for r in self.snapshot.rows if r.state in ("new", "partial")]
        if not names:
            self.notify("Nothing new to download.")
            return
        added = self.queue_downloads(names)
        self.notify(f"{added} files queued for download.")

    def action_retry_failed(self) -> None:
        names = self.board.names_in(FAILED, "cancelled")
        if not names:
            self.notify("No failed downloads to retry.")
            return
        self.queue_downloads(names)
        self.notify(f"{len(names)} files queued again.")

    def action_toggle_pause(self) -> None:
        self.board.paused = not self.board.paused
        if self.board.paused:
            self._unpaused.clear()
        else:
            self._unpaused.set()
        control = self._transfer_control
        if control is not None:
            control.pause() if self.board.paused else control.resume()
        self.notify("Downloads paused." if self.board.paused else "Downloads resumed.")
        self._post_queue_changed()

    def action_cancel_all(self) -> None:
        self._pending.clear()
        control = self._transfer_control
        if control is not None:
            control.cancel_all()
        else:  # no handle on the transfer queue: stop the batch (part files are kept)
            for worker in self.workers:
                if worker.group == "download":
                    worker.cancel()
        self._unpaused.set()
        self.board.paused = False
        self.board.cancel_pending()
        self._post_queue_changed()
        self.notify("Downloads cancelled.")

    def cancel_one(self, name: str) -> bool:
        job = self.board.jobs.get(name)
        if job is None or job.state not in ACTIVE:
            return False
        if name in self._pending:
            self._pending.remove(name)
            job.state = "cancelled"
            self.board._touch(job)
        else:
            control = self._transfer_control
            if control is None or job.job_id is None:
                self.notify("This file is already being transferred; x cancels the whole batch.",
                            severity="warning")
                return False
            control.cancel(job.job_id)
        self._post_queue_changed()
        return True

    def on_empty_reports_found(self, message: Any) -> None:
        """The Verify screen found reports empty on an open day: re-evaluate health (the
        banner counts them) and the Remote screen's verification column."""
        self.load_snapshot()

    # -- failures ---------------------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place unexpected worker failures end up: logged, shown, never a crash."""
        worker = event.worker
        if event.state != WorkerState.ERROR:
            return
        error = worker.error
        log.error("worker %s failed", worker.name, exc_info=error)
        what = {
            "listing": "Listing the server",
            "download": "Downloading",
            "conntest": "The connection test",
            "snapshot": "Reading the ledger",
        }.get(worker.group, "A background task")
        text = str(error) if error is not None and _is_user_facing(error) else (
            f"{type(error).__name__}; details are in the log file"
        )
        if worker.group in ("listing", "conntest"):
            self.set_connection("failed", text)
        if worker.group == "download":
            self.board.fail_pending(text)
            self._post_queue_changed()
        self.notify(f"{what} failed: {text}", severity="error", timeout=10)


def _is_user_facing(error: BaseException) -> bool:
    """Errors whose text was written for people (and holds no cell values)."""
    try:
        from tui.sftp.errors import SftpError
        from tui.core.ledger import LedgerError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(error, (SftpError, LedgerError))


def default_service_factory(app: ReportKeeperApp) -> Any:
    """C's SyncService, with the app's modals as host-key and passphrase callbacks."""
    from tui.sftp.sync import SyncService

    return SyncService(
        app.profile,
        app.ledger,
        host_key_policy=app.confirm_host_key,
        passphrase_cb=app.ask_passphrase,
    )


def create_app(
    profile: Any,
    *,
    ledger: Any = None,
    demo: bool = False,
    auto_connect: bool = True,
    service_factory: Callable[[ReportKeeperApp], Any] | None = None,
) -> ReportKeeperApp:
    """The app for ``profile`` (a :class:`tui.core.config.Profile`); the CLI and the tests both
    use this. ``ledger``: an open :class:`tui.core.ledger.Ledger` (default: the profile's).
    ``auto_connect=False`` shows the ledger only until ``r`` is pressed."""
    if ledger is None:
        from tui.core.ledger import Ledger

        ledger = Ledger.open(profile.ledger_path, profile=profile.name)
    return ReportKeeperApp(
        profile,
        ledger,
        service_factory=service_factory,
        demo=demo,
        auto_connect=auto_connect,
    )
