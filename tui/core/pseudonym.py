"""Pseudonyms for identifier columns: a keyed hash, stable under one key, useless without it.

``export --pseudonymize`` replaces every value of a report's identifier columns with
``HMAC-SHA256(key, value)`` in hex, cut to its first 16 characters (64 bits: collisions among
a library's patrons are vanishingly unlikely). The same key gives the same pseudonym for the
same person in every export, so a semester's exports can be joined; without the key nobody can
tell which person a pseudonym stands for, not even by hashing every possible identifier.

The key: 32 random bytes, kept as 64 hex digits in ``<user data dir>/report-keeper/
pseudonym-<profile>.key`` (created on first use, mode 0600), or the file named by
``--key-file``. Each profile name has a file of its own (:func:`default_key_path`): a name of
letters, digits, ``-``, ``_`` and ``.`` is the file's name as it always was; any other
character is written ``%XX`` (its UTF-8 bytes). Releases before that wrote ``_`` for it, so
``a/b``, ``a b`` and ``a_b`` shared one key: :func:`load_key` moves such a key to its
profile's own name when no other profile of the config had that file name and the profile's
recorded exports used that very key, and otherwise refuses and says what to decide
(docs/EXPORT.md, "One key per profile").

A key file must be a regular file owned by the user and readable by nobody else (as ssh
demands of private keys); it is never created under a name the user typed (a
typo would silently start a new key and break the joins). The key never reaches a log, the
ledger or the JSON; its *id* (8 hex digits of a hash of the key) does, so two exports can be
seen to share a key.

Which columns: the report's ``identifier_columns`` (case and spacing ignored; their repeats in
one header row, ``NAME (2)``, too), else every
column whose header contains "identifier", "user id", "patron id" or "email"
(case-insensitive; ``_`` and ``-`` count as spaces, and "userid", "patronid", "e mail" too).
The export also pseudonymizes every column it named by position (``column N``: no usable
header name), since nothing tells what such a column holds.

A value is hashed as its text with surrounding whitespace removed; empty cells stay empty.
That rule is named by :data:`PSEUDONYM_RULE` in every pseudonymized export's JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shlex
import stat
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tui.core.config import default_data_dir
from tui.core.durable import fsync_dir
from tui.core.names import kept_in_file_name, profile_file_part

KEY_BYTES = 32
PSEUDONYM_CHARS = 16
MAX_KEY_FILE = 1024
#: How a value becomes its pseudonym, named in each pseudonymized export's JSON so that a study
#: can tell whether two exports' pseudonyms can be joined (the same key id and the same rule).
#: The HMAC-SHA256 of the value's text, trimmed, case kept, as its first 16 hex digits; a
#: number turned into text first, a whole one as the exact digits of its double. A new name
#: whenever any value's pseudonym would change (docs/EXPORT.md, "Pseudonym rule").
PSEUDONYM_RULE = "hmac-sha256-hex16:trimmed-text:case-kept:whole-numbers-as-exact-digits"
#: What a default identifier column's header contains (after folding case and separators).
DEFAULT_NEEDLES = ("identifier", "user id", "userid", "patron id", "patronid", "email", "e mail")

_SEPARATORS = re.compile(r"[\s_\-]+")


class PseudonymKeyError(Exception):
    """The key cannot be read or created; ``str()`` says what to do (exit 3)."""


@dataclass(frozen=True)
class PseudonymKey:
    path: Path
    secret: bytes
    created: bool = False  # made by this run: the user should back it up
    #: Moved by this run from the file an earlier release kept it in (its profile's name had
    #: a character it wrote as ``_``): the user should back it up under its new name.
    moved_from: Path | None = None

    def __repr__(self) -> str:  # never show the secret
        return (f"PseudonymKey(path={str(self.path)!r}, id={self.key_id!r}, created={self.created}, "
                f"moved_from={str(self.moved_from) if self.moved_from else None!r})")

    @property
    def key_id(self) -> str:
        """8 hex digits naming the key (a hash of it; it reveals nothing of the key)."""
        return hashlib.sha256(b"report-keeper pseudonym key id\0" + self.secret).hexdigest()[:8]

    def pseudonym(self, value: str) -> str:
        return pseudonym(self.secret, value)


def pseudonym(secret: bytes, value: str) -> str:
    """The pseudonym of one identifier (whitespace around it ignored)."""
    return hmac.digest(secret, value.strip().encode("utf-8", "surrogatepass"), "sha256").hex()[:PSEUDONYM_CHARS]


def default_key_path(profile: str) -> Path:
    """The profile's own key file: one per profile name, never another's.

    A name of letters, digits, ``-``, ``_`` and ``.`` only is the file's name as it always was
    (a new one would orphan the key and change every pseudonym). In any other name each other
    character (``%`` included) is written ``%XX``, its UTF-8 bytes in capital hex digits: such
    a name holds a ``%`` and no kept name does, and the writing can be read back, so no two
    names share a file (:func:`tui.core.names.profile_file_part`, which names the profile's
    ledger and folder too). An empty name is ``pseudonym-.key``."""
    return default_data_dir() / f"pseudonym-{profile_file_part(profile)}.key"


def earlier_key_path(profile: str) -> Path:
    """Where releases before :func:`default_key_path` kept the profile's key: each character
    other than a letter, digit, ``-``, ``_`` or ``.`` written ``_``, an empty name ``default``
    (so ``a/b``, ``a b`` and ``a_b`` shared one file). The same file for every kept name."""
    written = "".join(c if kept_in_file_name(c) else "_" for c in profile) or "default"
    return default_data_dir() / f"pseudonym-{written}.key"


def load_key(key_file: str | os.PathLike[str] | None, profile: str, profiles: Collection[str] = (),
             exported_with: Callable[[], Collection[str]] | None = None) -> PseudonymKey:
    """The key named by ``key_file`` (it must exist), else the profile's default key, created
    on first use. For a key an earlier release kept under a file name other profiles had too
    (:func:`_earlier_key`): ``profiles``, every profile name of the config; ``exported_with``,
    the ids of the keys the profile's recorded exports used (read only then)."""
    if key_file is not None:
        path = Path(key_file).expanduser()
        try:
            return PseudonymKey(path, _read(path))
        except FileNotFoundError:
            raise PseudonymKeyError(
                f"the pseudonym key {path} does not exist (a key is never created under a name "
                "given with --key-file: a typo would start a new key); name the key you kept, or "
                f"omit --key-file to use the profile's own key {default_key_path(profile)}"
            ) from None
    path = default_key_path(profile)
    try:
        return PseudonymKey(path, _read(path))
    except FileNotFoundError:
        pass
    earlier = _earlier_key(profile, path, profiles, exported_with)
    return earlier if earlier is not None else _create(path)


def _earlier_key(profile: str, path: Path, profiles: Collection[str],
                 exported_with: Callable[[], Collection[str]] | None) -> PseudonymKey | None:
    """The key an earlier release kept for ``profile`` under a file name other profile names
    have too, moved to the profile's own ``path``; None when there is none.

    The file cannot tell whose it is (``a_b``'s own key is there too). It is the profile's, and
    moved (never copied: a profile named like the old file later would share it again), only
    when no other profile of the config has that file name and the profile's recorded exports
    used that very key. Otherwise nothing is guessed, moved or created: ``PseudonymKeyError``
    names the profiles and the files and says what each choice means."""
    old = earlier_key_path(profile)
    if old == path:
        return None
    try:
        secret = _read(old)  # a key file as any other: its owner, its mode, its content
    except FileNotFoundError:
        return None
    others = sorted({p for p in profiles if p != profile and earlier_key_path(p) == old})
    if others:
        raise PseudonymKeyError(_shared_text(profile, others, old, path))
    if exported_with is None or PseudonymKey(old, secret).key_id not in exported_with():
        raise PseudonymKeyError(_unproven_text(profile, old, path))
    try:
        os.link(old, path, follow_symlinks=False)
    except FileExistsError:  # another export moved it meanwhile
        return PseudonymKey(path, _read(path))
    except OSError as exc:
        # A file system without hard links: a rename, guarded by an existence check.
        if os.path.lexists(path):
            return PseudonymKey(path, _read(path))
        try:
            os.rename(old, path)
        except OSError:
            raise PseudonymKeyError(
                f"cannot move the pseudonym key {old} to {path}, the profile's own name now "
                f"({exc.strerror or exc}); move it by hand: mv {shlex.quote(str(old))} {shlex.quote(str(path))}"
            ) from None
    else:
        try:
            os.unlink(old)
        except FileNotFoundError:
            pass
        except OSError as exc:  # both names hold it: the old one would be shared again
            raise PseudonymKeyError(
                f"the pseudonym key {old} was linked to {path}, the profile's own name now, but "
                f"the old name cannot be removed ({exc.strerror or exc}); remove it: rm {shlex.quote(str(old))}"
            ) from None
    fsync_dir(path.parent)
    return PseudonymKey(path, secret, moved_from=old)


def _unproven_text(profile: str, old: Path, new: Path) -> str:
    """What a person decides for an earlier release's key file no recorded export of the
    profile used (one line)."""
    owner = old.name.removeprefix("pseudonym-").removesuffix(".key")
    q_old, q_new = shlex.quote(str(old)), shlex.quote(str(new))
    return (f"the pseudonym key {old} may not be the key of profile {profile!r}: earlier releases kept "
            f"its key under that file name, but also the key of a profile named {owner!r} (in this "
            "config or another, and this release still does) and of any name that differs only in "
            "characters other than letters, digits, '-', '_' and '.'; and no export recorded in this "
            f"profile's ledger used that key. Profile {profile!r} has a key file of its own now, {new}, "
            "which does not exist yet; the old key is not taken on a guess. If it is this profile's: "
            f"mv {q_old} {q_new} (cp -p instead if another profile uses it too). For a new key, whose "
            f"pseudonyms will not join the earlier exports of {profile!r}: "
            f"(umask 077; head -c 32 /dev/urandom > {q_new})")


def _shared_text(profile: str, others: list[str], old: Path, new: Path) -> str:
    """What a person decides for a key file several profiles of the config had (one line)."""
    names = " and ".join(repr(n) for n in [profile, *others])
    q_old, q_new = shlex.quote(str(old)), shlex.quote(str(new))
    return (f"the profiles {names} of this config may have shared the pseudonym key {old}: earlier "
            f"releases kept their keys under that one file name. Profile {profile!r} has a key file "
            f"of its own now, {new}, which does not exist yet; which study the old key belongs to is "
            f"not guessed. If profile {profile!r} made its earlier exports with it and the others never "
            f"did: mv {q_old} {q_new}. If both did: cp -p {q_old} {q_new} keeps each study's "
            "pseudonyms (the studies stay linkable, as they were). For a new key, whose pseudonyms "
            f"will not join the earlier exports of {profile!r}: (umask 077; head -c 32 /dev/urandom > {q_new})")


def _create(path: Path) -> PseudonymKey:
    secret = secrets.token_bytes(KEY_BYTES)
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:  # another export created it meanwhile: use that one
        return PseudonymKey(path, _read(path))
    except OSError as exc:
        raise PseudonymKeyError(
            f"cannot create the pseudonym key {path} ({exc.strerror or exc}); fix the folder's "
            "permissions or name an existing key with --key-file"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secret.hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        try:
            path.unlink()
        except OSError:
            pass
        raise PseudonymKeyError(f"cannot write the pseudonym key {path} ({exc.strerror or exc})") from None
    return PseudonymKey(path, secret, created=True)


def _read(path: Path) -> bytes:
    """The secret in a key file; raises ``FileNotFoundError`` when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise PseudonymKeyError(f"cannot read the pseudonym key {path} ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PseudonymKeyError(f"the pseudonym key {path} is not a regular file; name the key file itself")
        if hasattr(os, "geteuid") and info.st_uid != os.geteuid():
            raise PseudonymKeyError(f"the pseudonym key {path} belongs to another user; use a key file of your own")
        if info.st_mode & 0o077:
            raise PseudonymKeyError(
                f"the pseudonym key {path} can be read by other users (mode {stat.S_IMODE(info.st_mode):04o}); "
                f"whoever reads it can link pseudonyms to people: run 'chmod 600 {path}' and try again"
            )
        raw = os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    text = raw.strip()
    if re.fullmatch(rb"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text.decode("ascii"))
    if len(raw) == KEY_BYTES:
        return raw  # 32 raw bytes (head -c 32 /dev/urandom > key)
    raise PseudonymKeyError(
        f"the pseudonym key {path} is not a key: it must hold 64 hex digits (32 bytes); "
        "restore it from your backup, or omit --key-file to use the profile's own key"
    )


def _fold(name: str) -> str:
    return _SEPARATORS.sub(" ", name).strip().casefold()


#: The name the export's reader gives a header name that repeats in one header row
#: (``Primary Identifier (2)``): the same column again.
_REPEAT = re.compile(r"(.+) \((?:[2-9]|[1-9][0-9]+)\)", re.DOTALL)


def repeated_name(name: str) -> str:
    """``Primary Identifier`` for ``Primary Identifier (2)`` (the reader's name of a repeated
    header); any other name as it is."""
    m = _REPEAT.fullmatch(name)
    return m.group(1) if m else name


def identifier_columns(columns: Iterable[str], configured: Sequence[str] = ()) -> list[str]:
    """Which of ``columns`` are identifier columns (in their order). A configured name also
    marks its repeats in one header row (``NAME (2)``, as the reader names them): a report
    holding the identifier twice must not leave the second copy raw."""
    if configured:
        wanted = {_fold(c) for c in configured}
        return [c for c in columns if _fold(c) in wanted or _fold(repeated_name(c)) in wanted]
    return [c for c in columns if any(n in _fold(c) for n in DEFAULT_NEEDLES)]
