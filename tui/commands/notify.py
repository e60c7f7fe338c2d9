"""``report-keeper notify --test``: send a test message through every configured channel."""

from __future__ import annotations

import argparse
import sys

from tui.commands.common import add_profile_arguments, fail_usage, load_profile, print_json
from tui.core.config import ConfigError
from tui.core.status import Exit
from tui.notify.dispatch import send_test

EPILOG = """\
Sends a test e-mail (email_to), a test POST to webhook_url and a success ping to ping_url,
as configured in the profile's [profile.NAME.notify] table, and says what happened to each.
The SMTP password is read from the environment variable named by smtp_password_env.

Exit codes: 0 every configured channel worked; 2 at least one failed (the line says why);
3 usage or configuration error, or no channel configured.
With --json: {"profile", "status": "ok|critical", "channels": [{"channel", "ok", "detail"}]}.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_profile_arguments(parser)
    parser.add_argument("--test", action="store_true", help="send a test message through every channel")
    parser.add_argument("--json", action="store_true", help="print one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    if not args.test:
        return fail_usage("notify: nothing to do; use 'report-keeper notify --test' to send a test message", args)
    try:
        profile = load_profile(args)
    except ConfigError as exc:
        return fail_usage(exc, args)
    if not profile.notify.configured:
        where = profile.source or "the config"
        return fail_usage(f"{where}: profile.{profile.name}.notify: no alert channel is configured; "
                          "add email_to (with smtp_host), webhook_url or ping_url (see README: Alerts)",
                          args, kind="config")

    outcomes = send_test(profile)
    code = Exit.OK if all(o.ok for o in outcomes) else Exit.CRITICAL
    out = sys.stderr if args.json else sys.stdout
    names = {"email": "e-mail", "webhook": "webhook", "ping": "ping"}
    for o in outcomes:
        out.write(f"{names.get(o.channel, o.channel):8} {'sent' if o.ok else 'FAILED'}: {o.detail}\n")
    out.flush()
    if args.json:
        print_json({"profile": profile.name, "status": "ok" if code == Exit.OK else "critical",
                    "channels": [{"channel": o.channel, "ok": o.ok, "detail": o.detail} for o in outcomes]})
    return int(code)
