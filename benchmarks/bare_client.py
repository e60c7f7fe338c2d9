"""The floor under ``report-keeper sync``: the same durable download with nothing else.

A deliberately bare asyncssh client, run as its own process by ``sync_process.py --floor``:
it lists one folder and downloads every file the way ``sync`` must at least (reads pipelined,
at most ``--concurrency`` files at a time, each written to a temporary name, hashed with
sha256, written back to the disk every 8 MB while more arrives, fsync'ed, linked to its final
name, the folder fsync'ed at the end), and nothing
else: no ledger, no verification, no part-file records or locks, no resuming, no checks of
names or folders, no events, no logging. It is not a product; its time says how much of
``sync``'s time is the SSH library and the disk, and how much is report-keeper's own work.

    python benchmarks/bare_client.py HOST PORT USER KEY KNOWN_HOSTS REMOTE_DIR DEST [--concurrency N] [--no-fsync]

Prints one JSON line ``{"files": N, "bytes": B}``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
from collections import deque

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The package first, so asyncssh is loaded the way sync loads it (see tui/sftp/__init__.py).
from tui.sftp.transport import MAX_PKTSIZE, WINDOW, cipher_list  # noqa: I001
import asyncssh

BLOCK = 255 * 1024  # OpenSSH's largest read, as sync uses
IN_FLIGHT = 32  # read requests outstanding per file, as sync uses
WRITE_BACK_EVERY = 8 * 1024 * 1024  # as sync (tui.sftp.download), not imported: it loads the app


def _place(fd: int, tmp: str, final: str, fsync: bool = True) -> None:
    if fsync:
        os.fsync(fd)
    os.close(fd)
    os.link(tmp, final)
    os.unlink(tmp)


async def _one(sftp: asyncssh.SFTPClient, remote: str, size: int, dest: str, fsync: bool) -> int:
    name = remote.rsplit("/", 1)[-1]
    tmp = os.path.join(dest, f".{name}.part")
    f = await sftp.open(remote.encode(), "rb", block_size=0)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        h = hashlib.sha256()
        inflight: deque[asyncio.Future[bytes]] = deque()
        back: asyncio.Future[None] | None = None  # the part written back while more arrives, as sync does
        backed = written = 0
        offset = 0
        end = size + 1  # one byte past the listed size, as sync asks
        while offset < end or inflight:
            while offset < end and len(inflight) < IN_FLIGHT:
                n = min(BLOCK, end - offset)
                inflight.append(asyncio.ensure_future(f.read(n, offset)))
                offset += n
            data = await inflight.popleft()
            if not data:
                break
            os.write(fd, data)
            h.update(data)
            written += len(data)
            if fsync and written - backed >= WRITE_BACK_EVERY and (back is None or back.done()):
                back = asyncio.get_running_loop().run_in_executor(None, os.fdatasync, fd)
                backed = written
        for rest in inflight:
            rest.cancel()
        if back is not None:
            await back
        h.hexdigest()
    finally:
        await f.close()
    await asyncio.to_thread(_place, fd, tmp, os.path.join(dest, name), fsync)
    return size


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for arg in ("host", "port", "user", "key", "known_hosts", "remote_dir", "dest"):
        p.add_argument(arg)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--no-fsync", action="store_true", help="skip the fsyncs (what durability costs)")
    ns = p.parse_args()
    # The connection is set up as sync's is (cipher order, channel window, packet size):
    # the floor measures the same transport, not asyncssh's defaults.
    async with asyncssh.connect(ns.host, port=int(ns.port), username=ns.user, client_keys=[ns.key],
                                known_hosts=ns.known_hosts, config=[],
                                encryption_algs=cipher_list(), window=WINDOW,
                                max_pktsize=MAX_PKTSIZE) as conn:
        async with conn.start_sftp_client() as sftp:
            entries = [e for e in await sftp.readdir(ns.remote_dir)
                       if e.filename not in (".", "..") and e.attrs.size is not None]
            gate = asyncio.Semaphore(ns.concurrency)

            async def guarded(remote: str, size: int) -> int:
                async with gate:
                    return await _one(sftp, remote, size, ns.dest, not ns.no_fsync)

            sizes = await asyncio.gather(*(guarded(f"{ns.remote_dir}/{e.filename}", e.attrs.size or 0)
                                           for e in entries))
    if not ns.no_fsync:
        folder = os.open(ns.dest, os.O_RDONLY)
        os.fsync(folder)
        os.close(folder)
    print(json.dumps({"files": len(sizes), "bytes": sum(sizes)}))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
