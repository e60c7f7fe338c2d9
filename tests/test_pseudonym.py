"""Pseudonym keys and identifier columns: the key file's rules, the hash, the config key."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import tomllib

import pytest

from tui.core.config import ConfigError, parse_config
from tui.core.pseudonym import (
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
    assert other.path.name == "pseudonym-other_profile_...key" and other.secret != key.secret


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
