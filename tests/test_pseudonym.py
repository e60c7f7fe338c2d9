"""Pseudonym keys and identifier columns: the key file's rules, the hash, the config key."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import tomllib
from pathlib import Path

import pytest

from tui.core.config import ConfigError, parse_config
from tui.core.pseudonym import (
    PseudonymKey,
    PseudonymKeyError,
    default_key_path,
    identifier_columns,
    load_key,
    pseudonym,
)


def test_the_profiles_key_is_created_once_private_and_reused(tmp_path):
    key = load_key(None, "study")
    assert key.created and key.path == default_key_path("study")
    assert key.path.parent.name == "report-keeper" and key.path.name == "pseudonym-study.key"
    assert stat.S_IMODE(os.stat(key.path).st_mode) == 0o600
    assert len(key.secret) == 32 and key.path.read_text() == key.secret.hex() + "\n"
    again = load_key(None, "study")
    assert not again.created and again.secret == key.secret and again.key_id == key.key_id
    assert key.secret.hex() not in repr(key)  # never shown
    other = load_key(None, "other profile/..")
    assert other.path.name == "pseudonym-other%20profile%2F...key" and other.secret != key.secret


def test_the_pseudonym_is_hmac_sha256_hex_16(tmp_path):
    secret = bytes(range(32))
    expected = hmac.new(secret, b"000123456", hashlib.sha256).hexdigest()[:16]
    assert pseudonym(secret, "000123456") == expected == pseudonym(secret, " 000123456 ")
    assert pseudonym(secret, "000123456") != pseudonym(secret, "123456")
    assert pseudonym(bytes(32), "000123456") != expected


def test_key_files_given_by_name(tmp_path):
    hexkey = tmp_path / "hex.key"
    hexkey.write_text("AB" * 32 + "\n")
    hexkey.chmod(0o600)
    assert load_key(hexkey, "x").secret == bytes([0xAB]) * 32
    raw = tmp_path / "raw.key"
    raw.write_bytes(b"\x00\x01" * 16)  # 32 raw bytes, as `head -c 32 /dev/urandom` writes
    raw.chmod(0o600)
    assert load_key(raw, "x").secret == b"\x00\x01" * 16

    with pytest.raises(PseudonymKeyError, match="does not exist"):
        load_key(tmp_path / "typo.key", "x")
    assert not (tmp_path / "typo.key").exists()  # never created under a typed name
    short = tmp_path / "short.key"
    short.write_text("abcd")
    short.chmod(0o600)
    with pytest.raises(PseudonymKeyError, match="64 hex digits"):
        load_key(short, "x")
    shared = tmp_path / "shared.key"
    shared.write_text("ab" * 32)
    shared.chmod(0o640)
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        load_key(shared, "x")
    with pytest.raises(PseudonymKeyError, match="not a regular file"):
        load_key(tmp_path, "x")
    fifo = tmp_path / "fifo.key"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(PseudonymKeyError, match="not a regular file"):
        load_key(fifo, "x")  # opened without blocking, never read


def test_default_identifier_columns_and_configured_ones():
    cols = ["Primary Identifier", "User Group", "Patron_ID", "E-mail Address", "UserID", "Email",
            "Item Barcode", "User id (secondary)", "Title"]
    assert identifier_columns(cols) == ["Primary Identifier", "Patron_ID", "E-mail Address", "UserID",
                                        "Email", "User id (secondary)"]
    assert identifier_columns(cols, ["item barcode", "TITLE "]) == ["Item Barcode", "Title"]


def _config(extra: str) -> str:
    return f'[profile.default]\nhost = "h"\nlocal_dir = "/tmp/rk-x"\n[[profile.default.report]]\nname = "R"\n{extra}\n'


def test_identifier_columns_is_a_report_key():
    profile = parse_config(tomllib.loads(_config('identifier_columns = ["Primary Identifier"]'))).profile()
    assert profile.report_for("R").identifier_columns == ("Primary Identifier",)
    assert parse_config(tomllib.loads(_config(""))).profile().report_for("R").identifier_columns == ()
    with pytest.raises(ConfigError, match="identifier_columns: expected a list of strings"):
        parse_config(tomllib.loads(_config("identifier_columns = 3"))).profile()  # its own error: raised when it is picked


# ------------------------------------------------------------------------ one key per profile

#: Names whose characters are all letters, digits, "-", "_" or ".": their key files keep the
#: names every earlier release gave them (a new name would orphan the key and change every
#: pseudonym of the study).
SAFE_NAMES = ["default", "study", "a_b", "Main-Library_2026.v2", "é", "Bücherei", "図書館", "..", "a.b"]
#: Names with other characters: told apart from each other and from every safe name.
UNSAFE_NAMES = ["a/b", "a b", "a:b", "a%2Fb", "a%252Fb", "a_b ", " a_b", "a\\b", "a/b/", "a\tb", "📚", "a+b", "a=b",
                "", "%", "a%20b", "a%2fb"]


def _earlier_release(profile: str) -> str:
    """The key file name of releases before each profile had one of its own."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in profile) or "default"
    return f"pseudonym-{safe}.key"


@pytest.mark.parametrize("name", SAFE_NAMES)
def test_a_safe_profile_names_key_file_is_the_one_it_always_had(name):
    assert default_key_path(name).name == _earlier_release(name) == f"pseudonym-{name}.key"


def test_every_profile_name_has_a_key_file_of_its_own():
    """``a/b``, ``a_b`` and ``a b`` (and an empty name and ``default``) were one file: two
    studies silently shared one key, and their pseudonyms could be linked."""
    names = SAFE_NAMES + UNSAFE_NAMES
    paths = {default_key_path(n) for n in names}
    assert len(paths) == len(names), sorted(str(p.name) for p in paths)
    assert all(p.parent == default_key_path("default").parent and "/" not in p.name for p in paths)
    assert all(p.name.startswith("pseudonym-") and p.name.endswith(".key") for p in paths)


def test_two_profiles_an_earlier_release_gave_one_key_get_two(tmp_path):
    first = load_key(None, "a/b")
    second = load_key(None, "a b")
    third = load_key(None, "a_b")
    assert first.created and second.created and third.created
    assert len({first.secret, second.secret, third.secret}) == 3
    assert len({first.path, second.path, third.path}) == 3
    assert load_key(None, "a/b").secret == first.secret and load_key(None, "a b").secret == second.secret


def _old_key(profile: str, digits: str) -> Path:
    """A key an earlier release kept for ``profile``."""
    old = default_key_path("default").parent / _earlier_release(profile)
    old.parent.mkdir(parents=True, exist_ok=True)
    old.write_text(digits * 32 + "\n")
    old.chmod(0o600)
    return old


def test_the_key_an_earlier_release_kept_for_the_profile_is_moved_to_its_own_name(tmp_path):
    """No other profile of the config had the old file name, and the profile's recorded exports
    used that very key: it is the profile's own. It is moved (never copied: a profile later
    named like the old file would share it again) and the export says where it went; the
    pseudonyms stay the same."""
    old = _old_key("Main Library", "ab")
    used = PseudonymKey(old, bytes([0xAB]) * 32).key_id
    key = load_key(None, "Main Library", profiles=("Main Library", "Branch/East"), exported_with=lambda: {used})
    assert key.secret == bytes([0xAB]) * 32 and not key.created
    assert key.path == default_key_path("Main Library") != old and key.moved_from == old
    assert not old.exists() and stat.S_IMODE(os.stat(key.path).st_mode) == 0o600
    again = load_key(None, "Main Library", profiles=("Main Library",), exported_with=lambda: set())
    assert again.secret == key.secret and again.moved_from is None
    # A profile that takes the old file's name later starts a key of its own.
    assert load_key(None, "Main_Library").secret != key.secret


@pytest.mark.parametrize("other", ["a_b", "a b"])
def test_a_key_file_two_profiles_of_the_config_shared_is_never_guessed(tmp_path, other):
    """``a/b`` and another profile of the config both mapped to the old file: either (or both)
    may have made exports with it. Nothing is moved, copied or created: the error names both
    profiles and both files and says what each choice means."""
    old = _old_key("a/b", "cd")
    used = PseudonymKey(old, bytes([0xCD]) * 32).key_id
    with pytest.raises(PseudonymKeyError) as info:
        load_key(None, "a/b", profiles=("a/b", other, "c"), exported_with=lambda: {used})
    message = str(info.value)
    assert "'a/b'" in message and f"'{other}'" in message and "'c'" not in message
    assert str(old) in message and str(default_key_path("a/b")) in message
    assert "mv " in message and "cp -p " in message
    assert old.read_text() == "cd" * 32 + "\n" and not default_key_path("a/b").exists()
    if other == "a_b":  # its own key is the old file, as it always was
        assert load_key(None, "a_b", profiles=("a/b", other)).secret == bytes([0xCD]) * 32
    # Once a person put a key at the profile's own name, it is used.
    default_key_path("a/b").write_text("ef" * 32 + "\n")
    default_key_path("a/b").chmod(0o600)
    assert load_key(None, "a/b", profiles=("a/b", other)).secret == bytes([0xEF]) * 32


def test_the_config_tells_the_key_which_profiles_it_holds():
    text = ('[profile."a/b"]\nhost = "h"\n[profile.a_b]\nhost = "h"\n[profile."x y"]\nhost = 3\n')
    config = parse_config(tomllib.loads(text))
    assert config.profile("a/b").config_profiles == ("a/b", "a_b", "x y")  # a broken one too


@pytest.mark.parametrize("recorded", [None, set(), {"0000beef"}])
def test_a_key_file_no_recorded_export_of_the_profile_used_is_never_taken(tmp_path, recorded):
    """The old file name is also the own key file of a profile named ``a_b`` (of another config,
    or made by this release): unless the profile's ledger shows exports made with that key, it
    is not taken, moved or replaced by a new key: the error names the file and the choices."""
    old = _old_key("a/b", "cd")
    with pytest.raises(PseudonymKeyError) as info:
        load_key(None, "a/b", profiles=("a/b",), exported_with=None if recorded is None else lambda: recorded)
    message = str(info.value)
    assert str(old) in message and str(default_key_path("a/b")) in message and "'a_b'" in message
    assert "mv " in message and "head -c 32 /dev/urandom" in message
    assert old.exists() and not default_key_path("a/b").exists()
