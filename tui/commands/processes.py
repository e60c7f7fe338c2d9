"""``sync --all-profiles`` over several processes, one per CPU core.

One ``sync`` process runs its event loop, the SSH library's packet handling and the
bookkeeping of every file (hashing, placing, the ledger) on one core: with many profiles that
core is the limit, and the others idle. So the profiles are shared out among ``--processes``
child processes (``report-keeper sync --all-profiles --json`` each, for its share), and the
parent only starts them, passes their human output on, and joins their documents into the one
document of the run (docs/ARCHITECTURE.md, "Many profiles").

- Profiles naming one ledger file stay in one process (they share one connection to it).
- The shares are balanced by profile count, largest ledger groups first; each process keeps
  the config's order, and the document lists the profiles in the config's order.
- ``--parallel`` still bounds the profiles running at once over all processes; the workbook
  readers are shared out too, so the run holds no more readers (and no more memory) than one
  process would. Every process reads with the largest limits of all profiles, as one would.
- Ctrl-C or SIGTERM reaches the parent, which passes one Ctrl-C to each process (they run in a
  process group of their own, so a terminal's Ctrl-C is not delivered twice); each records what
  is complete and prints its interrupted document, and the parent joins them as always.
- A process that ends without a document (killed, crashed) leaves its profiles ``critical``
  with ``error_kind`` ``internal`` (or ``interrupted`` when the run was being stopped); the
  others' results stand.
- The parent killed outright (SIGKILL, the OOM killer) passes nothing on: each process sees
  its parent gone (:func:`watch_parent`) and stops as on the parent's Ctrl-C, its output (pipes
  to nobody) sent nowhere, and says why in the log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tui.commands.all_profiles import Selection, ledger_key
from tui.commands.common import error_document, interrupted_document
from tui.core import isolation
from tui.core.config import Profile
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


def check_arguments(args: argparse.Namespace) -> str | None:
    """What is wrong with ``--processes`` (and the hidden options of a share, should someone
    type them) (None: nothing)."""
    for option, value, most in (("--processes", getattr(args, "processes", None), MAX_PROCESSES),
                                ("--share-readers", getattr(args, "share_readers", None), MAX_PROCESSES),
                                ("--share-parent", getattr(args, "share_parent", None), 1 << 22)):
        if value is not None and not 1 <= value <= most:
            return f"{option}: {value} is not between 1 and {most}"
    return None


def is_share(args: argparse.Namespace) -> bool:
    """This process runs a share of a run over several processes."""
    return bool(getattr(args, "share_profile", None))


def plan(profiles: Sequence[Profile], processes: int, parallel: int) -> list[list[Profile]]:
    """The profiles shared out among at most ``processes`` (and ``parallel``) processes; one
    share (all of them) when that makes one process."""
    groups: dict[Path, list[Profile]] = {}
    for profile in profiles:
        groups.setdefault(ledger_key(profile.ledger_path), []).append(profile)
    n = min(processes, parallel, len(groups))
    if n < 2:
        return [list(profiles)]
    shares: list[list[Profile]] = [[] for _ in range(n)]
    for group in sorted(groups.values(), key=len, reverse=True):  # stable: config order on ties
        min(shares, key=len).extend(group)
    order = {p.name: k for k, p in enumerate(profiles)}
    return [sorted(share, key=lambda p: order[p.name]) for share in shares]


def share_limits(args: argparse.Namespace, every: Selection) -> Selection:
    """In a process running a share: the reader pool set as the whole run's (the largest
    limits of every profile, this process's part of the readers), and its own profiles, in
    the config's order. A profile no longer in the config is a configuration error; one whose
    settings became wrong meanwhile stays in the share, broken (listed with its error)."""
    all_profiles = every.profiles
    wanted = list(dict.fromkeys(args.share_profile))
    by_name = {p.name: p for p in all_profiles}
    gone = [name for name in wanted if name not in by_name and name not in every.broken]
    if gone:
        from tui.core.config import ConfigError  # noqa: PLC0415 - the error path only

        raise ConfigError(None, "profile", f"{gone[0]!r} is no longer in the config (it changed during the run)")
    if all_profiles:  # none when every profile became broken meanwhile: no workbook to read
        memory, seconds = isolation.reader_limits(all_profiles)
        isolation.configure(memory_limit=memory, time_limit=seconds, size=args.share_readers)
    chosen = set(wanted)
    return Selection([p for p in all_profiles if p.name in chosen],
                     {n: e for n, e in every.broken.items() if n in chosen},
                     tuple(n for n in every.names if n in chosen))


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
    """One process of the run: its share, its command line, and what it said."""

    share: list[Profile]
    argv: list[str]
    proc: asyncio.subprocess.Process | None = None
    stdout: bytes = b""
    returncode: int | None = None
    start_error: str | None = None


def _argv(args: argparse.Namespace, share: list[Profile], parallel: int, readers: int) -> list[str]:
    argv = [sys.executable, "-m", "tui", "sync", "--all-profiles", "--json", "--processes", "1",
            "--parallel", str(parallel), f"--share-readers={readers}", f"--share-parent={os.getpid()}"]
    if getattr(args, "config", None):  # as given: the messages that name the command line say it
        argv += [f"--config={args.config}"]
    if getattr(args, "accept_new_host_key", False):
        argv.append("--accept-new-host-key")
    argv += [f"--share-profile={p.name}" for p in share]
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


async def _run_child(child: Child, out: TextIO, stopping: list[bool]) -> None:
    try:
        proc = child.proc = await asyncio.create_subprocess_exec(
            *child.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, process_group=0)
    except OSError as exc:
        child.start_error = f"could not start a process for them ({exc.strerror or exc})"
        return
    if stopping[0]:  # the run was stopped while this process was being started
        _stop([child])
    assert proc.stdout is not None and proc.stderr is not None
    relaying = asyncio.ensure_future(_relay(proc.stderr, out))
    child.stdout = await proc.stdout.read()
    await relaying
    child.returncode = await proc.wait()


def _stop(children: Sequence[Child]) -> None:
    """One Ctrl-C to every process still running."""
    for child in children:
        proc = child.proc
        if proc is not None and proc.returncode is None:
            try:
                proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass


async def run_shares(args: argparse.Namespace, shares: list[list[Profile]], out: TextIO,
                     stopped: list[bool]) -> list[Child]:
    """Run every share in a process of its own and wait for all of them. Cancelled (Ctrl-C),
    it stops each process in order and still waits for them (``stopped[0]`` becomes True)."""
    n = len(shares)
    readers = max(1, isolation.default_size() // n)
    children = []
    for k, share in enumerate(shares):
        parallel = args.parallel // n + (1 if k < args.parallel % n else 0)
        children.append(Child(share, _argv(args, share, max(1, parallel), readers)))
    tasks = [asyncio.ensure_future(_run_child(child, out, stopped)) for child in children]
    log.info("sync --all-profiles: %d profiles in %d processes", sum(map(len, shares)), n)
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        stopped[0] = True  # a process still being started gets its Ctrl-C once it runs
        _stop(children)
        while not all(t.done() for t in tasks):
            try:
                await asyncio.wait(tasks)
            except asyncio.CancelledError:  # a Ctrl-C more: they are stopping already
                continue
    for task in tasks:
        task.result()
    return children


#: The ``error_kind`` of a profile (or process) that could not start: exit 3.
_START_KINDS = ("config", "ledger", "usage")


def documents(children: Sequence[Child], profiles: Sequence[Profile], *,
              stopped: bool) -> tuple[dict[str, int], dict[str, dict[str, object]]]:
    """Each profile's code and document, in the config's order: as its process said (exit 3
    for one that could not start: its ledger file or folder, as alone); for a process that
    could not start its share (the config became unusable: exit 3), its error, exit 3 as one
    process would have; for one that said nothing usable, ``critical`` saying what became of
    it."""
    codes: dict[str, int] = {}
    docs: dict[str, dict[str, object]] = {}
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
        if missing:
            log.error("a sync process for %d profiles ended without their documents (exit %s)",
                      len(child.share), child.returncode)
    return {p.name: codes[p.name] for p in profiles}, {p.name: docs[p.name] for p in profiles}


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
        try:
            name = signal.Signals(-child.returncode).name
        except ValueError:
            name = f"signal {-child.returncode}"
        error = (f"the process syncing this profile was stopped from outside ({name}) before it "
                 "said how the sync went")
    else:
        error = (f"the process syncing this profile ended without a result (exit code "
                 f"{child.returncode})")
    return error_document("sync", f"{error}; files it completed are recorded. Run the sync again; "
                          "if this happens again, the details are in the log.", "internal")
