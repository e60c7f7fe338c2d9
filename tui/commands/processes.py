"""``sync --all-profiles`` over several processes, one per CPU core.

One ``sync`` process runs its event loop, the SSH library's packet handling and the
bookkeeping of every file (hashing, placing, the ledger) on one core: with many profiles that
core is the limit, and the others idle. So the profiles are handed out among ``--processes``
child processes (``report-keeper sync --all-profiles --json`` each), and the parent only
starts them, hands them their profiles, passes their human output on, and joins their
documents into the one document of the run (docs/ARCHITECTURE.md, "Many profiles").

- The profiles are handed out as the processes have room for them, not as shares fixed at
  the start (:class:`HandOut`): each process has its part of ``--parallel``; the parent first
  fills every process's part (where the fewest are held), then gives the next group to the
  process that says one of its profiles ended. So the processes end together: the one that
  got long profiles takes fewer. Parent and process talk over a socket of their own
  (``--share-handout=FD``): the parent sends a line per group (``{"profiles": [names]}``) and
  one ``{"end": true}`` once nothing is left; the process sends ``free`` when a profile ends.
- Profiles naming one ledger file are one group, handed to one process (they share one
  connection to it); the largest groups go first, then the config's order. The document lists
  the profiles in the config's order.
- ``--parallel`` still bounds the profiles running at once over all processes; the workbook
  readers are shared out too, so the run holds no more readers (and no more memory) than one
  process would. Every process reads with the largest limits of all profiles, as one would.
- Ctrl-C or SIGTERM reaches the parent, which hands nothing more out and passes one Ctrl-C to
  each process (they run in a process group of their own, so a terminal's Ctrl-C is not
  delivered twice); each records what is complete and prints its interrupted document, and
  the parent joins them as always. A profile never handed out is listed with the interrupted
  document: nothing of it ran.
- A process that ends without a document (killed, crashed) leaves the profiles handed to it
  ``critical`` with ``error_kind`` ``internal`` (or ``interrupted`` when the run was being
  stopped); the others' results stand, and the profiles not handed out yet go to the others.
  Should every process be gone with profiles left, those are ``critical`` too, saying so.
- A profile handed out that is no longer in the config (it changed during the run) is listed
  by its process with that configuration error (exit 3); one whose settings became wrong,
  with its own error, as alone.
- The parent killed outright (SIGKILL, the OOM killer) passes nothing on: each process sees
  its parent gone (:func:`watch_parent`; its hand-out socket ends too, so it takes nothing
  more) and stops as on the parent's Ctrl-C, its output (pipes to nobody) sent nowhere, and
  says why in the log.
- ``--share-profile=NAME`` (hidden, as the other ``--share-*`` options) gives a process a fixed
  share instead: it runs those profiles and asks for nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tui.commands.all_profiles import Selection, ledger_key, unusable
from tui.commands.common import error_document, interrupted_document, one_line
from tui.core import isolation
from tui.core.config import ConfigError, Profile
from tui.core.names import escape_name
from tui.core.status import Exit

log = logging.getLogger("report_keeper.commands.processes")

#: The most processes one run starts (as ``--parallel``'s own bound).
MAX_PROCESSES = 64
#: Human output of a process is passed on a line at a time; a line longer than this (it never
#: is) goes on in pieces.
_LINE_LIMIT = 1 << 16

_CODES = {"ok": 0, "warning": 1, "critical": 2}
#: A process's exit code when it could not start its share (usage, config, ledger).
USAGE = int(Exit.USAGE)


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def default_processes() -> int:
    """One process per usable core; one at a terminal, where a key's passphrase may have to be
    asked (a question on one terminal from several processes at once would be garbled)."""
    try:
        at_terminal = sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):
        at_terminal = False
    return 1 if at_terminal else min(usable_cores(), MAX_PROCESSES)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--processes", type=int, default=None, metavar="N",
        help="with --all-profiles: share the profiles out among up to N processes (default: one "
             "per CPU core; 1 at a terminal, where a key passphrase may be asked)",
    )
    # How a process learns its share of a run over several processes (never typed by hand).
    parser.add_argument("--share-profile", action="append", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--share-readers", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--share-parent", type=int, default=None, help=argparse.SUPPRESS)
    # The socket over which the run's parent hands this process its profiles (its descriptor).
    parser.add_argument("--share-handout", type=int, default=None, help=argparse.SUPPRESS)


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with ``--processes`` (and the hidden options of a share, should someone
    type them) (None: nothing)."""
    for option, value, least, most in (
            ("--processes", getattr(args, "processes", None), 1, MAX_PROCESSES),
            ("--share-readers", getattr(args, "share_readers", None), 1, MAX_PROCESSES),
            ("--share-parent", getattr(args, "share_parent", None), 1, 1 << 22),
            ("--share-handout", getattr(args, "share_handout", None), 3, 1 << 20)):
        if value is not None and not least <= value <= most:
            return f"{option}: {value} is not between {least} and {most}"
    if getattr(args, "share_handout", None) is not None and getattr(args, "share_profile", None):
        return "--share-handout: profiles are handed out or named (--share-profile), not both"
    return None


def is_share(args: argparse.Namespace) -> bool:
    """This process runs a part of a run over several processes."""
    return bool(getattr(args, "share_profile", None)) or getattr(args, "share_handout", None) is not None


@dataclass(frozen=True)
class Plan:
    """How a run goes over processes: its groups in the order they are handed out, and each
    process's part of ``--parallel`` (one part: the run stays in one process)."""

    #: Profiles naming one ledger file, each group in the config's order; the largest first.
    groups: list[list[Profile]]
    parallel: list[int]


def plan(profiles: Sequence[Profile], processes: int, parallel: int) -> Plan:
    """At most ``processes`` processes (no more than ``parallel``, nor than ledger groups), each
    with its part of ``parallel``."""
    by_ledger: dict[Path, list[Profile]] = {}
    for profile in profiles:
        by_ledger.setdefault(ledger_key(profile.ledger_path), []).append(profile)
    groups = sorted(by_ledger.values(), key=len, reverse=True)  # stable: config order on ties
    n = max(1, min(processes, parallel, len(groups)))
    return Plan(groups, [parallel // n + (1 if k < parallel % n else 0) for k in range(n)])


class HandOut:
    """The parent's side of the hand-out: which process gets which group, and when.

    :meth:`next` says what to send now: each process is given groups while it holds fewer
    profiles than its part of ``--parallel`` (where the fewest are held, for their part, go
    first), a group whole even when it holds more (the process runs it a part at a time); once
    nothing is left, each process still there is told so, once. :meth:`freed` (a profile of
    process ``k`` ended), :meth:`closed` (process ``k`` is gone: it gets nothing more; what it
    held stays its own) and :meth:`stop` (Ctrl-C: nothing more is handed out) change what it
    says next."""

    def __init__(self, groups: Sequence[list[Profile]], parallel: Sequence[int]) -> None:
        self._queue: deque[list[Profile]] = deque(groups)
        self._parallel = list(parallel)
        self._held = [0] * len(parallel)
        self._open = [True] * len(parallel)
        self._told_end = [False] * len(parallel)
        self._stopped = False
        #: Every profile handed to each process, in the order handed.
        self.handed: list[list[Profile]] = [[] for _ in parallel]

    def next(self) -> list[tuple[int, list[Profile] | None]]:
        """``(process, group)`` to send now, in order; ``(process, None)``: nothing more."""
        sends: list[tuple[int, list[Profile] | None]] = []
        if self._stopped:
            return sends
        while self._queue:
            room = [k for k, limit in enumerate(self._parallel)
                    if self._open[k] and self._held[k] < limit]
            if not room:
                break
            k = min(room, key=lambda k: (self._held[k] / self._parallel[k], k))
            group = self._queue.popleft()
            self._held[k] += len(group)
            self.handed[k].extend(group)
            sends.append((k, group))
        if not self._queue:
            for k, still in enumerate(self._open):
                if still and not self._told_end[k]:
                    self._told_end[k] = True
                    sends.append((k, None))
        return sends

    def freed(self, k: int) -> None:
        self._held[k] = max(0, self._held[k] - 1)

    def closed(self, k: int) -> None:
        self._open[k] = False

    def stop(self) -> None:
        self._stopped = True

    def left(self) -> list[Profile]:
        """The profiles never handed out."""
        return [p for group in self._queue for p in group]


def share_limits(args: argparse.Namespace, every: Selection) -> Selection:
    """In a process running a share: the reader pool set as the whole run's (the largest
    limits of every profile, this process's part of the readers), and its own profiles, in
    the config's order (a process whose profiles are handed out: every profile, of which
    :class:`Handed` tells its own as they come). A profile no longer in the config is a
    configuration error; one whose settings became wrong meanwhile stays in the share, broken
    (listed with its error)."""
    all_profiles = every.profiles
    handed_out = getattr(args, "share_handout", None) is not None
    wanted = [] if handed_out else list(dict.fromkeys(args.share_profile))
    by_name = {p.name: p for p in all_profiles}
    gone = [name for name in wanted if name not in by_name and name not in every.broken]
    if gone:
        raise ConfigError(None, "profile", _gone(gone[0]))
    if all_profiles:  # none when every profile became broken meanwhile: no workbook to read
        memory, seconds = isolation.reader_limits(all_profiles)
        isolation.configure(memory_limit=memory, time_limit=seconds, size=args.share_readers)
    if handed_out:
        return every
    chosen = set(wanted)
    return Selection([p for p in all_profiles if p.name in chosen],
                     {n: e for n, e in every.broken.items() if n in chosen},
                     tuple(n for n in every.names if n in chosen))


def _gone(name: str) -> str:
    return f"{name!r} is no longer in the config (it changed during the run)"


#: The longest line of the hand-out (a group of many profiles with long names).
_HANDOUT_LINE_LIMIT = 1 << 24


class Handed:
    """A process's side of the hand-out (``--share-handout=FD``, its end of a socket pair):
    the profiles the run's parent hands it (:meth:`profiles`), and a word back each time one
    of them ends (:meth:`free`: a slot of its ``--parallel`` is free)."""

    def __init__(self, fd: int, every: Selection) -> None:
        self._sock = socket.socket(fileno=fd)  # OSError: no such descriptor, or no socket
        self._sock.set_inheritable(False)
        self._every = every
        self._by_name = {p.name: p for p in every.profiles}
        self._writer: asyncio.StreamWriter | None = None
        #: Every name handed to this process, in the order handed.
        self.names: list[str] = []
        self._seen: set[str] = set()

    async def profiles(self, failed: dict[str, tuple[str, str]]) -> AsyncIterator[Profile]:
        """Each profile handed out that can run, as it comes, until the parent says there is
        no more (or is gone: its end of the socket closed). One that cannot (no longer in the
        config, its settings or its ``local_dir`` wrong) is in ``failed`` with its error (one
        line) and ``error_kind`` ``config``, what ``sync --profile NAME`` says of it, and
        its slot is free at once."""
        reader, self._writer = await asyncio.open_connection(sock=self._sock, limit=_HANDOUT_LINE_LIMIT)
        while True:
            try:
                line = await reader.readline()
            except (OSError, ValueError):  # the parent gone mid-line, or a line past the limit
                line = b""
            if not line:
                log.warning("the run's parent hands out no more profiles (gone?)")
                return
            names = _group(line)
            if names is None:
                return
            for name in names:
                if name in self._seen:  # never twice; said only to be sure
                    continue
                self._seen.add(name)
                self.names.append(name)
                problem = self._problem(name)
                if problem is not None:
                    failed[name] = problem
                    self.free()
                    continue
                yield self._by_name[name]

    def _problem(self, name: str) -> tuple[str, str] | None:
        exc = self._every.broken.get(name)
        if exc is None and name not in self._by_name:
            exc = ConfigError(None, "profile", _gone(name))
        if exc is not None:
            log.error("profile %s cannot run: %s", escape_name(name), escape_name(str(exc)))
            return one_line(str(exc)), "config"
        found = unusable([self._by_name[name]], need_local_dir=True)  # logged there
        if found:
            return one_line(str(found[name])), "config"
        return None

    def free(self) -> None:
        """A profile of this process ended: the parent may hand out the next group."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        try:
            writer.write(b"free\n")
        except (OSError, RuntimeError):  # the parent is gone: watch_parent stops the run
            pass

    def selection(self) -> Selection:
        """The profiles handed to this process as a selection (the config's order; a name no
        longer in the config last)."""
        mine = set(self.names)
        every = self._every
        known = tuple(n for n in every.names if n in mine)
        return Selection([p for p in every.profiles if p.name in mine],
                         {n: e for n, e in every.broken.items() if n in mine},
                         known + tuple(n for n in self.names if n not in known))

    def close(self) -> None:
        """The socket closed (after the run's event loop has closed too)."""
        if self._writer is not None:
            try:
                self._writer.close()
                return
            except RuntimeError:  # its loop is closed: the socket is closed here
                pass
        self._sock.close()


def _group(line: bytes) -> list[str] | None:
    """The names of one hand-out line; None: no more (or a line that says nothing usable)."""
    try:
        message = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    names = message.get("profiles") if isinstance(message, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return names


def handed(args: argparse.Namespace, every: Selection) -> Handed | None:
    """This process's hand-out (None: a fixed share, or no share); raises ``OptionError``
    (exit 3) for a descriptor that is no socket."""
    fd = getattr(args, "share_handout", None)
    if fd is None:
        return None
    try:
        return Handed(fd, every)
    except OSError as exc:
        from tui.commands.common import OptionError  # noqa: PLC0415 - the error path only

        raise OptionError(None, "--share-handout", f"{fd} is no socket ({exc.strerror or exc})") from None


#: How often a process running a share looks whether the run's parent is still there.
PARENT_POLL_SECONDS = 0.5


async def watch_parent(parent: int, stop: Callable[[], None]) -> None:
    """In a process running a share, for as long as its sync runs: once the run's parent
    process ``parent`` is gone (killed outright, it could not pass a Ctrl-C on), say so in the
    log, send stdout and stderr nowhere (:func:`silence_output`) and ``stop()`` as on the
    parent's Ctrl-C. A process whose parent ends is adopted by another one: its parent's id
    changes. Given on the command line rather than read at start, the id also tells a parent
    that was gone before this process looked."""
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_POLL_SECONDS)
    log.warning("the run's parent process %d is gone (killed?): this process stops as on Ctrl-C; "
                "files completed are recorded, partial downloads are kept and resume on the next "
                "sync", parent)
    _told_gone.add(parent)
    silence_output()
    stop()


#: The parents whose end this process has logged (once is enough).
_told_gone: set[int] = set()


def check_parent(parent: int) -> None:
    """After the share's sync ended (its records settled, its alerts and document to come),
    where :func:`watch_parent` no longer looks: a parent gone meanwhile is said in the log
    and the output goes nowhere, as when the watch saw it. What this process still does
    (recording, alerts) is not stopped: the sync is over, its result true."""
    if os.getppid() == parent:
        return
    if parent not in _told_gone:
        _told_gone.add(parent)
        log.warning("the run's parent process %d is gone (killed?) after this process's sync "
                    "ended: its results are recorded, its output goes nowhere", parent)
    silence_output()


def silence_output() -> None:
    """stdout and stderr onto /dev/null: they were pipes to a parent that is gone, on which a
    write fails (EPIPE); nothing this process still writes (its summary, its document, the
    interpreter's last flush) may fail, or wait."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        for fd in (1, 2):
            try:
                os.dup2(devnull, fd)
            except OSError:
                pass
    finally:
        os.close(devnull)


class _Unbroken:
    """The human output of a process running a share: a pipe to the run's parent. A write
    that fails there (the parent is gone, its end closed) is dropped, not raised in the middle
    of the sync; :func:`watch_parent` stops the run as soon as it looks."""

    def __init__(self, raw: TextIO) -> None:
        self.raw = raw

    def write(self, text: str) -> int:
        try:
            self.raw.write(text)
        except OSError:
            pass
        return len(text)

    def flush(self) -> None:
        try:
            self.raw.flush()
        except OSError:
            pass

    def __getattr__(self, name: str) -> object:  # isatty, encoding...: the stream's own
        return getattr(self.raw, name)


def share_output(stream: TextIO) -> TextIO:
    """``stream`` for the human output of a process running a share (:class:`_Unbroken`)."""
    return _Unbroken(stream)  # type: ignore[return-value]  # writes text as a TextIO does


@dataclass
class Child:
    """One process of the run: the profiles handed to it, its command line, and what it said."""

    share: list[Profile]
    argv: list[str]
    #: The parent's end of the hand-out socket (the child's is passed to it, then closed here).
    sock: socket.socket | None = None
    proc: asyncio.subprocess.Process | None = None
    stdout: bytes = b""
    returncode: int | None = None
    start_error: str | None = None
    writer: asyncio.StreamWriter | None = field(default=None, repr=False)


def _argv(args: argparse.Namespace, parallel: int, readers: int, handout: int) -> list[str]:
    argv = [sys.executable, "-m", "tui", "sync", "--all-profiles", "--json", "--processes", "1",
            "--parallel", str(parallel), f"--share-readers={readers}", f"--share-parent={os.getpid()}",
            f"--share-handout={handout}"]
    if getattr(args, "config", None):  # as given: the messages that name the command line say it
        argv += [f"--config={args.config}"]
    if getattr(args, "accept_new_host_key", False):
        argv.append("--accept-new-host-key")
    return argv


async def _relay(stream: asyncio.StreamReader, out: TextIO) -> None:
    """A process's human output, passed on whole lines at a time (lines of processes running
    at once never mix within a line)."""
    pending = b""
    while True:
        chunk = await stream.read(_LINE_LIMIT)
        if not chunk:
            break
        pending += chunk
        cut = pending.rfind(b"\n") + 1
        if cut == 0 and len(pending) < _LINE_LIMIT:
            continue
        cut = cut or len(pending)
        _write(out, pending[:cut])
        pending = pending[cut:]
    if pending:
        _write(out, pending + b"\n")


def _write(out: TextIO, data: bytes) -> None:
    try:
        out.write(data.decode("utf-8", "replace"))
        out.flush()
    except (OSError, ValueError):  # our own output is gone: the documents still count
        pass


class _Run:
    """The parent's side of a run over processes: each process started, handed its profiles
    (:class:`HandOut`), its output passed on and its document read."""

    def __init__(self, args: argparse.Namespace, run: Plan, out: TextIO, stopped: list[bool]) -> None:
        readers = max(1, isolation.default_size() // len(run.parallel))
        self.hand = HandOut(run.groups, run.parallel)
        self.out = out
        self.stopped = stopped
        self.children: list[Child] = []
        self._theirs: list[socket.socket] = []
        self._words: dict[int, asyncio.StreamReader] = {}
        for k, parallel in enumerate(run.parallel):
            mine, theirs = socket.socketpair()
            self._theirs.append(theirs)
            self.children.append(Child(self.hand.handed[k],
                                       _argv(args, parallel, readers, theirs.fileno()), sock=mine))

    async def start(self, k: int) -> None:
        """Process ``k`` started (or not: it gets nothing), its end of the socket passed on."""
        child, theirs = self.children[k], self._theirs[k]
        try:
            child.proc = await asyncio.create_subprocess_exec(
                *child.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, process_group=0, pass_fds=(theirs.fileno(),))
        except OSError as exc:
            child.start_error = f"could not start a process for them ({exc.strerror or exc})"
        finally:
            theirs.close()
        if child.proc is None or child.sock is None:
            self.hand.closed(k)
            return
        if self.stopped[0]:  # stopped while it was being started
            _stop([child])
        self._words[k], child.writer = await asyncio.open_connection(sock=child.sock)

    def close(self) -> None:
        """Every socket of the run closed (those of processes never started too)."""
        for theirs in self._theirs:
            theirs.close()
        for child in self.children:
            if child.writer is not None:
                child.writer.close()
            elif child.sock is not None:
                child.sock.close()

    def send(self) -> None:
        """What the hand-out says now, to each process it names."""
        for k, group in self.hand.next():
            writer = self.children[k].writer
            if writer is None or writer.is_closing():
                continue
            line = {"end": True} if group is None else {"profiles": [p.name for p in group]}
            try:
                writer.write(json.dumps(line).encode() + b"\n")
            except (OSError, RuntimeError):  # it is gone: what it held is said with its end
                pass

    async def follow(self, k: int) -> None:
        """Process ``k`` to its end: its output passed on, its words read (a freed slot gets
        the next group), its document kept."""
        child = self.children[k]
        proc = child.proc
        if proc is None:
            return
        assert proc.stdout is not None and proc.stderr is not None
        relaying = asyncio.ensure_future(_relay(proc.stderr, self.out))
        listening = asyncio.ensure_future(self._listen(k))
        try:
            child.stdout = await proc.stdout.read()
            await relaying
            child.returncode = await proc.wait()
        finally:
            # Its words end with it (a process it started could hold its end of the socket).
            listening.cancel()
            self.hand.closed(k)
            if child.writer is not None:
                child.writer.close()
        self.send()  # what is left goes to the others

    async def _listen(self, k: int) -> None:
        words = self._words.get(k)
        while words is not None:
            try:
                line = await words.readline()
            except (OSError, ValueError):
                return
            if not line:
                return
            if line.strip() == b"free":
                self.hand.freed(k)
                self.send()


def _stop(children: Sequence[Child]) -> None:
    """One Ctrl-C to every process still running."""
    for child in children:
        proc = child.proc
        if proc is not None and proc.returncode is None:
            try:
                proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass


async def run_shares(args: argparse.Namespace, run: Plan, out: TextIO,
                     stopped: list[bool]) -> tuple[list[Child], list[Profile]]:
    """Run the profiles in the processes of ``run``, handed out as they have room; wait for
    every process; the processes, and the profiles never handed out. Cancelled (Ctrl-C), it
    hands nothing more out, stops each process in order and still waits for them
    (``stopped[0]`` becomes True)."""
    state = _Run(args, run, out, stopped)
    children = state.children
    log.info("sync --all-profiles: %d profiles in %d processes",
             sum(map(len, run.groups)), len(children))
    following: list[asyncio.Future[None]] = []

    async def everything() -> None:
        await asyncio.gather(*(state.start(k) for k in range(len(children))))
        state.send()  # the first groups: every process's part of --parallel filled
        following.extend(asyncio.ensure_future(state.follow(k)) for k in range(len(children)))
        await asyncio.wait(following)

    running = asyncio.ensure_future(everything())
    try:
        while not running.done():
            try:
                await asyncio.shield(running)
            except asyncio.CancelledError:  # Ctrl-C (once more: they are stopping already)
                if not stopped[0]:
                    stopped[0] = True  # a process still being started gets its Ctrl-C once it runs
                    state.hand.stop()
                    _stop(children)
        running.result()
        for task in following:
            task.result()
    finally:
        state.close()
    return children, state.hand.left()


#: The ``error_kind`` of a profile (or process) that could not start: exit 3.
_START_KINDS = ("config", "ledger", "usage")


def documents(children: Sequence[Child], profiles: Sequence[Profile], *, stopped: bool,
              left: Sequence[Profile] = ()) -> tuple[dict[str, int], dict[str, dict[str, object]]]:
    """Each profile's code and document, in the config's order: as its process said (exit 3
    for one that could not start: its ledger file or folder, as alone); for a process that
    could not start (the config became unusable: exit 3), its error, exit 3 as one process
    would have; for one that said nothing usable, ``critical`` saying what became of it. A
    profile ``left`` (never handed out) is interrupted when the run was stopped, and otherwise
    gets the error of a process that could not start or :func:`_not_handed_out`."""
    codes: dict[str, int] = {}
    docs: dict[str, dict[str, object]] = {}
    start_error: tuple[str, str] | None = None
    for child in children:
        document = _parse(child.stdout)
        got = document.get("profiles")
        got = got if isinstance(got, dict) else {}
        missing = False
        for profile in child.share:
            one = got.get(profile.name)
            if isinstance(one, dict) and one.get("status") in _CODES:
                docs[profile.name], codes[profile.name] = one, _CODES[str(one["status"])]
                if child.returncode == USAGE and one.get("error_kind") in _START_KINDS:
                    codes[profile.name] = USAGE  # it could not start (ledger file, folder), as alone
                continue
            missing = True
            error, kind = document.get("error"), document.get("error_kind")
            if child.returncode == USAGE and isinstance(error, str) and kind in _START_KINDS:
                docs[profile.name] = error_document("sync", error, str(kind))
                codes[profile.name] = USAGE
            else:
                docs[profile.name] = _no_document(child, stopped=stopped)
                codes[profile.name] = _CODES["critical"]
        error, kind = document.get("error"), document.get("error_kind")
        if child.returncode == USAGE and isinstance(error, str) and kind in _START_KINDS:
            start_error = error, str(kind)
        if missing and not (stopped and child.returncode is not None and child.returncode >= 0):
            log.error("a sync process for %d profiles ended without their documents (exit %s)",
                      len(child.share), child.returncode)
    if left:
        log.error("%d profiles were not handed out: %s", len(left),
                  "the run was stopped" if stopped else "every process of the run had ended")
    for profile in left:
        if stopped:
            docs[profile.name], codes[profile.name] = interrupted_document("sync"), _CODES["critical"]
        elif start_error is not None:
            docs[profile.name], codes[profile.name] = error_document("sync", *start_error), USAGE
        else:
            docs[profile.name], codes[profile.name] = _not_handed_out(children), _CODES["critical"]
    return {p.name: codes[p.name] for p in profiles}, {p.name: docs[p.name] for p in profiles}


def _not_handed_out(children: Sequence[Child]) -> dict[str, object]:
    """The document of a profile left when every process of the run had ended before its turn
    (killed, or none could be started)."""
    ends = sorted({_end(child) for child in children})
    return error_document("sync", f"not synced: every process of the run ended before this profile's "
                          f"turn ({'; '.join(ends)}). Run the sync again; if this happens again, "
                          "the details are in the log.", "internal")


def _end(child: Child) -> str:
    """How a process ended, in a few words."""
    if child.start_error is not None:
        return child.start_error.replace(" for them", "")
    if child.returncode is not None and child.returncode < 0:
        try:
            name = signal.Signals(-child.returncode).name
        except ValueError:
            name = f"signal {-child.returncode}"
        return f"stopped from outside ({name})"
    return f"exit code {child.returncode}"


def _parse(stdout: bytes) -> dict[str, object]:
    try:
        document = json.loads(stdout)
    except (ValueError, UnicodeDecodeError):
        return {}
    return document if isinstance(document, dict) else {}


def _no_document(child: Child, *, stopped: bool) -> dict[str, object]:
    if stopped and child.returncode is not None and child.returncode >= 0:
        return interrupted_document("sync")
    if child.start_error is not None:
        error = child.start_error
    elif child.returncode is not None and child.returncode < 0:
        error = f"the process syncing this profile was {_end(child)} before it said how the sync went"
    else:
        error = (f"the process syncing this profile ended without a result (exit code "
                 f"{child.returncode})")
    return error_document("sync", f"{error}; files it completed are recorded. Run the sync again; "
                          "if this happens again, the details are in the log.", "internal")
