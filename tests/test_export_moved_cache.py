"""The cache of a ledger moved away, removed by the next export (or purge): what the notes
and the folders it meets may be. Each export notes its ledger in the state folder's
``export-caches/``; a noted ledger gone from its place loses its cache (docs/EXPORT.md).

The notes folder is the user's, but what is in it, and what the paths it names are now, is
not something to trust blindly: a note may be damaged or hostile, a ledger may be on a disk
that is not mounted, two ledgers may share a cache folder, and a folder may be another's.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from tui.core import export_cache as ec
from tui.core.export_cache import cache_dir, forget_moved, noted_ledgers

SHA = "a" * 64


def _ledger(path: Path) -> Path:
    """A ledger file and a cache beside it with two entries of ours (a sqlite file is not
    needed: only whether the ledger is there counts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ledger")
    cache = cache_dir(path)
    cache.mkdir(mode=0o700, exist_ok=True)
    for sha in (SHA, "b" * 64):
        (cache / f"{sha}-r1.1-h1.parquet").write_bytes(b"entry")
    return cache


def _note_by_hand(text: bytes | str, name: str = "0" * 32) -> Path:
    folder = noted_ledgers()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    note = folder / name
    note.write_bytes(text if isinstance(text, bytes) else text.encode())
    return note


def _gone_with_cache(tmp_path: Path, name: str = "old") -> Path:
    """A ledger noted by an export, then moved away: its cache is still there."""
    ledger = tmp_path / name / "ledger.sqlite3"
    cache = _ledger(ledger)
    forget_moved(ledger)
    ledger.unlink()
    return cache


def test_the_cache_of_a_noted_ledger_moved_away_is_removed(tmp_path):
    cache = _gone_with_cache(tmp_path)
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    assert forget_moved(here) == [cache]
    assert not cache.exists() and cache_dir(here).exists()


@pytest.mark.parametrize("text", [
    b"[" * 16000,  # nested beyond the parser's recursion
    b"{" * 16000,
    json.dumps({"ledger": "/a\x00b"}).encode(),  # a path no system call takes
    b'{"ledger": "/x\\ud800"}',  # a lone surrogate no file name encodes to
    b"\xff\xfe not UTF-8",
    b"{}" + b" " * (2 << 20),  # huge
    json.dumps({"ledger": 7}).encode(),
    json.dumps(["ledger", "/x"]).encode(),
], ids=["deep-array", "deep-object", "nul", "surrogate", "not-utf8", "huge", "number", "list"])
def test_a_damaged_or_hostile_note_never_stops_the_export(tmp_path, text):
    """Whatever a note holds, the export goes on (nothing is removed for it); the other notes
    are still honoured."""
    cache = _gone_with_cache(tmp_path)
    _note_by_hand(text)
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    assert forget_moved(here) == [cache]
    assert cache_dir(here).exists()


def test_a_note_that_is_a_link_or_a_pipe_is_not_followed(tmp_path):
    """A note is only ever a regular file of its own: a link to a file naming a gone
    ledger (whose cache is there) is not read, nor is a pipe (which would wait forever)."""
    ledger = tmp_path / "theirs" / "ledger.sqlite3"
    cache = _ledger(ledger)
    ledger.unlink()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"ledger": str(ledger)}))
    folder = noted_ledgers()
    folder.mkdir(parents=True, mode=0o700)
    (folder / ("1" * 32)).symlink_to(elsewhere)
    os.mkfifo(folder / ("2" * 32))
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    assert forget_moved(here) == []
    assert len(list(cache.iterdir())) == 2


def test_a_notes_folder_that_is_a_link_is_neither_written_nor_read(tmp_path):
    """The notes folder's name a link to a folder elsewhere (another's, a shared one): no note
    of the user's ledgers is written there, and what its notes name is not removed."""
    ledger = tmp_path / "theirs" / "ledger.sqlite3"
    cache = _ledger(ledger)
    ledger.unlink()
    target = tmp_path / "shared-notes"
    target.mkdir()
    (target / ("3" * 32)).write_text(json.dumps({"ledger": str(ledger)}))
    noted_ledgers().parent.mkdir(parents=True, exist_ok=True)
    noted_ledgers().symlink_to(target)
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    assert forget_moved(here) == []
    assert len(list(cache.iterdir())) == 2
    assert sorted(p.name for p in target.iterdir()) == ["3" * 32]


def test_a_ledger_renamed_beside_its_cache_keeps_the_cache_it_still_uses(tmp_path):
    """``ledger.sqlite3`` renamed ``ledger.db`` in its folder: the cache folder is named after
    the stem, so the gone ledger's cache is the one the renamed ledger uses now. It stays,
    entries and all (removing it would also break the export that is using it)."""
    old = tmp_path / "lib" / "ledger.sqlite3"
    cache = _ledger(old)
    forget_moved(old)
    new = old.with_suffix(".db")
    old.rename(new)
    assert cache_dir(new) == cache
    assert forget_moved(new) == []
    assert len(list(cache.iterdir())) == 2


def test_a_cache_another_ledger_still_uses_is_kept_also_by_another_name(tmp_path):
    """The gone ledger was noted through a link to its folder; the ledger there now (another
    profile's, of the same stem) uses the same folder under another spelling: kept."""
    real = tmp_path / "real"
    old = real / "ledger.sqlite3"
    cache = _ledger(old)
    link = tmp_path / "link"
    link.symlink_to(real)
    forget_moved(link / "ledger.sqlite3")
    other = real / "ledger.db"
    other.write_bytes(b"ledger")
    forget_moved(other)
    old.unlink()
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    assert forget_moved(here) == []
    assert len(list(cache.iterdir())) == 2


def test_a_ledger_on_a_disk_not_mounted_is_remembered_until_it_is_back(tmp_path):
    """A ledger (and its cache beside it) on a disk not mounted: nothing to remove, and its
    note stays; once the disk is back with the ledger moved away from it, its cache goes."""
    disk = tmp_path / "mnt" / "usb"
    ledger = disk / "ledger.sqlite3"
    cache = _ledger(ledger)
    forget_moved(ledger)
    away = tmp_path / "unmounted"
    disk.rename(away)  # what the mount point shows without its disk: nothing
    disk.mkdir()
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    assert forget_moved(here) == []
    disk.rmdir()
    away.rename(disk)  # mounted again; the ledger itself was moved elsewhere meanwhile
    ledger.unlink()
    assert forget_moved(here) == [cache]
    assert not cache.exists()


def test_a_ledger_whose_path_is_not_utf8_has_its_cache_removed_too(tmp_path):
    """A folder name of bytes that are not UTF-8 (Linux allows them): the note must read back."""
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    try:
        folder.mkdir()
    except (OSError, UnicodeError):
        pytest.skip("the file system refuses a name that is not UTF-8")
    cache = _gone_with_cache(folder)
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    assert forget_moved(here) == [cache]


def test_a_folder_swapped_for_a_link_while_it_is_emptied_loses_nothing_of_the_links(tmp_path, monkeypatch):
    """Between the folder's opening and its removal its name becomes a link to a folder of the
    user's holding files named like entries: nothing in that folder goes, the link stays."""
    cache = _gone_with_cache(tmp_path)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / f"{SHA}-r1.1-h1.parquet").write_bytes(b"mine")
    listdir = os.listdir

    def swapping(path):
        names = listdir(path)
        if isinstance(path, int) and not cache.is_symlink():
            cache.rename(tmp_path / "renamed")
            cache.symlink_to(theirs)
        return names

    monkeypatch.setattr(ec.os, "listdir", swapping)
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    forget_moved(here)
    assert cache.is_symlink() and (theirs / f"{SHA}-r1.1-h1.parquet").read_bytes() == b"mine"


def test_two_exports_at_once_remove_the_cache_once_and_both_go_on(tmp_path):
    cache = _gone_with_cache(tmp_path)
    here = [tmp_path / f"new{i}" / "ledger.sqlite3" for i in range(2)]
    for path in here:
        _ledger(path)
    results: list[list[Path]] = []
    errors: list[BaseException] = []

    def run(path: Path) -> None:
        try:
            results.append(forget_moved(path))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in here]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and not cache.exists()
    assert all(cache_dir(p).exists() for p in here)


def test_the_purge_removes_a_moved_ledgers_cache_by_the_same_path(tmp_path):
    """The retention purge gives disk space back (and the old cache holds the purged contents'
    tables too): it removes a moved ledger's cache as the export does."""
    from tui.core import retention
    from tui.core.ledger import Ledger

    cache = _gone_with_cache(tmp_path)
    here = tmp_path / "new" / "ledger.sqlite3"
    here.parent.mkdir()
    with Ledger.open(here) as ledger:
        retention._prune_cache(ledger)
    assert not cache.exists()


def test_a_cache_an_export_is_using_is_never_removed_under_it(tmp_path):
    """Two exports at once: one has opened its cache (its ledger, ``ledger.db``, not noted yet:
    its first export) while the other finds the note of a gone ``ledger.sqlite3`` of the same
    folder and stem, whose cache folder is that very one. It is left whole while in use."""
    from tui.core.export_cache import TableCache

    cache = _gone_with_cache(tmp_path)
    (tmp_path / "old" / "ledger.db").write_bytes(b"ledger")
    using = TableCache(cache).open()
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    assert forget_moved(here) == []
    assert len(list(cache.glob("*.parquet"))) == 2
    del using
    (tmp_path / "old" / "ledger.db").unlink()
    assert forget_moved(here) == [cache]  # no longer in use, its ledger gone: it goes
