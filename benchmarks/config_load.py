"""CPU of one read of the config (``load_config``), for configs of N profiles, before and after.

Every command reads the config (each process of ``sync --all-profiles`` too), so its cost is
paid on every run. The cases:

- ``earlier``: N profiles whose names earlier releases wrote otherwise (``Branch 12``: a
  space), each with the ledger and downloads folder an earlier release kept under its raw
  name present in the data folder (``ledger-Branch 12.sqlite3``, ``reports/Branch 12/``):
  each is used where it is (``Profile.earlier_paths``), after checking that no other profile
  is given it or anything in or around it.
- ``claimed``: the same, and one more profile whose ``local_dir`` is the data folder's
  ``reports``: every earlier folder lies inside it, so each stays refused (``Profile.problem``)
  with that profile named.
- ``plain``: N small profiles (``p12``: host and user name), the shape of a config near
  the size limit (``--plain max``: as many as 1 MiB holds, ~17,800).
- ``written``: N profiles as ``init`` writes them (key, local folder, time zone and a comment
  each; ``max`` as for ``plain``).

Each read runs in a process of its own (``sys.path`` the checkout's; the data folder one
made for the case), timed by ``time.process_time`` around ``load_config`` alone (imports
excluded); the median of ``--runs`` runs is printed. ``--baseline REF`` reads the same
files with the code of another commit (``git archive REF``, sync_process's ``_checkout``),
alternating with this checkout's working tree, so both are measured under the same load on
a shared machine; both must reach the same verdicts (profiles loaded, broken, with a
problem, earlier paths used), or the run stops.

Run from the repository root:
  .venv/bin/python benchmarks/config_load.py [--baseline main] [--runs 3]
      [--earlier 125,250,500] [--plain 2000,max] [--written max] [--cases earlier,claimed,plain,written]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MAX_CONFIG_BYTES = 1024 * 1024

#: Run in a child process: argv is the checkout, the config file; prints one JSON line.
CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from tui.core.config import load_config
start = time.process_time()
config = load_config(sys.argv[2])
cpu = time.process_time() - start
profiles = config.profiles.values()
print(json.dumps({
    "cpu": cpu,
    "loaded": len(config.profiles),
    "broken": len(config.broken),
    "problems": sum(p.problem is not None for p in profiles),
    "earlier": sum(len(p.earlier_paths) for p in profiles),
    "problem_text": sorted(str(p.problem) for p in profiles if p.problem is not None)[:3],
}))
"""


def _toml(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # json's escapes are TOML's


def _fill(one, n: int | None) -> tuple[str, int]:
    """The text of profiles ``one(i)`` for i < n (None: as many as the size limit holds)."""
    parts: list[str] = []
    size = i = 0
    while (n is None and size + len(one(i).encode()) < MAX_CONFIG_BYTES - 200) or (n is not None and i < n):
        part = one(i)
        parts.append(part)
        size += len(part.encode())
        i += 1
    return "".join(parts), i


class Case:
    """One config and the data folder it is read with."""

    def __init__(self, work: Path, label: str) -> None:
        self.label = label
        self.dir = work / label.replace(" ", "_")
        self.dir.mkdir()
        self.data = self.dir / "data" / "report-keeper"
        self.data.mkdir(parents=True)
        (self.dir / "home" / ".ssh").mkdir(parents=True)
        self.config = self.dir / "config.toml"
        self.env = {**os.environ, "HOME": str(self.dir / "home"), "XDG_DATA_HOME": str(self.dir / "data"),
                    "XDG_CONFIG_HOME": str(self.dir / "config"), "XDG_STATE_HOME": str(self.dir / "state"),
                    "XDG_CACHE_HOME": str(self.dir / "cache"), "TZ": "UTC"}
        for key in ("REPORT_KEEPER_CONFIG", "REPORT_KEEPER_NOW"):
            self.env.pop(key, None)

    def read(self, source: Path) -> dict:
        out = subprocess.run([sys.executable, "-c", CHILD, str(source), str(self.config)], env=self.env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)


def earlier_case(work: Path, n: int, *, claimed: bool) -> Case:
    case = Case(work, f"{'claimed' if claimed else 'earlier'} {n}")
    (case.data / "reports").mkdir()
    for i in range(n):
        name = f"Branch {i}"
        (case.data / f"ledger-{name}.sqlite3").write_bytes(b"SQLite format 3\0")
        folder = case.data / "reports" / name
        folder.mkdir()
        (folder / "Loans_20260301_070000.xlsx").write_bytes(b"PK")
    text, _ = _fill(lambda i: f'[profile."Branch {i}"]\nhost = "h{i}.example.org"\nusername = "u"\n', n)
    if claimed:
        text += f'[profile.archive]\nhost = "a.example.org"\nlocal_dir = {_toml(str(case.data / "reports"))}\n'
    case.config.write_text(text, encoding="utf-8")
    return case


def plain_case(work: Path, n: int | None) -> Case:
    text, count = _fill(lambda i: f'[profile.p{i}]\nhost = "h{i}.example.org"\nusername = "u"\n', n)
    case = Case(work, f"plain {count}")
    case.config.write_text(text, encoding="utf-8")
    return case


def written_case(work: Path, n: int | None) -> Case:
    key = "/home/librarian/.ssh/id_ed25519_report_keeper"

    def one(i: int) -> str:
        return (f"[profile.b{i}]\n# Written by report-keeper init on 2026-11-26 16:00 UTC.\n"
                f'host = "sftp{i}.example.org"\nusername = "library{i}"\nkey = "{key}"\n'
                f'remote_dir = "upload/ALMA"\nlocal_dir = "/srv/alma-reports/b{i}"\ntimezone = "America/Chicago"\n\n')

    text, count = _fill(one, n)
    case = Case(work, f"written {count}")
    case.config.write_text(text, encoding="utf-8")
    return case


def _sizes(text: str) -> list[int | None]:
    return [None if s == "max" else int(s) for s in text.split(",") if s]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REF", help="also read each config with the code of this git commit")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each case (median)")
    parser.add_argument("--cases", default="earlier,claimed,plain,written")
    parser.add_argument("--earlier", default="125,250,500", help="profile counts of the earlier and claimed cases")
    parser.add_argument("--plain", default="2000,max", help="profile counts of the plain case (max: 1 MiB)")
    parser.add_argument("--written", default="max", help="profile counts of the written case (max: 1 MiB)")
    ns = parser.parse_args()

    from sync_process import _checkout, _load, _precompile

    cases = set(ns.cases.split(","))
    work = Path(tempfile.mkdtemp(prefix="rk-bench-config-"))
    try:
        sources = {"now": ROOT}
        if ns.baseline:
            sources = {f"before ({ns.baseline})": _checkout(ns.baseline, work / "baseline"), **sources}
        _precompile(ROOT)
        built: list[Case] = []
        for kind in ("earlier", "claimed"):
            if kind in cases:
                built += [earlier_case(work, n, claimed=kind == "claimed") for n in _sizes(ns.earlier) if n]
        if "plain" in cases:
            built += [plain_case(work, n) for n in _sizes(ns.plain)]
        if "written" in cases:
            built += [written_case(work, n) for n in _sizes(ns.written)]
        load = [_load()]
        print(f"{'case':<16}" + "".join(f"{label:>22}" for label in sources) + "   verdicts")
        for case in built:
            cpu: dict[str, list[float]] = {label: [] for label in sources}
            seen: dict[str, dict] = {}
            for _ in range(ns.runs):
                for label, source in sources.items():
                    doc = case.read(source)
                    cpu[label].append(doc.pop("cpu"))
                    seen[label] = doc
            verdicts = {json.dumps(doc, sort_keys=True) for doc in seen.values()}
            if len(verdicts) != 1:
                raise SystemExit(f"{case.label}: the checkouts disagree: {seen}")
            doc = next(iter(seen.values()))
            print(f"{case.label:<16}" + "".join(f"{statistics.median(cpu[label]):>20.3f} s" for label in sources)
                  + f"   loaded {doc['loaded']}, problem {doc['problems']}, earlier paths used {doc['earlier']}",
                  flush=True)
            load.append(_load())
        print(f"load averages seen: {' | '.join(load)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
