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


def _legacy(path: Path) -> Path:
    """A ledger and the cache folder an earlier release kept beside it (named after the
    stem), with two entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ledger")
    legacy = ec.legacy_cache_dir(path)
    assert legacy is not None
    legacy.mkdir(mode=0o700, exist_ok=True)
    for sha in (SHA, "b" * 64):
        (legacy / f"{sha}-r1.1-h1.parquet").write_bytes(b"entry")
    return legacy


def test_a_ledger_renamed_in_its_folder_leaves_its_old_cache_to_go(tmp_path):
    """``ledger.sqlite3`` renamed ``ledger.db``: the cache folder is named after the whole
    file name, so the old one is nobody's now and goes as a moved ledger's does."""
    old = tmp_path / "lib" / "ledger.sqlite3"
    cache = _ledger(old)
    forget_moved(old)
    new = old.with_suffix(".db")
    old.rename(new)
    assert cache_dir(new) != cache
    assert forget_moved(new) == [cache]


def test_an_earlier_releases_folder_another_ledger_of_its_stem_may_adopt_is_kept(tmp_path):
    """The gone ledger was noted through a link to its folder; a ledger still there, of the
    same stem (another profile's), may still adopt the stem-named folder of an earlier
    release, reached by another spelling: kept."""
    real = tmp_path / "real"
    old = real / "ledger.sqlite3"
    legacy = _legacy(old)
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
    assert len(list(legacy.iterdir())) == 2


def test_a_gone_ledgers_cache_of_an_earlier_release_goes_too(tmp_path):
    old = tmp_path / "lib" / "ledger.sqlite3"
    legacy = _legacy(old)
    forget_moved(old)
    old.unlink()
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    assert forget_moved(here) == [legacy]
    assert not legacy.exists()


# ------------------------------------------------------------ a cache folder per ledger name


def test_two_ledgers_of_one_stem_in_one_folder_have_a_cache_each(tmp_path):
    """``ledger.sqlite3`` and ``ledger.db`` side by side (two profiles): one's prune (every
    export's, the purge's) removed the other's entries, both being named after the stem."""
    from tui.core import retention
    from tui.core.export_cache import TableCache
    from tui.core.ledger import Ledger

    one, two = tmp_path / "lib" / "ledger.sqlite3", tmp_path / "lib" / "ledger.db"
    _ledger(one)
    theirs = _ledger(two)
    assert cache_dir(one) != cache_dir(two)
    TableCache(cache_dir(one)).open().prune([])
    assert len(list(theirs.iterdir())) == 2
    one.unlink()
    with Ledger.open(one) as ledger:  # a real ledger holding nothing: its purge prunes all
        retention._prune_cache(ledger)
    assert len(list(theirs.iterdir())) == 2


@pytest.mark.parametrize("name", [
    "x" * 240 + ".sqlite3",  # the stem and the suffix past the longest file name
    "x" * 250,
    "led\nger.db",  # a control character
    os.fsdecode(b"caf\xe9.db"),  # bytes that are not UTF-8
], ids=["long-stem", "long", "newline", "not-utf8"])
def test_a_ledger_of_any_name_gets_a_folder_of_its_own_that_opens(tmp_path, name):
    from tui.core.export_cache import TableCache

    ledger = tmp_path / name
    folder = cache_dir(ledger)
    assert folder.parent == tmp_path
    raw = os.fsencode(folder.name)
    assert len(raw) <= 255 and "\n" not in folder.name and folder.name.endswith("-export-cache")
    assert folder != cache_dir(tmp_path / (name + "2"))
    try:
        TableCache(folder).open()
    except ec.CacheError:
        pytest.fail(f"the cache of {name!r} cannot be made")
    assert folder.is_dir()


def test_names_that_differ_only_after_the_stem_get_different_folders():
    names = ["ledger", "ledger.db", "ledger.sqlite3", "ledger.db.bak", "x" * 250 + ".a", "x" * 250 + ".b"]
    assert len({ec.cache_name(n) for n in names}) == len(names)
    assert ec.cache_name("ledger") == "ledger-export-cache"  # a name without a suffix: the same folder


def test_an_earlier_releases_cache_is_adopted_whole(tmp_path):
    ledger = tmp_path / "lib" / "ledger.sqlite3"
    legacy = _legacy(ledger)
    cache = ec.open_cache(ledger)
    assert cache.folder == cache_dir(ledger) and not legacy.exists()
    assert sorted(p.name for p in cache.folder.iterdir()) == sorted(
        f"{s}-r1.1-h1.parquet" for s in (SHA, "b" * 64))


def test_an_earlier_releases_folder_is_not_adopted_when_not_ours(tmp_path):
    """A link in the old folder's place (to a folder holding files named like entries), a
    folder of another user's, a folder an export is using: each is left as it is, and a new
    cache is made."""
    from tui.core.export_cache import TableCache

    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / f"{SHA}-r1.1-h1.parquet").write_bytes(b"not ours")
    linked = tmp_path / "a" / "ledger.sqlite3"
    linked.parent.mkdir()
    linked.write_bytes(b"ledger")
    legacy = ec.legacy_cache_dir(linked)
    assert legacy is not None
    legacy.symlink_to(theirs)
    assert ec.open_cache(linked).folder == cache_dir(linked)
    assert legacy.is_symlink() and (theirs / f"{SHA}-r1.1-h1.parquet").read_bytes() == b"not ours"
    assert list(cache_dir(linked).iterdir()) == []

    in_use = tmp_path / "b" / "ledger.sqlite3"
    folder = _legacy(in_use)
    using = TableCache(folder).open()
    assert ec.open_cache(in_use).folder == cache_dir(in_use)
    assert len(list(folder.iterdir())) == 2
    del using

    if hasattr(os, "geteuid") and os.geteuid() == 0:
        another = tmp_path / "c" / "ledger.sqlite3"
        folder = _legacy(another)
        os.chown(folder, 4242, 4242)
        assert ec.open_cache(another).folder == cache_dir(another)
        assert len(list(folder.iterdir())) == 2


@pytest.mark.parametrize("foreign", [False, True], ids=["only-entries", "a-file-of-the-users"])
def test_an_earlier_releases_folder_is_merged_into_todays_when_that_is_there(tmp_path, foreign):
    """Today's folder made already (an earlier release run again after the upgrade, or busy at
    the first export): the old folder's entries join today's (one of today's of the same name
    kept), so a purge's prune, which prunes today's, drops the purged contents' tables of
    both; the old folder goes once empty, and what is not an entry of ours stays in it."""
    ledger = tmp_path / "lib" / "ledger.sqlite3"
    legacy = _legacy(ledger)
    (legacy / ".tmp-0123456789abcdef.arrows").write_bytes(b"left by a killed export")
    if foreign:
        (legacy / "notes.txt").write_text("mine")
    today = cache_dir(ledger)
    today.mkdir(mode=0o700)
    (today / f"{SHA}-r1.1-h1.parquet").write_bytes(b"today's")
    (today / f"{'c' * 64}-r1.1-h1.parquet").write_bytes(b"entry")
    assert ec.adopt_legacy(ledger) == (not foreign)
    assert sorted(p.name for p in today.iterdir()) == sorted(f"{s}-r1.1-h1.parquet" for s in (SHA, "b" * 64, "c" * 64))
    assert (today / f"{SHA}-r1.1-h1.parquet").read_bytes() == b"today's"
    if foreign:
        assert [p.name for p in legacy.iterdir()] == ["notes.txt"]
    else:
        assert not legacy.exists()


def test_a_purge_drops_the_purged_tables_of_an_earlier_releases_folder_left_beside_todays(tmp_path):
    """What RETENTION.md promises of the tidy step, for a ledger whose folder of today is there
    beside an earlier release's: no table of a content no copy holds stays in either."""
    from tui.core import retention
    from tui.core.ledger import Ledger

    path = tmp_path / "lib" / "ledger.sqlite3"
    legacy = _legacy(path)
    path.unlink()
    cache_dir(path).mkdir(mode=0o700)
    with Ledger.open(path) as ledger:  # a real ledger holding nothing: its purge prunes all
        retention._prune_cache(ledger)
    assert not legacy.exists()
    assert list(cache_dir(path).iterdir()) == []


def test_an_earlier_releases_folder_is_not_merged_into_what_is_no_folder_of_ours(tmp_path):
    ledger = tmp_path / "lib" / "ledger.sqlite3"
    legacy = _legacy(ledger)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    cache_dir(ledger).symlink_to(theirs)
    assert not ec.adopt_legacy(ledger)
    assert len(list(legacy.iterdir())) == 2 and list(theirs.iterdir()) == []


# ------------------------------------------------------------ notes of ledgers gone for good


def _note_of(path: Path) -> Path:
    return noted_ledgers() / ec._note_name(os.path.abspath(path))


def test_the_note_of_a_gone_ledger_whose_cache_is_gone_too_goes(tmp_path):
    """A ledger deleted with its cache (its folder still there, or deleted too): nothing will
    ever come back for its note, which was kept for ever."""
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    ledgers = [tmp_path / name / "sub" / "ledger.sqlite3" for name in ("kept-folder", "deleted-folder")]
    for ledger in ledgers:
        _ledger(ledger)
        forget_moved(ledger)
    notes = [_note_of(ledger) for ledger in ledgers]
    for ledger, whole_folder in zip(ledgers, (False, True), strict=True):
        cache = cache_dir(ledger)
        ledger.unlink()
        for entry in cache.iterdir():
            entry.unlink()
        cache.rmdir()
        if whole_folder:
            ledger.parent.rmdir()
    assert all(n.exists() for n in notes)
    assert forget_moved(here) == []
    assert not any(n.exists() for n in notes)
    assert _note_of(here).exists()


def test_the_note_of_an_earlier_release_is_kept_while_its_cache_is_absent(tmp_path):
    """A note without the device its ledger's folder was on: it cannot tell a disk not
    mounted from one whose folder was deleted, so it stays as before."""
    gone = tmp_path / "gone" / "ledger.sqlite3"
    note = _note_by_hand(json.dumps({"ledger": str(gone)}), ec._note_name(str(gone)))
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    assert forget_moved(here) == []
    assert note.exists()


def test_a_ledger_on_a_disk_not_mounted_is_remembered_until_it_is_back(tmp_path):
    """A ledger (and its cache beside it) on a disk not mounted: nothing to remove, and its
    note stays; once the disk is back with the ledger moved away from it, its cache goes."""
    disk = tmp_path / "mnt" / "usb"
    ledger = disk / "ledger.sqlite3"
    cache = _ledger(ledger)
    forget_moved(ledger)
    note = _note_of(ledger)
    doc = json.loads(note.read_text())
    note.write_text(json.dumps(dict(doc, device=doc["device"] + 1)))  # the disk's own device
    away = tmp_path / "unmounted"
    disk.rename(away)  # what the mount point shows without its disk: nothing (on the root's device)
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
    """Two exports at once: one (of ``ledger.db``, by an earlier release) uses the stem-named
    folder while the other finds the note of a gone ``ledger.sqlite3`` of the same folder and
    stem, whose earlier release's cache folder is that very one. It is left whole while in
    use."""
    from tui.core.export_cache import TableCache

    old = tmp_path / "old" / "ledger.sqlite3"
    legacy = _legacy(old)
    forget_moved(old)
    old.unlink()
    (tmp_path / "old" / "ledger.db").write_bytes(b"ledger")
    using = TableCache(legacy).open()
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    assert forget_moved(here) == []
    assert len(list(legacy.glob("*.parquet"))) == 2
    del using
    (tmp_path / "old" / "ledger.db").unlink()
    assert forget_moved(here) == [legacy]  # no longer in use, its ledger gone: it goes


def _waiting_for_lock(folder: Path) -> bool:
    """Whether some process waits for a ``flock`` on ``folder`` (``/proc/locks`` lists a
    waiter with ``->``)."""
    ino = os.stat(folder).st_ino
    with open("/proc/locks") as fh:
        return any("->" in line and "FLOCK" in line and f":{ino} " in line for line in fh)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs /proc/locks")
def test_a_cache_opened_while_its_removal_runs_is_there_for_its_export(tmp_path, monkeypatch):
    """A removal had emptied the folder and let go of its lock before removing it: an export
    that opened the folder in between (its ledger back at the gone path) held a folder then
    removed, and every workbook it read had no folder to go to. Now the folder is removed
    while still held; the export waits, finds it gone, and makes it again."""
    from tui.core.export_cache import TableCache

    cache = _gone_with_cache(tmp_path)
    opened: list[TableCache] = []
    started: list[threading.Thread] = []
    real_stat = os.stat

    def opening(path, *args, **kwargs):
        if path == cache.name and kwargs.get("dir_fd") is not None and not started:
            t = threading.Thread(target=lambda: opened.append(TableCache(cache).open()))
            started.append(t)
            t.start()
            for _ in range(6000):  # the export holds the folder, or waits for the removal's lock
                if opened or _waiting_for_lock(cache):
                    break
                t.join(0.01)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(ec.os, "stat", opening)
    here = tmp_path / "new" / "ledger.sqlite3"
    _ledger(here)
    forget_moved(here)
    monkeypatch.undo()
    assert started
    started[0].join(120)
    assert opened and opened[0].folder.is_dir()
    (opened[0].folder / "probe").write_bytes(b"")  # its entries have a folder to go to
