"""SVG snapshots of the Health, Remote and Queue screens and the help at 80x24 and 120x40,
error states included.

Deterministic: the clock is pinned (REPORT_KEEPER_NOW), the demo data is generated from it,
HOME is a fresh folder (the local folder shows as ``~/reports``), notifications are cleared
before the picture is taken, and the one volatile value a screen can show — the demo server's
ephemeral port inside an error message — is masked as ``PORT`` before the screen is drawn.
Host-key and passphrase modals are shown with fixed key data.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncssh
import pytest

from tests.test_tui_fixtures import (  # noqa: F401 - fixtures
    FIXED_NOW,
    _pinned_clock,
    copy_home,
    demo_app,
    demo_remote,
    download,
    home,
    press_until,
    profile_for,
    server_loop,
    settled,
    synced,
    until_fitted,
    wait_for,
)

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


_app = demo_app


async def _settle(pilot, timeout: float = 60) -> None:
    app = pilot.app
    await wait_for(pilot, lambda: settled(app) and not app.board.active, timeout)
    await pilot.pause()


async def _mask_port(pilot, port: int) -> None:
    """Replace the ephemeral port in what the screens show, then redraw from it."""
    app = pilot.app
    conn = app.connection
    conn.message = conn.message.replace(f"port {port}", "port PORT")
    conn.listing_error = conn.listing_error.replace(f"port {port}", "port PORT")
    for job in list(app.board.jobs.values()):
        app.board.set_reason(job.name, job.reason.replace(f"port {port}", "port PORT"))
    version = app.snapshot.version
    app.load_snapshot()
    await wait_for(pilot, lambda: app.snapshot.version > version and settled(app))
    app._post_queue_changed()
    await pilot.pause()


async def _finish(pilot):
    """Let debounced timers (column fitting, filters) fire, then drop the toasts."""
    await until_fitted(pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES)
def test_health_after_listing(snap_compare, demo_remote, home, size):
    app = _app(profile_for(demo_remote, home))

    async def run_before(pilot):
        await _settle(pilot)
        await press_until(pilot, "t", lambda: app.connection.testing or app.connection.test is not None)
        await wait_for(pilot, lambda: app.connection.test is not None)
        await _settle(pilot)
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_remote_all_new(snap_compare, demo_remote, home, size):
    app = _app(profile_for(demo_remote, home))

    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("2", "s", "s")  # deletes soonest: the urgent files on top
        await pilot.press("space", "space")
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_queue_after_download(snap_compare, demo_remote, home, size):
    app = _app(profile_for(demo_remote, home))

    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("2", "slash", *"Weekly", "enter", "a")
        await download(pilot, "3")
        await _settle(pilot)
        await pilot.press("down")
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_remote_downloaded_and_verified(snap_compare, demo_remote, synced, home, size):
    copy_home(synced, home)
    app = _app(profile_for(demo_remote, home))

    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("2")
        if size == (80, 24):
            await pilot.press("slash", *"_202609", "enter")  # September: corrupt file, holiday
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_health_after_download(snap_compare, demo_remote, synced, home, size):
    copy_home(synced, home)
    app = _app(profile_for(demo_remote, home))

    async def run_before(pilot):
        await _settle(pilot)
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_queue_empty(snap_compare, demo_remote, home, size):
    app = _app(profile_for(demo_remote, home))

    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("3")
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, demo_remote, home, size):
    app = _app(profile_for(demo_remote, home), auto_connect=False)

    async def run_before(pilot):
        await pilot.pause()
        await pilot.press("question_mark")
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_error_auth_refused_health_and_remote(snap_compare, demo_remote, home, tmp_path, size):
    wrong = tmp_path / "wrong_key"
    wrong.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key("openssh"))
    wrong.chmod(0o600)
    app = _app(profile_for(demo_remote, home, key=wrong))

    async def run_before(pilot):
        await _settle(pilot)
        await _mask_port(pilot, demo_remote.port)
        if size == (120, 40):
            await pilot.press("2")  # the remote screen's error state at the larger size
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_error_remote_unreachable(snap_compare, demo_remote, home, size):
    app = _app(profile_for(demo_remote, home, port=47))  # nothing listens on port 47

    async def run_before(pilot):
        await _settle(pilot)
        await pilot.press("2")
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_queue_with_a_failed_file(snap_compare, demo_remote, home, size):
    """A file deleted from the server between the listing and the download fails clearly."""
    gone = sorted(f.name for f in demo_remote.scenario.files if f.report.startswith("Weekly"))[-2]
    path = demo_remote.root / demo_remote.remote_dir / gone
    data, stat = path.read_bytes(), path.stat()
    app = _app(profile_for(demo_remote, home))

    async def run_before(pilot):
        await _settle(pilot)
        path.unlink()
        await pilot.press("2", "slash", *"Weekly", "enter", "a")
        await download(pilot, "3")
        await _settle(pilot)
        await _mask_port(pilot, demo_remote.port)
        table = app.screen.query_one("DataTable")
        table.move_cursor(row=table.get_row_index(gone), animate=False)
        await pilot.pause()
        await _finish(pilot)

    try:
        assert snap_compare(app, terminal_size=size, run_before=run_before)
        assert app.board.jobs[gone].state == "failed"
    finally:
        path.write_bytes(data)  # the module's server serves the other tests unchanged
        os.utime(path, (stat.st_atime, stat.st_mtime))


@pytest.mark.parametrize("size", SIZES)
def test_host_key_modal(snap_compare, demo_remote, home, size):
    from tui.screens.modals import HostKeyModal
    from tui.sftp.client import HostKeyInfo

    app = _app(profile_for(demo_remote, home), auto_connect=False)
    info = HostKeyInfo(host="files.example.org", port=22, key_type="ssh-ed25519",
                       fingerprint="SHA256:qVbM0m1vXr3bY7GkU3m6w8C2n1JmQk3o5yqSg8bXc0Q",
                       known_hosts=Path("~/.ssh/known_hosts"))

    async def run_before(pilot):
        await pilot.pause()
        app.push_screen(HostKeyModal(info))
        await pilot.pause()
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_host_key_changed_modal(snap_compare, demo_remote, home, size):
    from tui.screens.modals import HostKeyChangedModal
    from tui.sftp.errors import HostKeyChanged

    app = _app(profile_for(demo_remote, home), auto_connect=False)
    error = HostKeyChanged("files.example.org", 22, "ssh-ed25519",
                           "SHA256:qVbM0m1vXr3bY7GkU3m6w8C2n1JmQk3o5yqSg8bXc0Q", "~/.ssh/known_hosts",
                           ("SHA256:7bXc0Qm1vXr3bY7GkU3m6w8C2n1JmQk3o5yqSg8qVbM",))

    async def run_before(pilot):
        await pilot.pause()
        app.push_screen(HostKeyChangedModal(error))
        await pilot.pause()
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
def test_passphrase_modal(snap_compare, demo_remote, home, size):
    from textual.widgets import Input

    from tui.screens.modals import PassphraseModal

    app = _app(profile_for(demo_remote, home), auto_connect=False)

    async def run_before(pilot):
        await pilot.pause()
        app.push_screen(PassphraseModal(Path("~/.ssh/id_ed25519")))
        await pilot.pause()
        app.screen.query_one(Input).cursor_blink = False
        await pilot.press(*"secret")
        await _finish(pilot)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
