"""Report file names: base name and delivery time (docs/DOMAIN.md), and untrusted names;
profile names in file names and command lines (the end of this module).

Alma appends a timestamp to the report name when "Add Timestamp" is ticked; its exact format is
not documented, so parsing is tolerant: a trailing ``YYYYMMDD_HHMMSS``, ``YYYYMMDDHHMMSS``,
``YYYY-MM-DD_HH-MM-SS`` or ``YYYY-MM-DDTHH:MM:SS`` (and the ``HHMM`` precision variants),
separated from the name by ``_``, ``-`` or a space. A report may set ``pattern``, a regex with
the named groups ``name`` and ``ts``. Where no timestamp parses (or it lies outside the years
1970..2199 that ``tui.core.clock.plausible`` accepts), the delivery time is the server's
modification time.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import PurePosixPath

from tui.core import clock
from tui.core.sizes import byte_size

# A trailing timestamp at the end of the stem, after a separator.
_TS_BODY = r"""
    (?P<Y>\d{4}) (?P<ds>-?) (?P<mo>\d{2}) (?P=ds) (?P<d>\d{2})
    (?:[T_ -]?)
    (?P<H>\d{2}) (?P<ts>[:.-]?) (?P<mi>\d{2}) (?: (?P=ts) (?P<S>\d{2}) )?
    (?: [.,]\d{1,6} )?
"""
_TRAILING_TS = re.compile(r"^(?P<name>.*?\S)[ _-]+(?P<stamp>" + _TS_BODY + r")$", re.X)
_TS_ONLY = re.compile(r"^(?P<stamp>" + _TS_BODY + r")$", re.X)

#: Bidirectional and other invisible format characters that can make a name display as another
#: (the config refuses them in its text too).
SPOOFING_FORMAT_CHARS = frozenset({
    "\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
    "\u2066", "\u2067", "\u2068", "\u2069", "\ufeff",
})
MAX_NAME_BYTES = 255

#: Names beginning with this (in any letter case) belong to report-keeper itself: its private
#: working folder inside ``local_dir`` and the connection test's probe on the server. No server
#: file under such a name is ever written locally, so none can land on a working file.
RESERVED_PREFIX = ".report-keeper"
#: The private working folder inside ``local_dir`` (part files and their records).
WORK_DIR_NAME = ".report-keeper"
#: The connection test's probe: ``.report-keeper-probe-<hex>.txt`` in the server folder.
PROBE_PREFIX = ".report-keeper-probe-"
_PROBE_NAME = re.compile(r"^\.report-keeper-probe-[0-9a-f]{8,32}\.txt$")
RESERVED_REASON = "the name is reserved for report-keeper's own working files"


@dataclass(frozen=True)
class ParsedName:
    """What a file name says about the delivery it holds."""

    filename: str
    base: str  # the report's base name: the stem without the trailing timestamp
    delivered_at: datetime | None  # aware
    source: str  # "name" | "pattern" | "mtime" | "none"
    stamp: str | None = None  # the timestamp text as found in the name


def stem_of(filename: str) -> str:
    """The file name without its last extension (``a.b.xlsx`` → ``a.b``)."""
    suffix = PurePosixPath(filename).suffix
    return filename[: -len(suffix)] if suffix and suffix != filename else filename


def _to_datetime(m: re.Match[str], tz: tzinfo) -> datetime | None:
    try:
        naive = datetime(
            int(m["Y"]), int(m["mo"]), int(m["d"]), int(m["H"]), int(m["mi"]), int(m["S"] or 0)
        )
    except ValueError:  # 2026-02-30, 25:00 ... : not a timestamp after all
        return None
    when = naive.replace(tzinfo=tz)
    # Year 1 or 9999 in a name is no delivery time: the mtime is used instead, and every date
    # computed from a delivery (covered day, delete-on) stays within the product's range.
    return when if clock.plausible(when) else None


def parse_timestamp(text: str, tz: tzinfo | None = None) -> datetime | None:
    """A timestamp in one of the recognised forms, or None."""
    m = _TS_ONLY.match(text.strip())
    return _to_datetime(m, tz or UTC) if m else None


def parse_name(
    filename: str,
    *,
    mtime: datetime | None = None,
    tz: tzinfo | None = None,
    pattern: re.Pattern[str] | None = None,
) -> ParsedName:
    """Base name and delivery time of a report file.

    ``tz`` is the library's time zone: a timestamp in a name is local wall time there.
    ``mtime`` (aware) is the fallback when the name carries no timestamp.
    """
    zone = tz or UTC
    stem = stem_of(filename)
    if pattern is not None:
        m = pattern.search(filename) or pattern.search(stem)
        if m is not None:
            base = (m.groupdict().get("name") or stem).strip() or stem
            stamp = m.groupdict().get("ts")
            when = parse_timestamp(stamp, zone) if stamp else None
            if when is not None:
                return ParsedName(filename, base, when, "pattern", stamp)
            return _fallback(filename, base, mtime)
    m = _TRAILING_TS.match(stem)
    if m is not None:
        when = _to_datetime(m, zone)
        if when is not None:
            return ParsedName(filename, m["name"].strip(), when, "name", m["stamp"])
        if _stamp_shaped(m):
            # 30 February, 24:00, a leap second, year 9999: a stamp that names no moment the
            # product can use is still the delivery's stamp, not part of the report's name
            # (else each such file would be a report of its own); the mtime dates it.
            return _fallback(filename, m["name"].strip(), mtime)
    return _fallback(filename, stem.strip() or filename, mtime)


def _stamp_shaped(m: re.Match[str]) -> bool:
    """Whether a matched trailing timestamp has a timestamp's fields, each in its own range
    (month 1-12, day 1-31, hour 0-24, minute 0-59, second 0-60), whatever their combination:
    digits such as ``_12345678_1234`` are no timestamp and stay in the name."""
    second = int(m["S"] or 0)
    return (1 <= int(m["mo"]) <= 12 and 1 <= int(m["d"]) <= 31 and int(m["H"]) <= 24
            and int(m["mi"]) <= 59 and second <= 60)


def _fallback(filename: str, base: str, mtime: datetime | None) -> ParsedName:
    if mtime is not None:
        return ParsedName(filename, base, mtime, "mtime")
    return ParsedName(filename, base, None, "none")


def is_probe_name(name: str) -> bool:
    """The name of a connection-test probe (ours): listings skip it, it is never a report."""
    return _PROBE_NAME.match(name) is not None


#: Printable ASCII but the path separators: none of these is a control, a direction control
#: or an undecodable byte, and each is one byte of UTF-8.
_SAFE_ASCII_NAME = re.compile(r"[\x20-\x2e\x30-\x5b\x5d-\x7e]+")


def refusal_reason(name: str) -> str | None:
    """Why a server-supplied file name must not be written locally, or None if it is safe.

    ``.``, ``..``, names containing ``/``, ``\\``, NUL or a control character are refused.
    Invisible bidirectional controls (which make a name display as another), names too long
    for local file systems and names reserved for the product's own working files are
    refused too.
    """
    # Most names are plain ASCII: one match instead of a look-up per character (the check
    # runs several times per file a sync fetches).
    if _SAFE_ASCII_NAME.fullmatch(name) is not None and name not in (".", "..") \
            and len(name) <= MAX_NAME_BYTES and not name.casefold().startswith(RESERVED_PREFIX):
        return None
    return _full_refusal_reason(name)


def _full_refusal_reason(name: str) -> str | None:
    """:func:`refusal_reason`, character by character."""
    if name in ("", ".", ".."):
        return f"the name {name!r} is not a file name"
    if "/" in name or "\\" in name:
        return "the name contains a path separator ('/' or '\\') and could write outside the folder"
    if "\x00" in name:
        return "the name contains a NUL byte"
    for ch in name:
        if unicodedata.category(ch) == "Cc":
            return f"the name contains the control character U+{ord(ch):04X}"
        if ch in SPOOFING_FORMAT_CHARS:
            return f"the name contains the invisible direction control U+{ord(ch):04X}"
        if 0xDC80 <= ord(ch) <= 0xDCFF:
            return "the name is not valid UTF-8"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
        return f"the name is longer than {MAX_NAME_BYTES} bytes"
    if name.casefold().startswith(RESERVED_PREFIX):
        return RESERVED_REASON
    return None


def decode_server_name(raw: bytes) -> tuple[str, str | None]:
    """A name as the server sent it (bytes): ``(text, reason)``.

    ``text`` is the name itself when it is valid UTF-8, else a readable escape of it
    (``Caf\\xe9.xlsx``) that can be stored and shown but never names a local file;
    ``reason`` says why the name is refused (None: safe to write).
    """
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = escape_name(raw.decode("utf-8", "backslashreplace"))
        return shown, "the name is not valid UTF-8 (shown with \\x escapes); rename it on the server"
    return name, refusal_reason(name)


def _cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits in ``limit`` bytes."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def split_suffix(name: str) -> tuple[str, str]:
    """``("stem", ".ext")``; a "suffix" of more than 16 bytes (dot included) is part of the stem."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext.encode("utf-8", "surrogateescape")) > 15:
        return name, ""
    return stem, "." + ext


def fit_name(name: str, tag: str = "", *, limit: int = MAX_NAME_BYTES) -> str:
    """``name`` with ``tag`` inserted before its extension, within ``limit`` bytes.

    When the result would be too long, the stem is shortened (on a character boundary) and
    ends with ``~`` and 8 hex digits of the full name's hash, so two long names that share
    their beginning still get different results; the tag and the extension are kept whole.
    """
    stem, suffix = split_suffix(name)
    whole = f"{stem}{tag}{suffix}"
    if len(whole.encode("utf-8", "surrogateescape")) <= limit:
        return whole
    digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    keep = limit - len(f"~{digest}{tag}{suffix}".encode("utf-8", "surrogateescape"))
    if keep < 1:
        raise ValueError("the tag and extension alone are too long for a file name")
    return f"{_cut_utf8(stem, keep).rstrip()}~{digest}{tag}{suffix}"


def version_name(name: str, mtime: datetime, tz: tzinfo) -> str:
    """The local name of one version of a rolling report (a fixed server name that every
    delivery replaces): ``NAME (YYYY-MM-DD HHMM).ext``, the server's modification time on the
    library's wall clock (``tz``), within 255 bytes (:func:`fit_name`), made portable like every
    local name (:func:`portable_name`: ``Loans:daily?.xlsx`` gives ``Loans_daily_ (...).xlsx``).
    A time outside :func:`tui.core.clock.plausible` (a hostile or broken server clock) is
    written in UTC, where converting cannot overflow."""
    local = mtime.astimezone(tz if clock.plausible(mtime) else UTC)
    return portable_name(fit_name(name, f" ({local:%Y-%m-%d %H%M})"))


def escape_name(name: str) -> str:
    """A printable form of an untrusted name: control and format characters as ``\\uXXXX``."""
    if name.isascii() and name.isprintable():  # the usual name: nothing to escape
        return name
    return _NOT_PRINTABLE_ASCII.sub(_escaped_char, name)


# Anything but printable ASCII (and, for text, its line breaks): looked at one by one (most
# text has none).
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")
_MAYBE_CONTROL = re.compile(r"[^\n\x20-\x7e]")
#: The characters :data:`_MAYBE_CONTROL` leaves, as bytes (``bytes.translate`` deletes them).
_PLAIN_ASCII = bytes([0x0A, *range(0x20, 0x7F)])


def _escaped_char(m: re.Match[str]) -> str:
    """One character as ``\\uXXXX`` when it is a control, format or lone surrogate one (the
    direction marks among them) or a Unicode line or paragraph separator (U+2028, U+2029: a
    line break to terminals, e-mail headers and many readers, and no control character, so a
    server name may hold one), else as it is."""
    ch = m.group()
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
        return f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"
    return ch


def escape_text(text: str) -> str:
    """Text for a terminal, escaped as :func:`escape_name` escapes a name, except that its
    line breaks (``\\n``) are kept: what a command writes, whole lines at a time. Letters of
    every script are kept as they are."""
    if text.isascii() and not text.encode("ascii").translate(None, _PLAIN_ASCII):
        return text  # nothing to escape, told without a search (a JSON document of many MB)
    return _MAYBE_CONTROL.sub(_escaped_char, text)


# --------------------------------------------------------------------------- local names
#
# Local copies may live on a Windows/SMB share, an exFAT USB drive or a macOS disk, not only
# on the Linux disk the product runs on (docs/DOMAIN.md, "Local file names").

#: Characters Windows (and so SMB shares and exFAT) refuse in a file name; each becomes "_".
UNPORTABLE_CHARS = frozenset(':*?"<>|\\')
#: Names Windows reserves for devices, whatever their extension or letter case.
RESERVED_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{p}{n}" for p in ("COM", "LPT") for n in [*"123456789", "\u00b9", "\u00b2", "\u00b3"]]
)
#: The file kinds that are reports: Excel workbooks (what an Alma schedule writes; an old
#: ``.xls`` is still taken in, so the validator can say the schedule's format is wrong).
REPORT_SUFFIXES = (".xlsx", ".xlsm", ".xls")


def is_report_name(name: str) -> bool:
    """Whether a server file is a report (an Excel workbook by its extension). Anything else
    (``readme.txt``, a PDF, a CSV) is listed as "not a report": never downloaded, verified or
    alarmed about."""
    return name.casefold().endswith(REPORT_SUFFIXES)


def portable_name(name: str) -> str:
    """``name`` as a file name every librarian's disk accepts (Windows/SMB, exFAT, macOS).

    ``: * ? " < > | \\`` become ``_``; trailing dots and spaces (which Windows drops) become
    ``_``; a Windows device name (``CON``, ``NUL.xlsx``, ``com1.txt``) gets ``_`` after its
    first part. Everything else is kept, so most names are unchanged.
    """
    out = "".join("_" if ch in UNPORTABLE_CHARS else ch for ch in name)
    stripped = out.rstrip(". ")
    if stripped != out:
        out = stripped + "_" * (len(out) - len(stripped))
    first, dot, rest = out.partition(".")
    if first.rstrip(" ").upper() in RESERVED_DEVICE_NAMES:
        out = f"{first}_{dot}{rest}"
    return fit_name(out) if len(out.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES else out


def collision_key(name: str) -> str:
    """Two names with the same key are one file on a case-insensitive, Unicode-normalizing
    disk (macOS, Windows, exFAT): canonical caseless matching (NFD, case folding, NFD)."""
    return unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())


def distinct_local_name(server_name: str, taken: set[str]) -> str:
    """The local name of a new server file: :func:`portable_name`, and when a file already
    known in the same folder has that name up to letter case or Unicode normalization (see
    :func:`collision_key`; ``taken`` holds their keys), `` (2)``, `` (3)``... before the
    extension. The caller adds the result's key to ``taken``."""
    base = portable_name(server_name)
    candidate = base
    n = 1
    while collision_key(candidate) in taken:
        n += 1
        candidate = fit_name(base, f" ({n})")
    return candidate


# --------------------------------------------------------------------------- folders


def folder_parts(folder: str) -> tuple[str, ...]:
    """The parts of a server folder path (``.`` and empty parts dropped)."""
    return tuple(p for p in folder.split("/") if p not in ("", "."))


def normalize_folder(folder: str) -> str:
    """One spelling per folder: no doubled, trailing or ``./`` slashes (``"."`` for the login
    folder, ``"/"`` for the root)."""
    parts = folder_parts(folder)
    lead = "/" if folder.startswith("/") else ""
    return (lead + "/".join(parts)) or ("/" if lead else ".")


def folder_refusal(folder: str) -> str | None:
    """Why a configured server folder cannot be watched, or None. Its local copies go to a
    folder of the same path under ``local_dir``, so nothing in it may leave ``local_dir`` or
    reach the product's own working folder."""
    if not folder.strip():
        return "the folder is empty; write it as the server names it, like \"upload/ALMA\""
    for ch in folder:
        if unicodedata.category(ch) == "Cc" or ch in SPOOFING_FORMAT_CHARS:
            return f"the folder contains the control character U+{ord(ch):04X}"
    for part in folder_parts(folder):
        if part == "..":
            return "the folder contains '..'; write the folder's own path, without '..'"
        if part.casefold().startswith(RESERVED_PREFIX):
            return f"the folder name {part!r} is reserved for report-keeper's own working files"
        if len(part.encode("utf-8")) > MAX_NAME_BYTES:
            return f"a part of the folder is longer than {MAX_NAME_BYTES} bytes"
    return None


def local_folder_parts(folder: str) -> tuple[str, ...]:
    """Where a watched server folder's copies go under ``local_dir`` (when a profile watches
    several folders): its path, without a leading ``/``, each part a :func:`portable_name`."""
    return tuple(portable_name(p) for p in folder_parts(folder))


def size_text(n: int) -> str:
    """A byte count as the commands print it: ``512 B``, ``12.3 KB``, ``1.5 GB`` (1024-based)."""
    return byte_size(n, ("B", "KB", "MB", "GB"))


# --------------------------------------------------------------------------------------------
# Profile names: the config's untrusted text, in file names and command lines

#: The most bytes a profile name takes in a file name (:func:`profile_file_part`). The longest
#: file named after it, the ledger's journal while the ledger is first made
#: (``.ledger-<part>.sqlite3.new-<pid>-<8 hex digits>-journal``), stays within the 255 bytes a
#: file name may hold.
MAX_PROFILE_FILE_PART = 200
#: Names no folder can have: the empty name, ``.`` (the folder itself) and ``..`` (the one above).
UNNAMEABLE = frozenset({"", ".", ".."})
#: What a person does about a profile name refused (config, init).
RENAME_PROFILE = "rename the profile (its [profile.NAME] table)"


def kept_in_file_name(c: str) -> bool:
    """A character of a profile's name that its file names hold as it is: a letter or digit
    (of any script), ``-``, ``_`` or ``.``."""
    return c.isalnum() or c in "-_."


#: A name of ASCII letters, digits, '-', '_' and '.': its part is the name itself, found in one
#: match (most names; a config's profiles ask for theirs several times each).
_KEPT_ASCII = re.compile(r"[A-Za-z0-9._-]*")


def profile_file_part(profile: str) -> str:
    """The profile's name as its files' names hold it (its ledger ``ledger-<part>.sqlite3``,
    its default folder ``reports/<part>``, its pseudonym key ``pseudonym-<part>.key``, the
    export's suggested file): one per name, never another's, never a path.

    A name of letters, digits, ``-``, ``_`` and ``.`` is the part as it always was (a new one
    would move an existing library's ledger, downloads and key). In any other name each other
    character (``%`` and ``/`` included) is written ``%XX``, its UTF-8 bytes in capital hex
    digits: such a part holds a ``%`` and no kept name does, and the writing reads back, so no
    two names share a part. The part of ``.`` and ``..`` is the name itself, which no folder
    can be: :func:`profile_name_refusal` refuses them, as it does the empty name."""
    if _KEPT_ASCII.fullmatch(profile):
        return profile
    return "".join(c if kept_in_file_name(c) else "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
                   for c in profile)


def profile_name_refusal(profile: str, todo: str = RENAME_PROFILE) -> str | None:
    """Why ``profile`` cannot name a profile's files and folder (one sentence, ending with what
    to do: ``todo``), or None."""
    if profile in UNNAMEABLE:
        what = "is empty" if not profile else (
            f"'{profile}' names {'the folder itself' if profile == '.' else 'the folder above'}")
        return (f"the profile's name {what}, and its default folder and files are named after it "
                f"(its downloads would land among other profiles' folders or report-keeper's own "
                f"files): {todo}")
    size = len(profile_file_part(profile).encode("utf-8", "surrogatepass"))
    if size > MAX_PROFILE_FILE_PART:
        return (f"the profile's name is too long to name its files: written in a file name it takes "
                f"{size} bytes (a character other than a letter, digit, '-', '_' or '.' is written "
                f"%XX for each of its UTF-8 bytes), and at most {MAX_PROFILE_FILE_PART} fit: "
                f"{todo}")
    return None


def profile_args(profile: str) -> list[str]:
    """``--profile NAME`` as command-line words: ``--profile=NAME`` for a name beginning with
    ``-``, which after ``--profile`` would be read as an option (the run stopped at a usage
    error)."""
    return [f"--profile={profile}"] if profile.startswith("-") else ["--profile", profile]
