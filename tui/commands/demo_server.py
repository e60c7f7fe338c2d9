"""``report-keeper demo-server [--port N] [--dir D]``: run only the embedded demo SFTP server.

Prints how to connect (host, port, user, key, host-key fingerprint, an OpenSSH ``sftp``
line and a config file for the headless commands), then serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from tui.commands.common import fail_usage
from tui.core.status import Exit

log = logging.getLogger("report_keeper.commands.demo_server")

EPILOG = """\
The server listens on 127.0.0.1 only, with a throwaway host key and a throwaway user key
(written 0600 to a temporary folder that is removed on exit). It serves generated reports of
realistic Alma shape (no real people) under upload/ALMA/Daily_Report, dated relative to now or
to REPORT_KEEPER_NOW. With --dir D the folder D is served (and filled with the demo reports
when its report folder is empty); it is kept on exit.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--port", type=int, default=0, metavar="N",
                        help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--dir", metavar="D", default=None, help="folder to serve (default: a temporary one)")


def run(args: argparse.Namespace) -> int:
    from tui.core.logs import setup_logging

    if not 0 <= args.port <= 65535:
        return fail_usage(f"--port {args.port} is not a port number (1-65535, or 0 for a free one)")
    setup_logging()
    try:
        return asyncio.run(_serve(args.port, args.dir))
    except KeyboardInterrupt:
        return 0


async def _serve(port: int, folder: str | None) -> int:
    from tui.sftp.demo_server import start_demo_server

    try:
        server = await start_demo_server(folder, port)
    except OSError as exc:
        sys.stderr.write(f"report-keeper demo-server: {exc.strerror or exc}\n")
        return int(Exit.USAGE)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            pass
    try:
        config = server.write_config()
        files = len(server.scenario.files) if server.scenario else None
        out = sys.stdout
        out.write(
            "Report Keeper demo SFTP server\n"
            f"  host:        {server.host}\n"
            f"  port:        {server.port}\n"
            f"  user:        {server.user}\n"
            f"  key:         {server.client_key_path}\n"
            f"  host key:    {server.host_key_type} {server.host_key_fingerprint}\n"
            f"  known_hosts: {server.known_hosts_path}\n"
            f"  folder:      {server.remote_dir}"
            + (f" ({files} report files)" if files is not None else "") + "\n"
            f"  serving:     {server.root}\n"
            f"  config:      {config}\n"
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
        sys.stdout.write("Demo server stopped.\n")
        sys.stdout.flush()
    return 0
