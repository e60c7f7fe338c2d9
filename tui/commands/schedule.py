"""``report-keeper schedule``: the systemd user timer (or crontab line) for unattended runs."""

from __future__ import annotations

import argparse
import sys

from tui.commands import all_profiles
from tui.commands.common import add_profile_arguments, fail_usage, load_profile
from tui.core import unattended as un
from tui.core.config import ConfigError
from tui.core.status import Exit

EPILOG = """\
Without options: prints the systemd user units (a service running 'report-keeper sync' and
then 'report-keeper check' for this config and profile, and a daily timer after the latest
report is due, in the profile's time zone, Persistent=true) and the equivalent crontab line.

--install writes the units to ~/.config/systemd/user and enables the timer (systemctl --user),
or, where systemd user units are unavailable, adds the crontab line; running it again
changes nothing (or refreshes what changed). --uninstall removes both.

--all-profiles: one timer (or line) for every profile of the config, running 'sync
--all-profiles' and 'check --all-profiles' after the latest profile is due; --install removes
the profiles' own timers and lines of that config (they would run twice a night), and a
profile's own --install is refused while it is installed.

A user timer runs only while you are logged in unless lingering is on:
'loginctl enable-linger $USER'. The SMTP password is not written anywhere: put
RK_SMTP_PASSWORD='...' (the name from smtp_password_env) in secrets.env beside the config
file (mode 0600); the timer and the crontab line read it.

Exit codes: 0 done; 2 the timer or crontab line could not be put in place or removed
(systemctl or crontab refused, the user manager is out of reach, a unit file of that name is
not ours, the line is longer than cron keeps: the message says why); 3 usage or
configuration error.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    add_profile_arguments(parser)
    parser.add_argument(
        "--all-profiles", action="store_true",
        help="one timer (or crontab line) running 'sync --all-profiles' and 'check --all-profiles' for "
             "every profile of the config; --install replaces the profiles' own timers and lines")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--install", action="store_true", help="write and enable the timer (or crontab line)")
    group.add_argument("--uninstall", action="store_true", help="remove the timer and the crontab line")


def run(args: argparse.Namespace) -> int:
    replaces: dict[str, str] = {}  # the profiles' own unit names (--all-profiles replaces them)
    blocked_by: str | None = None
    try:
        if all_profiles.selected(args):
            profiles = all_profiles.load_profiles(args)
            plan = un.plan_all(profiles, getattr(args, "config", None) or profiles[0].source)
            replaces = {un.unit_name(p.name, plan.config): p.name for p in profiles}
        else:
            profile = load_profile(args)
            plan = un.plan_schedule(profile, getattr(args, "config", None) or profile.source)
            blocked_by = un.all_unit_name(plan.config)
    except (ConfigError, un.ScheduleError) as exc:
        return fail_usage(str(exc))
    out = sys.stdout
    if args.install or args.uninstall:
        try:
            if args.install:
                done = un.install(plan, replaces=replaces, blocked_by=blocked_by)
            else:
                done = un.uninstall(plan)
        except un.ScheduleError as exc:
            sys.stderr.write(f"report-keeper: {exc}\n")
            return int(Exit.CRITICAL)
        if not done:
            done = [f"nothing was installed for {plan.what}"]
        for line in done:
            out.write(f"{line}\n")
        if args.install and any("systemd" in line for line in done):
            out.write(f"Runs daily at {plan.at:%H:%M} ({un._tz_name(plan.tz)}); "
                      f"see 'systemctl --user list-timers {plan.name}.timer'.\n"
                      "To run while you are logged out: loginctl enable-linger $USER\n")
        return int(Exit.OK)
    out.write(f"# Daily at {plan.at:%H:%M} {un._tz_name(plan.tz)}: {plan.reason}.\n")
    out.write("# 'report-keeper schedule --install' puts these in place.\n\n")
    for name, text in un.systemd_units(plan).items():
        out.write(f"# ~/.config/systemd/user/{name}\n{text}\n")
    t = un.cron_time(plan)
    out.write(f"# Or one crontab line (cron has no time zone: {t:%H:%M} on this machine's clock):\n")
    line = un.crontab_line(plan)
    too_long = un.cron_too_long(line)
    if too_long:
        out.write(f"# Do not use it: {too_long}.\n")
    out.write(line + "\n")
    return int(Exit.OK)
