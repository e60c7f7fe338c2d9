"""``report-keeper schedule``: the systemd user timer (or crontab line) for unattended runs."""

from __future__ import annotations

import argparse
import asyncio
import sys

from tui.commands import all_profiles
from tui.commands.common import add_profile_arguments, fail_usage, load_profile, one_line, shell_word
from tui.core import unattended as un
from tui.core.config import ConfigError, Profile, load_config
from tui.core.names import escape_name, profile_args
from tui.core.status import Exit

EPILOG = """\
Without options: prints the systemd user units (a service running 'report-keeper sync' and
then 'report-keeper check' for this config and profile, and a daily timer after the latest
report is due, in the profile's time zone, Persistent=true) and the equivalent crontab line.

--install writes the units to ~/.config/systemd/user and enables the timer (systemctl --user),
or, where systemd user units are unavailable, adds the crontab line; running it again
changes nothing (or refreshes what changed). --uninstall removes both; it needs only the
profile's name and the config's path, so a profile deleted from the config since (or one whose
settings hold an error) is removed all the same.

--all-profiles: one timer (or line) for every profile of the config, running 'sync
--all-profiles' and 'check --all-profiles' after the latest profile is due; --install removes
the profiles' own timers and lines of that config (they would run twice a night), and a
profile's own --install is refused while it is installed. --install and --uninstall both remove
the own timers and lines of this config's profiles that are no longer in it (their runs fail
every night), each one said; another config's and hand-written units are never touched.

A user timer runs only while you are logged in unless lingering is on:
'loginctl enable-linger $USER'. The SMTP password is not written anywhere: put
RK_SMTP_PASSWORD='...' (the name from smtp_password_env) in secrets.env beside the config
file (mode 0600); the timer and the crontab line read it.

cron and timers run without your ssh-agent and without a terminal: --install warns (exit 1,
installed all the same) when a profile's key file has a passphrase, or when it has no key file
and would log in through ssh-agent; 'report-keeper init --new-key' makes a key without one.

--all-profiles with a profile whose own settings are wrong (a typo): the timer is written for
the others all the same (its time from theirs), the broken profile is named on stderr with its
error, and the exit code is 3; fix it and run schedule again.

Exit codes: 0 done; 1 installed, but a profile would not log in at night (the warning says
why and what to do); 2 the timer or crontab line could not be put in place or removed
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
    if args.uninstall:
        return _uninstall(args)
    replaces: dict[str, str] = {}  # the profiles' own unit names (--all-profiles replaces them)
    blocked_by: str | None = None
    gone: list[un.Installed] = []  # own timers and lines of profiles no longer in the config
    broken: dict[str, ConfigError] = {}
    try:
        if all_profiles.selected(args):
            every = all_profiles.load_every(args)
            profiles_of, broken = every.profiles, every.broken
            if not profiles_of:  # nothing to plan with: each one's error
                for exc in list(broken.values())[1:]:
                    sys.stderr.write(f"report-keeper: {one_line(str(exc))}\n")
                return fail_usage(next(iter(broken.values())))
            # The timer runs every profile, a broken one too (its run says why it cannot, until
            # it is fixed); its time comes from the profiles whose settings load.
            plan = un.plan_all(profiles_of, getattr(args, "config", None) or profiles_of[0].source)
            replaces = {unit: name for name in every.names
                        for unit in (un.unit_name(name, plan.config), *un.earlier_unit_names(name, plan.config))}
            gone = un.left_behind(plan.config, every.names)
        else:
            profile = load_profile(args)
            profiles_of = [profile]
            plan = un.plan_schedule(profile, getattr(args, "config", None) or profile.source)
            blocked_by = un.all_unit_name(plan.config)
    except (ConfigError, un.ScheduleError) as exc:
        return fail_usage(str(exc))
    out = sys.stdout
    code = _say_broken(broken)
    warnings = _login_warnings(profiles_of, plan)
    if args.install:
        try:
            done = un.install(plan, replaces=replaces, blocked_by=blocked_by)
        except un.ScheduleError as exc:
            sys.stderr.write(f"report-keeper: {exc}\n")
            return max(code, int(Exit.CRITICAL))
        timer = any("systemd" in line for line in done)
        removed, failed = _remove_gone(gone)
        code = max(code, failed)
        for line in done + removed or [f"nothing was installed for {plan.what}"]:
            out.write(f"{line}\n")
        if timer:
            out.write(f"Runs daily at {plan.at:%H:%M} ({un._tz_name(plan.tz)}); "
                      f"see 'systemctl --user list-timers {plan.name}.timer'.\n"
                      "To run while you are logged out: loginctl enable-linger $USER\n")
        if warnings and timer and un.manager_agent() is not None:
            warnings = _login_warnings(profiles_of, plan, agent=True)  # the timer's runs reach the agent
        for warning in warnings:
            sys.stderr.write(f"report-keeper: warning: {warning}\n")
        return max(code, int(Exit.WARNING if warnings else Exit.OK))
    for warning in warnings:
        out.write(f"# Warning: {warning}\n")
    for target in gone:
        out.write(f"# --install also removes the own timer or crontab line of {target.what}, which is "
                  "no longer in the config (its runs fail every night).\n")
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
    return code


def _uninstall(args: argparse.Namespace) -> int:
    """``--uninstall``: the timer and line found by the profile's name and the config's path.
    Removing needs no profile's settings: a profile deleted from the config since, one whose
    table holds an error, or a config whose every profile does, is no reason to keep a timer
    that fails every night. The config is read only to know which profile is meant when
    ``--profile`` is left out."""
    config = getattr(args, "config", None)
    gone: list[un.Installed] = []
    try:
        if all_profiles.selected(args):
            target = un.installed(config, None)
            gone = _gone_of(config)
        else:
            name = getattr(args, "profile", None) or load_config(config).picked(None)
            target = un.installed(config, name)
    except (ConfigError, un.ScheduleError) as exc:
        return fail_usage(str(exc))
    try:
        done = un.uninstall(target)
    except un.ScheduleError as exc:
        sys.stderr.write(f"report-keeper: {exc}\n")
        return int(Exit.CRITICAL)
    removed, code = _remove_gone(gone)
    for line in done + removed or [f"nothing was installed for {target.what}"]:
        sys.stdout.write(f"{line}\n")
    return code


def _gone_of(config: str | None) -> list[un.Installed]:
    """For ``--uninstall --all-profiles``: the own timers and lines of profiles no longer in
    the config (:func:`un.left_behind`); of a config file that is gone, every one of its
    profiles'. A config that cannot be read does not say which profiles it holds: none is
    looked for, and stderr says so (the one timer is removed all the same)."""
    path = un.installed(config, None).config
    if not path.exists() and not path.is_symlink():
        return un.left_behind(path, ())
    try:
        names = load_config(config).names
    except ConfigError as exc:
        sys.stderr.write(f"report-keeper: the own timers of profiles removed from the config were not looked "
                         f"for: {one_line(str(exc))}\n")
        return []
    return un.left_behind(path, names)


def _remove_gone(gone: list[un.Installed]) -> tuple[list[str], int]:
    """Remove each own timer and crontab line of a profile no longer in the config, as
    ``--uninstall --profile NAME`` does; what was done (each line naming the profile), and the
    exit code (2 when one could not be removed: stderr says why, the others are removed)."""
    done: list[str] = []
    code = int(Exit.OK)
    for target in gone:
        try:
            removed = un.uninstall(target)
        except un.ScheduleError as exc:
            sys.stderr.write(f"report-keeper: {target.what} is no longer in the config, and its own "
                             f"timer was kept: {exc}\n")
            code = int(Exit.CRITICAL)
            continue
        done += [f"{line} of {target.what}, which is no longer in the config" for line in removed]
    return done, code


def _say_broken(broken: dict[str, ConfigError]) -> int:
    """With ``--all-profiles``: each profile whose own settings are wrong named on stderr with
    its error; exit 3 when there is one (the timer is still written for the others)."""
    for name, exc in broken.items():
        sys.stderr.write(f"report-keeper: profile '{escape_name(name)}' cannot run: {one_line(str(exc))}; "
                         "the timer runs it as well, and its runs fail until it is fixed\n")
    return int(Exit.USAGE if broken else Exit.OK)


def _login_warnings(profiles: list[Profile], plan: un.SchedulePlan, *, agent: bool = False) -> list[str]:
    """One line per problem the nightly run would meet logging in (a key with a passphrase, a
    login through ssh-agent only: cron and timers have neither a terminal nor, mostly, the
    agent; ``agent``: its runs have the agent), naming the profiles it concerns and what to do."""
    from tui.sftp.setup import unattended_login_problem  # noqa: PLC0415 - only schedule needs asyncssh here

    async def every() -> list[str | None]:
        return list(await asyncio.gather(*(unattended_login_problem(p, agent=agent) for p in profiles)))

    found: dict[str, list[str]] = {}
    for profile, problem in zip(profiles, asyncio.run(every()), strict=True):
        if problem is not None:
            found.setdefault(problem, []).append(profile.name)
    lines = []
    config = shell_word(str(plan.config))
    for problem, names in found.items():
        who = ", ".join(f"'{escape_name(n)}'" for n in names[:5])
        if len(names) > 5:
            who += f" and {len(names) - 5} more"
        which = " ".join(map(shell_word, profile_args(names[0]))) if len(names) == 1 else "--profile NAME"
        lines.append(
            f"profile{'s' if len(names) > 1 else ''} {who}: {problem}, so the nightly run would fail to log "
            f"in every night: 'report-keeper init --new-key --force --config {config} {which}' makes a "
            "key without passphrase for it (the server's administrator adds its public line), or name such a "
            "key in the profile's 'key'")
    return lines
