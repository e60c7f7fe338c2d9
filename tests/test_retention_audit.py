"""Local retention against what a person (or another program) leaves at a copy's name: a link
to something else, a file edited to another size. Real workbooks, a real ledger, a real folder.

What is at the name decides, never a guess: a purge records a copy purged only when its name
holds nothing at all, and a dry run says of such a name what the purge would do."""

from __future__ import annotations

import pytest

from tests import retention_data as rd
from tui.core import retention

DELETE_ALL = "local_retention_days = 30\nkeep_until_exported = false"


@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", rd.NOW_ISO)


def _link_and_edit(env, tmp_path):
    """Run 0's copy replaced by a link to a file of the user's; run 1's edited (grown)."""
    precious = tmp_path / "precious.txt"
    precious.write_text("mine")
    env.path(0).unlink()
    env.path(0).symlink_to(precious)
    with open(env.path(1), "ab") as fh:
        fh.write(b"a note typed at the end")
    return precious


@pytest.mark.parametrize("interrupted", [False, True])
def test_a_name_holding_a_link_or_an_edited_file_is_never_recorded_purged(tmp_path, pinned, interrupted):
    """A copy whose name holds a link, or a file of another size, is not the download and is
    not gone: a purge leaves it and says why, also when an earlier purge died after deciding
    (it was recorded purged then, with the edited file's patron data still on disk)."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    precious = _link_and_edit(env, tmp_path)
    with env.ledger() as ledger:
        if interrupted:
            ledger.mark_purging([(rd.name(i), str(env.path(i))) for i in range(2)], when=rd.NOW)
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
        errors = {c.name: why for c, why in result.errors}
        assert set(errors) == {rd.name(0), rd.name(1)}
        assert "no longer a regular file" in errors[rd.name(0)]
        assert "no longer what was downloaded" in errors[rd.name(1)]
        assert {c.name for c in [*result.purged, *result.finished]} == {rd.name(i) for i in range(2, 10)}
        states = ledger.local_states()
        assert states[rd.name(0)] != "purged" and states[rd.name(1)] != "purged"
        assert all(not d.purge_started for i in range(2) for d in ledger.downloads(rd.name(i)))
    assert env.path(0).is_symlink() and precious.read_text() == "mine"
    assert env.path(1).read_bytes().endswith(b"a note typed at the end")


def test_a_dry_run_says_what_the_purge_would_say_of_a_link_or_an_edited_file(tmp_path, pinned):
    """A dry run called them 'not found ... recorded purged' while the purge leaves them."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    _link_and_edit(env, tmp_path)
    with env.ledger() as ledger:
        dry = retention.purge(env.profile(), ledger, now=rd.NOW, dry_run=True)
        real = retention.purge(env.profile(), ledger, now=rd.NOW)
    assert {c.name: why for c, why in dry.errors} == {c.name: why for c, why in real.errors}
    assert [c.name for c in dry.purged] == [c.name for c in real.purged]
    assert not any(c.absent for c in dry.purged)
    assert "NOT FOUND" not in "\n".join(dry.summary_lines())


def test_a_name_emptied_is_still_recorded_purged_and_never_missing(tmp_path, pinned):
    """The other side of the rule above: a copy deleted by hand (nothing at its name) is
    recorded purged as before, an interrupted one finished."""
    env = rd.build(tmp_path / "h", profile_extra=DELETE_ALL)
    env.path(0).unlink()
    env.path(1).unlink()
    with env.ledger() as ledger:
        ledger.mark_purging([(rd.name(1), str(env.path(1)))], when=rd.NOW)
        result = retention.purge(env.profile(), ledger, now=rd.NOW)
        assert [c.name for c in result.finished] == [rd.name(1)]
        assert [c.name for c in result.purged if c.absent] == [rd.name(0)]
        assert ledger.local_states()[rd.name(0)] == ledger.local_states()[rd.name(1)] == "purged"
