"""The first-run set-up's state: what its screen shows, as plain typed Python (no Textual).

The app started without a config opens the first-run app (``tui/setup_app.py``) and its one
screen (``tui/screens/first_run.py``), which asks what ``report-keeper init`` asks. The app
holds one :class:`SetupView`, changes it in its workers (connecting, listing folders, the
connection test, writing) and then posts ``SetupChanged``; the screen reads it again. The
steps, in order:

``FORM`` (server, port, user, key, server folder if known, local folder, time zone) -> ``NEW_KEY`` (only when a key
pair was just made: its public line, to send to the server's administrator) -> ``FOLDER``
(the folder picker over the server's listing) -> ``REPORTS`` (the reports found with their
inferred schedules: keep, skip, edit) -> ``DONE`` (where the config was written, what is
pending, what to run next). A connection that fails goes back to ``FORM`` with the reason:
what was typed is kept, and the config can still be written with what is pending noted in it.
While a worker runs, ``busy`` says what it does (the screen shows it with a spinner).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from tui.core.model import ConnTestResult
from tui.core.setup import ReportProposal


class SetupStep(StrEnum):
    FORM = "form"
    NEW_KEY = "new-key"
    FOLDER = "folder"
    REPORTS = "reports"
    DONE = "done"


class KeyKind(StrEnum):
    FILE = "file"  # a key pair of ~/.ssh
    AGENT = "agent"  # the keys of ssh-agent (and ~/.ssh/config's IdentityFile)
    NEW = "new"  # make a new ed25519 key pair


@dataclass(frozen=True)
class KeyChoice:
    """One way to log in, as offered on the form."""

    kind: KeyKind
    label: str
    path: Path | None = None  # the private key (FILE)


@dataclass(frozen=True)
class SetupDefaults:
    """What the form offers before anything is typed."""

    config_path: Path  # where the config will be written
    config_shown: str  # the same as people write it (~/.config/...)
    profile: str
    aliases: tuple[str, ...]  # Host aliases of ~/.ssh/config
    keys: tuple[KeyChoice, ...]  # existing keys first, then the agent, then a new pair
    username: str
    local_dir: str
    timezone: str


@dataclass(frozen=True)
class FormAnswers:
    """The form as typed (checked by the app with ``tui.core.setup.answers_from_form``)."""

    host: str
    port: str
    username: str
    key: KeyChoice
    remote_dir: str  # may be empty: the folder picker starts at the login folder
    local_dir: str
    timezone: str


@dataclass(frozen=True)
class FolderShown:
    """One server folder in the picker. Names are the server's: the screen escapes them."""

    path: str  # absolute, as the server names it
    folders: tuple[str, ...]
    files: int
    reports: int  # Excel files among them
    refused: int  # names refused as unsafe
    top: bool  # the server's root: no way up


@dataclass(frozen=True)
class PublicKeyShown:
    """A key pair made for report-keeper: the line its administrator needs."""

    path: str  # the private half as people write it (~/.ssh/...); the public one is .pub
    public_line: str
    fingerprint: str


@dataclass
class SetupView:
    """Everything the first-run screen shows (the app is its only writer)."""

    defaults: SetupDefaults
    step: SetupStep = SetupStep.FORM
    field_errors: dict[str, str] = field(default_factory=dict)  # form field -> why not
    error: str = ""  # what went wrong in this step, one line
    can_save_pending: bool = False  # the connection failed: the config may be written anyway
    busy: str = ""  # what runs now ("Connecting to ..."); empty: nothing
    new_key: PublicKeyShown | None = None
    folder: FolderShown | None = None
    remote_dir: str = "."  # as the profile names it
    proposals: list[ReportProposal] = field(default_factory=list)
    test: ConnTestResult | None = None
    written: str = ""  # the config as people write its path, once written
    pending: tuple[str, ...] = ()  # what is pending, as the config's notes say it
    next_steps: tuple[str, ...] = ()
    version: int = 0  # bumped on every change


class FirstRunEnd(StrEnum):
    OPEN = "open"  # the config is written: open the app for it
    DEMO = "demo"  # try the demo instead


@dataclass(frozen=True)
class FirstRunExit:
    """How the first run ended (the app's return value; None: the user quit). ``test``: the
    connection test the first run made, which the app then shows instead of asking for one."""

    end: FirstRunEnd
    test: ConnTestResult | None = None
