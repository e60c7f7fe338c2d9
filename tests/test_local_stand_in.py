"""A local folder on a share that is not mounted, its mount point left as an empty folder.

The purge took every old copy for deleted by hand and recorded it purged (NOT FOUND): once the
share was back, those copies kept their patron data for ever, the ledger saying they were gone.
A sync fetched every file again into the empty mount point, on the machine's own disk. Both
now refuse, in one line, and record nothing; a folder that is new (the ledger holds no copy
there) works as always. Real folders, a real ledger, real servers; a real tmpfs where this user
may mount one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests import retention_data as rd
from tests.test_hostile_folder import (  # noqa: F401 - pinned is an autouse fixture
    arun_cli,
    good_reports,
    pinned,
    profile_for,
    sync,
    write_config,
)
from tui.cli import main
from tui.core.ledger import Ledger

DELETE_ALL = "local_retention_days = 30\nkeep_until_exported = false"


def _purge(config: Path, capsys, *extra: str) -> tuple[int, dict]:
    code = main(["purge", "--json", "--config", str(config), *extra])
    out = capsys.readouterr()
    assert "Traceback" not in out.err, out.err
    return code, json.loads(out.out)


def _untouched(env) -> None:
    with env.ledger() as ledger:
        assert all(dl.purge_started is None and dl.purged_at is None for dl in ledger.downloads())


def test_purge_refuses_an_empty_folder_the_ledger_holds_copies_in(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    away = tmp_path / "the-share"
    env.local.rename(away)
    env.local.mkdir(mode=0o700)  # the mount point, empty while the share is not mounted
    code, doc = _purge(env.config, capsys)
    assert code == 1 and doc["purged"] == [] and doc["status"] == "warning"
    assert doc["refused"] == (f"Nothing was deleted: the local folder '{env.local}' is empty but the ledger holds "
                              f"{rd.DAYS} copies there: is the share mounted? Mount it and run again; "
                              "if the copies were deleted on purpose, put any file in the folder first")
    _untouched(env)
    # The human output says it in one line, and the dry run refuses the same way.
    assert main(["purge", "--config", str(env.config)]) == 1
    out = capsys.readouterr().out
    assert out.count("is the share mounted?") == 1 and "NOT FOUND" not in out
    code, doc = _purge(env.config, capsys, "--dry-run")
    assert doc["purged"] == [] and "is the share mounted?" in doc["refused"]
    # The share is back: the purge deletes exactly the old copies, none "already gone".
    env.local.rmdir()
    away.rename(env.local)
    code, doc = _purge(env.config, capsys)
    assert code == 0 and [p["name"] for p in doc["purged"]] == [rd.name(i) for i in rd.OLD]
    assert not any(p["already_gone"] for p in doc["purged"]) and doc["refused"] is None


def test_a_folder_with_anything_in_it_or_a_ledger_without_copies_is_no_stand_in(tmp_path, capsys, monkeypatch):
    """Copies removed by hand from a folder that holds anything else are the ordinary case
    (recorded purged, NOT FOUND); a fresh folder with a fresh ledger purges nothing, quietly."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    for i in rd.OLD:
        env.path(i).unlink()
    for p in env.local.iterdir():
        if p.is_file():
            p.unlink()
    (env.local / "README.txt").write_text("copies removed on purpose\n")
    code, doc = _purge(env.config, capsys)
    assert doc["refused"] is None and {p["name"] for p in doc["purged"]} == {rd.name(i) for i in rd.OLD}
    assert all(p["already_gone"] for p in doc["purged"])
    fresh = rd.build(tmp_path / "fresh", profile_extra=DELETE_ALL, days=0)
    assert list(fresh.local.iterdir()) == []
    code, doc = _purge(fresh.config, capsys)
    assert code == 0 and doc["refused"] is None and doc["purged"] == []


def _mount_tmpfs(mnt: Path) -> None:
    if not shutil.which("mount") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(mnt)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + done.stderr.decode(errors="replace").strip())


def test_purge_after_the_share_is_unmounted_from_its_mount_point(tmp_path, capsys, monkeypatch):
    """The real thing: the copies live on a mounted file system, which is then unmounted."""
    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)
    local = tmp_path / "h" / "local"
    local.mkdir(parents=True, mode=0o700)
    _mount_tmpfs(local)
    try:
        env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
        assert len(env.files()) == rd.DAYS
    finally:
        subprocess.run(["umount", str(local)], check=True)
    assert list(local.iterdir()) == []
    code, doc = _purge(env.config, capsys)
    assert code == 1 and doc["purged"] == [] and "is the share mounted?" in doc["refused"]
    _untouched(env)


async def test_sync_refuses_to_fetch_everything_again_into_an_empty_mount_point(sftp_server, tmp_path):
    good = good_reports(sftp_server, tmp_path, days=3)
    profile = profile_for(sftp_server, tmp_path)
    local = Path(profile.local_dir)
    first = await sync(profile)
    assert sorted(d["name"] for d in first.to_json()["downloaded"]) == sorted(good)
    away = tmp_path / "the-share"
    local.rename(away)
    local.mkdir(mode=0o700)
    refused = await sync(profile)
    doc = refused.to_json()
    assert doc["downloaded"] == [] and list(local.iterdir()) == []
    assert doc["error_kind"] == "local" and doc["status"] == "critical"
    assert doc["error"] == (f"Nothing was downloaded: the local folder '{local}' is empty but the ledger holds 3 copies there: "
                            "is the share mounted? Mount it and run again; if the copies were deleted "
                            "on purpose, put any file in the folder first")
    with Ledger.open(profile.ledger_path, profile=profile.name) as led:  # nothing marked missing
        assert all(dl.missing_since is None for dl in led.downloads())
    # The command, as cron runs it: exit 2 and the one line on stderr.
    config = write_config(profile, tmp_path / "config.toml")
    proc = await arun_cli("sync", "--config", str(config))
    assert proc.returncode == 2, proc.stderr
    assert "is the share mounted?" in proc.stderr + proc.stdout and "Traceback" not in proc.stderr
    assert list(local.iterdir()) == []
    # Mounted again: nothing to fetch. Deleted on purpose and a note left: fetched again.
    local.rmdir()
    away.rename(local)
    again = (await sync(profile)).to_json()
    assert again["error"] is None and again["downloaded"] == []
    for name in good:
        (local / name).unlink()
    shutil.rmtree(local / ".report-keeper")
    (local / "README.txt").write_text("emptied on purpose\n")
    back = (await sync(profile)).to_json()
    assert back["error"] is None and sorted(d["name"] for d in back["downloaded"]) == sorted(good)


async def test_a_fresh_empty_folder_is_filled_as_always(sftp_server, tmp_path):
    good = good_reports(sftp_server, tmp_path, days=2)
    profile = profile_for(sftp_server, tmp_path)
    Path(profile.local_dir).mkdir(mode=0o700)
    doc = (await sync(profile)).to_json()
    assert doc["error"] is None and sorted(d["name"] for d in doc["downloaded"]) == sorted(good)


def test_the_copies_counted_in_a_folder_are_those_inside_it_once_made_absolute(tmp_path, monkeypatch):
    """The stand-in check counts the ledger's copies in the folder without reading every download
    (``Ledger.copies_in``): the same count a look at each path gives. A sibling folder whose
    name starts alike is not inside; a path that leaves the folder by ``..`` is not; one that
    comes back into it, a relative one from the folder's parent, and ``//`` are; a purged copy,
    another profile's and the same path twice count for nothing more."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "local"
    led = Ledger.open(tmp_path / "ledger.sqlite3", profile="main")
    paths = {
        f"{folder}/a.xlsx": True,
        f"{folder}/sub/b.xlsx": True,
        f"{folder}2/c.xlsx": False,  # a sibling named alike
        f"{folder}/../elsewhere/d.xlsx": False,
        f"{tmp_path}/elsewhere/../local/e.xlsx": True,
        f"{folder}//f.xlsx": True,
        "local/g.xlsx": True,  # relative: from the working folder, tmp_path
        "other/h.xlsx": False,
        f"{folder}/./i.xlsx": True,
        str(folder): True,  # a damaged row naming the folder itself
    }
    for n, path in enumerate(paths):
        led.record_download(f"R_{n}.xlsx", size=1, sha256=f"{n:064x}", local_path=path)
    led.record_download("again.xlsx", size=1, sha256="f" * 64, local_path=f"{folder}/a.xlsx")
    led.record_download("gone.xlsx", size=1, sha256="e" * 64, local_path=f"{folder}/gone.xlsx")
    led.mark_purged([("gone.xlsx", f"{folder}/gone.xlsx")])
    led.for_profile("other").record_download("x.xlsx", size=1, sha256="d" * 64,
                                             local_path=f"{folder}/x.xlsx")
    assert led.copies_in(folder) == sum(paths.values())
    assert led.copies_in(tmp_path / "nothing") == 0
    led.close()
