"""Helpers shared by the headless commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tui.core.status import Exit


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``/``--profile`` on a subcommand without clobbering the top-level ones."""
    parser.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="config file")
    parser.add_argument("--profile", metavar="NAME", default=argparse.SUPPRESS, help="profile name")


def load_profile(args: argparse.Namespace):
    """The selected profile; raises ``ConfigError`` (callers exit 3)."""
    from tui.core.config import load_config

    config = load_config(getattr(args, "config", None))
    return config.profile(getattr(args, "profile", None))


def terminal_passphrase_cb():
    """A key passphrase callback for the headless commands: on a terminal it asks (getpass,
    never echoed, never stored); without one (cron) there is nobody to ask, so None, and an
    encrypted key must come from ssh-agent."""
    if not sys.stdin.isatty():
        return None

    async def ask(path) -> str | None:
        import asyncio
        import getpass

        try:
            return await asyncio.to_thread(getpass.getpass, f"Passphrase for {path}: ")
        except (EOFError, KeyboardInterrupt):
            return None

    return ask


def print_json(document: dict[str, Any]) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def fail_usage(message: str) -> int:
    sys.stderr.write(f"report-keeper: {message}\n")
    return int(Exit.USAGE)
