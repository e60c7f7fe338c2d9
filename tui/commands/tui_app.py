"""The TUI: ``report-keeper [--config F] [--profile P]`` and ``report-keeper --demo [--local-dir D]``.

Without a config at the default location (and none named), the first-run screen sets one up
(``tui/setup_app.py``: what ``report-keeper init`` asks) and the app then opens on Health for
it; the demo is offered there too.

``--demo`` starts the embedded demo SFTP server in-process (127.0.0.1, ephemeral port, no
config, no network) and points the app at it; downloads go to a temporary folder unless
``--local-dir`` is given. A configuration problem prints one line and exits 3. Logs go to
the user log dir (``tui.core.logs``), never cell values.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from tui.commands.common import load_profile, local_dir_problem, one_line
from tui.core.config import CONFIG_ENV, DEFAULT_PROFILE, ConfigError, default_config_path
from tui.core.ledger import LedgerError
from tui.core.model import ConnTestResult
from tui.core.status import Exit

log = logging.getLogger("report_keeper.commands.tui_app")


def _error(message: str) -> None:
    sys.stderr.write(f"report-keeper: {one_line(message)}\n")


def run(args: argparse.Namespace) -> int:
    """Open the TUI; returns the exit code."""
    if getattr(args, "local_dir", None) and not getattr(args, "demo", False):
        _error("--local-dir only applies to --demo; set local_dir in the profile instead")
        return int(Exit.USAGE)
    try:
        if getattr(args, "demo", False):
            return asyncio.run(_run_demo(args))
        first_run = first_run_path(args)
        if first_run is not None:
            return asyncio.run(_run_first(args, first_run))
        return asyncio.run(_run_configured(args))
    except KeyboardInterrupt:
        return 130


def first_run_path(args: argparse.Namespace) -> Path | None:
    """Where the first run writes the config: the default location when nothing is there, no
    file was named (a named file that is missing is an error, not a first run) and a person is
    at the terminal."""
    if getattr(args, "config", None) is not None or os.environ.get(CONFIG_ENV):
        return None
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        return None  # nobody to fill in the form: the one-line "no config" error says what to do
    path = default_config_path()
    return None if os.path.lexists(path) else path


async def _run_first(args: argparse.Namespace, path: Path) -> int:
    """The first-run screen, then the app for what it wrote (on Health), or the demo."""
    # Loaded only on a first run: every other start of the app does without it.
    from tui.setup_app import FirstRunApp  # noqa: PLC0415 - see above
    from tui.setup_state import FirstRunEnd  # noqa: PLC0415 - see above

    setup = FirstRunApp(path, getattr(args, "profile", None) or DEFAULT_PROFILE)
    log.info("no config at %s: first run", path)
    _exit_on_hangup(setup)
    result = await setup.run_async()
    if result is None:
        return int(setup.return_code or 0)
    if result.end is FirstRunEnd.DEMO:
        return await _run_demo(args)
    return await _run_configured(args, connection_test=result.test)


async def _run_configured(args: argparse.Namespace, connection_test: ConnTestResult | None = None) -> int:
    try:
        profile = load_profile(args, need_local_dir=True)
    except ConfigError as exc:
        _error(str(exc))
        return int(Exit.USAGE)

    # Textual is loaded once the profile is known to be good: a configuration problem (cron
    # starting the app without a config, a typo) prints its one line without it.
    from tui.app import create_app  # noqa: PLC0415 - see above

    try:
        app = create_app(profile, connection_test=connection_test)
    except LedgerError as exc:
        _error(str(exc))
        return int(Exit.USAGE)
    log.info("TUI started for profile %s", profile.name)
    _exit_on_hangup(app)
    try:
        await app.run_async()
    finally:
        app.ledger.close()
    return int(app.return_code or 0)


def _exit_on_hangup(app) -> None:
    """A dropped SSH session (SIGHUP) or a kill (SIGTERM) closes the app like ``q`` does, so
    the demo's temporary folders are removed and the ledger is closed cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGHUP, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, app.exit)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            pass


async def _run_demo(args: argparse.Namespace) -> int:
    from tui.app import create_app  # noqa: PLC0415 - Textual only for the app (see _run_configured)
    from tui.demo.seed import seed_history  # noqa: PLC0415 - the demo's own
    from tui.demo.server import start_demo_server  # noqa: PLC0415 - the demo's own

    local_dir = getattr(args, "local_dir", None)
    scratch = None
    if local_dir is not None:  # checked before anything starts: else every download fails in the app
        problem = local_dir_problem(Path(local_dir).expanduser())
        if problem is not None:
            _error(f"--local-dir: {problem}; name a folder you can write to")
            return int(Exit.USAGE)
    if local_dir is None:
        scratch = Path(tempfile.mkdtemp(prefix="report-keeper-demo-downloads-"))
        local_dir = scratch / "reports"
    try:
        # The app's own throwaway folder: writable, so the connection test (t) can upload its probe.
        server = await start_demo_server(local_dir=Path(local_dir).expanduser(), writable=True)
    except OSError as exc:
        _error(f"the demo server could not start: {exc}")
        return int(Exit.CRITICAL)
    try:
        sys.stderr.write("report-keeper: preparing the demo (a previous sync of its older reports)...\n")
        seeded = await seed_history(server)
        if seeded is not None and seeded.failed:
            log.warning("demo history: %d files could not be fetched", len(seeded.failed))
        app = create_app(server.profile, demo=True)
        log.info("demo TUI started against 127.0.0.1 port %d", server.port)
        _exit_on_hangup(app)
        try:
            await app.run_async()
        finally:  # the app closed its sync service when it stopped
            app.ledger.close()
    finally:
        await server.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if local_dir is not None and scratch is None:
        sys.stdout.write(f"Demo downloads are in {local_dir}\n")
    return int(app.return_code or 0)
