"""The first run: the app started without a config sets up a profile, as ``report-keeper init``.

:class:`FirstRunApp` shows one screen (``tui/screens/first_run.py``) and holds its state
(:class:`tui.setup_state.SetupView`). The screen posts intents (``submit_form``,
``form_edited``, ``connect_new_key``, ``folder_child``, ``folder_up``, ``folder_typed``,
``use_folder``, ``back``, ``set_keep``, ``edit_report``, ``save``, ``save_pending``,
``finish``, ``try_demo``); the work runs in async workers through
the same set-up core as ``init`` (``tui.core.setup`` for the answers, their checks, the
proposals and the atomic 0600 write; ``tui.sftp.setup`` for keys, the connection and the
folder listing; ``tui.sftp.conntest`` for the connection test), and every change ends with one
``SetupChanged`` message. Host keys and key passphrases are asked in the app's usual modals.

The app's return value (:class:`tui.setup_state.FirstRunExit`) says what comes next: the
app for the written config (``tui/commands/tui_app.py`` opens it on Health), or the demo.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import time, timedelta
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ScreenStackError, UnknownModeError
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tui.core import setup as su
from tui.core.config import ConfigError
from tui.core.model import ConnTestResult, WriteTest
from tui.core.names import escape_name
from tui.messages import SetupChanged
from tui.screens.first_run import FirstRunScreen
from tui.screens.help import HelpScreen
from tui.screens.modals import HostKeyChangedModal, SshQuestionsApp
from tui.setup_state import (
    FirstRunEnd,
    FirstRunExit,
    FolderShown,
    FormAnswers,
    KeyChoice,
    KeyKind,
    PublicKeyShown,
    SetupDefaults,
    SetupStep,
    SetupView,
)
from tui.sftp import setup as ss
from tui.sftp.client import SftpConnection
from tui.sftp.conntest import probe_connection
from tui.sftp.errors import AuthFailed, HostKeyChanged, SftpError

log = logging.getLogger("report_keeper.setup_app")

#: The one mode of the app (its name titles the screen's section of the help).
MODE = "First run"


def setup_defaults(config_path: Path, profile: str, ssh_dir: Path = ss.SSH_DIR,
                   agent: int = 0) -> SetupDefaults:
    """What the form offers: ~/.ssh's key pairs, the agent (``agent`` keys), a new pair."""
    # The fingerprint's start tells keys apart; the whole of it does not fit 80 columns.
    keys = [KeyChoice(KeyKind.FILE, f"{ss.home_relative(k.path)} · {k.algorithm} · {k.fingerprint[:23]}…",
                      k.path) for k in ss.local_keys(ssh_dir)]
    if agent:
        keys.append(KeyChoice(KeyKind.AGENT, f"ssh-agent ({agent} key{'s' if agent != 1 else ''})"))
    keys.append(KeyChoice(KeyKind.NEW, "a new key pair for report-keeper (ed25519)"))
    return SetupDefaults(
        config_path=config_path,
        config_shown=ss.home_relative(config_path),
        profile=profile,
        aliases=tuple(su.ssh_config_hosts(ssh_dir / "config")),
        keys=tuple(keys),
        username=su.default_username(),
        local_dir=ss.home_relative(su.default_local_dir(profile)),
        timezone=su.default_zone(),
    )


class FirstRunApp(SshQuestionsApp[FirstRunExit | None]):
    """Report Keeper's first run: set up a profile, then open it (or try the demo)."""

    TITLE = "Report Keeper"
    SUB_TITLE = "first run"
    MODES: ClassVar[dict[str, str | Callable[[], Screen]]] = {MODE: FirstRunScreen}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1,question_mark", "help", "Help", key_display="F1/?", id="help"),
        Binding("ctrl+q", "quit", "Quit", priority=True, id="quit"),
    ]

    def __init__(self, config_path: Path, profile: str, *, ssh_dir: Path = ss.SSH_DIR,
                 agent_keys: int | None = None, connect_timeout: float = 15,
                 ansi_color: bool = False) -> None:
        """``agent_keys``: how many keys ssh-agent holds (None: ask it when the app starts)."""
        super().__init__(ansi_color=ansi_color)
        self.config_path = config_path.expanduser()
        self.profile_name = profile
        self.ssh_dir = ssh_dir
        self.connect_timeout = connect_timeout
        self._agent_keys = agent_keys
        self.view = SetupView(setup_defaults(self.config_path, profile, ssh_dir, agent_keys or 0))
        self._answers: su.Answers | None = None
        self._zone_key = ""
        self._new_key: ss.NewKey | None = None
        self._conn: SftpConnection | None = None
        self._home = "."  # the login folder, absolute
        self._folder: ss.FolderView | None = None  # the folder the picker shows
        self._pending_note = ""  # why the last connection failed, as the config notes it
        self._key_noted = False  # that note already says the server must be given the new key
        self.tried: FormAnswers | None = None  # the form as last sent

    @property
    def config_shown(self) -> str:
        """The config file being set up, as the help names it."""
        d = self.view.defaults
        return f"config {escape_name(d.config_shown)} (new) · profile '{escape_name(d.profile)}'"

    # -- lifecycle --------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.switch_mode(MODE)
        if self._agent_keys is None:
            self.look_for_agent()

    async def on_unmount(self) -> None:
        for worker in list(self.workers):
            worker.cancel()
        await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def _changed(self) -> None:
        self.view.version += 1
        try:
            screen = self.screen
        except (ScreenStackError, UnknownModeError):  # starting or closing: nothing shown
            return
        if isinstance(screen, FirstRunScreen):
            screen.post_message(SetupChanged())
        for under in self.screen_stack[:-1]:  # a modal on top: the screen below follows too
            if isinstance(under, FirstRunScreen):
                under.post_message(SetupChanged())

    def _busy(self, what: str) -> None:
        self.view.busy = what
        self.view.error = ""
        self._changed()

    # -- intents of the screen --------------------------------------------------------------
    def submit_form(self, form: FormAnswers) -> None:
        """Check the form; when it is usable, make a new key pair if asked, then connect."""
        view = self.view
        if view.busy:
            return
        self.tried = form
        answers, errors = su.answers_from_form(
            self.profile_name, host=form.host, port=form.port, username=form.username,
            local_dir=form.local_dir, timezone=form.timezone, remote_dir=form.remote_dir)
        view.field_errors = errors
        view.error = "Some answers need a fix (shown under each)." if errors else ""
        view.can_save_pending = False
        if errors:
            self._changed()
            return
        answers.written_by = "the app's first run"
        if form.key.kind is KeyKind.FILE:
            answers.key = form.key.path
        self._answers = answers
        self._zone_key = answers.timezone or "UTC"
        if form.key.kind is KeyKind.NEW:
            if self._new_key is None:
                self.make_key()
                return
            answers.key = self._new_key.path
            view.step = SetupStep.NEW_KEY
            view.can_save_pending = True
            self._changed()
            return
        self.connect()

    def form_edited(self, form: FormAnswers) -> None:
        """The form no longer says what was tried: "save for later" would write what was not
        tried with a note about what was, so it waits for the next try."""
        if form != self.tried and self.view.can_save_pending and self.view.step is SetupStep.FORM:
            self.view.can_save_pending = False
            self._changed()

    def connect_new_key(self) -> None:
        """The new key's line was shown: connect with it."""
        if self._answers is not None and not self.view.busy:
            self.connect()

    def open_folder(self, path: str) -> None:
        if self._conn is not None and not self.view.busy:
            self.list_folder(path)

    def folder_up(self) -> None:
        folder = self.view.folder
        if folder is not None and not folder.top:
            self.open_folder(su.parent_folder(folder.path))

    def folder_child(self, name: str) -> None:
        folder = self.view.folder
        if folder is not None:
            self.open_folder(su.child_folder(folder.path, name))

    def folder_typed(self, typed: str) -> None:
        """A path typed in the picker (absolute, or under the folder shown)."""
        folder = self.view.folder
        if folder is None:
            return
        try:
            path = su.typed_folder(folder.path, typed)
        except ValueError as exc:
            self.view.error = str(exc)
            self._changed()
            return
        self.open_folder(path)

    def use_folder(self) -> None:
        """The folder shown is the one Alma delivers to: propose its reports."""
        if self._conn is not None and self.view.folder is not None and not self.view.busy:
            self.propose(self.view.folder.path)

    def back(self) -> None:
        """One step back (reports -> folder picker -> form)."""
        view = self.view
        if view.busy:
            return
        if view.step is SetupStep.REPORTS:
            view.step = SetupStep.FOLDER
        elif view.step in (SetupStep.FOLDER, SetupStep.NEW_KEY):
            view.step = SetupStep.FORM
            self.close_connection()
        else:
            return
        view.error = ""
        self._changed()

    def set_keep(self, index: int, keep: bool) -> None:
        proposals = self.view.proposals
        if 0 <= index < len(proposals):
            proposals[index].keep = keep
            self._changed()

    def edit_report(self, index: int, schedule: str, at: time, grace: timedelta) -> None:
        """A report's schedule as edited (checked by the screen's form with the same checks
        as ``init``: ``check_schedule``, ``parse_at``, ``parse_duration``)."""
        proposals = self.view.proposals
        if 0 <= index < len(proposals):
            proposal = proposals[index]
            proposal.schedule, proposal.at, proposal.grace, proposal.keep = schedule, at, grace, True
            self._changed()

    def save(self) -> None:
        """Run the connection test, then write the config."""
        if self._answers is not None and self.view.step is SetupStep.REPORTS and not self.view.busy:
            self.test_and_write()

    def save_pending(self) -> None:
        """The connection failed: write the config anyway, with what is pending noted in it."""
        if self._answers is not None and self.view.can_save_pending and not self.view.busy:
            self.write_pending()

    def finish(self) -> None:
        if self.view.step is SetupStep.DONE:
            self.exit(FirstRunExit(FirstRunEnd.OPEN, test=self.view.test))

    def try_demo(self) -> None:
        self.exit(FirstRunExit(FirstRunEnd.DEMO))

    # -- workers ----------------------------------------------------------------------------
    @work(exclusive=True, group="agent", exit_on_error=False)
    async def look_for_agent(self) -> None:
        count = len(await ss.agent_keys())
        if count:
            # Reading ~/.ssh and its keys blocks: in a thread, never on the screen's loop.
            self.view.defaults = await asyncio.to_thread(
                setup_defaults, self.config_path, self.profile_name, self.ssh_dir, count)
            self._changed()

    @work(exclusive=True, group="setup", exit_on_error=False)
    async def make_key(self) -> None:
        self._busy("Making a new ed25519 key pair…")
        try:
            new = await asyncio.to_thread(ss.create_key, self.ssh_dir)
        except OSError as exc:
            self.view.busy = ""
            self.view.error = f"The key pair could not be written: {exc.strerror or exc}."
            self._changed()
            return
        self._new_key = new
        if self._answers is not None:
            self._answers.key = new.path
        self.view.new_key = PublicKeyShown(ss.home_relative(new.path), new.public_line, new.fingerprint)
        # Finishing later, as init's "later": the config notes what the administrator must do.
        self._pending_note = ss.later_note(new)
        self._key_noted = True
        self.view.can_save_pending = True
        self.view.busy = ""
        self.view.step = SetupStep.NEW_KEY
        self._changed()

    @work(exclusive=True, group="setup", exit_on_error=False)
    async def connect(self) -> None:
        answers = self._answers
        assert answers is not None
        await self._close()
        port = f" port {answers.port}" if answers.port else ""
        self._busy(f"Connecting to {answers.host}{port}…")
        opened = await ss.open_connection(
            answers, new_key=self._new_key if self._uses_new_key() else None,
            host_key_policy=self.confirm_host_key, passphrase_cb=self.ask_passphrase,
            options=ss.connect_options(answers, connect_timeout=self.connect_timeout))
        view = self.view
        view.busy = ""
        if opened.conn is None:
            log.info("first run: the connection failed (%s)", opened.error.kind if opened.error else "?")
            view.step = SetupStep.FORM
            view.error = str(opened.error) if opened.error is not None else (opened.note or "")
            if isinstance(opened.error, AuthFailed) and self._uses_new_key():
                # What to do is the note's: the administrator has not added the new key yet.
                note = opened.note or ""
                view.error = f"{opened.error.what} {note[:1].upper()}{note[1:]}."
            self._pending_note = opened.note or view.error
            self._key_noted = isinstance(opened.error, AuthFailed) and self._uses_new_key()
            view.can_save_pending = True
            self._changed()
            if isinstance(opened.error, HostKeyChanged):
                self.push_screen(HostKeyChangedModal(opened.error))
            return
        self._conn = opened.conn
        try:
            home = await ss.folder_view(opened.conn, ".")
        except SftpError as exc:
            await self._close()
            view.step = SetupStep.FORM
            view.error = f"Connected, but the login folder could not be listed: {exc}"
            self._pending_note = view.error
            view.can_save_pending = True
            self._changed()
            return
        self._home = home.path
        start, problem = home, ""
        if answers.remote_dir != ".":  # the folder typed on the form: the picker starts there
            try:
                start = await ss.folder_view(opened.conn, answers.remote_dir)
            except SftpError as exc:
                problem = f"{exc} The login folder is shown instead."
        self._show_folder(start)
        if problem:
            view.error = problem
            self._changed()

    def _uses_new_key(self) -> bool:
        return (self._new_key is not None and self._answers is not None
                and self._answers.key == self._new_key.path)

    def _show_folder(self, folder: ss.FolderView) -> None:
        view = self.view
        view.folder = FolderShown(folder.path, tuple(folder.folders), len(folder.files), len(folder.reports),
                                  folder.refused, folder.path == "/")
        view.step = SetupStep.FOLDER
        view.busy = ""
        view.error = ""
        self._folder = folder
        self._changed()

    @work(exclusive=True, group="setup", exit_on_error=False)
    async def list_folder(self, path: str) -> None:
        conn = self._conn
        assert conn is not None
        self._busy(f"Listing {escape_name(path)}…")
        try:
            folder = await ss.folder_view(conn, path)
        except SftpError as exc:
            self.view.busy = ""
            self.view.error = str(exc)
            self._changed()
            return
        self._show_folder(folder)

    @work(exclusive=True, group="setup", exit_on_error=False)
    async def propose(self, path: str) -> None:
        answers = self._answers
        assert answers is not None
        folder = self._folder
        assert folder is not None
        answers.remote_dir = su.remote_dir_answer(self._home, path)
        self._busy("Looking at the reports' delivery history…")
        zone = su.check_zone(self._zone_key)
        self.view.proposals = await asyncio.to_thread(su.propose_reports, folder.files, zone)
        self.view.remote_dir = answers.remote_dir
        self.view.busy = ""
        self.view.step = SetupStep.REPORTS
        self._changed()

    @work(exclusive=True, group="setup", exit_on_error=False)
    async def test_and_write(self) -> None:
        answers = self._answers
        conn = self._conn
        assert answers is not None
        answers.reports = list(self.view.proposals)
        answers.pending = []
        if conn is None or conn.closed:
            result = ConnTestResult(False, "the connection was lost; run 'report-keeper check'", WriteTest.SKIPPED)
        else:
            self._busy("Connection test: uploading, downloading and deleting a probe file…")
            result = await probe_connection(conn, answers.remote_dir)
        self.view.test = result
        note = su.connection_test_note(result)
        if note is not None:
            answers.pending.append(note)
        await self._write(answers)

    @work(exclusive=True, group="setup", exit_on_error=False)
    async def write_pending(self) -> None:
        answers = self._answers
        assert answers is not None
        answers.reports = []
        answers.pending = [self._pending_note] if self._pending_note else []
        if self._new_key is not None and self._uses_new_key() and not self._key_noted:
            # the server was never reached with it (unreachable, host key not confirmed)
            answers.pending.append(ss.later_note(self._new_key))
        if self.tried is not None and not self.tried.remote_dir.strip():
            # the form promised a pick from the server's folders, which never came
            answers.pending.append(su.FOLDER_NOT_CHOSEN)
        await self._write(answers)

    async def _write(self, answers: su.Answers) -> None:
        self._busy(f"Writing {ss.home_relative(self.config_path)}…")
        try:
            saved = await asyncio.to_thread(su.save_config, self.config_path, answers)
        except su.ConfigExists:
            self.view.busy = ""
            self.view.error = (f"{ss.home_relative(self.config_path)} appeared meanwhile; nothing was "
                               "written (quit and start again to use it)")
            self._changed()
            return
        except OSError as exc:
            self.view.busy = ""
            self.view.error = f"Could not write {self.config_path}: {exc.strerror or exc}"
            self._changed()
            return
        except ConfigError as exc:  # what would be written does not load: nothing was written
            self.view.busy = ""
            self.view.error = f"Nothing was written: {exc}"
            self._changed()
            return
        log.info("first run wrote profile %s", answers.profile)
        await self._close()
        view = self.view
        view.written = ss.home_relative(saved.path)
        view.pending = tuple(answers.pending)
        view.next_steps = tuple(su.next_steps(saved.path, answers.profile, bool(answers.pending)))
        view.busy = ""
        view.error = ""
        view.step = SetupStep.DONE
        self._changed()

    @work(group="setup", exit_on_error=False)
    async def close_connection(self) -> None:
        await self._close()

    # -- actions ----------------------------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    # -- failures ---------------------------------------------------------------------------
    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """An unexpected failure: logged with its traceback, shown as one sentence."""
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        log.error("first-run worker %s failed", event.worker.name, exc_info=error)
        text = str(error) if isinstance(error, SftpError) else f"{type(error).__name__}; details are in the log file"
        self.view.busy = ""
        self.view.error = f"That did not work: {text}"
        self._changed()
