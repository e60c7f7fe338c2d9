"""Links where the export cache folder should be (docs/EXPORT.md): never followed, never
written through, and the refusal says what is in the way and what to do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tui.core import export_cache as ec

SHA = "a" * 64


def _ledger(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"ledger")
    return path


@pytest.mark.parametrize("dangling", [True, False], ids=["dangling", "to-a-folder"])
def test_a_link_in_place_of_the_cache_is_refused_as_no_folder(tmp_path, dangling):
    ledger = _ledger(tmp_path / "ledger.sqlite3")
    theirs = tmp_path / "theirs"
    if not dangling:
        theirs.mkdir()
    ec.cache_dir(ledger).symlink_to(theirs)
    with pytest.raises(ec.CacheError) as caught:
        ec.open_cache(ledger)
    assert "is not a folder; move it aside" in str(caught.value)
    assert ec.cache_dir(ledger).is_symlink()
    assert theirs.exists() == (not dangling)  # nothing made through the link
    if not dangling:
        assert list(theirs.iterdir()) == []


def test_an_earlier_releases_folder_swapped_for_a_link_before_its_rename_is_never_followed(tmp_path, monkeypatch):
    """Its name becomes a link (to a folder of the user's holding a file named like an entry)
    between the checks and the rename: the link is what is renamed, the export refuses it as
    no folder, and nothing in the user's folder is read into the cache or removed."""
    ledger = _ledger(tmp_path / "a" / "ledger.sqlite3")
    legacy = ec.legacy_cache_dir(ledger)
    assert legacy is not None
    legacy.mkdir(mode=0o700)
    (legacy / f"{SHA}-r1.1-h1.parquet").write_bytes(b"entry")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / f"{SHA}-r1.1-h1.parquet").write_bytes(b"mine")
    rename = os.rename

    def swapped_first(src, dst, **kw):
        if src == legacy.name and not legacy.is_symlink():
            legacy.rename(tmp_path / "moved-aside")
            legacy.symlink_to(theirs)
        return rename(src, dst, **kw)

    monkeypatch.setattr(ec.os, "rename", swapped_first)
    with pytest.raises(ec.CacheError) as caught:
        ec.open_cache(ledger)
    assert "is not a folder; move it aside" in str(caught.value)
    assert (theirs / f"{SHA}-r1.1-h1.parquet").read_bytes() == b"mine"
    assert (tmp_path / "moved-aside" / f"{SHA}-r1.1-h1.parquet").read_bytes() == b"entry"
