"""``report-keeper demo-server [--port N] [--dir D] [--writable]``: run only the embedded demo
SFTP server.

Prints how to connect (host, port, user, key, host-key fingerprint, an OpenSSH ``sftp`` line
and a config file for the headless commands), then serves until Ctrl-C or SIGTERM.

Where things go: with ``--dir D`` the keys, the printed config, the downloads and the ledger
live in a folder of the user data dir that belongs to D (``demo-server/<name>-<hash of D's
path>``), kept when the server stops, so a restart on the same D presents the same host key
and a client's earlier downloads stay where the config says; the config's closed day is the
one of D's reports (``demo_data.generated_closed_day``), not one counted back from the day of
the restart. Without ``--dir`` the served
folder and the keys are throwaway (removed on exit); the downloads and ledger of the printed
config go to a temporary folder of their own that is kept on exit (its path is printed) once
something was written there.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from tui.commands.common import fail_usage
from tui.core.config import default_data_dir
from tui.demo.server import start_demo_server

log = logging.getLogger("report_keeper.commands.demo_server")

EPILOG = """\
The server listens on 127.0.0.1 only. It serves generated reports of realistic Alma shape
(no real people) under upload/ALMA/Daily_Report, dated relative to now or to REPORT_KEEPER_NOW.
SFTP clients stay inside the served folder: paths cannot leave it and symbolic links are
never followed or created.

Without --dir: a temporary folder is served, with throwaway keys (removed on exit), and
clients may change it (the connection test of `check` uploads a probe file). The printed
config downloads into a temporary folder that is kept on exit.

With --dir D: the folder D is served (and filled with the demo reports when its report folder
is empty); it is kept on exit and is read-only for clients unless --writable is given. Its
keys, config, downloads and ledger are kept in the user data dir
(report-keeper/demo-server/...), so a restart on the same D presents the same host key.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--port", type=int, default=0, metavar="N",
                        help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--dir", metavar="D", default=None, help="folder to serve (default: a temporary one)")
    parser.add_argument("--writable", action="store_true",
                        help="with --dir: let SFTP clients change the folder (default: read-only)")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        return fail_usage(f"--port {args.port} is not a port number (1-65535, or 0 for a free one)")
    try:
        return asyncio.run(_serve(args.port, args.dir, args.writable))
    except KeyboardInterrupt:
        return 0


def state_dir_for(folder: Path) -> Path:
    """The kept state (keys, config, downloads, ledger) of a served folder."""
    real = folder.expanduser().resolve()
    digest = hashlib.sha256(os.fsencode(real)).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", real.name).strip("-.")[:40] or "folder"
    return default_data_dir() / "demo-server" / f"{slug}-{digest}"


class _Busy(Exception):
    pass


def _lock(state: Path) -> int:
    """Hold ``state/.lock`` while serving: two servers on one folder would overwrite each
    other's config and known_hosts."""
    fd = os.open(state / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise _Busy() from None
    return fd


def _prepare(folder: str | None) -> tuple[dict, int | None, Path]:
    """The keyword arguments of ``start_demo_server`` and the lock held; raises OSError/_Busy."""
    if folder is None:
        scratch = Path(tempfile.mkdtemp(prefix="report-keeper-demo-downloads-"))
        return dict(local_dir=scratch / "reports", ledger=scratch / "ledger.sqlite3", writable=True), None, scratch
    served = Path(folder).expanduser()
    if served.exists() and not served.is_dir():
        raise OSError(errno.ENOTDIR, f"--dir {served} exists but is not a folder; give a folder to serve")
    state = state_dir_for(served)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state, 0o700)
    lock = _lock(state)
    (state / "served-folder.txt").write_text(f"{served.resolve()}\n")
    return dict(keys_dir=state / "keys", local_dir=state / "reports", ledger=state / "ledger.sqlite3"), lock, state


async def _serve(port: int, folder: str | None, writable: bool) -> int:
    try:
        kwargs, lock, home = _prepare(folder)
    except _Busy:
        return fail_usage(f"another demo-server is serving {folder} already; stop it first "
                          "(or serve another folder)")
    except OSError as exc:
        return fail_usage(f"demo-server: {exc.strerror or exc}")
    if folder is not None:
        kwargs["writable"] = writable
    try:
        server = await start_demo_server(folder, port, **kwargs)
    except OSError as exc:
        if lock is not None:
            os.close(lock)
        else:
            shutil.rmtree(home, ignore_errors=True)  # the unused download folder
        return fail_usage(f"demo-server: {exc.strerror or exc}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            pass
    profile = server.profile
    try:
        config = server.write_config(home / "config.toml" if folder is not None else None)
        files = len(server.scenario.files) if server.scenario else None
        keys_note = "kept: the same host key on every start" if folder is not None else "removed on exit"
        writable_note = ("yes" if server.writable else
                         "no (clients can only read; start with --writable to allow changes)")
        out = sys.stdout
        out.write(
            "Report Keeper demo SFTP server\n"
            f"  host:        {server.host}\n"
            f"  port:        {server.port}\n"
            f"  user:        {server.user}\n"
            f"  key:         {server.client_key_path}\n"
            f"  keys:        {server.client_key_path.parent} ({keys_note})\n"
            f"  host key:    {server.host_key_type} {server.host_key_fingerprint}\n"
            f"  known_hosts: {server.known_hosts_path}\n"
            f"  folder:      {server.remote_dir}"
            + (f" ({files} report files)" if files is not None else "") + "\n"
            f"  serving:     {server.root}\n"
            f"  writable:    {writable_note}\n"
            f"  config:      {config}\n"
            f"  downloads:   {profile.local_dir}\n"
            f"  ledger:      {profile.ledger_path}\n"
            "Connect with OpenSSH:\n"
            f"  {server.sftp_command}\n"
            "or sync with Report Keeper:\n"
            f"  report-keeper sync --config {config} --profile demo\n"
            "Press Ctrl-C to stop.\n"
        )
        out.flush()
        await stop.wait()
    finally:
        await server.close()
        if lock is not None:
            os.close(lock)
        if folder is None and not any(home.iterdir()):  # nobody synced: nothing to keep
            home.rmdir()
            sys.stdout.write("Demo server stopped.\n")
        else:
            sys.stdout.write(f"Demo server stopped. Downloads kept in {profile.local_dir}, "
                             f"ledger in {profile.ledger_path}.\n")
        sys.stdout.flush()
    return 0
