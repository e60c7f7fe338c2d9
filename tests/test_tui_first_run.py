"""The first-run screen (no config yet) through Pilot, against the real OpenSSH sshd.

Each test has its own HOME (its ~/.ssh holds the sshd's authorized user key and no
known_hosts, so the host key must be confirmed) and its own config location. Typed as a
person would: keys only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import stat
import tempfile
from datetime import date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from textual import events
from textual.widgets import Input, OptionList

from tests.fixtures_sshd import free_port
from tests.test_sftp_client import ssh_agent  # noqa: F401 - a fixture: a real ssh-agent
from tests.test_tui_fixtures import holds_settled
from tests.xlsx_factory import write_report
from tui.app import create_app
from tui.commands import tui_app
from tui.core.config import load_config
from tui.screens.first_run import FirstRunScreen
from tui.screens.health import HealthScreen
from tui.screens.help import HelpScreen
from tui.screens.modals import HostKeyModal
from tui.setup_app import FirstRunApp
from tui.setup_state import FirstRunEnd, FirstRunExit, SetupStep
from tui.state import ConnectionState

TZ = ZoneInfo("America/Chicago")
REPORT = "Loans Per Patron From 3 Days Ago"
NOW = "2026-11-26T16:00:00+00:00"
HOSTILE_FOLDER = "[bold]Evil [link=x]y"
HOSTILE_REPORT = "[red]Renewals"


@pytest.fixture
def home(tmp_path, monkeypatch, ssh_keys) -> Path:
    """A fresh HOME whose ~/.ssh holds the key the sshd accepts (no known_hosts)."""
    home = tmp_path / "home"
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    shutil.copy(ssh_keys.private, ssh / "id_ed25519")
    shutil.copy(ssh_keys.public, ssh / "id_ed25519.pub")
    os.chmod(ssh / "id_ed25519", 0o600)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    monkeypatch.setenv("LOGNAME", "librarian")  # the user name the form offers
    monkeypatch.setenv("TZ", "America/Chicago")  # the time zone the form offers
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


@pytest.fixture(scope="module")
def site_template(tmp_path_factory) -> Path:
    """A report folder: a week of daily deliveries, a sibling folder (written once per module)."""
    sub = tmp_path_factory.mktemp("first-run-site")
    folder = sub / "upload" / "ALMA"
    folder.mkdir(parents=True)
    (sub / "upload" / "other").mkdir()
    for i in range(7):
        day = date(2026, 11, 19) + timedelta(days=i)
        at = datetime.combine(day, time(7, 3), tzinfo=TZ)
        path = folder / f"{REPORT}_{at:%Y%m%d_%H%M%S}.xlsx"
        write_report(path, n_rows=3, day=day, seed=i)
        os.utime(path, (at.timestamp(), at.timestamp()))
    # Server names are untrusted: markup in them must show as typed, never style the screen.
    (sub / HOSTILE_FOLDER).mkdir()
    hostile = folder / f"{HOSTILE_REPORT}_20261125_090000.xlsx"
    write_report(hostile, n_rows=2, day=date(2026, 11, 25), seed=99)
    for p in [sub, *sub.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    (sub / "alma-link").symlink_to("upload/ALMA")  # a link: the listing shows no way into it
    return sub


@pytest.fixture
def site(sshd, site_template):
    """This test's own copy of the report folder on the sshd (modes, times and link kept)."""
    sub = Path(tempfile.mkdtemp(prefix="first-run-", dir=sshd.root))
    shutil.copytree(site_template, sub, symlinks=True, dirs_exist_ok=True)
    os.chmod(sub, 0o755)
    yield sub
    shutil.rmtree(sub, ignore_errors=True)


def _app(home: Path) -> FirstRunApp:
    return FirstRunApp(home / ".config" / "report-keeper" / "config.toml", "default", agent_keys=0,
                       connect_timeout=10)


async def _wait(pilot, condition, timeout: float = 30, step: float = 0.02) -> None:
    if condition():
        return
    for _ in range(int(timeout / step)):
        if await holds_settled(pilot, condition, step):
            return
    view = pilot.app.view
    raise AssertionError(f"timed out: step {view.step}, busy {view.busy!r}, error {view.error!r}")


def _host_key_asked(app) -> bool:
    """The host key question is up: its modal composed, not only pushed (its words and keys are
    there only once it is mounted, which on a busy machine can come a while after)."""
    return isinstance(app.screen, HostKeyModal) and bool(app.screen.query("#reject"))


def _screen_text(app) -> str:
    """What the screen shows, as text (the SVG screenshot's characters, entities decoded)."""
    import html
    import re

    svg = app.export_screenshot()
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\u00a0", " ")


async def _text(pilot, text: str, typed: bool) -> None:
    """Into the focused field: typed key by key, or pasted at once (as a terminal pastes)."""
    if not text:
        return
    if typed:
        await pilot.press(*text)
    else:
        pilot.app.focused.post_message(events.Paste(text))
        await pilot.pause()


async def _fill_form(pilot, *, port: int, username: str, typed: bool = False, remote_dir: str = "") -> None:
    """The answers, field by field (tab moves on; a field's old text is replaced)."""
    for text, tabs in (("127.0.0.1", 1), (str(port), 1), (username, 2), (remote_dir, 1), ("~/reports", 1),
                       ("America/Chicago", 0)):
        await _text(pilot, text, typed)
        await pilot.press(*["tab"] * tabs)


async def _open(pilot, name: str) -> None:
    """Highlight a folder of the picker by its name and open it with enter."""
    screen = pilot.app.screen
    listing = screen.query_one("#folder-list", OptionList)
    folder = pilot.app.view.folder
    target = f"child-{folder.folders.index(name)}"
    while listing.highlighted is None or listing.get_option_at_index(listing.highlighted).id != target:
        await pilot.press("down")
    before = folder.path
    await pilot.press("enter")
    await _wait(pilot, lambda: pilot.app.view.folder.path != before and not pilot.app.view.busy)


@pytest.mark.sshd
async def test_first_run_sets_up_a_profile_and_lands_on_health(sshd, site, home):
    app = _app(home)
    cfg = app.config_path
    async with app.run_test(size=(80, 24)) as pilot:
        assert isinstance(app.screen, FirstRunScreen)
        await _fill_form(pilot, port=sshd.port, username=sshd.username, typed=True, remote_dir="no/such")
        await pilot.press("enter")  # enter on the last field connects
        # the host key is shown with its fingerprint and confirmed once
        await _wait(pilot, lambda: _host_key_asked(app))
        modal = app.screen
        assert modal.info.fingerprint == sshd.host_key.get_fingerprint("sha256")
        shown = " ".join(str(s.render()) for s in modal.query("Static"))
        assert modal.info.fingerprint in shown
        await pilot.press("m")  # accept and remember
        await _wait(pilot, lambda: app.view.step is SetupStep.FOLDER and not app.view.busy)
        # the folder picker shows the server's real listing, from the login folder down (the
        # folder typed on the form does not exist: said, and the login folder shown instead)
        assert app.view.folder.path == str(sshd.root)
        assert "'no/such' does not exist" in app.view.error and "login folder is shown" in app.view.error
        assert site.name in app.view.folder.folders
        await _open(pilot, site.name)
        assert HOSTILE_FOLDER in _screen_text(app)
        await _open(pilot, "upload")
        assert app.view.folder.folders == ("ALMA", "other")
        await _open(pilot, "ALMA")
        assert (app.view.folder.files, app.view.folder.reports) == (8, 8)
        await pilot.press("u")  # use this folder
        await _wait(pilot, lambda: app.view.step is SetupStep.REPORTS and not app.view.busy)
        proposal, hostile = app.view.proposals
        assert (proposal.name, proposal.schedule, proposal.at, proposal.keep) == (REPORT, "daily", time(7, 0), True)
        assert (hostile.name, hostile.files, hostile.keep) == (HOSTILE_REPORT, 1, False)  # too few to be sure
        shown = _screen_text(app)
        assert HOSTILE_REPORT in shown and "[x]" in shown and "[ ]" in shown
        # keep it, edited: 07:15 and 3 hours of grace
        await pilot.press("e")
        await pilot.press("tab", *"25:00", "enter")  # not a time: said, nothing kept
        await pilot.pause()
        assert "'25:00' is not a time of day" in str(app.screen.query_one("#edit-error").render())
        assert proposal.at == time(7, 0)
        await pilot.press("ctrl+u", *"07:15", "tab", *"3h", "enter")
        await _wait(pilot, lambda: isinstance(app.screen, FirstRunScreen))
        assert (proposal.at, proposal.grace, proposal.keep) == (time(7, 15), timedelta(hours=3), True)
        await pilot.press("down", "space")  # keep the one seen once too
        assert hostile.keep
        await pilot.press("w")  # connection test, then write
        await _wait(pilot, lambda: app.view.step is SetupStep.DONE, timeout=60)
        assert app.view.test is not None and app.view.test.ok, app.view.test
        assert app.view.pending == ()
        await pilot.pause()
        title = str(app.screen.query_one("#fr-title").render())
        assert "no configuration yet" not in title and "set up in" in title, title
        await pilot.press("enter")
        await pilot.pause()
    assert app.return_value == FirstRunExit(FirstRunEnd.OPEN, test=app.view.test)

    # written 0600, atomically (no temporary file left), and it loads
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    assert [p.name for p in cfg.parent.iterdir()] == ["config.toml"]
    profile = load_config(cfg).profile("default")
    assert (profile.host, profile.port, profile.username) == ("127.0.0.1", sshd.port, sshd.username)
    assert profile.key == home / ".ssh" / "id_ed25519"
    assert profile.remote_dir == f"{site.name}/upload/ALMA"
    assert profile.local_dir == home / "reports" and str(profile.timezone) == "America/Chicago"
    report, renewals = profile.reports
    assert (report.name, report.schedule, report.at, report.grace) == (REPORT, "daily", time(7, 15),
                                                                       timedelta(hours=3))
    assert renewals.name == HOSTILE_REPORT  # a name with markup in it is just a name in TOML
    known = (home / ".ssh" / "known_hosts").read_text()
    assert known.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")

    # the app then opens on Health for that profile, and connects without asking again; the
    # connection test just passed is shown there, not "press t"
    main = create_app(profile, connection_test=app.return_value.test)
    try:
        async with main.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert isinstance(main.screen, HealthScreen)
            status = str(main.screen.query_one("#health-status").render())
            assert "press t" not in status and "upload, download, delete ok" in status, status
            def tried() -> bool:
                return main.connection.state in (ConnectionState.CONNECTED, ConnectionState.FAILED)

            for _ in range(600):
                if tried():
                    break
                await holds_settled(pilot, tried, 0.05)
            assert main.connection.state is ConnectionState.CONNECTED, main.connection.message
            assert not isinstance(main.screen, HostKeyModal)
    finally:
        main.ledger.close()


@pytest.mark.sshd
async def test_a_failing_connection_keeps_the_form_and_says_why(home):
    app = _app(home)
    closed = free_port()  # nothing listens there
    async with app.run_test(size=(80, 24)) as pilot:
        await _fill_form(pilot, port=closed, username="librarian", remote_dir="upload/ALMA")
        await pilot.press("enter")
        await _wait(pilot, lambda: app.view.error and not app.view.busy)
        assert app.view.step is SetupStep.FORM
        message = str(app.screen.query_one("#message").render())
        assert f"127.0.0.1 port {closed}" in message and "refused" in message.lower()
        # what was typed is still there, and the form can be sent again
        assert app.screen.query_one("#host", Input).value == "127.0.0.1"
        assert app.screen.query_one("#port", Input).value == str(closed)
        assert app.screen.query_one("#timezone", Input).value == "America/Chicago"
        assert not app.config_path.exists()
        # a bad answer is named under its field, nothing is tried
        app.screen.query_one("#port", Input).focus()
        await pilot.press("ctrl+u", *"99999", "tab", "tab", "tab", "tab", "tab", "enter")
        await _wait(pilot, lambda: "port" in app.view.field_errors)
        assert "99999 is not a port number" in str(app.screen.query_one("#error-port").render())
        assert not app.view.can_save_pending  # what is on the form was never tried
        # or it is written anyway, with what is pending noted in it
        app.screen.query_one("#port", Input).focus()
        await pilot.press("ctrl+u", *str(closed), "tab", "tab", "tab", "tab", "tab", "enter")
        await _wait(pilot, lambda: app.view.can_save_pending and not app.view.busy)
        app.screen.query_one("#host", Input).focus()
        await pilot.press("end", "x")
        assert not app.view.can_save_pending  # edited since: it must be tried first
        await pilot.press("backspace")
        await pilot.press("f3")
        await pilot.pause()
        assert app.view.step is SetupStep.FORM and not app.config_path.exists()
        app.screen.query_one("#timezone", Input).focus()
        await pilot.press("enter")
        await _wait(pilot, lambda: app.view.can_save_pending and not app.view.busy)
        # a config that appears meanwhile (another init, an editor) is never replaced
        app.config_path.parent.mkdir(parents=True)
        app.config_path.write_text("# mine\n")
        await pilot.press("f3")
        await _wait(pilot, lambda: "appeared meanwhile" in app.view.error)
        assert app.config_path.read_text() == "# mine\n" and app.view.step is SetupStep.FORM
        app.config_path.unlink()
        await pilot.press("f3")
        await _wait(pilot, lambda: app.view.step is SetupStep.DONE)
    assert load_config(app.config_path).profile().remote_dir == "upload/ALMA"  # as typed, never listed
    text = app.config_path.read_text()
    assert "# PENDING: the server could not be reached" in text
    assert stat.S_IMODE(app.config_path.stat().st_mode) == 0o600
    assert load_config(app.config_path).profile("default").port == closed


async def test_saved_for_later_notes_the_folder_never_chosen_and_the_key_never_tried(home):
    """The form's empty server folder says 'pick it from the server's folders'; saved for
    later before the server could be reached, the config silently watched the login folder
    ('.'), where sync finds no reports and check then has nothing to miss. It is pending now,
    and so is the new key the server has not seen yet (only 'could not be reached' was noted)."""
    for old in (home / ".ssh").iterdir():
        old.unlink()  # no key yet: the form offers a new pair
    app = _app(home)
    closed = free_port()  # nothing listens there
    async with app.run_test(size=(80, 24)) as pilot:
        await _fill_form(pilot, port=closed, username="librarian")
        await pilot.press("enter")
        await _wait(pilot, lambda: app.view.step is SetupStep.NEW_KEY and not app.view.busy)
        await pilot.press("c")
        await _wait(pilot, lambda: app.view.error and not app.view.busy)
        assert "refused" in app.view.error.lower()
        await pilot.press("f3")
        await _wait(pilot, lambda: app.view.step is SetupStep.DONE)
        pending = " | ".join(app.view.pending)
        assert "could not be reached" in pending, pending
        assert "server folder was not chosen" in pending and "remote_dir" in pending, pending
        assert "id_ed25519_report_keeper.pub" in pending and "administrator" in pending, pending
    text = app.config_path.read_text()
    assert "# PENDING: the server folder was not chosen" in text, text
    assert load_config(app.config_path).profile().remote_dir == "."


@pytest.mark.sshd
async def test_a_new_key_pair_is_made_shown_and_used_once_the_administrator_adds_it(sshd, site, home):
    for old in (home / ".ssh").iterdir():
        old.unlink()  # no key yet: the form offers a new pair
    app = _app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.view.defaults.keys[0].kind.value == "new"
        await _fill_form(pilot, port=sshd.port, username=sshd.username, remote_dir=site.name)
        await pilot.press("enter")
        await _wait(pilot, lambda: app.view.step is SetupStep.NEW_KEY)
        key = home / ".ssh" / "id_ed25519_report_keeper"
        public = key.with_suffix(".pub").read_text().strip()
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert app.view.new_key.public_line == public and "administrator" in _screen_text(app)
        await pilot.press("y")  # copied whole: the screen has to wrap it
        assert app.clipboard == public
        # before the administrator added it: the login is refused, and the reason says why
        await pilot.press("c")
        await _wait(pilot, lambda: _host_key_asked(app))
        await pilot.press("o")  # accept once
        await _wait(pilot, lambda: app.view.error and not app.view.busy)
        assert app.view.step is SetupStep.FORM and "does not accept the new key yet" in app.view.error
        # the administrator adds it; connecting again uses the same pair (no second one)
        with next(Path(sshd.root).parent.glob("authorized_keys")).open("a") as f:
            f.write(public + "\n")
        app.screen.query_one("#timezone", Input).focus()
        await pilot.press("enter")
        await _wait(pilot, lambda: app.view.step is SetupStep.NEW_KEY)
        await pilot.press("c")
        await _wait(pilot, lambda: _host_key_asked(app))
        await pilot.press("m")
        await _wait(pilot, lambda: app.view.step is SetupStep.FOLDER and not app.view.busy)
        assert app.view.folder.path == f"{sshd.root}/{site.name}"  # the folder typed on the form
        assert "alma-link" not in app.view.folder.folders
        # a folder the listing does not lead to, by its path: relative, then absolute
        await pilot.press("g")
        await pilot.press(*"alma-link", "enter")
        await _wait(pilot, lambda: app.view.folder.path.endswith("/upload/ALMA") and not app.view.busy)
        assert app.view.folder.reports == 8
        await pilot.press("g")
        await _text(pilot, f"{sshd.root}/{site.name}", typed=False)
        await pilot.press("enter")
        await _wait(pilot, lambda: app.view.folder.path == f"{sshd.root}/{site.name}" and not app.view.busy)
        await pilot.press("u")
        await _wait(pilot, lambda: app.view.step is SetupStep.REPORTS and not app.view.busy)
        assert app.view.proposals == [] and "No Excel reports" in _screen_text(app)
        await pilot.press("w")
        await _wait(pilot, lambda: app.view.step is SetupStep.DONE, timeout=60)
    assert sorted(p.name for p in (home / ".ssh").iterdir()) == [
        "id_ed25519_report_keeper", "id_ed25519_report_keeper.pub", "known_hosts"]
    profile = load_config(app.config_path).profile()
    assert profile.key == key and profile.remote_dir == site.name and not profile.reports


@pytest.mark.sshd
async def test_a_folder_typed_that_does_not_exist_is_said_in_the_pickers_words(sshd, site, home):
    """One missing folder at the end of a path gets past the server's realpath (OpenSSH, like
    realpath(3), resolves a last part that does not exist), so it is the listing that fails:
    the picker still says what it means there (type another path, the login folder is shown),
    never the sync's words about a profile's remote_dir and files marked as gone."""
    app = _app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fill_form(pilot, port=sshd.port, username=sshd.username, remote_dir=f"{site.name}/nosuch")
        await pilot.press("enter")
        await _wait(pilot, lambda: _host_key_asked(app))
        await pilot.press("o")
        await _wait(pilot, lambda: app.view.step is SetupStep.FOLDER and not app.view.busy)
        assert app.view.folder.path == str(sshd.root)
        error = app.view.error
        assert f"'{site.name}/nosuch' does not exist" in error and "login folder is shown" in error, error
        assert "remote_dir in the profile" not in error and "marked as gone" not in error, error
        # typed in the picker (g): said in the picker's words, and the folder shown stays
        await _open(pilot, site.name)
        await pilot.press("g")
        await pilot.press(*"upload/nope", "enter")
        await _wait(pilot, lambda: app.view.error and not app.view.busy)
        error = app.view.error
        assert "'" in error and "upload/nope' does not exist" in error, error
        assert "remote_dir in the profile" not in error and "marked as gone" not in error, error
        assert "Check the path" in error, error
        assert app.view.folder.path == f"{sshd.root}/{site.name}"
        # a file is not a folder either
        await pilot.press("g")
        await pilot.press(*f"upload/ALMA/{REPORT}_20261119_070300.xlsx", "enter")
        await _wait(pilot, lambda: app.view.error and not app.view.busy and "20261119" in app.view.error)
        assert "marked as gone" not in app.view.error, app.view.error


@pytest.mark.sshd
async def test_the_keys_of_ssh_agent_are_offered_and_used(sshd, home, ssh_agent, ssh_keys):
    import subprocess

    for old in (home / ".ssh").iterdir():
        old.unlink()  # no key file: the agent's keys come first
    subprocess.run(["ssh-add", str(ssh_keys.private)], check=True, capture_output=True,
                   env={**os.environ, "SSH_AUTH_SOCK": str(ssh_agent)})
    app = FirstRunApp(home / ".config" / "report-keeper" / "config.toml", "default", connect_timeout=10)
    async with app.run_test(size=(80, 24)) as pilot:
        await _wait(pilot, lambda: app.view.defaults.keys[0].kind.value == "agent")
        await pilot.pause()
        assert "ssh-agent (1 key)" in _screen_text(app)
        await _fill_form(pilot, port=sshd.port, username=sshd.username)
        await pilot.press("enter")
        await _wait(pilot, lambda: _host_key_asked(app))
        await pilot.press("o")
        await _wait(pilot, lambda: app.view.step is SetupStep.FOLDER and not app.view.busy)
    assert not list((home / ".ssh").glob("id_*"))  # no key pair was made
    assert not (home / ".ssh" / "known_hosts").exists()  # accepted once: not recorded


async def test_a_host_alias_leaves_port_and_user_to_the_ssh_config(home):
    (home / ".ssh" / "config").write_text("Host alma-files\n  HostName 127.0.0.1\n  Port 2222\n  User abc\n")
    app = _app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"alma-f")
        await pilot.press("right")  # takes the suggested alias
        screen = app.screen
        assert screen.query_one("#host", Input).value == "alma-files"
        assert screen.query_one("#port", Input).value == "" and screen.query_one("#username", Input).value == ""


async def test_enter_moves_on_past_the_key_choice(home):
    """"Tab or enter moves on": enter on 'Log in with' opens its list, and enter there chose
    and left the focus on the list's field, so enter after enter only opened and closed it
    and never reached the connect button. Choosing with enter now moves on; escape closes the
    list and stays."""
    from textual.widgets import Select

    app = _app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        key = screen.query_one("#key", Select)
        key.focus()
        await pilot.pause()
        await pilot.press("enter")  # opens the list
        await pilot.pause()
        assert key.expanded
        await pilot.press("escape")  # closes it, stays
        await pilot.pause()
        assert not key.expanded and app.focused is key
        await pilot.press("enter", "down", "enter")  # chooses another: moves on
        await pilot.pause()
        assert not key.expanded and key.value == 1
        assert app.focused is screen.query_one("#remote_dir", Input), app.focused
        # enter, enter from there on reaches the last field and connects (its field errors show)
        await pilot.press("shift+tab")
        await pilot.pause()
        assert app.focused is key
        await pilot.press("enter", "enter")  # the same choice again: moves on too
        await pilot.pause()
        assert app.focused is screen.query_one("#remote_dir", Input), app.focused


async def test_the_key_list_offers_only_keys(home):
    """The keys are known when the form opens; the list kept a blank first entry named
    '(looking…)' under them, which read as still searching and, chosen, meant the new pair."""
    from textual.widgets import Select

    app = _app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        key = app.screen.query_one("#key", Select)
        labels = [str(prompt) for prompt, _value in key._options]
        assert len(labels) == len(app.view.defaults.keys), labels
        assert not any("looking" in label for label in labels), labels
        assert key.value == 0


async def test_a_profile_the_config_would_refuse_is_named_on_the_form(home):
    """~/.ssh is a folder, but no profile may download into SSH's own folder: said under the
    field before anything is tried."""
    app = _app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fill_form(pilot, port=free_port(), username="librarian")
        app.screen.query_one("#local_dir", Input).value = "~/.ssh"
        app.screen.query_one("#timezone", Input).focus()
        await pilot.press("enter")
        await _wait(pilot, lambda: "local_dir" in app.view.field_errors)
        assert app.focused is app.screen.query_one("#local_dir", Input)
        assert not app.view.can_save_pending and app.view.step is SetupStep.FORM
    assert not app.config_path.exists()


async def test_a_servers_words_in_an_error_cannot_drive_the_terminal(home):
    app = _app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        app.view.error = "example.org closed the connection (\x1b]0;owned\x07\x1b[2J[bold]gone)."
        app._changed()
        await pilot.pause()
        shown = str(app.screen.query_one("#message").render())
        assert "\x1b" not in shown and "\\u001b]0;owned" in shown and "[bold]gone" in shown


async def test_the_demo_and_the_help_are_offered(home):
    app = _app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        title = str(app.screen.query_one("#fr-title").render())
        assert "try the demo (F2)" in title
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("f2")
        await pilot.pause()
    assert app.return_value == FirstRunExit(FirstRunEnd.DEMO)
    assert not app.config_path.exists()


class _Terminal:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_the_first_run_opens_only_without_a_config(home, tmp_path, monkeypatch):
    args = argparse.Namespace(config=None, profile=None, demo=False, local_dir=None)
    default = home / ".config" / "report-keeper" / "config.toml"
    # without a terminal (cron, a pipe) nobody can fill in the form: the one-line error stays
    monkeypatch.setattr("sys.stdin", _Terminal(False))
    monkeypatch.setattr("sys.stdout", _Terminal(True))
    assert tui_app.first_run_path(args) is None
    monkeypatch.setattr("sys.stdin", _Terminal(True))
    assert tui_app.first_run_path(args) == default
    # a file named explicitly that is missing is an error, not a first run
    assert tui_app.first_run_path(argparse.Namespace(config=str(tmp_path / "x.toml"), profile=None)) is None
    monkeypatch.setenv("REPORT_KEEPER_CONFIG", str(tmp_path / "y.toml"))
    assert tui_app.first_run_path(args) is None
    monkeypatch.delenv("REPORT_KEEPER_CONFIG")
    default.parent.mkdir(parents=True)
    default.symlink_to(tmp_path / "dangling")  # anything at that name is the user's
    assert tui_app.first_run_path(args) is None


def _fixed_key(ssh: Path) -> None:
    """~/.ssh/id_ed25519 with a fixed key, so its fingerprint on the form never changes."""
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    (ssh / "id_ed25519").write_bytes(key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.OpenSSH,
                                                       ser.NoEncryption()))
    (ssh / "id_ed25519.pub").write_bytes(key.public_key().public_bytes(ser.Encoding.OpenSSH,
                                                                       ser.PublicFormat.OpenSSH) + b" librarian@desk\n")


async def _steady_cursor(pilot) -> None:
    """The fields' cursor shown without blinking (a blink would make the picture vary)."""
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False
    await pilot.pause()


def test_snapshot_of_the_form_at_80x24(snap_compare, home):
    _fixed_key(home / ".ssh")
    assert snap_compare(_app(home), terminal_size=(80, 24), run_before=_steady_cursor)


def test_snapshot_of_a_refused_connection_at_80x24(snap_compare, home):
    """The reason in red under the form, the form as typed, "Save for later" offered."""
    _fixed_key(home / ".ssh")
    app = _app(home)

    async def run_before(pilot) -> None:
        await _fill_form(pilot, port=1, username="librarian")  # port 1: nothing listens there
        await pilot.press("enter")
        await _wait(pilot, lambda: app.view.error and not app.view.busy)
        await _steady_cursor(pilot)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def _spawn(home: Path):
    """``report-keeper`` itself in a pseudo-terminal of 80×24, without a config."""
    import sys

    import pexpect

    env = {k: v for k, v in os.environ.items() if k not in ("SSH_AUTH_SOCK", "REPORT_KEEPER_CONFIG")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), TERM="xterm-256color",
               XDG_DATA_HOME=str(home / ".local" / "share"), XDG_STATE_HOME=str(home / ".local" / "state"),
               REPORT_KEEPER_NOW=NOW, TEXTUAL_ANIMATIONS="none", LOGNAME="librarian", TZ="America/Chicago")
    return pexpect.spawn(sys.executable, ["-m", "tui"], env=env, encoding="utf-8", timeout=60,
                         dimensions=(24, 80))


F2, F3 = "\x1bOQ", "\x1bOR"


def _type(child, *parts: str) -> None:
    """Type as a person does: a key that moves the focus is not followed at once by the next."""
    import time as clock

    for part in parts:
        child.send(part)
        clock.sleep(0.2)


def test_the_command_without_a_config_goes_from_the_first_run_to_health(home):
    """The real command: the form, a server that refuses, "save for later", then the app on
    Health for the written config (one terminal, one process)."""
    import pexpect

    child = _spawn(home)
    try:
        child.expect("First run")
        _type(child, "127.0.0.1", "\t", "1", "\t", "librarian", "\t", "\t", "\t", "~/reports", "\t",
              "America/Chicago", "\r")
        child.expect("refused")
        child.send(F3)
        child.expect("Wrote")
        child.send("\r")
        child.expect("Health")  # the app's own screen, for the profile just written
        child.expect("refused")  # it tried the server, which still refuses
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    cfg = home / ".config" / "report-keeper" / "config.toml"
    assert load_config(cfg).profile().port == 1 and stat.S_IMODE(cfg.stat().st_mode) == 0o600


def test_the_command_without_a_config_offers_the_demo(home):
    import pexpect

    child = _spawn(home)
    try:
        child.expect("First run")
        child.send(F2)
        child.expect("Health")
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    assert not (home / ".config" / "report-keeper" / "config.toml").exists()


def test_without_a_terminal_no_config_is_still_one_line_and_exit_3(home):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "REPORT_KEEPER_CONFIG"}
    res = subprocess.run([sys.executable, "-m", "tui"], env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 3
    assert res.stderr.count("\n") == 1 and "report-keeper init" in res.stderr
    assert not (home / ".config" / "report-keeper").exists()


async def test_a_schedule_typed_with_markup_is_an_error_in_the_form_not_a_crash():
    """The schedule editor's error quotes what was typed: '[/]' (or '[b]') must show as text,
    never be read as markup (a MarkupError stopped the app)."""
    from datetime import time, timedelta

    from textual.app import App
    from textual.widgets import Input, Static

    from tui.core import setup as su
    from tui.screens.first_run import ReportEditModal

    proposal = su.ReportProposal(name="Loans", files=3, schedule="daily", at=time(7), grace=timedelta(hours=2))
    app = App()
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ReportEditModal(proposal))
        await pilot.pause()
        modal = app.screen
        modal.query_one("#edit-schedule", Input).value = "weekly:[/][b]"
        modal.query_one("#edit-schedule", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is modal  # still open, saying what is wrong
        shown = str(modal.query_one("#edit-error", Static).render())
        assert "[/][b]" in shown


async def test_a_grace_the_config_would_refuse_is_an_error_in_the_editor():
    """The editor accepted any duration, so a grace over the config's 31 days was taken, and
    only 'w' then failed, naming 'report[0].grace' and '960h' instead of what was typed and the
    report: the editor now refuses it where it was typed, saying the limit."""
    from datetime import time, timedelta

    from textual.app import App
    from textual.widgets import Input, Static

    from tui.core import setup as su
    from tui.screens.first_run import ReportEditModal

    proposal = su.ReportProposal(name="Loans", files=3, schedule="daily", at=time(7), grace=timedelta(hours=2))
    app = App()
    results = []
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ReportEditModal(proposal), callback=results.append)
        await pilot.pause()
        modal = app.screen
        modal.query_one("#edit-grace", Input).value = "40d"
        modal.query_one("#edit-grace", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen is modal and results == []  # still open, saying what is wrong
        shown = str(modal.query_one("#edit-error", Static).render())
        assert "'40d'" in shown and "31 days" in shown, shown
        modal.query_one("#edit-grace", Input).value = "31d"
        await pilot.press("enter")
        await pilot.pause()
    assert results == [("daily", time(7), timedelta(days=31))]


def test_init_asks_again_for_a_grace_the_config_would_refuse():
    from tui.core import setup as su

    with pytest.raises(ValueError, match="at most 31 days"):
        su.check_grace("40d")
    with pytest.raises(ValueError, match="at most 31 days"):
        su.check_grace("99999999999999d")
    assert su.check_grace("90m") == timedelta(minutes=90)


async def test_the_new_key_steps_keys_fit_80_columns(home):
    """The new key's step offers c, y, F3, esc, F1 and ctrl+q: at 80 columns the footer was cut
    to '^q Qui', so the way out was not shown whole."""
    for old in (home / ".ssh").iterdir():
        old.unlink()  # no key yet: the form offers a new pair
    app = _app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await _fill_form(pilot, port=1, username="librarian")
        await pilot.press("enter")
        await _wait(pilot, lambda: app.view.step is SetupStep.NEW_KEY)
        await pilot.pause()
        footer = [line for line in _screen_text(app).splitlines() if line.strip()][-1]
        for words in ("Connect now", "Copy", "Save for later", "Back", "Help", "Quit"):
            assert words in footer, footer


async def test_the_help_names_the_config_file_in_use(home, tmp_path):
    """Which config file the app uses was said nowhere once past the first run's title: a
    librarian with two configs (or REPORT_KEEPER_CONFIG set by someone else) could not tell
    which one the screen showed. The help (F1/?) names it, in the first run and in the app."""
    app = _app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        assert "~/.config/report-keeper/config.toml" in _screen_text(app)
    cfg = home / "configs" / "branch libraries.toml"
    cfg.parent.mkdir()
    cfg.write_text(f'[profile.north]\nhost = "127.0.0.1"\nport = 1\ntimezone = "UTC"\n'
                   f'ledger = {str(tmp_path / "north.sqlite3")!r}\nlocal_dir = {str(tmp_path / "north")!r}\n')
    main_app = create_app(load_config(cfg).profile("north"), auto_connect=False)
    async with main_app.run_test(size=(80, 24)) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(main_app.screen, HelpScreen)
        text = _screen_text(main_app)
        assert "~/configs/branch libraries.toml" in text and "'north'" in text, text
