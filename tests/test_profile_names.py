"""Profile names are untrusted text: the files and folders named after them.

A config may name a profile ``a/b``, ``../x``, ``a b``, ``.`` or 300 characters long (it refuses
only control and direction characters). The default ledger, the default local folder, the
pseudonym key and the export's suggested file are named after the profile: each name gets
files of its own, inside the data folder, and a name of letters, digits, ``-``, ``_`` and
``.`` keeps the very paths earlier releases gave it (an existing library's history and
downloads never move). Names that cannot name a folder (empty, ``.``, ``..``) or that are too
long for a file name are refused with what to do; a history an earlier release kept under
the raw name is never left behind for a new, empty ledger (used where it is when it is the
profile's beyond doubt, tests/test_profile_upgrade.py; else the profile stops and says why).
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path

import pytest

from tests.daily_config import write_profiles_config
from tui.cli import main
from tui.core import ledger as ledger_module
from tui.core.config import ConfigError, Profile, default_data_dir, load_config
from tui.core.names import MAX_PROFILE_FILE_PART, profile_file_part
from tui.core.pseudonym import default_key_path

#: Names earlier releases already gave files of their own: every path stays where it was.
KEPT = ["default", "library", "a", "a_b", "Main-Library_2026.v2", "a.b", "...", ".hidden", "-x",
        "é", "Bücherei", "図書館"]
#: Names whose raw text reached other folders or shared a path with another name.
HOSTILE = ["a/b", "a b", "a%20b", "a%2Fb", "%", "../x", "a/../b", "a\\b", " a", "a ", "📚", "x/",
           "../../../../tmp/evil", "a:b", "*"]


def _toml(name: str) -> str:
    return json.dumps(name, ensure_ascii=False)  # json's escapes are TOML's


def _config(tmp_path: Path, names: list[str], extra: dict[str, str] | None = None,
            file: str = "config.toml") -> Path:
    return write_profiles_config(tmp_path, names, extra, file)


def _data() -> Path:
    return default_data_dir()


def test_a_kept_names_ledger_and_folder_are_where_they_always_were(tmp_path):
    config = load_config(_config(tmp_path, KEPT))
    assert not config.broken, config.broken
    for name in KEPT:
        profile = config.profile(name)
        assert profile.problem is None
        assert profile.ledger_path == _data() / f"ledger-{name}.sqlite3"
        assert profile.local_dir == _data() / "reports" / name
        assert ledger_module.default_path(name) == profile.ledger_path


def test_every_profile_name_has_a_ledger_and_a_folder_of_its_own_inside_the_data_folder(tmp_path):
    """``a/b`` made a sub-folder path (``ledger-a/b``; ``reports/a/b``, inside profile ``a``'s
    downloads), ``../x`` reached outside the data folder, ``a b`` and ``a_b`` differed only by
    a character."""
    names = KEPT + HOSTILE
    config = load_config(_config(tmp_path, names))
    assert not config.broken, config.broken
    profiles = [config.profile(n) for n in names]
    ledgers = [p.ledger_path for p in profiles]
    folders = [p.local_dir for p in profiles]
    assert len(set(ledgers)) == len(names) and len(set(folders)) == len(names)
    for ledger, folder in zip(ledgers, folders, strict=True):
        assert ledger.parent == _data(), ledger
        assert folder.parent == _data() / "reports", folder
        assert folder.name not in ("", ".", "..")
        assert Path(os.path.normpath(ledger)) == ledger and Path(os.path.normpath(folder)) == folder
    # the same file name the pseudonym key has always had, one mapping for every file
    for name, ledger in zip(names, ledgers, strict=True):
        stem = ledger.name.removeprefix("ledger-").removesuffix(".sqlite3")
        assert stem == profile_file_part(name)
        assert default_key_path(name).name == f"pseudonym-{stem}.key"
        assert ledger_module.default_path(name) == ledger
    assert config.profile("a/b").local_dir.name == "a%2Fb" and config.profile("a b").ledger_path.name \
        == "ledger-a%20b.sqlite3"


def test_the_export_suggests_a_file_of_the_profiles_own():
    from tui.screens.export import default_output

    day = date(2026, 3, 15)
    assert default_output("library", day).name == "report-keeper-library-2026-03-15.parquet"
    assert default_output("Bücherei", day).name == "report-keeper-Bücherei-2026-03-15.parquet"
    outputs = {default_output(n, day) for n in KEPT + HOSTILE}
    assert len(outputs) == len(KEPT + HOSTILE)
    assert all("/" not in p.name and p.parent == default_output("x", day).parent for p in outputs)


@pytest.mark.parametrize("name, said", [
    ("", "empty"),
    (".", "'.'"),
    ("..", "'..'"),
    ("x" * (MAX_PROFILE_FILE_PART + 1), "too long"),
    ("x" * 300, "too long"),
    ("é" * 101, "too long"),  # 202 bytes in a file name
    ("a b" * 45, "too long"),  # 135 characters, 225 written as a file name
])
def test_a_name_that_cannot_name_a_file_is_refused_and_the_others_load(tmp_path, name, said):
    config = load_config(_config(tmp_path, ["main", name]))
    assert config.names == ("main", name)
    assert config.profile("main").ledger_path == _data() / "ledger-main.sqlite3"
    assert name in config.broken
    with pytest.raises(ConfigError) as info:
        _picked(config, name)
    message = str(info.value)
    assert said in message and "rename the profile" in message, message
    assert len(message) < 700 and (not name or name * 2 not in message)


def _picked(config, name):
    """The profile ``name`` (``--profile ""`` picks the default one, so not through it)."""
    if name in config.broken:
        raise config.broken[name]
    return config.profile(name)


def test_the_longest_name_that_fits_loads(tmp_path):
    name = "x" * MAX_PROFILE_FILE_PART
    profile = load_config(_config(tmp_path, [name])).profile(name)
    assert profile.ledger_path.name == f"ledger-{name}.sqlite3"
    for made in (f".{profile.ledger_path.name}.new-4194304-0123abcd-journal",
                 f"{profile.ledger_path.name}.notify-lock-0123456789abcdef",
                 f"report-keeper-{name}-2026-03-15.parquet", default_key_path(name).name):
        assert len(made.encode()) <= 255, made


def test_a_name_with_a_line_break_is_refused_already(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[profile."a\\nb"]\nhost = "h"\n[profile.main]\nhost = "h"\n')
    config = load_config(path)
    assert "U+000A" in str(config.broken["a\nb"]) and config.profile("main").problem is None


def _earlier_ledger(name: str) -> Path:
    """Where an earlier release kept the ledger of profile ``name``: its raw name."""
    path = Path(os.path.normpath(_data() / f"ledger-{name}.sqlite3"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"SQLite format 3\x00 (a history)")
    return path


def test_a_ledger_an_earlier_release_kept_under_the_raw_name_is_never_left_behind(tmp_path, capsys):
    """A library named 'Main Library' kept its history in 'ledger-Main Library.sqlite3':
    starting an empty ledger under the new name would download everything again and forget
    every verdict. Its own beyond doubt, it is used where it is (tests/test_profile_upgrade.py);
    while another profile's settings name it too, the profile stops (exit 3) naming both files
    and the way on."""
    old = _earlier_ledger("Main Library")
    cfg = _config(tmp_path, ["Main Library", "other"])
    config = load_config(cfg)
    assert config.profile("other").problem is None
    new = _data() / "ledger-Main%20Library.sqlite3"
    assert config.profile("Main Library").ledger_path == old
    assert [k.setting for k in config.profile("Main Library").earlier_paths] == ["ledger"]
    shared = _config(tmp_path, ["Main Library", "other"], {"other": f"ledger = {_toml(str(old))}"},
                     file="shared.toml")
    with pytest.raises(ConfigError) as info:
        load_config(shared).profile("Main Library")
    message = str(info.value)
    assert info.value.key.endswith(".ledger")
    assert str(old) in message and str(new) in message and "ledger = " in message, message
    assert "'other'" in message and "move it" not in message, message
    assert main(["check", "--offline", "--config", str(shared), "--profile", "Main Library"]) == 3
    err = capsys.readouterr().err
    assert str(old) in err and str(new) in err and len(err.splitlines()) == 1, err
    assert not new.exists() and old.read_bytes().startswith(b"SQLite format 3")
    # kept where it is: the profile names it, and nothing is said
    kept = load_config(_config(tmp_path, ["Main Library"], {"Main Library": f"ledger = {_toml(str(old))}"},
                               file="kept.toml"))
    assert kept.profile("Main Library").ledger_path == old
    assert kept.profile("Main Library").earlier_paths == ()
    # moved to the new name: that one is used
    old.rename(new)
    assert load_config(cfg).profile("Main Library").ledger_path == new
    assert load_config(cfg).profile("Main Library").earlier_paths == ()


def test_a_ledger_file_another_profile_kept_under_this_profiles_new_name_is_not_taken(tmp_path):
    """'a%20b''s earlier ledger is named as 'a b''s is now: while 'a b' has a history of its
    own under its raw name, that file is not taken for it."""
    theirs = _earlier_ledger("a%20b")
    ours = _earlier_ledger("a b")
    config = load_config(_config(tmp_path, ["a b", "a%20b"]))
    assert theirs == _data() / "ledger-a%20b.sqlite3" == config.profiles["a b"].ledger_path
    for name, old in (("a b", ours), ("a%20b", theirs)):
        with pytest.raises(ConfigError) as info:
            config.profile(name)
        assert str(old) in str(info.value), str(info.value)
    assert "'a%20b'" in str(config.profiles["a b"].problem) and "'a b'" in str(config.profiles["a%20b"].problem)
    ours.unlink()  # 'a b' never had a history of its own: the file it is named now is its own
    assert load_config(_config(tmp_path, ["a b", "a%20b"])).profile("a b").problem is None


def test_downloads_an_earlier_release_put_in_the_raw_named_folder_are_never_left_behind(tmp_path):
    old = _data() / "reports" / "a" / "b"
    old.mkdir(parents=True)
    (old / "Loans_20260301_070000.xlsx").write_bytes(b"PK")
    cfg = _config(tmp_path, ["a", "a/b"])
    config = load_config(cfg)
    assert config.profile("a").problem is None
    with pytest.raises(ConfigError) as info:
        config.profile("a/b")
    message = str(info.value)
    new = _data() / "reports" / "a%2Fb"
    assert info.value.key.endswith(".local_dir")
    assert str(old) in message and str(new) in message and "local_dir = " in message, message
    kept = load_config(_config(tmp_path, ["a/b"], {"a/b": f"local_dir = {_toml(str(old))}"}, file="kept.toml"))
    assert kept.profile("a/b").local_dir == old
    # an empty folder holds nothing to leave behind
    (old / "Loans_20260301_070000.xlsx").unlink()
    assert load_config(cfg).profile("a/b").local_dir == new


def test_a_profile_picked_by_the_commands_never_writes_outside_the_data_folder(tmp_path, capsys):
    """``../x``'s default ledger was ``<data>/ledger-../x.sqlite3``."""
    cfg = _config(tmp_path, ["../evil"])
    (_data() / "ledger-..").mkdir(parents=True)
    main(["check", "--offline", "--config", str(cfg), "--profile", "../evil"])
    capsys.readouterr()
    assert list((_data() / "ledger-..").iterdir()) == []
    assert not (_data() / "evil.sqlite3").exists()


def test_profile_built_in_code_uses_the_same_names():
    assert Profile(name="a/b", host="h").ledger_path == _data() / "ledger-a%2Fb.sqlite3"


def test_a_ledger_and_a_folder_left_behind_are_named_in_one_line(tmp_path):
    """Both at once: one line says both, so the profile is fixed in one go ('x/y' made
    sub-folders of the raw name: nothing there is taken for the profile without a word)."""
    old_ledger = _earlier_ledger("x/y")
    old_folder = _data() / "reports" / "x" / "y"
    old_folder.mkdir(parents=True)
    (old_folder / "Loans_20260301_070000.xlsx").write_bytes(b"PK")
    problem = load_config(_config(tmp_path, ["x/y"])).profiles["x/y"].problem
    assert problem is not None and problem.key.endswith(".ledger")
    message = str(problem)
    for path in (old_ledger, old_folder, _data() / "ledger-x%2Fy.sqlite3",
                 _data() / "reports" / "x%2Fy"):
        assert str(path) in message, message
    assert "ledger = " in message and "local_dir = " in message and len(message.splitlines()) == 1
    assert message.count("%XX") == 1


def test_a_folder_another_profile_had_under_this_profiles_new_name_is_not_taken(tmp_path):
    theirs = _data() / "reports" / "a%20b"
    ours = _data() / "reports" / "a b"
    for folder in (theirs, ours):
        folder.mkdir(parents=True)
        (folder / "Loans_20260301_070000.xlsx").write_bytes(b"PK")
    config = load_config(_config(tmp_path, ["a b", "a%20b"]))
    assert config.profiles["a b"].local_dir == theirs
    ab, other = str(config.profiles["a b"].problem), str(config.profiles["a%20b"].problem)
    assert str(ours) in ab and "'a%20b'" in ab, ab
    assert str(theirs) in other and "'a b'" in other and "move the folder" not in other, other


def _part_by_character(profile: str) -> str:
    """The part's definition, one character at a time (what the fast path must equal)."""
    return "".join(c if (c.isalnum() or c in "-_.") else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
                   for c in profile)


def test_the_file_part_of_every_kind_of_name_is_its_definitions():
    """A plain ASCII name is kept in one match, every other name is written a character at a
    time: the same part either way, and the config's paths use this very function."""
    import random

    from tui.core.config import default_ledger_path, default_local_dir

    rng = random.Random(7)
    alphabet = ("abcXYZ019-_." + "%/\\ :*\x00\x01\x1f\x7f\t\n" + "éß図書館📚\u0301\u200e\ud800İ" + "٣")
    names = KEPT + HOSTILE + ["", ".", "..", "a..b", "%41", "a\nb", "\udcff", "x" * 300, "ÿ" * 10]
    names += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    data = Path("/data")
    for name in names:
        want = _part_by_character(name)
        assert profile_file_part(name) == want, repr(name)
        assert default_ledger_path(name, data) == data / f"ledger-{want}.sqlite3", repr(name)
        assert default_local_dir(name, data) == data / "reports" / want, repr(name)
