"""Download benchmark: report-keeper side by side with OpenSSH ``sftp -b``.

First the whole processes, as users run them: ``benchmarks/sync_process.py`` (``report-keeper
sync --json`` against ``sftp -b`` for 300 small files, one 100 MB file, a 20 ms proxy and 90
profiles with ``sync --all-profiles``; ``--engine-only`` skips it). Then the transfer engine
inside a running process, everything in one run, against one local OpenSSH ``sshd`` on
127.0.0.1:

1. 300 files of 200 KB (``get -r`` of the folder vs. listing + TransferQueue),
2. one file of 300 MB, while measuring the peak RSS of the downloading process,
3. the 300 small files again through a local TCP proxy that delays every chunk by 20 ms
   each way (a stand-in for a remote server).

Each client runs in its own process. For report-keeper two times are shown: the
whole process (Python start-up and imports included) and the engine's own time (connect,
list, download, verify size, fsync, rename), which is what a running app pays; the targets
are judged on the engine time. OpenSSH ``sftp`` does not fsync its files; report-keeper
does (every download is on the disk before it is recorded: docs/ARCHITECTURE.md, "Local
files"), and pays for it in these figures.

Run from the repository root:  .venv/bin/python benchmarks/download.py [--quick]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {"small": 1.0, "big": 1.1, "proxy": 0.33}
MEMORY_LIMIT_MB = 150


# ---------------------------------------------------------------- child: our client


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def _child(args: dict) -> dict:
    from tui.sftp.client import ConnectOptions, connect
    from tui.sftp.queue import TransferQueue

    opts = ConnectOptions(host="127.0.0.1", port=args["port"], username=args["user"],
                          key=Path(args["key"]), known_hosts=Path(args["known_hosts"]),
                          ssh_config=Path(args["ssh_config"]), use_agent=False)
    cpu0 = _cpu(resource.RUSAGE_SELF)
    start = time.perf_counter()
    conn = await connect(opts)

    async def reuse():
        return conn

    listing = await conn.listdir(args["remote_dir"])
    async with TransferQueue(reuse, concurrency=args["concurrency"], connection=conn) as q:
        for f in listing.files:
            q.add(f, args["remote_dir"], Path(args["local_dir"]))
        jobs = await q.join()
    elapsed = time.perf_counter() - start
    cpu = _cpu(resource.RUSAGE_SELF) - cpu0
    await conn.close()
    failed = [j.name for j in jobs if j.state != "done"]
    return {
        "seconds": elapsed,
        "cpu": cpu,
        "files": len(jobs),
        "failed": failed,
        "bytes": sum(j.result.size for j in jobs if j.result),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _proxy_child(target_port: int, delay: float) -> None:
    from tests.fixtures_sshd import TcpProxy

    async def main():
        proxy = await TcpProxy(target_port, delay=delay).start()
        print(proxy.port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# ---------------------------------------------------------------- parent


def _run_ours(info, remote_dir: str, local_dir: Path, concurrency: int, port: int | None = None,
              known_hosts: Path | None = None) -> dict:
    args = dict(port=port or info.port, user=info.username, key=str(info.key),
                known_hosts=str(known_hosts or info.known_hosts), ssh_config=str(info.ssh_config),
                remote_dir=remote_dir, local_dir=str(local_dir), concurrency=concurrency)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(args)], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"report-keeper child failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout)
    result["wall"] = wall
    if result["failed"]:
        raise SystemExit(f"report-keeper failed files: {result['failed'][:5]}")
    return result


def _run_sftp(info, batch: str, cwd: Path, port: int | None = None,
              known_hosts: Path | None = None) -> dict:
    batch_file = cwd.parent / "batch.txt"
    batch_file.write_text(batch)
    cmd = ["sftp", "-q", "-b", str(batch_file), "-i", str(info.key), "-P", str(port or info.port),
           "-o", f"UserKnownHostsFile={known_hosts or info.known_hosts}",
           "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-F", "/dev/null",
           f"{info.username}@127.0.0.1"]
    cpu0 = _cpu(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise SystemExit(f"sftp failed: {out.stderr[-2000:]}")
    return {"seconds": elapsed, "cpu": _cpu(resource.RUSAGE_CHILDREN) - cpu0}  # sftp + ssh


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--proxy-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="30 MB instead of 300 MB, 60 small files")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5, help="alternating runs of the loopback cases")
    parser.add_argument("--delay", type=float, default=0.020, help="proxy delay each way (s)")
    parser.add_argument("--engine-only", action="store_true",
                        help="skip the whole-process table (benchmarks/sync_process.py)")
    ns = parser.parse_args()
    if ns.child:
        print(json.dumps(asyncio.run(_child(json.loads(ns.child)))))
        return 0
    if ns.proxy_child:
        _proxy_child(int(ns.proxy_child[0]), float(ns.proxy_child[1]))
        return 0
    whole_ok = True
    if not ns.engine_only:
        print("Whole processes (benchmarks/sync_process.py):", flush=True)
        whole = subprocess.run([sys.executable, str(Path(__file__).with_name("sync_process.py"))],
                               cwd=ROOT, check=False)
        whole_ok = whole.returncode == 0
        print("\nThe transfer engine inside a running process:", flush=True)

    import asyncssh

    from tests.fixtures_sshd import _known_hosts_line, _write_key, start_sshd

    if not shutil.which("sftp"):
        raise SystemExit("OpenSSH sftp is not installed")
    n_small = 60 if ns.quick else 300
    big_size = (30 if ns.quick else 300) * 1024 * 1024
    work = Path(tempfile.mkdtemp(prefix="rk-bench-"))
    key = asyncssh.generate_private_key("ssh-ed25519")
    _write_key(key, work / "id_ed25519")
    info = start_sshd(work / "sshd", work / "id_ed25519.pub")
    proxy = None
    try:
        small = info.root / "small"
        small.mkdir()
        block = os.urandom(200 * 1024)
        for i in range(n_small):
            (small / f"Loans_{i:03d}_20260601_070000.xlsx").write_bytes(block[i:] + block[:i])
        big = info.root / "big"
        big.mkdir()
        with open(big / "big.bin", "wb") as f:
            chunk = os.urandom(1024 * 1024)
            for _ in range(big_size // len(chunk)):
                f.write(chunk)
        rows = []

        def compare(label: str, key_: str, sftp_runs: list[dict], our_runs: list[dict], nbytes: int) -> None:
            sftp_s = statistics.median(r["seconds"] for r in sftp_runs)
            ours = {k: statistics.median(r[k] for r in our_runs) for k in ("seconds", "wall", "cpu")}
            ratio = ours["seconds"] / sftp_s
            rows.append(dict(label=label, runs=len(our_runs), sftp=sftp_s, ours=ours["seconds"],
                             wall=ours["wall"], ratio=ratio, target=TARGETS[key_],
                             ok=ratio <= TARGETS[key_], sftp_cpu=statistics.median(r["cpu"] for r in sftp_runs),
                             ours_cpu=ours["cpu"], rss=max(r["maxrss_mb"] for r in our_runs), nbytes=nbytes))

        # Runs alternate between the two clients; medians are compared (the machine may be busy).
        # 1. small files on loopback
        s_runs, o_runs = [], []
        for _ in range(ns.runs):
            d = _fresh(work / "dl_sftp")
            s_runs.append(_run_sftp(info, "get -r small\n", d))
            assert _tree_bytes(d) == n_small * 200 * 1024
            o = _run_ours(info, "small", _fresh(work / "dl_ours"), ns.concurrency)
            assert o["bytes"] == n_small * 200 * 1024
            o_runs.append(o)
        compare(f"{n_small} x 200 KB, loopback", "small", s_runs, o_runs, n_small * 200 * 1024)

        # 2. one big file
        s_runs, o_runs = [], []
        for _ in range(max(1, (ns.runs + 1) // 2)):  # 3 of the big file by default: a median
            d = _fresh(work / "dl_sftp")
            s_runs.append(_run_sftp(info, "get big/big.bin\n", d))
            assert (d / "big.bin").stat().st_size == big_size
            shutil.rmtree(d)
            o = _run_ours(info, "big", _fresh(work / "dl_ours"), ns.concurrency)
            assert o["bytes"] == big_size
            shutil.rmtree(work / "dl_ours")
            o_runs.append(o)
        o_big = max(o_runs, key=lambda r: r["maxrss_mb"])
        compare(f"1 x {big_size // 2**20} MB, loopback", "big", s_runs, o_runs, big_size)

        # 3. small files through the delaying proxy (one run each: sftp needs about a minute)
        proxy = subprocess.Popen([sys.executable, __file__, "--proxy-child", str(info.port), str(ns.delay)],
                                 cwd=ROOT, stdout=subprocess.PIPE, text=True)
        pport = int(proxy.stdout.readline())
        kh = work / "kh_proxy"
        kh.write_bytes(_known_hosts_line("127.0.0.1", pport, info.host_key))
        d = _fresh(work / "dl_sftp")
        s_proxy = _run_sftp(info, "get -r small\n", d, port=pport, known_hosts=kh)
        assert _tree_bytes(d) == n_small * 200 * 1024
        o_proxy = _run_ours(info, "small", _fresh(work / "dl_ours"), ns.concurrency, port=pport,
                            known_hosts=kh)
        compare(f"{n_small} x 200 KB, proxy +{ns.delay * 1000:.0f} ms each way", "proxy", [s_proxy],
                [o_proxy], n_small * 200 * 1024)

        print(f"\nreport-keeper download benchmark  (cores: {os.cpu_count()}, concurrency {ns.concurrency}, "
              f"OpenSSH sftp default cipher; report-keeper aes128-gcm)")
        print(f"{'case':36} {'runs':>4} {'sftp s':>7} {'ours s':>7} {'wall':>6} {'ratio':>6} {'target':>7} "
              f"{'ours MB/s':>9} {'cpu sftp/ours':>13}")
        all_ok = True
        for r in rows:
            all_ok &= r["ok"]
            print(f"{r['label']:36} {r['runs']:4d} {r['sftp']:7.2f} {r['ours']:7.2f} {r['wall']:6.2f} "
                  f"{r['ratio']:6.2f} {'<=' + str(r['target']):>7} {r['nbytes'] / r['ours'] / 2**20:9.1f} "
                  f"{r['sftp_cpu']:6.2f}/{r['ours_cpu']:<6.2f} {'ok' if r['ok'] else 'MISSED'}")
        print("(ours s: connect+list+download in the engine; wall: the whole process incl. Python start-up;"
              " medians; cpu: seconds of CPU, sftp's includes its ssh process)")
        rss_ok = o_big["maxrss_mb"] < MEMORY_LIMIT_MB
        all_ok &= rss_ok
        print(f"peak RSS while downloading the big file: {o_big['maxrss_mb']:.0f} MB "
              f"(limit {MEMORY_LIMIT_MB} MB) {'ok' if rss_ok else 'MISSED'}")
        return 0 if all_ok and whole_ok else 1
    finally:
        if proxy is not None:
            proxy.terminate()
            proxy.wait()
        info.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
