"""``--all-profiles`` for ``sync`` and ``check``: every profile of the config in one run.

A consortium office keeps one profile per member library (one server folder each). With
``--all-profiles`` the command runs every profile at once, at most ``--parallel`` at a time,
each with its own SSH connection and its own ledger, and prints one JSON document
``{"status", "profiles": {name: <the single-profile document>}}``; the exit code is the worst
of the profiles'. A profile whose own settings are wrong is listed with its config error (exit
3) and the others run. Profiles that share a ledger file share one connection to it (one writer,
no waiting on each other's transactions; each still records under its own name).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tui.commands.common import (
    OptionError,
    log_earlier_paths,
    one_line,
    require_local_dir,
    terminal_passphrase_cb,
)
from tui.core import status as st
from tui.core.config import ConfigError, Profile, load_config
from tui.core.ledger import Ledger, LedgerError
from tui.core.names import escape_name

#: Profiles run at the same time by default: each holds an SSH connection and up to its
#: ``concurrency`` transfers; more would only queue on a small machine or a busy server.
DEFAULT_PARALLEL = 8
MAX_PARALLEL = 64

if TYPE_CHECKING:  # the SFTP side loads only when a command goes online
    from tui.sftp.client import PassphraseCallback

T = TypeVar("T")
log = logging.getLogger("report_keeper.commands.all_profiles")


def add_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--all-profiles", action="store_true",
        help=f"{what} every profile of the config at once (each its own connection and ledger); "
             'with --json one document {"status", "profiles": {name: ...}}; the worst exit code',
    )
    parser.add_argument(
        "--parallel", type=int, default=DEFAULT_PARALLEL, metavar="N",
        help=f"with --all-profiles: at most N profiles at a time (default {DEFAULT_PARALLEL})",
    )


def selected(args: argparse.Namespace) -> bool:
    """``--all-profiles`` was given; raises ``OptionError`` (exit 3) for a conflicting choice."""
    if not getattr(args, "all_profiles", False):
        return False
    if getattr(args, "profile", None):
        raise OptionError(None, "--profile", "--all-profiles runs every profile; leave out --profile")
    parallel = getattr(args, "parallel", DEFAULT_PARALLEL)
    if not 1 <= parallel <= MAX_PARALLEL:
        raise OptionError(None, "--parallel", f"{parallel} is not between 1 and {MAX_PARALLEL}")
    return True


@dataclass(frozen=True)
class Selection:
    """Every profile of the config: those whose settings load, and those whose own settings
    are wrong (:attr:`tui.core.config.Config.broken`), each with its error."""

    profiles: list[Profile]
    broken: dict[str, ConfigError]
    #: Every profile's name, broken ones included, in the config's order.
    names: tuple[str, ...]

    def failed(self) -> dict[str, tuple[str, str]]:
        """Each broken profile's error (one line, as its single-profile command prints it) and
        ``error_kind`` ``config``; each is logged and told on stderr by the command."""
        for name, exc in self.broken.items():
            log.error("profile %s cannot run: %s", escape_name(name), escape_name(str(exc)))
        return {name: (one_line(str(exc)), "config") for name, exc in self.broken.items()}


def load_every(args: argparse.Namespace) -> Selection:
    """Every profile of the config, in the config's order; raises ``ConfigError`` (exit 3) for
    what the file as a whole gets wrong. A profile whose own settings are wrong stops only
    itself: it is in :attr:`Selection.broken`, and the command lists it with that error (exit
    3, what ``--profile NAME`` says of it) beside the others' results: one member library's
    typo must not leave every other library's reports unfetched."""
    config = load_config(getattr(args, "config", None))
    if not config.names:
        raise ConfigError(config.path, "profile", "the config has no profile")
    return Selection(list(config.profiles.values()), dict(config.broken), config.names)


def unusable(profiles: Iterable[Profile], *, need_local_dir: bool) -> dict[str, ConfigError]:
    """The profiles that cannot run, and why: a path setting naming an entry of the wrong kind
    (``Profile.problem``), and with ``need_local_dir`` a ``local_dir`` that cannot be created or
    written (:func:`require_local_dir`). Each stops only its own profile: a member library's
    folder on a mount that is down must not leave the others' reports unfetched."""
    found = {}
    for profile in profiles:
        try:
            if profile.problem is not None:
                raise profile.problem
            if need_local_dir:
                require_local_dir(profile)
        except ConfigError as exc:
            log.error("profile %s cannot run: %s", profile.name, escape_name(str(exc)))
            found[profile.name] = exc
        else:
            log_earlier_paths(profile)
    return found


def open_runnable(profiles: Sequence[Profile], *, need_local_dir: bool,
                  selection: Selection | None = None,
                  lazy: bool = False) -> tuple[Ledgers, dict[str, tuple[str, str]]]:
    """The ledgers of the profiles that can run, and for each profile that cannot, its error
    (one line) and ``error_kind``: ``config`` (its settings are wrong, ``selection.broken``; or
    :func:`unusable`; its ledger is not opened, as alone) or ``ledger`` (its ledger file
    cannot be opened, :class:`Ledgers`). What its single-profile command would say of it,
    exit 3; the others run. ``lazy``: the ledgers are not opened here but by each profile as
    it starts (:meth:`Ledgers.opened`; :meth:`Ledgers.failures` then tells the ``ledger``
    failures)."""
    failed = selection.failed() if selection is not None else {}
    failed.update((name, (one_line(str(exc)), "config"))
                  for name, exc in unusable(profiles, need_local_dir=need_local_dir).items())
    ledgers = Ledgers([p for p in profiles if p.name not in failed], lazy=lazy)
    failed.update(ledgers.failures())
    return ledgers, failed


def ledger_key(path: Path) -> Path:
    """The same key for every profile naming the same ledger file."""
    try:
        return Path(path).expanduser().resolve(strict=False)
    except (OSError, RuntimeError):
        return Path(path).expanduser().absolute()


class Ledgers:
    """One open ledger per profile: profiles naming the same file get views of one connection
    (``Ledger.for_profile``). ``close()`` closes each file once.

    A ledger file that cannot be opened (damaged, not a database, a folder it cannot be made
    in) stops only the profiles that name it: they are in ``failed`` with the error, the others
    run. One broken file must not leave every other library's reports unfetched.

    ``lazy``: nothing is opened at first; each profile's ledger is opened when it starts
    (:meth:`opened`, in a thread): a new ledger is made (its schema written and fsync'ed) while
    the other profiles already download, instead of every ledger of the run before any
    profile starts."""

    def __init__(self, profiles: Iterable[Profile], *, lazy: bool = False) -> None:
        self.by_profile: dict[str, Ledger] = {}
        self.files: list[Ledger] = []
        #: The profiles whose ledger file could not be opened, and why.
        self.failed: dict[str, LedgerError] = {}
        self._opened: dict[Path, Ledger] = {}
        self._broken: dict[Path, LedgerError] = {}
        self._locks: dict[Path, asyncio.Lock] = {}
        self._closed = False
        if not lazy:
            for profile in profiles:
                self._open(profile)

    def _open(self, profile: Profile) -> Ledger | None:
        key = ledger_key(profile.ledger_path)
        if key in self._broken:
            self.failed[profile.name] = self._broken[key]
            return None
        base = self._opened.get(key)
        if base is None:
            try:
                base = Ledger.open(profile.ledger_path, profile=profile.name)
            except LedgerError as exc:
                log.error("the ledger of profile %s cannot be opened: %s", profile.name, escape_name(str(exc)))
                self._broken[key] = self.failed[profile.name] = exc
                return None
            if self._closed:  # the run ended while this one was being opened
                base.close()
                return None
            self._opened[key] = base
            self.files.append(base)
            self.by_profile[profile.name] = base
        else:
            self.by_profile[profile.name] = base.for_profile(profile.name)
        return self.by_profile[profile.name]

    async def opened(self, profile: Profile) -> Ledger | None:
        """``profile``'s ledger, opened now in a thread if it is not yet (the profiles naming
        one file wait for its one opening); None when it cannot be opened (``failed``)."""
        if profile.name in self.by_profile:
            return self.by_profile[profile.name]
        lock = self._locks.setdefault(ledger_key(profile.ledger_path), asyncio.Lock())
        async with lock:
            return await asyncio.to_thread(self._open, profile)

    def failures(self) -> dict[str, tuple[str, str]]:
        """Each profile whose ledger could not be opened: its error (one line) and ``ledger``."""
        return {name: (one_line(str(exc)), "ledger") for name, exc in self.failed.items()}

    def close(self) -> None:
        self._closed = True
        for ledger in self.files:
            ledger.close()
        self.files = []


async def run_bounded(items: Iterable[T] | AsyncIterable[T], parallel: int,
                      one: Callable[[T], Awaitable[object]]) -> None:
    """``one(item)`` for every item, at most ``parallel`` at a time, in the items' order;
    items that come one by one (an async iterable: profiles handed out by a run's parent) are
    started as they come.

    Cancelled (Ctrl-C), it cancels every ``one`` and returns (raising ``CancelledError``) only
    once each has ended: their clean-up (recording what is complete, keeping part files) runs
    to its end instead of being cancelled again when the event loop shuts down."""
    gate = asyncio.Semaphore(parallel)

    async def guarded(item: T) -> None:
        async with gate:
            await one(item)

    tasks: list[asyncio.Future[None]] = []
    try:
        if isinstance(items, AsyncIterable):
            async for item in items:
                tasks.append(asyncio.ensure_future(guarded(item)))
        else:
            tasks.extend(asyncio.ensure_future(guarded(item)) for item in items)
        if tasks:
            await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        raise
    for task in tasks:
        task.result()  # the first failure of one item, as gather() would raise it


def shared_passphrase_cb() -> PassphraseCallback | None:
    """The terminal's passphrase question, asked for one profile at a time."""
    ask = terminal_passphrase_cb()
    if ask is None:
        return None
    lock = asyncio.Lock()

    async def one_at_a_time(path: Path) -> str | None:
        async with lock:
            answer: str | None = await ask(path)
            return answer

    return one_at_a_time


def combined(codes: Mapping[str, int], documents: Mapping[str, Mapping[str, object]]) -> tuple[int, dict[str, object]]:
    """The worst exit code and the one JSON document of a run over several profiles."""
    code = st.worst(codes.values())
    return int(code), {"status": st.overall_name(code), "profiles": dict(documents)}
