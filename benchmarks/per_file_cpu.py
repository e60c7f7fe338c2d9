"""What one file costs ``report-keeper sync``, apart from what a run costs once.

``sync_process.py`` times whole processes; on a shared machine their times, and even their
CPU, mix what every run pays once (the interpreter, imports, connecting, the ledger) with
what each file costs. This runs ``sync --json`` of one profile (and the floor,
``bare_client.py``) over folders of ``--few`` and ``--many`` files of ``--size`` bytes on
one local OpenSSH ``sshd``, interleaved ``--runs`` times, and splits the CPU (user + system
of the whole process tree, medians) by the difference:

    per file = (CPU(many) - CPU(few)) / (many - few),   once = CPU(few) - few * per file

``--baseline REF`` runs report-keeper of another commit (``git archive``) alongside: a
paired before/after. The files are random bytes named like reports (as ``sync_process.py``'s):
each is judged no workbook.

Run from the repository root:
  .venv/bin/python benchmarks/per_file_cpu.py [--baseline fdbb530] [--runs 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--few", type=int, default=30)
    parser.add_argument("--many", type=int, default=300)
    parser.add_argument("--size", type=int, default=200 * 1024)
    parser.add_argument("--baseline", metavar="REF", help="also time report-keeper of this git commit")
    ns = parser.parse_args()

    import asyncssh
    from sync_process import Bench, _checkout, _load, _precompile

    from tests.fixtures_sshd import _write_key, start_sshd

    work = Path(tempfile.mkdtemp(prefix="rk-bench-perfile-"))
    sources: dict[str, Path] = {"now": ROOT}
    if ns.baseline:
        sources = {f"before ({ns.baseline})": _checkout(ns.baseline, work / "baseline"), **sources}
    _precompile(ROOT)
    key = asyncssh.generate_private_key("ssh-ed25519")
    _write_key(key, work / "id_ed25519")
    info = start_sshd(work / "sshd", work / "id_ed25519.pub")
    bench = Bench(work, info, None)
    load = [_load()]
    cpu: dict[tuple[str, int], list[float]] = {}
    try:
        block = os.urandom(ns.size)
        for n in (ns.few, ns.many):
            folder = info.root / f"f{n}"
            folder.mkdir(parents=True)
            for k in range(n):
                (folder / f"Loans_{k:03d}_20260601_070000.xlsx").write_bytes(block[k:] + block[:k])
        for _ in range(ns.runs):
            for n in (ns.few, ns.many):
                for label, src in sources.items():
                    r = bench.sync(src, {"p": f"f{n}"}, all_profiles=False)
                    assert r["files"] == n, r
                    cpu.setdefault((label, n), []).append(r["cpu"])
                cpu.setdefault(("floor", n), []).append(bench.bare(f"f{n}")["cpu"])
        load.append(_load())
    finally:
        info.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"sync --json of one profile, {ns.size // 1024} kB files, CPU of the process tree "
          f"(user + system), medians of {ns.runs}  (load {' -> '.join(load)})")
    print(f"{'':24} {f'{ns.few} files':>10} {f'{ns.many} files':>10} {'per file':>10} {'once':>8}")
    per: dict[str, float] = {}
    for label in [*sources, "floor"]:
        few = statistics.median(cpu[(label, ns.few)])
        many = statistics.median(cpu[(label, ns.many)])
        per[label] = (many - few) / (ns.many - ns.few)
        once = few - ns.few * per[label]
        print(f"{label:24} {few:9.2f}s {many:9.2f}s {per[label] * 1000:8.2f}ms {once:7.2f}s")
    for label in sources:
        print(f"  {label}: {per[label] / per['floor']:.2f} times the floor's CPU per file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
