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
from typing import Any, NoReturn

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


class UsageExit(SystemExit):
    """argparse's exit on a usage error (its usage and error lines are on stderr already),
    with the error's message: the JSON document of a ``--json`` run says it too."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message


class Parser(argparse.ArgumentParser):
    """argparse's parser (and, through ``add_subparsers``, each subcommand's) whose usage
    errors raise :class:`UsageExit`. ``json_command``: the chosen subcommand, when it takes
    ``--json``."""

    json_command: str | None = None
    #: The chosen subcommand's parser (its options are known only once it is chosen).
    chosen_parser: Parser | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: Every long option's name, to read a failed command line as this parser reads it.
        self.long_options: list[str] = []
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.long_options += [o for o in action.option_strings if o.startswith("--")]
        return action

    def names(self, word: str, option: str) -> bool:
        """Whether this parser reads ``word`` as the long ``option``: its full name or, as
        argparse abbreviates, a prefix no other of its options starts with (``--js``), alone
        or with ``=VALUE``."""
        if not word.startswith("--") or len(word) < 3:
            return False
        word = word.split("=", 1)[0]
        if word == option:
            return True
        return option.startswith(word) and [o for o in self.long_options if o.startswith(word)] == [option]

    def error(self, message: str) -> NoReturn:
        # The message quotes the words typed (an option's name, a value), which a script may
        # have built from anything: escaped, they cannot drive the terminal.
        from tui.core.names import escape_text  # noqa: PLC0415 - the error path only

        try:
            super().error(escape_text(message))  # usage and "PROG: error: MESSAGE" on stderr, as argparse writes them
        except SystemExit:
            raise UsageExit(message) from None
        raise UsageExit(message)  # argparse's error always exits; this keeps the type checker sure


def build_parser(argv: list[str] | None = None) -> Parser:
    """The parser. Only the chosen subcommand's module is imported (start-up time matters for
    cron and for ``verify`` on many files); ``--help`` lists them all from ``SUBCOMMANDS``."""
    parser = Parser(
        prog="report-keeper",
        description="Keeps scheduled Alma Analytics reports safe. Without a command, opens the TUI.",
    )
    parser.add_argument("--version", action="version", version=f"report-keeper {__version__}")
    parser.add_argument("--config", metavar="FILE", help="config file (default: the user config dir)")
    parser.add_argument("--profile", metavar="NAME", help="profile in the config (default: 'default')")
    parser.add_argument("--demo", action="store_true", help="open the TUI against the embedded demo server")
    parser.add_argument("--local-dir", metavar="D", help="with --demo: keep downloads in D")
    # Before the command as after it (its own dest: a subcommand's default would overwrite it).
    parser.add_argument("--json", dest="json_first", action="store_true",
                        help="with a command that has it: print one JSON document on stdout")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(sys.argv[1:] if argv is None else argv)
    for name, help_text in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(f"tui.commands.{name.replace('-', '_')}")
            module.add_arguments(p)
            parser.chosen_parser = p
            if p.get_default("json") is not None:  # the command has a --json option
                parser.json_command = name
    return parser


def _chosen(words: list[str]) -> str | None:
    """The subcommand of a command line: the first word that names one."""
    return next((w for w in words if w in SUBCOMMANDS), None)


def _asked_for_json(parser: Parser, words: list[str]) -> tuple[str, bool] | None:
    """After a failed parse, which command's JSON document the command line asked for (and
    whether with ``--all-profiles``), or None: the chosen subcommand takes ``--json`` and the
    word ``--json`` (or an abbreviation the parser in that place reads as it) comes before the
    subcommand or after it (before a ``--``, after which every word is an argument). Read
    from the words themselves: the parse that failed may have stopped before them."""
    command, sub = parser.json_command, parser.chosen_parser
    if command is None or sub is None or command not in words:
        return None
    at = words.index(command)
    before, after = words[:at], words[at + 1:]
    if "--" in before:
        return None
    if "--" in after:
        after = after[:after.index("--")]
    asked = (any(parser.names(w, "--json") for w in before)
             or any(sub.names(w, "--json") for w in after))
    return (command, any(sub.names(w, "--all-profiles") for w in after)) if asked else None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on usage errors, but our contract says 3
        if exc.code in (0, None):  # --help, --version: what was asked for, no document
            return 0
        asked = _asked_for_json(parser, sys.argv[1:] if argv is None else argv)
        if isinstance(exc, UsageExit) and asked is not None:
            from tui.commands.common import new_run, one_line, print_error_document  # noqa: PLC0415 - start-up time

            new_run()
            command, all_profiles = asked
            print_error_document(command, one_line(exc.message), "usage", all_profiles=all_profiles)
        return int(Exit.USAGE)
    if args.json_first and parser.json_command is None:  # as `init --json` is: no such option
        what = "the TUI" if args.command is None else args.command
        try:
            parser.error(f"--json: {what} prints no JSON document")
        except UsageExit:
            return int(Exit.USAGE)
    if args.json_first:
        args.json = True

    # Loaded once the arguments are known: `report-keeper --help` (and a usage error without
    # --json) starts without the config, logging and asyncio machinery a command needs.
    from tui.commands.common import (  # noqa: PLC0415 - start-up time
        fail_interrupted,
        fail_unexpected,
        fail_usage,
        guarded_output,
        new_run,
    )
    from tui.core import clock  # noqa: PLC0415 - start-up time
    from tui.core.logs import setup_logging  # noqa: PLC0415 - start-up time

    new_run()
    log_file = setup_logging()
    if sys.stdout is None:  # started with stdout closed: results go nowhere, exit codes still tell
        sys.stdout = open(os.devnull, "w")  # for the life of the process
    try:  # a pinned clock that cannot be used is a usage error for every command
        clock.check()
    except clock.ClockError as exc:
        return fail_usage(exc, args)
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
            try:
                with guarded_output():  # no text a command quotes can drive the terminal
                    return int(module.run(args))
            finally:
                if argv is None:
                    # Once more at the end: what the command loaded and made since (the SSH
                    # library above all) lives until the exit too, and the interpreter's
                    # collections at exit walked it all (a tenth of a second of a sync's
                    # process on a busy machine, spent after its work was done).
                    gc.freeze()
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
