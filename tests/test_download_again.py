"""Downloading a held file again (``SyncService.download`` with the name of a copy already
held): against the embedded demo server and a real OpenSSH sshd.

The old copy is never overwritten; the server's copy is compared with it byte for byte:
identical (so a damaged report is damaged on the server too), different (kept beside the old
one under the changed-copy name and verified), or fetched (the held copy was gone).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from tui.core import status as st
from tui.core.ledger import Ledger
from tui.demo import data as demo_data
from tui.demo.server import start_demo_server
from tui.sftp.sync import AgainOutcome, SyncService, Verified

NOW = "2026-06-10T14:00:00+00:00"


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)


@pytest.fixture(params=["embedded", "sshd"])
async def served(request, tmp_path, pinned, demo_generated_once):
    """(profile, scenario) of the demo reports, served by the embedded server or by sshd."""
    if request.param == "embedded":
        server = await start_demo_server(tmp_path / "server", local_dir=tmp_path / "local",
                                         ledger=tmp_path / "ledger.sqlite3")
        yield server.profile, server.scenario
        await server.close()
        return
    sshd = request.getfixturevalue("sshd")
    sub = Path(tempfile.mkdtemp(prefix="again-", dir=sshd.root))
    os.chmod(sub, 0o755)
    scenario = demo_data.generate(sub)
    profile = demo_data.demo_config(
        host=sshd.host, port=sshd.port, username=sshd.username, key=sshd.key,
        known_hosts=sshd.known_hosts, local_dir=tmp_path / "local",
    )
    yield replace(profile, remote_dir=f"{sub.name}/{demo_data.DEMO_REMOTE_DIR}",
                  ssh_config=sshd.ssh_config), scenario


async def test_a_damaged_report_downloaded_again_is_identical_on_the_server(served, tmp_path):
    profile, scenario = served
    corrupt = scenario.file_of("corrupt").name
    local = Path(profile.local_dir)
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="demo") as ledger:
        async with SyncService(profile, ledger) as service:
            await service.list_remote()
            first = await service.download([corrupt])
            assert first.files[0].status == st.UNREADABLE
            before = sorted(p.name for p in local.iterdir())
            events = []
            again = await service.download([corrupt], on_event=events.append)
            assert [a.name for a in again.again] == [corrupt]
            outcome = again.again[0]
            assert outcome.outcome == AgainOutcome.IDENTICAL
            assert outcome.verification is not None and outcome.verification.status == st.UNREADABLE
            assert outcome.path == outcome.previous == str(local / corrupt)
            assert again.downloaded == [] and again.failed == []
            assert sorted(p.name for p in local.iterdir()) == before  # nothing new placed
            assert [e.result.status for e in events if isinstance(e, Verified)] == [st.UNREADABLE]
            assert ledger.downloads(corrupt)[-1].local_path == str(local / corrupt)


async def test_a_copy_damaged_here_is_fetched_beside_it_and_verified(served, tmp_path):
    profile, scenario = served
    good = scenario.file_of("ok").name
    local = Path(profile.local_dir)
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="demo") as ledger:
        async with SyncService(profile, ledger) as service:
            await service.list_remote()
            await service.download([good])
            held = local / good
            server_sha = sha(held)
            size = held.stat().st_size
            held.write_bytes(b"\0" * size)  # same size: the listing's disk check cannot tell
            damaged = sha(held)
            again = await service.download([good])
            outcome = again.again[0]
            assert outcome.outcome == AgainOutcome.DIFFERENT
            new = Path(outcome.path)
            assert new.parent == local and new != held and "(changed " in new.name
            assert sha(held) == damaged  # the old copy is kept, never overwritten
            assert sha(new) == server_sha
            assert outcome.previous == str(held)
            assert outcome.verification is not None and outcome.verification.status == st.OK
            assert [d["name"] for d in again.downloaded] == [good]
            assert again.changed == []  # the server's copy did not change
            assert again.files[0].status == st.OK  # not "changed on the server"
            delivery = next(d for d in ledger.deliveries() if d.name == good)
            assert delivery.local_path == str(new) and delivery.verification == st.OK
            assert ledger.local_state(good) == "downloaded"


async def test_a_held_copy_gone_from_the_disk_is_fetched_again_under_its_name(served, tmp_path):
    profile, scenario = served
    good = scenario.file_of("late").name
    local = Path(profile.local_dir)
    with Ledger.open(tmp_path / "ledger.sqlite3", profile="demo") as ledger:
        async with SyncService(profile, ledger) as service:
            await service.list_remote()
            await service.download([good])
            (local / good).rename(tmp_path / "moved.xlsx")  # after the listing: it cannot know
            again = await service.download([good])
            assert again.again == []  # not a held copy any more: a refetch
            assert again.refetched == [good]
            assert sha(local / good) == sha(tmp_path / "moved.xlsx")
            assert ledger.local_state(good) == "downloaded"
