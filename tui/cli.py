"""Entry point: the TUI and the headless commands (README "Commands"; their JSON: docs/JSON.md).

Each subcommand lives in ``tui/commands/<name>.py`` with ``add_arguments(parser)`` and
``run(args) -> int``; they are imported lazily so ``verify`` starts without Textual.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import sys

from tui import __version__
from tui.core.status import Exit

SUBCOMMANDS = {
    "verify": "verify local .xlsx reports (files or folders), no server",
    "sync": "list the server, download every new report, verify it, record it",
    "check": "evaluate schedule, verification and deadlines; test the connection",
    "demo-server": "run only the embedded demo SFTP server",
    "init": "set up a profile: server, key, folder, reports; writes the config",
    "schedule": "print or install the systemd timer (or crontab line) for unattended runs",
    "notify": "send a test alert through every configured channel (--test)",
    "export": "write the kept reports as one table (parquet or csv), with coverage; no server",
    "purge": "delete the local copies the retention policy allows (local_retention_days); no server",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. Only the chosen subcommand's module is imported (start-up time matters for
    cron and for ``verify`` on many files); ``--help`` lists them all from ``SUBCOMMANDS``."""
    parser = argparse.ArgumentParser(
        prog="report-keeper",
        description="Keeps scheduled Alma Analytics reports safe. Without a command, opens the TUI.",
    )
    parser.add_argument("--version", action="version", version=f"report-keeper {__version__}")
    parser.add_argument("--config", metavar="FILE", help="config file (default: the user config dir)")
    parser.add_argument("--profile", metavar="NAME", help="profile in the config (default: 'default')")
    parser.add_argument("--demo", action="store_true", help="open the TUI against the embedded demo server")
    parser.add_argument("--local-dir", metavar="D", help="with --demo: keep downloads in D")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    words = sys.argv[1:] if argv is None else argv
    chosen = next((w for w in words if w in SUBCOMMANDS), None)
    for name, help_text in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f"tui.commands.{name.replace('-', '_')}")
            module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on usage errors, but our contract says 3
        return int(Exit.USAGE) if exc.code not in (0, None) else 0

    # Loaded once the arguments are known: `report-keeper --help` (and a usage error) starts
    # without the config, logging and asyncio machinery a command needs.
    from tui.commands.common import (  # noqa: PLC0415 - start-up time
        fail_interrupted,
        fail_unexpected,
        fail_usage,
        guarded_output,
    )
    from tui.core import clock  # noqa: PLC0415 - start-up time
    from tui.core.logs import setup_logging  # noqa: PLC0415 - start-up time

    log_file = setup_logging()
    if sys.stdout is None:  # started with stdout closed: results go nowhere, exit codes still tell
        sys.stdout = open(os.devnull, "w")  # for the life of the process
    try:  # a pinned clock that cannot be used is a usage error for every command
        clock.check()
    except clock.ClockError as exc:
        return fail_usage(str(exc))
    try:
        if args.command:
            module = importlib.import_module(f"tui.commands.{args.command.replace('-', '_')}")
            if argv is None:  # run as the program (tests pass argv and live on)
                # SIGTERM (systemd stopping the unit, `timeout` in a cron line) stops a command
                # the way Ctrl-C does: its own orderly stop, or one document saying so. It is
                # turned into a SIGINT, so asyncio's own Ctrl-C handling (cancel the main task)
                # applies too, rather than a KeyboardInterrupt inside whatever task runs.
                signal.signal(signal.SIGTERM, _as_ctrl_c)
                # Started with SIGINT ignored (a shell script's background job, a parent that
                # ignores it): the ignoring is inherited, and would make SIGTERM and Ctrl-C
                # do nothing at all. A command always stops in order on either.
                if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                # What the imports made lives as long as the process: the cyclic garbage
                # collector need not walk it on every collection, nor once more at exit
                # (a tenth of a second or more of a sync on a busy machine).
                gc.freeze()
            with guarded_output():  # no text a command quotes can drive the terminal
                return int(module.run(args))
        from tui.commands import tui_app  # noqa: PLC0415 - Textual is loaded for the TUI only (the headless commands start without it)

        return int(tui_app.run(args))
    except KeyboardInterrupt:  # a command that does not handle Ctrl-C itself: still one document
        return fail_interrupted(args) if args.command else 130
    except BrokenPipeError:  # e.g. `report-keeper check | head -1`: the reader left
        _silence_stdout()
        return int(Exit.CRITICAL)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        return fail_unexpected(exc, args, log_file)


def _as_ctrl_c(_signum: int, _frame: object) -> None:
    signal.raise_signal(signal.SIGINT)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
