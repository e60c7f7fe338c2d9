"""Modal dialogs: host-key confirmation, key passphrase, file details.

The SFTP client asks through async callbacks (``tui.sftp.client.connect(host_key_policy=...,
passphrase_cb=...)``); the app pushes these modals and waits for their result:

- :class:`HostKeyModal` dismisses with ``"once"``, ``"remember"`` or ``"reject"``;
- :class:`PassphraseModal` dismisses with the passphrase, or ``None`` when cancelled;
- :class:`HostKeyChangedModal` says loudly that a changed host key was refused.

:func:`answer_of` shows one and waits for its answer; :class:`SshQuestionsApp` is the base of
the app and the first-run app, whose SFTP client callbacks ask so.
"""

from __future__ import annotations

import asyncio
from datetime import tzinfo
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from tui.core.model import LocalState
from tui.core.names import escape_name
from tui.state import JobView, RemoteRow
from tui.widgets.css_cache import share_parsed_css
from tui.widgets.formatting import home_relative, human_size, local_time, short_day, state_cell, verify_cell
from tui.widgets.hanging import HangingText, Line

T = TypeVar("T")
R = TypeVar("R")


async def answer_of(app: App[R], modal: ModalScreen[T]) -> T | None:
    """Show ``modal`` and wait for what it dismisses with (from any task of the app's loop,
    a worker included: the SFTP client's host-key and passphrase callbacks wait this way)."""
    future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()

    def done(value: T | None) -> None:
        if not future.done():
            future.set_result(value)

    app.push_screen(modal, callback=done)
    return await future


class PresentedKey(Protocol):
    """A server host key as the SFTP client describes it (``HostKeyInfo``)."""

    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def key_type(self) -> str: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def known_hosts(self) -> Path | str | None: ...


class SshQuestionsApp(App[R]):
    """An app that answers the SFTP client's host-key policy and passphrase callback, each in
    its modal (``host_key_policy=app.confirm_host_key``, ``passphrase_cb=app.ask_passphrase``).
    Its CSS is parsed once per process (:func:`share_parsed_css`): the first-run app and the
    app after it, or one app after another in tests, parse none of it again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        share_parsed_css(self.stylesheet)

    async def confirm_host_key(self, info: PresentedKey) -> str:
        """``"once"``, ``"remember"`` or ``"reject"`` (also when the modal closes unanswered)."""
        return await answer_of(self, HostKeyModal(info)) or "reject"

    async def ask_passphrase(self, path: Path) -> str | None:
        """The key's passphrase, or None when the user cancels."""
        return await answer_of(self, PassphraseModal(path))


class ChangedKey(PresentedKey, Protocol):
    """A host key that differs from known_hosts (the SFTP client's ``HostKeyChanged``)."""

    @property
    def expected(self) -> tuple[str, ...]: ...

_MODAL_CSS = """
{cls} {{ align: center middle; }}
{cls} > Vertical {{
    width: 76; max-width: 100%; height: auto; max-height: 100%;
    border: thick $accent; background: $surface; padding: 0 1;
}}
{cls} .title {{ text-style: bold; height: auto; margin-bottom: 1; }}
{cls} .body {{ height: auto; }}
{cls} Horizontal {{ height: auto; margin-top: 1; }}
{cls} Button {{ margin-right: 1; min-width: 10; }}
"""


def _the_server(host: str, port: int | None) -> Text:
    """``The server HOST`` (escaped, bold), with its port when not SSH's own."""
    text = Text("The server ")
    text.append(escape_name(host), style="bold")
    if port and port != 22:
        text.append(f" port {port}")
    return text


class HostKeyModal(ModalScreen[str]):
    """An unknown host key: accept once, accept and remember, or reject."""

    DEFAULT_CSS = _MODAL_CSS.format(cls="HostKeyModal")
    BINDINGS = [
        Binding("o", "decide('once')", "Accept once"),
        Binding("m", "decide('remember')", "Accept & remember"),
        Binding("escape,n", "decide('reject')", "Reject"),
    ]

    def __init__(self, info: PresentedKey) -> None:
        super().__init__()
        self.info = info

    def compose(self) -> ComposeResult:
        info = self.info
        body = _the_server(info.host, info.port)
        body.append(" presented a host key that is not in known_hosts yet:\n\n")
        body.append(f"  {info.key_type}\n", style="bold")
        body.append(f"  {info.fingerprint}\n\n", style="bold yellow")
        body.append(
            "Compare this SHA256 fingerprint with the one the server's administrator gave you. "
            "Accept only if they match."
        )
        known = info.known_hosts
        if known:
            body.append(f"\n'Remember' adds it to {home_relative(known)}.", style="dim")
        with Vertical():
            yield Static("Unknown host key", classes="title")
            yield Static(body, classes="body")
            with Horizontal():
                yield Button(Text("Accept once (o)"), id="once", variant="warning")
                yield Button(Text("Accept & remember (m)"), id="remember", variant="primary")
                yield Button(Text("Reject (n)"), id="reject", variant="error")

    def on_mount(self) -> None:
        self.query_one("#reject", Button).focus()  # the safe default

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "reject")

    def action_decide(self, decision: str) -> None:
        self.dismiss(decision)


class HostKeyChangedModal(ModalScreen[None]):
    """A host key that differs from known_hosts: refused, and said loudly (nothing to choose)."""

    DEFAULT_CSS = _MODAL_CSS.format(cls="HostKeyChangedModal") + """
    HostKeyChangedModal > Vertical { border: thick $error; }
    HostKeyChangedModal .title { color: $error; }
    """
    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, error: ChangedKey) -> None:
        super().__init__()
        self.error = error

    def compose(self) -> ComposeResult:
        err = self.error
        known = home_relative(err.known_hosts) if err.known_hosts else "known_hosts"
        body = _the_server(err.host, err.port)
        body.append(" now presents this host key:\n\n")
        body.append(f"  {err.key_type} {err.fingerprint}\n\n", style="bold red")
        expected = err.expected
        if expected:
            body.append(f"but {known} records:\n")
            for fp in expected:
                body.append(f"  {fp}\n", style="bold")
            body.append("\n")
        body.append(
            "Someone may be intercepting the connection, so it was refused: nothing was sent or "
            "downloaded. Ask the server's administrator whether the key was replaced on purpose; "
            f"only then remove the old entry for this server from {known} and refresh (r)."
        )
        with Vertical():
            yield Static("Host key CHANGED: connection refused", classes="title")
            yield Static(body, classes="body")
            with Horizontal():
                yield Button(Text("Close (esc)"), id="close", variant="error")

    def on_mount(self) -> None:
        self.query_one("#close", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)


class PassphraseModal(ModalScreen["str | None"]):
    """The passphrase of an encrypted key file (never logged, never stored)."""

    DEFAULT_CSS = _MODAL_CSS.format(cls="PassphraseModal")
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("Key passphrase", classes="title")
            yield Static(Text(f"The key file {self.path} is protected by a passphrase."), classes="body")
            yield Input(password=True, placeholder="passphrase (enter: unlock, escape: cancel)", id="passphrase")
            with Horizontal():
                yield Button("Unlock", id="ok", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self.dismiss(self.query_one(Input).value)
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class FileDetailsModal(ModalScreen[None]):
    """Everything known about one remote file (Remote screen, ``enter``)."""

    DEFAULT_CSS = _MODAL_CSS.format(cls="FileDetailsModal")
    BINDINGS = [Binding("escape,enter,q", "close", "Close")]

    def __init__(self, row: RemoteRow, job: JobView | None, *, tz: tzinfo,
                 show_folder: bool = False) -> None:
        super().__init__()
        self.row = row
        self.job = job
        self.tz = tz
        self.show_folder = show_folder  # several folders are watched

    def compose(self) -> ComposeResult:
        row = self.row
        tz = self.tz
        # Label and value columns: a long value wraps under its own first word.
        lines: list[Line] = []

        def line(label: str, value: Text | str) -> None:
            lines.append((Text(f"{label:<13}", style="bold"),
                          value if isinstance(value, Text) else Text(str(value))))

        line("Name", escape_name(row.server_name or row.name))
        if row.folder and self.show_folder:
            line("Folder", escape_name(row.folder))
        if row.version is None and row.local_name and row.local_name != (row.server_name or row.name):
            line("Local name", escape_name(row.local_name))
        line("Report", escape_name(row.report))
        if row.version is not None:
            line("Rolling", "one file name, replaced by each delivery")
            line("Version", escape_name(row.version))
        line("Delivered", local_time(row.delivered_at, tz, with_year=True))
        line("Size", f"{human_size(row.size)} ({row.size:,} bytes)")
        if row.delete_on is not None:
            line("Deleted on", f"{short_day(row.delete_on)} {row.delete_on:%Y} ({row.days_left} days)")
        line("Local state", state_cell(row.state))
        if row.local_path and row.state == LocalState.PURGED and row.purge_note:
            line("Local copy", Text("deleted from the folder by the local retention policy, but not its data: "
                                    + escape_name(row.purge_note)))
        elif row.local_path and row.state == LocalState.PURGED:
            line("Local copy", Text("deleted by the local retention policy; the ledger keeps its record",
                                    style="dim"))
        elif row.local_path:
            line("Local copy", escape_name(str(row.local_path)))
        line("Verification", verify_cell(row.verification))
        if row.message:
            line("Message", row.message)
        job = self.job
        if job is not None:
            line("Transfer", f"{job.state}" + (f": {job.reason}" if job.reason else ""))
        with Vertical():
            yield Static("File details", classes="title")
            body = HangingText(classes="body")
            body.set_lines(lines)
            yield body
            yield Static(Text("escape: close", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
