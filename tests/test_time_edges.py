"""Hostile clocks, calendars and server times: what the product's promise of time must survive.

Daylight-saving changes, day boundaries, dates that do not exist and server times that cannot
be true, each through the real pieces (the embedded SFTP server, the health evaluation).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

import asyncssh

from tests.test_hostile_folder import good_reports, profile_for, put, sync
from tui.core.ledger import Ledger


def _timeless(attrs: asyncssh.SFTPAttrs) -> asyncssh.SFTPAttrs:
    attrs.atime = attrs.mtime = None
    for extra in ("atime_ns", "mtime_ns"):
        if hasattr(attrs, extra):
            setattr(attrs, extra, None)
    return attrs


class _TimelessSFTP(asyncssh.SFTPServer):
    """A server that sends no modification times (SFTP makes them optional)."""

    async def scandir(self, path):
        async for entry in super().scandir(path):
            _timeless(entry.attrs)
            yield entry

    def stat(self, path):
        return _timeless(asyncssh.SFTPAttrs.from_local(os.stat(self.map_path(path))))

    def lstat(self, path):
        return _timeless(asyncssh.SFTPAttrs.from_local(os.lstat(self.map_path(path))))

    def fstat(self, file_obj):
        return _timeless(asyncssh.SFTPAttrs.from_local(os.fstat(file_obj.fileno())))


async def test_a_server_that_sends_no_modification_times_is_synced_once(make_embedded_sftp, tmp_path,
                                                                       monkeypatch):
    """SFTP makes a file's times optional. Without one, a listing dates each file when it was
    listed: every later sync took every held file for a changed server copy. The copy the
    ledger knows keeps the time it was first seen while its size stays; another size is a new
    copy, fetched beside the old one."""
    info = await make_embedded_sftp(sftp_factory=_TimelessSFTP)
    good = good_reports(info, tmp_path)
    stampless = "Weekly summary.xlsx"
    put(info, stampless, next(iter(good.values())))
    profile = profile_for(info, tmp_path)
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-06-10T14:00:00+00:00")
    first = await sync(profile)
    assert sorted(d["name"] for d in first.downloaded) == sorted([*good, stampless])
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-06-11T15:00:00+00:00")
    second = await sync(profile)
    assert second.downloaded == [] and second.changed == [], second.to_json()
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:
        history = {d.name: d for d in led.deliveries()}
        assert not [name for name, d in history.items() if d.changed or d.local_state != "downloaded"]
        # No time in its name: it was delivered when first seen, and stays so.
        assert history[stampless].delivered_at == datetime(2026, 6, 10, 14, tzinfo=UTC)
    put(info, stampless, b"another copy, another size")
    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-06-12T15:00:00+00:00")
    third = await sync(profile)
    assert third.changed == [stampless], third.to_json()
