"""Where a workbook worker's CPU goes, stage by stage, for the real-workbook case.

Writes ``--files`` copies of the pinned 7,000-row workbook (``tests/verdict_corpus.loans_7000``,
what ``benchmarks/sync_process.py``'s ``workbooks`` case downloads: each copy the same table
with a zip comment of its own) and then:

1. **stages**: runs the worker's own steps in a process set up as a worker is (its C heap;
   not its limits), one file after another, and
   prints each stage's CPU per workbook (milliseconds, median over the files): reading and
   hashing the bytes, the zip pre-check, the reader's open (``read_excel``), its sheet
   (``load_sheet``), the Arrow view (``Grid``), the classification (header, rows,
   fingerprint, dates) and the reply's JSON. The stages call the module's own functions,
   so what is measured is what the worker runs;
2. **workers**: real worker processes (``tui.core.isolation.WorkerPool``) verify the same
   files, one worker and then two at once (as ``sync`` verifies two at a time): the wall
   time per file, the workers' CPU per file (from ``/proc``) and the calling process's CPU
   per file (the jobs and the replies: the IPC's cost on the caller's side). The workers'
   CPU per file beside the sum of the stages is what the round trip and running two at
   once on the machine's cores add.

``--source DIR`` runs the same with the ``tui`` of another checkout (``git archive`` of a
commit) in a child process, so before and after print side by side; ``--rounds N`` measures
each checkout N times, interleaved, and prints medians (CPU time on a shared machine varies
with the load: compare only columns of one run).

Run from the repository root:
  .venv/bin/python benchmarks/verify_stages.py [--files 300] [--rounds 3] [--source /tmp/base]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")


def _files(folder: Path, n: int) -> list[Path]:
    from tests.verdict_corpus import loans_7000

    first = loans_7000(folder / "Loans_000.xlsx")
    data = first.read_bytes()
    paths = [first]
    for k in range(1, n):
        comment = f"copy {k}".encode()
        path = folder / f"Loans_{k:03d}.xlsx"
        path.write_bytes(data[:-2] + struct.pack("<H", len(comment)) + comment)
        paths.append(path)
    return paths


def _cpu_ms() -> float:
    return time.process_time() * 1000


def _stages(paths: list[Path]) -> dict[str, float]:
    """Each stage's CPU per file (ms, medians), run here the way the worker runs them."""
    import hashlib
    import io

    from tui.core import isolation, validate

    keep = getattr(isolation, "_keep_freed_heap", None)
    if keep is not None:  # set up as a worker is (its C heap)
        keep(isolation.DEFAULT_MEMORY_BYTES)
    validate.warm_up()
    import fastexcel

    names_of_stages = ("read+hash", "precheck", "read_excel", "load_sheet", "grid", "classify", "reply")
    have_grid = hasattr(validate, "Grid")
    per: dict[str, list[float]] = {name: [] for name in names_of_stages}
    totals: list[float] = []
    rules = validate._Rules.from_json({})
    for path in paths:
        t0 = _cpu_ms()
        with validate.open_regular(path) as fh:
            validate.sniff(fh)
            data = fh.read()
        hashlib.sha256(data).hexdigest()
        t1 = _cpu_ms()
        buf = io.BytesIO(data)
        validate.sniff(buf)
        validate.precheck_zip(path, buf)
        t2 = _cpu_ms()
        reader = fastexcel.read_excel(data)
        names = reader.sheet_names
        t3 = _cpu_ms()
        sheet = reader.load_sheet(0, header_row=None, dtypes="string", skip_rows=0, whitespace_as_null=True)
        t4 = _cpu_ms()
        grid = validate.Grid(sheet) if have_grid else sheet
        t5 = _cpu_ms()
        verdict = validate._classify(validate._Sheet(names[0], grid, len(names)), rules)
        t6 = _cpu_ms()
        json.dumps({"ok": True, "result": verdict}).encode()
        t7 = _cpu_ms()
        for name, a, b in zip(names_of_stages, (t0, t1, t2, t3, t4, t5, t6), (t1, t2, t3, t4, t5, t6, t7),
                              strict=True):
            per[name].append(b - a)
        totals.append(t7 - t0)
        del sheet, grid, reader
    whole = [_cpu_ms()]
    for path in paths:
        validate.worker_verify(str(path), {})
    whole.append(_cpu_ms())
    out = {name: statistics.median(v) for name, v in per.items()}
    out["sum of stages"] = statistics.median(totals)
    out["worker_verify (whole, mean)"] = (whole[1] - whole[0]) / len(paths)
    return out


def _proc(pid: int) -> tuple[float, float, int]:
    """A process's user and system CPU (ms) and its minor page faults so far."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read().decode("ascii", "replace")
    rest = raw[raw.rindex(")") + 2:].split()
    return int(rest[11]) * 1000 / TICK, int(rest[12]) * 1000 / TICK, int(rest[7])


def _procs(pids: list[int]) -> tuple[float, float, int]:
    user, system, faults = zip(*map(_proc, pids), strict=True)
    return sum(user), sum(system), sum(faults)


def _worker(paths: list[Path], at_once: int) -> dict[str, float]:
    """Real workers verifying the files, ``at_once`` at a time (as ``sync`` runs two): per
    file, the caller's wall time, the workers' CPU and the caller's CPU."""
    from concurrent.futures import ThreadPoolExecutor

    from tui.core import isolation

    def one(path: Path) -> None:
        reply = pool.call("verify", {"path": str(path), "rules": {}})
        assert reply.get("ok") and reply["result"].get("status") == "ok", reply

    pool = isolation.WorkerPool(at_once)
    try:
        pool.prestart(at_once)
        with ThreadPoolExecutor(at_once) as ex:
            list(ex.map(one, paths[:at_once]))  # started and warm
            pids = pool.worker_pids()
            w0, c0, t0 = _procs(pids), _cpu_ms(), time.perf_counter()
            list(ex.map(one, paths))
            t1, c1, w1 = time.perf_counter(), _cpu_ms(), _procs(pids)
    finally:
        pool.close()
    n = len(paths)
    return {f"{at_once} worker(s): wall per file": (t1 - t0) * 1000 / n,
            f"{at_once} worker(s): their CPU per file": (w1[0] + w1[1] - w0[0] - w0[1]) / n,
            f"{at_once} worker(s): of it system": (w1[1] - w0[1]) / n,
            f"{at_once} worker(s): page faults per file": (w1[2] - w0[2]) / n,
            f"{at_once} worker(s): caller CPU per file": (c1 - c0) / n}


def _measure(folder: Path, n: int) -> dict[str, dict[str, float]]:
    paths = sorted(folder.glob("Loans_*.xlsx"))[:n]
    return {"stages": _stages(paths), "worker": {**_worker(paths, 1), **_worker(paths, 2)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (medians)")
    parser.add_argument("--source", action="append", default=[], help="another checkout to measure too")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure this folder here
    args = parser.parse_args()
    if args.measure:
        del sys.path[0]  # this folder: its tui.py would hide the package
        print(json.dumps(_measure(Path(args.measure), args.files)))
        return
    sys.path.insert(0, str(ROOT))
    sources = [str(ROOT), *args.source]
    runs: dict[str, list[dict[str, dict[str, float]]]] = {source: [] for source in sources}
    with tempfile.TemporaryDirectory(prefix="verify-stages-") as tmp:
        folder = Path(tmp)
        _files(folder, args.files)
        for _ in range(args.rounds):  # interleaved: each round measures every checkout once
            for source in sources:
                env = dict(os.environ, PYTHONPATH=source + os.pathsep + str(ROOT))
                out = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--measure", str(folder),
                     "--files", str(args.files)], env=env, cwd=source, capture_output=True, text=True,
                )
                if out.returncode:
                    sys.exit(f"{source}: {out.stderr}")
                runs[source].append(json.loads(out.stdout))
    print(f"{args.files} copies of the 7,000-row workbook, {args.rounds} interleaved round(s), medians; "
          f"ms per workbook (load {os.getloadavg()[0]:.1f})")
    print(f"{'':40}" + "".join(f"{Path(s).name[:14]:>16}" for s in sources))
    first = runs[sources[0]][0]
    for part in ("stages", "worker"):
        for key in first[part]:
            cells = [statistics.median(r[part].get(key, float("nan")) for r in runs[s]) for s in sources]
            print(f"{key:40}" + "".join(f"{c:16.2f}" for c in cells))

if __name__ == "__main__":
    main()
