"""The zip pre-check's shared-string scan: finding a long string without a Python step per
string must give the answer that measuring every string gives, whatever the chunks the part
is inflated in, the tags' spelling (prefixes, whitespace, decoys such as ``<sig``) and where a
long string lies (first, last, across chunks, just at the limit)."""

from __future__ import annotations

import random

import pytest

from tui.core import validate
from tui.core.validate import _SI_START, _PartScan, _Scan

LIMIT = 64  # LONG_SHARED_STRING, made small so that many cases run in a moment


def _reference(part: bytes) -> list[int]:
    """Every string's length as the pre-check defines it: from one start to the next (the
    last to the part's end); none when the part is no longer than a long string."""
    if len(part) <= LIMIT:
        return []
    starts = [m.start() for m in _SI_START.finditer(part)]
    return [b - a for a, b in zip(starts, [*starts[1:], len(part)], strict=True)]


def _scanned(part: bytes, sizes: list[int], mode: str) -> _Scan:
    scan = _Scan(1 << 30)
    state = _PartScan(scan, mode)
    at = 0
    k = 0
    while at < len(part):
        n = sizes[k % len(sizes)]
        state.feed(part[at : at + n])
        at += n
        k += 1
    state.finish()
    return scan


TAGS = (b"<si>", b"<si>", b"<si>", b"<si >", b"<si\n>", b"<si/>", b"<si\t>")
PREFIXED = (b"<x:si>", b"<ns-1.a:si >")
DECOYS = (b"<sig>", b"<si", b"<s", b"<", b"si>", b":si", b"<sst>")


def _part(rng: random.Random, prefixed: bool) -> bytes:
    out = [b'<?xml version="1.0"?><sst count="1">']
    for _ in range(rng.randrange(0, 40)):
        tags = TAGS + PREFIXED if prefixed else TAGS
        out.append(rng.choice(tags))
        length = rng.choice((0, 1, 5, 20, LIMIT - 8, LIMIT - 5, LIMIT - 4, LIMIT - 3, LIMIT, LIMIT + 1, 200))
        text = bytearray(b"t" * length)
        if rng.random() < 0.3 and length:
            decoy = rng.choice(DECOYS)
            spot = rng.randrange(length)
            text[spot : spot + len(decoy)] = decoy
        out.append(bytes(text))
        out.append(b"</si>" if rng.random() < 0.8 else b"")
    out.append(b"</sst>" if rng.random() < 0.9 else b"<si")
    return b"".join(out)


@pytest.mark.parametrize("seed", range(40))
def test_a_long_string_is_found_exactly_as_measuring_every_string_finds_it(monkeypatch, seed):
    monkeypatch.setattr(validate, "LONG_SHARED_STRING", LIMIT)
    rng = random.Random(seed)
    for _ in range(60):
        part = _part(rng, prefixed=rng.random() < 0.2)
        sizes = [rng.choice((1, 2, 3, 4, 5, 7, 30, 63, 64, 65, 100, 500, 4096)) for _ in range(3)]
        lengths = _reference(part)
        quick = _scanned(part, sizes, "sst")
        assert quick.long_strings == any(n > LIMIT for n in lengths), (part, sizes)
        assert quick.si_lengths == [] and quick.longest == 0  # no list of strings kept
        measured = _scanned(part, sizes, "sst-lengths")
        assert measured.si_lengths == lengths, (part, sizes)


def test_lengths_are_measured_only_when_a_string_is_long(tmp_path):
    """A workbook without a long shared string never lists its strings; one with a long
    string gets every length, of every shared-string part, in order."""
    import io
    import zipfile

    def precheck(strings: list[bytes]) -> _Scan:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("xl/sharedStrings.xml", b"<sst>" + b"".join(strings) + b"</sst>")
            zf.writestr("xl/worksheets/sheet1.xml", b"<worksheet><sheetData/></worksheet>")
        seen: list[_Scan] = []

        class Spy(_Scan):
            def __init__(self, budget: int) -> None:
                super().__init__(budget)
                seen.append(self)

        real = validate._Scan
        validate._Scan = Spy  # type: ignore[misc]
        try:
            validate.precheck_zip(tmp_path / "x.xlsx", buf)
        finally:
            validate._Scan = real  # type: ignore[misc]
        return seen[0]

    short = [b"<si><t>" + b"a" * (i % 300) + b"</t></si>" for i in range(20_000)]
    scan = precheck(short)
    assert not scan.long_strings and scan.si_lengths == [] and scan.longest == 0
    long = list(short)
    long[12_345] = b"<si><t>" + b"L" * 20_000 + b"</t></si>"
    scan = precheck(long)
    assert scan.long_strings and len(scan.si_lengths) == 20_000
    assert scan.longest == len(long[12_345])
    assert scan.si_lengths[12_345] == len(long[12_345]) and scan.si_lengths[0] == len(short[0])


REFS = (b"A1", b"XFD1048576", b"XFE1", b"AAA12", b"ZZZZ9", b"A1000000", b"AB99999999999", b"1234567",
        b"abc", b"Ab", b"", b"A", b"$A$1", b"XFD", b"A12345678", b"ABCDEFGHIJK1")


def _sheet_part(rng: random.Random) -> bytes:
    out = [b'<worksheet xmlns:r="http://x"><dimension ref="A1:B2"/><sheetData>']
    for _ in range(rng.randrange(0, 60)):
        sep = rng.choice((b" ", b" ", b"\t", b"\n", b"\r", b"", b"x", b":"))
        quote = rng.choice((b'"', b'"', b"'"))
        ref = rng.choice(REFS)
        out.append(b"<c" + sep + b"r=" + quote + ref + quote + rng.choice((b">", b' t="str">', b"/>")))
        out.append(rng.choice((b"<v>1234567</v></c>", b"</c>", b"r=", b"")))
    out.append(b"</sheetData></worksheet>")
    return b"".join(out)


@pytest.mark.parametrize("seed", range(20))
def test_the_sheet_scan_checks_the_references_the_full_pattern_finds(monkeypatch, seed):
    """Candidates first, then the full pattern at each: the same references reach the check,
    in the same order, as with the full pattern alone."""
    rng = random.Random(seed)
    for _ in range(50):
        part = _sheet_part(rng)
        expected = [
            (m.group(1) + m.group(2)).decode("latin-1")
            for m in validate._FAR_REF.finditer(part)
            if m.start() and part[m.start() - 1] in b" \t\r\n"
        ]
        seen: list[str] = []

        def check(ref: str, where: str, seen: list[str] = seen) -> None:
            if where == "cell":
                seen.append(ref)

        monkeypatch.setattr(validate, "_check_reference", check)
        _scanned(part, [len(part) + 1], "sheet")
        assert seen == expected, part
