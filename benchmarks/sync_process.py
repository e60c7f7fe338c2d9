"""Whole-process benchmark: ``report-keeper sync --json`` side by side with OpenSSH ``sftp -b``.

What users run is the command, so both clients are timed as whole processes (interpreter
start-up, imports, connecting, listing, downloading; for report-keeper also the size check,
sha256, fsync, placement, the verification of every new file and the ledger) against one real
OpenSSH ``sshd`` on 127.0.0.1, the same files, median of ``--runs`` alternating runs:

1. 300 files of 200 kB              (``sftp``: ``get -r`` of the folder)
   (random bytes: each one is found to be no workbook, see below)
2. 300 real workbooks of ~240 kB (7,000 rows of made-up loans each): every one read and
   counted by a workbook worker, as a real delivery is
3. one file of 100 MB
4. 100 files of 200 kB through a local TCP proxy adding 20 ms each way
5. 90 profiles of 60 files of 20 kB each (a consortium office's view):
   ``sync --all-profiles`` against ``sftp`` fetching the 90 folders one after another (one
   process per folder, as a script per folder would; one session with 90 ``get -r`` is shown
   too). ``sync`` runs as cron runs it (stdin not a terminal), so it shares the profiles out
   among one process per core; the same command kept in one process (``--processes 1``) is
   measured alongside.

The files are random bytes named like reports (``Loans_001_20260601_070000.xlsx``), as the
engine benchmark (``benchmarks/download.py``) uses: every one is verified, and found not to
be a workbook, so verification costs a worker round trip per file, not a workbook parse (and
a log line saying it is unreadable). Each name is a report of its own (``Loans_001`` ...), so
each file's schedule is placed on its own; every profile starts with a new ledger, a new
local folder and its own login. The case is bound by CPU on a small machine: read it with
the CPU columns, which vary much less than the times when others use the machine, and
profile a ``sync`` process (``python -m cProfile``, or a sampler) for where the time goes
(docs/ARCHITECTURE.md, "Where the time of a many-profile run goes").

``--baseline REF`` also runs ``report-keeper`` of another commit (``git archive REF``, run
with this checkout's virtualenv) in the same run, alternating with the current one, so
before and after are measured under the same load; the current one is this checkout's
working tree as it is (commit or copy it aside before editing during a run). For the 90-profile case a baseline
without ``--all-profiles`` runs the 90 profiles one ``sync`` after another.

``--floor`` also times ``benchmarks/bare_client.py`` in the two loopback cases: a bare
asyncssh client doing the same durable download and nothing else (no ledger, no
verification, no part records or locks). Its time is what the SSH library and the disk cost;
``sync / floor`` is what report-keeper's own work per file costs on top. The floor is also
run without its fsyncs ("no fsync"): the difference is what durability itself costs.

CPU time (user + system of each client's whole process tree: ``sftp`` with its ``ssh``, ``sync``
with its workbook workers; ``getrusage(RUSAGE_CHILDREN)``) is printed beside the wall-clock
times: on a shared, loaded machine it varies much less than the time does. Both checkouts'
modules are compiled to bytecode first (as an installed package is), so neither run pays for
compiling them, even where ``PYTHONDONTWRITEBYTECODE`` is set.

Run from the repository root:  .venv/bin/python benchmarks/sync_process.py [--baseline main]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Goals: report-keeper's time / sftp's time (whole processes, medians).
TARGETS = {"small": 1.0, "workbooks": 1.0, "big": 1.1, "proxy": 0.25, "profiles": 0.5}


def _proxy_child(target_port: int, delay: float) -> None:
    from tests.fixtures_sshd import TcpProxy

    async def main() -> None:
        proxy = await TcpProxy(target_port, delay=delay).start()
        print(proxy.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


class Bench:
    def __init__(self, work: Path, info, baseline: Path | None) -> None:
        self.work = work
        self.info = info
        self.baseline = baseline
        self.env = {**os.environ, "XDG_STATE_HOME": str(work / "state"),
                    "XDG_DATA_HOME": str(work / "data"), "XDG_CONFIG_HOME": str(work / "config")}
        self.env.pop("REPORT_KEEPER_NOW", None)
        self.counter = 0

    # ------------------------------------------------------------ configs
    def profile_toml(self, name: str, remote_dir: str, local_dir: Path, ledger: Path,
                     port: int | None = None, known_hosts: Path | None = None,
                     concurrency: int = 4) -> str:
        i = self.info
        return (
            f"[profile.{name}]\n"
            f'host = "127.0.0.1"\nport = {port or i.port}\nusername = "{i.username}"\n'
            f'key = "{i.key}"\nknown_hosts = "{known_hosts or i.known_hosts}"\n'
            f'ssh_config = "{i.ssh_config}"\nremote_dir = "{remote_dir}"\n'
            f'local_dir = "{local_dir}"\nledger = "{ledger}"\ntimezone = "UTC"\n'
            f"concurrency = {concurrency}\n\n"
        )

    def fresh_run_dir(self) -> Path:
        self.counter += 1
        d = self.work / f"run{self.counter}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        return d

    # ------------------------------------------------------------ clients
    def sync(self, source: Path, profiles: dict[str, str], *, all_profiles: bool,
             port: int | None = None, known_hosts: Path | None = None, extra: tuple[str, ...] = ()) -> dict:
        """One (or, for a baseline without --all-profiles, one per profile) ``sync --json``
        process of the checkout at ``source``; profiles: name -> remote_dir."""
        run = self.fresh_run_dir()
        text = "".join(
            self.profile_toml(name, remote, run / "local" / name, run / "ledgers" / f"{name}.sqlite3",
                              port=port, known_hosts=known_hosts)
            for name, remote in profiles.items()
        )
        cfg = run / "config.toml"
        cfg.write_text(text)
        env = {**self.env, "PYTHONPATH": str(source)}
        if all_profiles:
            cmds = [[sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--all-profiles", "--json", *extra]]
        else:
            cmds = [[sys.executable, "-m", "tui", "sync", "--config", str(cfg), "--profile", name, "--json"]
                    for name in profiles]
        start, cpu = time.perf_counter(), _cpu()
        docs = []
        for cmd in cmds:
            # stdin from /dev/null, as cron runs it (at a terminal --all-profiles stays in one
            # process, where a key passphrase may be asked)
            out = subprocess.run(cmd, cwd=source, env=env, capture_output=True, text=True, check=False,
                                 stdin=subprocess.DEVNULL)
            if out.returncode not in (0, 1, 2) or not out.stdout.strip():
                raise SystemExit(f"sync failed ({out.returncode}):\n{out.stderr[-3000:]}")
            docs.append(json.loads(out.stdout))
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu
        singles = []
        for doc in docs:
            singles.extend(doc["profiles"].values() if "profiles" in doc else [doc])
        downloaded = sum(len(d["downloaded"]) for d in singles)
        failed = [f for d in singles for f in d["failed"]]
        if failed or any(d.get("error") for d in singles):
            raise SystemExit(f"sync reported failures: {failed[:3]} {[d.get('error') for d in singles][:3]}")
        nbytes = sum(x["size"] for d in singles for x in d["downloaded"])
        shutil.rmtree(run, ignore_errors=True)
        return {"seconds": seconds, "cpu": cpu, "files": downloaded, "bytes": nbytes}

    def sftp(self, batches: list[str], *, port: int | None = None, known_hosts: Path | None = None) -> dict:
        """``sftp -b`` processes one after another, one per batch, into a fresh folder."""
        i = self.info
        run = self.fresh_run_dir()
        dest = run / "dl"
        dest.mkdir()
        files = []
        for n, batch in enumerate(batches):
            f = run / f"batch{n}.txt"
            f.write_text(batch)
            files.append(f)
        start, cpu = time.perf_counter(), _cpu()
        for f in files:
            cmd = ["sftp", "-q", "-b", str(f), "-i", str(i.key), "-P", str(port or i.port),
                   "-o", f"UserKnownHostsFile={known_hosts or i.known_hosts}",
                   "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-F", "/dev/null",
                   f"{i.username}@127.0.0.1"]
            out = subprocess.run(cmd, cwd=dest, capture_output=True, text=True, check=False,
                                 stdin=subprocess.DEVNULL)
            if out.returncode != 0:
                raise SystemExit(f"sftp failed: {out.stderr[-2000:]}")
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu
        nbytes = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
        shutil.rmtree(run, ignore_errors=True)
        return {"seconds": seconds, "cpu": cpu, "bytes": nbytes}


    def bare(self, remote_dir: str, *, fsync: bool = True) -> dict:
        """The floor: ``bare_client.py`` (asyncssh, write, sha256, write-back, fsync, link; nothing else)."""
        i = self.info
        run = self.fresh_run_dir()
        dest = run / "dl"
        dest.mkdir()
        cmd = [sys.executable, str(ROOT / "benchmarks" / "bare_client.py"), "127.0.0.1", str(i.port),
               i.username, str(i.key), str(i.known_hosts), remote_dir, str(dest)]
        if not fsync:
            cmd.append("--no-fsync")
        start, cpu = time.perf_counter(), _cpu()
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=self.env)
        seconds, cpu = time.perf_counter() - start, _cpu() - cpu
        if out.returncode != 0:
            raise SystemExit(f"bare client failed: {out.stderr[-2000:]}")
        nbytes = json.loads(out.stdout)["bytes"]
        shutil.rmtree(run, ignore_errors=True)
        return {"seconds": seconds, "cpu": cpu, "bytes": nbytes}


def _workbooks(folder: Path, n: int) -> int:
    """``n`` real workbooks of ~240 kB in ``folder`` (made-up loans: numbers, dates, codes; no
    person's data; the one whose verdict tests/test_verify_verdicts.py pins), each one a
    readable report with rows, so ``sync`` verifies every one by reading it in a workbook
    worker as it would a real delivery. One workbook is written and the others are its bytes
    with a zip comment of their own (a different file, the same table). Returns the bytes
    written."""
    import struct

    from tests.verdict_corpus import loans_7000

    folder.mkdir(parents=True)
    data = loans_7000(folder / "Loans_000_20260601_070000.xlsx").read_bytes()
    assert data[-22:-18] == b"PK\x05\x06", "xlsxwriter wrote a zip comment: the copies need another way"
    total = len(data)
    for k in range(1, n):
        comment = f"copy {k}".encode()
        copy = data[:-2] + struct.pack("<H", len(comment)) + comment
        (folder / f"Loans_{k:03d}_20260601_070000.xlsx").write_bytes(copy)
        total += len(copy)
    return total


def _median(runs: list[dict], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in runs)


def _has_all_profiles(source: Path) -> bool:
    """Whether the checkout at ``source`` has ``sync --all-profiles``."""
    return (source / "tui" / "commands" / "all_profiles.py").is_file()


def _cpu() -> float:
    """User + system CPU seconds of the finished child processes (and theirs) so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _precompile(source: Path) -> None:
    """Bytecode for the checkout's own modules (the virtualenv's are compiled at install)."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(source / "tui")],
                   capture_output=True, check=True)


def _checkout(ref: str, into: Path) -> Path:
    """The tree of git commit ``ref`` extracted into ``into``, its modules compiled."""
    into.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    _precompile(into)
    return into


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each case (median)")
    parser.add_argument("--delay", type=float, default=0.020, help="proxy delay each way (s)")
    parser.add_argument("--baseline", metavar="REF", help="also time report-keeper of this git commit")
    parser.add_argument("--cases", default="small,workbooks,big,proxy,profiles",
                        help="comma-separated subset of small,workbooks,big,proxy,profiles")
    parser.add_argument("--profiles", type=int, default=90, help="profiles in the many-folders case")
    parser.add_argument("--per-profile", type=int, default=60, help="files per profile")
    parser.add_argument("--floor", action="store_true",
                        help="also time benchmarks/bare_client.py (the same durable download with "
                             "nothing else) in the loopback cases: how much is report-keeper's own work")
    ns = parser.parse_args()
    if ns.proxy_child:
        _proxy_child(int(ns.proxy_child[0]), float(ns.proxy_child[1]))
        return 0

    import asyncssh

    from tests.fixtures_sshd import _known_hosts_line, _write_key, start_sshd

    if not shutil.which("sftp"):
        raise SystemExit("OpenSSH sftp is not installed")
    cases = set(ns.cases.split(","))
    work = Path(tempfile.mkdtemp(prefix="rk-bench-sync-"))
    baseline = _checkout(ns.baseline, work / "baseline") if ns.baseline else None
    _precompile(ROOT)
    key = asyncssh.generate_private_key("ssh-ed25519")
    _write_key(key, work / "id_ed25519")
    info = start_sshd(work / "sshd", work / "id_ed25519.pub")
    bench = Bench(work, info, baseline)
    proxy = None
    rows: list[dict] = []
    load_seen: list[str] = [_load()]
    try:
        def files(folder: str, n: int, size: int, name: str = "Loans") -> None:
            d = info.root / folder
            d.mkdir(parents=True)
            block = os.urandom(size)
            for k in range(n):
                (d / f"{name}_{k:03d}_20260601_070000.xlsx").write_bytes(block[k:] + block[:k])

        def case(label: str, key_: str, sftp_run: Callable[[], dict], ours: Callable[[Path], dict],
                 base: Callable[[Path], dict] | None, nbytes: int, runs: int,
                 floor: Callable[[bool], dict] | None = None,
                 alt: Callable[[], dict] | None = None) -> None:
            s_runs, o_runs, b_runs, f_runs, n_runs, a_runs = [], [], [], [], [], []
            for _ in range(runs):
                if floor is not None and ns.floor:
                    f, nf = floor(True), floor(False)
                    assert f["bytes"] == nf["bytes"] == nbytes, (f["bytes"], nf["bytes"], nbytes)
                    f_runs.append(f)
                    n_runs.append(nf)
                s = sftp_run()
                assert s["bytes"] == nbytes, (s["bytes"], nbytes)
                s_runs.append(s)
                o = ours(ROOT)
                assert o["bytes"] == nbytes, (o["bytes"], nbytes)
                o_runs.append(o)
                if base is not None and baseline is not None:
                    b = base(baseline)
                    assert b["bytes"] == nbytes
                    b_runs.append(b)
                if alt is not None:
                    a = alt()
                    assert a["bytes"] == nbytes
                    a_runs.append(a)
            load_seen.append(_load())
            sftp_s, ours_s = _median(s_runs), _median(o_runs)
            rows.append(dict(label=label, runs=runs, sftp=sftp_s, ours=ours_s, ratio=ours_s / sftp_s,
                             target=TARGETS[key_], base=_median(b_runs) if b_runs else None,
                             sftp_cpu=_median(s_runs, "cpu"), ours_cpu=_median(o_runs, "cpu"),
                             base_cpu=_median(b_runs, "cpu") if b_runs else None,
                             all_sftp=[r["seconds"] for r in s_runs], all_ours=[r["seconds"] for r in o_runs],
                             all_base=[r["seconds"] for r in b_runs],
                             floor=_median(f_runs) if f_runs else None,
                             floor_cpu=_median(f_runs, "cpu") if f_runs else None,
                             all_floor=[r["seconds"] for r in f_runs],
                             nofsync=_median(n_runs) if n_runs else None,
                             all_nofsync=[r["seconds"] for r in n_runs],
                             alt=_median(a_runs) if a_runs else None,
                             alt_cpu=_median(a_runs, "cpu") if a_runs else None,
                             all_alt=[r["seconds"] for r in a_runs]))
            r_ = rows[-1]
            print(f"  {label}: sftp {sftp_s:.2f} s ({r_['sftp_cpu']:.2f} s CPU), ours {ours_s:.2f} s "
                  f"({r_['ours_cpu']:.2f} s CPU)"
                  + (f", baseline {r_['base']:.2f} s ({r_['base_cpu']:.2f} s CPU)" if b_runs else "")
                  + (f", floor {r_['floor']:.2f} s ({r_['floor_cpu']:.2f} s CPU)" if f_runs else "")
                  + (f", in one process {r_['alt']:.2f} s ({r_['alt_cpu']:.2f} s CPU)" if a_runs else "")
                  + f"  (load {_load()})", flush=True)

        if "small" in cases:
            files("small", 300, 200 * 1024)
            case("300 x 200 kB, loopback", "small",
                 lambda: bench.sftp(["get -r small\n"]),
                 lambda src: bench.sync(src, {"p": "small"}, all_profiles=False),
                 lambda src: bench.sync(src, {"p": "small"}, all_profiles=False),
                 300 * 200 * 1024, ns.runs, floor=lambda fsync: bench.bare("small", fsync=fsync))
        if "workbooks" in cases:
            n = _workbooks(info.root / "books", 300)
            case("300 x ~240 kB workbooks, loopback", "workbooks",
                 lambda: bench.sftp(["get -r books\n"]),
                 lambda src: bench.sync(src, {"p": "books"}, all_profiles=False),
                 lambda src: bench.sync(src, {"p": "books"}, all_profiles=False),
                 n, ns.runs, floor=lambda fsync: bench.bare("books", fsync=fsync))
        if "big" in cases:
            d = info.root / "big"
            d.mkdir()
            with open(d / "Full_20260601_070000.xlsx", "wb") as f:
                chunk = os.urandom(1 << 20)
                for _ in range(100):
                    f.write(chunk)
            case("1 x 100 MB, loopback", "big",
                 lambda: bench.sftp(["get -r big\n"]),
                 lambda src: bench.sync(src, {"p": "big"}, all_profiles=False),
                 lambda src: bench.sync(src, {"p": "big"}, all_profiles=False),
                 100 << 20, ns.runs, floor=lambda fsync: bench.bare("big", fsync=fsync))
        if "proxy" in cases:
            files("lat", 100, 200 * 1024)
            proxy = subprocess.Popen([sys.executable, __file__, "--proxy-child", str(info.port), str(ns.delay)],
                                     cwd=ROOT, stdout=subprocess.PIPE, text=True)
            assert proxy.stdout is not None
            pport = int(proxy.stdout.readline())
            kh = work / "kh_proxy"
            kh.write_bytes(_known_hosts_line("127.0.0.1", pport, info.host_key))
            case(f"100 x 200 kB, proxy +{ns.delay * 1000:.0f} ms each way", "proxy",
                 lambda: bench.sftp(["get -r lat\n"], port=pport, known_hosts=kh),
                 lambda src: bench.sync(src, {"p": "lat"}, all_profiles=False, port=pport, known_hosts=kh),
                 lambda src: bench.sync(src, {"p": "lat"}, all_profiles=False, port=pport, known_hosts=kh),
                 100 * 200 * 1024, ns.runs)
        if "profiles" in cases:
            names = {f"lib{k:02d}": f"consortium/lib{k:02d}" for k in range(ns.profiles)}
            for remote in names.values():
                files(remote, ns.per_profile, 20 * 1024)
            total = ns.profiles * ns.per_profile * 20 * 1024
            case(f"{ns.profiles} profiles x {ns.per_profile} x 20 kB", "profiles",
                 lambda: bench.sftp([f"get -r {r}\n" for r in names.values()]),
                 lambda src: bench.sync(src, names, all_profiles=True),
                 # a baseline without --all-profiles: one sync per profile, one after another
                 lambda src: bench.sync(src, names, all_profiles=_has_all_profiles(src)),
                 total, ns.runs,
                 # the same command kept in one process (--processes 1), measured alongside
                 alt=lambda: bench.sync(ROOT, names, all_profiles=True, extra=("--processes", "1")))
            one_session = [bench.sftp(["".join(f"get -r {r}\n" for r in names.values())])
                           for _ in range(ns.runs)]
            print(f"  (the same folders in one sftp session: {_median(one_session):.2f} s)")
            rows[-1]["one_session"] = _median(one_session)

        print(f"\nreport-keeper sync, whole processes, against OpenSSH sftp -b  (cores: {os.cpu_count()}, "
              f"load average seen: {' -> '.join(load_seen)})")
        head = f"{'case':34} {'runs':>4} {'sftp s':>7} {'sync s':>7} {'ratio':>6} {'goal':>6}"
        if baseline is not None:
            head += f" {'before s':>9} {'before/sftp':>11} {'after/before':>12}"
        head += f" {'sftp CPU':>9} {'sync CPU':>9}" + (f" {'before CPU':>10}" if baseline is not None else "")
        print(head)
        all_ok = True
        for r in rows:
            ok = r["ratio"] <= r["target"]
            all_ok &= ok
            line = (f"{r['label']:34} {r['runs']:4d} {r['sftp']:7.2f} {r['ours']:7.2f} {r['ratio']:6.2f} "
                    f"{'<=' + str(r['target']):>6}")
            if baseline is not None and r["base"] is not None:
                line += f" {r['base']:9.2f} {r['base'] / r['sftp']:11.2f} {r['ours'] / r['base']:12.2f}"
            line += f" {r['sftp_cpu']:9.2f} {r['ours_cpu']:9.2f}"
            if baseline is not None and r["base_cpu"] is not None:
                line += f" {r['base_cpu']:10.2f}"
            print(line + f"  {'ok' if ok else 'MISSED'}")
        for r in rows:
            print(f"  runs of {r['label']}: sftp {[round(x, 2) for x in r['all_sftp']]}, "
                  f"sync {[round(x, 2) for x in r['all_ours']]}"
                  + (f", before {[round(x, 2) for x in r['all_base']]}" if r["all_base"] else "")
                  + (f"; sftp in one session {r['one_session']:.2f} s" if "one_session" in r else "")
                  + (f"; sync in one process (--processes 1) {[round(x, 2) for x in r['all_alt']]}, "
                     f"median {r['alt']:.2f} s, {r['alt'] / r['sftp']:.2f} of sftp, {r['alt_cpu']:.2f} s CPU"
                     if r.get("all_alt") else ""))
        floors = [r for r in rows if r.get("floor") is not None]
        if floors:
            print("\nthe floor: benchmarks/bare_client.py, the same durable download with nothing else "
                  "(asyncssh, write, sha256, write-back, fsync, link; no ledger, no verification)")
            print(f"{'case':34} {'floor s':>7} {'floor/sftp':>10} {'sync/floor':>10} {'floor CPU':>9} "
                  f"{'no fsync s':>10} {'/sftp':>6}")
            for r in floors:
                print(f"{r['label']:34} {r['floor']:7.2f} {r['floor'] / r['sftp']:10.2f} "
                      f"{r['ours'] / r['floor']:10.2f} {r['floor_cpu']:9.2f} {r['nofsync']:10.2f} "
                      f"{r['nofsync'] / r['sftp']:6.2f}  runs {[round(x, 2) for x in r['all_floor']]}, "
                      f"without fsync {[round(x, 2) for x in r['all_nofsync']]}")
        print("(CPU: user + system seconds of the client's process tree, median)")
        print("(medians of whole processes; sync verifies every file, fsyncs it and records it in its "
              "ledger; sftp does none of that)")
        return 0 if all_ok else 1
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait()
        info.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
