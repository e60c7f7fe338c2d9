"""Where the CPU of ``sync --all-profiles`` goes, process by process and thread by thread.

Runs the many-folders case of ``benchmarks/sync_process.py`` (N profiles of M files of 20 kB
on one local OpenSSH ``sshd``) and samples ``/proc`` every few milliseconds for every process
of the run: the parent, each process running a share (its main thread and its other threads,
by the name the kernel has for them: ``--pythonpath`` a folder whose ``sitecustomize`` names
Python's threads, or all are ``python``), each workbook worker, and ``sshd``'s
per-connection processes (their sum only: they rename themselves). The totals are exact: the clients' from
``getrusage(RUSAGE_CHILDREN)``, ``sshd``'s from its listener's ``cutime``/``cstime`` (the
connection processes it reaped); the split is sampled (a process's last few milliseconds
before its exit are missed, so the parts add up to a little less than the totals).

``--source DIR`` (repeatable) runs report-keeper of each checkout in turn, interleaved
``--runs`` times, against the same server and files: a paired before/after.

Run from the repository root:
  .venv/bin/python benchmarks/cpu_split.py --profiles 30 --runs 3 [--source /tmp/base]
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
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TICK = os.sysconf("SC_CLK_TCK")


def _stat(path: str) -> tuple[int, str, float, float, float, float] | None:
    """(ppid, comm, utime, stime, cutime, cstime) of /proc/.../stat, seconds."""
    try:
        with open(path, "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2:].split()
    ppid = int(rest[1])
    u, s, cu, cs = (int(x) / TICK for x in rest[11:15])
    return ppid, comm, u, s, cu, cs


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return ""


class Sampler(threading.Thread):
    """Samples the descendants of ``roots`` (pids) until stopped."""

    def __init__(self, roots: list[int], period: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.roots = set(roots)
        self.period = period
        self.stop_flag = False
        self.procs: dict[int, dict] = {}  # pid -> {ppid, cmd, cpu, threads: {tid: (comm, cpu)}}

    def run(self) -> None:
        self.t0 = time.perf_counter()
        while not self.stop_flag:
            self.sample()
            time.sleep(self.period)
        self.sample()

    def sample(self) -> None:
        parents: dict[int, int] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            st = _stat(f"/proc/{pid}/stat")
            if st is None:
                continue
            parents[pid] = st[0]
        known = set(self.procs) | self.roots
        for pid, ppid in parents.items():
            if pid in self.roots or ppid in known or pid in self.procs:
                pass
            else:
                # a grandchild whose parent we know only through this sample
                p = ppid
                ok = False
                for _ in range(6):
                    if p in known:
                        ok = True
                        break
                    p = parents.get(p, 0)
                    if not p:
                        break
                if not ok:
                    continue
            st = _stat(f"/proc/{pid}/stat")
            if st is None:
                continue
            rec = self.procs.get(pid)
            if rec is None:
                rec = self.procs[pid] = {"ppid": st[0], "cmd": _cmdline(pid), "comm": st[1], "cpu": 0.0,
                                         "threads": {}, "first": time.perf_counter()}
                known.add(pid)
            else:  # read again: right after a fork it is still the parent's
                rec["cmd"] = _cmdline(pid) or rec["cmd"]
                rec["comm"] = st[1]
            rec["cpu"] = max(rec["cpu"], st[2] + st[3])
            rec["last"] = time.perf_counter()
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                t = _stat(f"/proc/{pid}/task/{tid}/stat")
                if t is None:
                    continue
                old = rec["threads"].get(int(tid), (t[1], 0.0))
                rec["threads"][int(tid)] = (t[1], max(old[1], t[2] + t[3]))


def classify(sampler: Sampler, sync_pid: int, sshd_pid: int) -> dict[str, float]:
    parts: dict[str, Any] = defaultdict(float)
    procs = sampler.procs

    def ancestors(pid: int) -> list[int]:
        out = []
        while pid in procs:
            pid = procs[pid]["ppid"]
            out.append(pid)
        return out

    for pid, rec in procs.items():
        if pid in (sync_pid, sshd_pid):
            continue
        up = ancestors(pid)
        if sshd_pid in up or rec["ppid"] == sshd_pid:
            # sshd's connection processes re-exec and rename themselves: only their sum is
            # told (sampled; the exact total is the listener's children's time)
            parts["sshd connections (sampled)"] += rec["cpu"]
            parts["(sshd processes: count)"] += 1
            continue
        if "tui.core.isolation" in rec["cmd"]:
            parts["workbook workers"] += rec["cpu"]
            parts["(workbook workers: count)"] += 1
            continue
        if rec["ppid"] == sync_pid and "--share-parent" in rec["cmd"]:
            main = sum(c for tid, (_, c) in rec["threads"].items() if tid == pid)
            others: dict[str, float] = defaultdict(float)
            for tid, (comm, c) in rec["threads"].items():
                if tid != pid:
                    others[comm.rstrip("0123456789_-")] += c
            parts["children: main thread"] += main
            for comm, c in others.items():
                parts[f"children: thread {comm}"] += c
            parts["(children total)"] += rec["cpu"]
            spans = parts.setdefault("(children spans)", [])
            spans.append((round(rec["first"] - sampler.t0, 2), round(rec["last"] - sampler.t0, 2),
                          round(rec["cpu"], 2)))
            continue
        parts[f"other: {rec['comm']}"] += rec["cpu"]
    if sync_pid in procs:
        parts["parent"] += procs[sync_pid]["cpu"]
    return dict(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=30)
    parser.add_argument("--per-profile", type=int, default=60)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--source", action="append", default=None,
                        help="a checkout of report-keeper to run (repeatable; default: this one)")
    parser.add_argument("--extra", default="", help="more sync options, space-separated")
    parser.add_argument("--json-out", default=None)
    parser.add_argument("--pythonpath", action="append", default=[],
                        help="a folder put on PYTHONPATH after the checkout (a sitecustomize that "
                             "names threads for the kernel, say)")
    ns = parser.parse_args()

    import asyncssh

    from benchmarks.sync_process import Bench, _cpu, _precompile
    from tests.fixtures_sshd import _write_key, start_sshd

    sources = [Path(s).resolve() for s in (ns.source or [str(ROOT)])]
    for s in sources:
        _precompile(s)
    work = Path(tempfile.mkdtemp(prefix="rk-cpu-split-"))
    key = asyncssh.generate_private_key("ssh-ed25519")
    _write_key(key, work / "id_ed25519")
    info = start_sshd(work / "sshd", work / "id_ed25519.pub")
    sshd_pid = int((work / "sshd" / "sshd.pid").read_text().strip())
    bench = Bench(work, info, None)
    names = {f"lib{k:02d}": f"consortium/lib{k:02d}" for k in range(ns.profiles)}
    for remote in names.values():
        d = info.root / remote
        d.mkdir(parents=True)
        block = os.urandom(20 * 1024)
        for k in range(ns.per_profile):
            (d / f"Loans_{k:03d}_20260601_070000.xlsx").write_bytes(block[k:] + block[:k])
    results: dict[str, list[dict]] = {str(s): [] for s in sources}
    try:
        for _ in range(ns.runs):
            for source in sources:
                run = bench.fresh_run_dir()
                text = "".join(bench.profile_toml(n, r, run / "local" / n, run / "ledgers" / f"{n}.sqlite3")
                               for n, r in names.items())
                cfg = run / "config.toml"
                cfg.write_text(text)
                env = {**bench.env, "PYTHONPATH": os.pathsep.join([str(source), *ns.pythonpath])}
                cmd = [sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--all-profiles", "--json",
                       *ns.extra.split()]
                s0 = _stat(f"/proc/{sshd_pid}/stat")
                assert s0 is not None
                c0, t0 = _cpu(), time.perf_counter()
                proc = subprocess.Popen(cmd, cwd=source, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
                sampler = Sampler([proc.pid, sshd_pid])
                sampler.start()
                out, err = proc.communicate()
                wall, cpu = time.perf_counter() - t0, _cpu() - c0
                time.sleep(0.3)  # sshd reaps its last connections
                sampler.stop_flag = True
                sampler.join()
                s1 = _stat(f"/proc/{sshd_pid}/stat")
                assert s1 is not None
                sshd_cpu = (s1[2] + s1[3] + s1[4] + s1[5]) - (s0[2] + s0[3] + s0[4] + s0[5])
                doc = json.loads(out)
                n = sum(len(p["downloaded"]) for p in doc["profiles"].values())
                if n != ns.profiles * ns.per_profile:
                    raise SystemExit(f"only {n} downloaded: {err.decode()[-2000:]}")
                parts = classify(sampler, proc.pid, sshd_pid)
                row = {"wall": wall, "client_cpu": cpu, "sshd_cpu": sshd_cpu, "parts": parts,
                       "load": os.getloadavg()[0]}
                results[str(source)].append(row)
                print(f"{source.name:12} wall {wall:6.2f}  client CPU {cpu:6.2f}  sshd CPU {sshd_cpu:6.2f}  "
                      f"total {cpu + sshd_cpu:6.2f}  load {row['load']:.1f}  children (start, end, CPU) "
                      f"{parts.pop('(children spans)', [])}", flush=True)
                shutil.rmtree(run, ignore_errors=True)
        for source, rows in results.items():
            print(f"\n== {source}: medians of {len(rows)}")
            keys = sorted({k for r in rows for k in r["parts"]})
            for k in ("wall", "client_cpu", "sshd_cpu"):
                print(f"  {k:40} {statistics.median(r[k] for r in rows):7.2f}")
            for k in keys:
                print(f"  {k:40} {statistics.median(r['parts'].get(k, 0.0) for r in rows):7.2f}")
        if ns.json_out:
            Path(ns.json_out).write_text(json.dumps(results, indent=1))
        return 0
    finally:
        info.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
