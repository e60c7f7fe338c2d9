"""Several processes append long records to the one log at once (``sync --all-profiles`` runs
one process per core, cron's ``check`` and the app write beside it): each record reaches the
file whole, never cut by another's, also while the log is rotated under them.

A text stream hands a record longer than its buffer (8 kB) to the kernel in pieces, and
another process's record could land between two of them. Each record is now one ``write()``
on a descriptor opened with ``O_APPEND``, which Linux keeps whole in a regular file.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WRITERS = 4
RECORDS = 60
#: Far past the 8 kB a text stream buffers, sizes that differ record to record.
SIZES = (9_000, 33_000, 70_000)

WRITER = textwrap.dedent("""
    import logging, os, sys
    from tui.core import logs
    path, max_bytes, writers, me = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    handler = logs.SharedRotatingHandler(path, maxBytes=max_bytes, backupCount=logs.BACKUPS,
                                         encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("report_keeper.test")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    with open(writers, "a") as ready:  # every writer starts before any writes
        ready.write("x")
    while os.path.getsize(writers) < int(sys.argv[5]):
        pass
    sizes = [int(s) for s in sys.argv[6].split(",")]
    for n in range(int(sys.argv[7])):
        size = sizes[n % len(sizes)]
        log.info("record %s-%d size %d <%s>", me, n, size, me[0] * size)
""")

LINE = re.compile(r"^\S+ \S+ \[(\d+)\] INFO report_keeper\.test: record (\w+)-(\d+) size (\d+) <(\w*)>$")


def _write_at_once(tmp_path: Path, max_bytes: int) -> Path:
    d = tmp_path / "log"
    d.mkdir()
    path = d / "report-keeper.log"
    writers = tmp_path / "ready"
    writers.write_text("")
    names = [chr(ord("a") + k) * 3 for k in range(WRITERS)]
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(max_bytes), str(writers), name,
                               str(WRITERS), ",".join(map(str, SIZES)), str(RECORDS)], cwd=ROOT)
             for name in names]
    for p in procs:
        assert p.wait(timeout=300) == 0
    return d


def _whole(text: str) -> list[tuple[str, int]]:
    """Every line of ``text`` as (writer, record number); fails on a line that is not one
    whole record."""
    seen = []
    for line in text.splitlines():
        m = LINE.match(line)
        assert m is not None, f"not one whole record: {line[:120]!r}...{line[-60:]!r} ({len(line)} chars)"
        name, n, size, body = m.group(2), int(m.group(3)), int(m.group(4)), m.group(5)
        assert body == name[0] * size, f"record {name}-{n} holds another's bytes"
        seen.append((name, n))
    return seen


def test_long_records_of_several_processes_never_interleave(tmp_path):
    d = _write_at_once(tmp_path, 0)  # never rotated: every record stays
    seen = _whole((d / "report-keeper.log").read_text())
    assert sorted(seen) == sorted((chr(ord("a") + k) * 3, n) for k in range(WRITERS) for n in range(RECORDS))


def test_long_records_stay_whole_while_several_processes_rotate_the_log(tmp_path):
    max_bytes = 1_000_000
    d = _write_at_once(tmp_path, max_bytes)
    files = sorted(d.glob("report-keeper.log*"))
    assert {f.name for f in files} >= {"report-keeper.log", "report-keeper.log.1", "report-keeper.log.3"}
    seen = []
    for f in files:
        if f.name.endswith(".lock"):
            continue
        seen += _whole(f.read_text())
        assert f.stat().st_size < max_bytes + max(SIZES) * WRITERS  # rotated as it filled
    assert len(seen) == len(set(seen))  # no record twice


def test_a_name_that_is_not_utf8_is_logged_escaped_not_a_logging_error(tmp_path, capsys):
    """A server's name of bytes that are no UTF-8 reaches Python as lone surrogates
    (``os.fsdecode``): the record is written with them escaped, and nothing goes to stderr."""
    import logging

    from tui.core import logs

    path = tmp_path / "report-keeper.log"
    handler = logs.SharedRotatingHandler(path, maxBytes=logs.MAX_BYTES, backupCount=logs.BACKUPS,
                                         encoding="utf-8")
    try:
        handler.emit(logging.LogRecord("report_keeper", logging.INFO, __file__, 1, "refused %s",
                                       ("Loans\udcff.xlsx",), None))
    finally:
        handler.close()
    assert path.read_text() == "refused Loans\\udcff.xlsx\n"
    assert capsys.readouterr().err == ""
