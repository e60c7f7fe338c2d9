"""The connection test, like Alma's "Test FTP": upload a probe, download and compare it, delete it.

Public API::

    result = await probe_connection(conn, remote_dir)            # on an open SftpConnection
    result = await connect_and_test(opts, remote_dir, host_key_policy="reject")
    result.ok, result.message, result.write_test, result.upload, result.download, result.delete

``write_test`` is ``"ok"`` (all three steps passed), ``"read-only"`` (the server refused the
upload with "permission denied": downloads still work, so it is a warning, not a failure),
``"failed"`` (a step failed otherwise, or the copy read back differs) or ``"skipped"`` (no
connection). Each step is ``"ok"``, ``"denied"``, ``"failed"``, ``"mismatch"`` (download only)
or ``"skipped"``. ``ok`` is False when the connection or the test failed.

The probe is a small text file named ``.report-keeper-probe-<random>.txt`` in the report folder,
holding no data of the library; it is removed again, and a probe left behind (delete refused)
is named in the message so a person can remove it. Names of that form are reserved: every
listing sets them aside, so a sync running at the same moment never takes the probe for a
report. Probes an interrupted test left behind are removed by the next test: only files of
that name that start with the probe's own first line and are more than
``LEFTOVER_AGE`` seconds older than this test's probe (both times by the server's clock).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence

from tui.core import clock
from tui.core.model import ConnTestResult, RemoteFile, StepOutcome, WriteTest
from tui.core.names import PROBE_PREFIX, escape_name
from tui.sftp.client import ConnectOptions, HostKeyPolicy, PassphraseCallback, SftpConnection, connect
from tui.sftp.errors import PermissionDenied, SftpError, translate

log = logging.getLogger("report_keeper.sftp.conntest")

#: The first line of every probe: how a leftover is recognised as ours.
PROBE_HEADER = b"Report Keeper connection test probe file.\n"
#: A probe older than this (server clock, against this test's probe) is a leftover.
LEFTOVER_AGE = 300


def _join(remote_dir: str, name: str) -> str:
    if remote_dir in ("", "."):
        return name
    return remote_dir.rstrip("/") + "/" + name if remote_dir != "/" else "/" + name


def probe_bytes() -> bytes:
    stamp = clock.now().isoformat()
    return PROBE_HEADER + (
        f"Written at {stamp} and deleted right away; safe to delete if left behind.\n"
        f"{secrets.token_hex(16)}\n"
    ).encode()


async def probe_connection(conn: SftpConnection, remote_dir: str, *,
                           listed_probes: Sequence[RemoteFile] | None = None) -> ConnTestResult:
    """Upload, download, compare and delete a probe in ``remote_dir`` over ``conn``.

    ``listed_probes``: the probes a listing of ``remote_dir`` taken just before found (its
    ``probes``); leftovers are looked for among them instead of listing the folder again.
    Never raises for server-side failures: they end up in the result.
    """
    name = f"{PROBE_PREFIX}{secrets.token_hex(4)}.txt"
    path = _join(remote_dir, name)
    where = remote_dir or "the home folder"
    data = probe_bytes()

    try:
        await conn.upload_bytes(path, data)
    except PermissionDenied:
        log.info("connection test: upload refused (read-only account)")
        return ConnTestResult(
            ok=True,
            message=f"Connected and listed {where}; the server refused the test upload, so this "
            "account is read-only there (downloads work)",
            write_test=WriteTest.READ_ONLY, upload=StepOutcome.DENIED, probe=path,
        )
    except SftpError as exc:
        log.warning("connection test: upload failed: %s", exc)
        return ConnTestResult(
            ok=False, message=f"The test upload to {where} failed: {exc}",
            write_test=WriteTest.FAILED, upload=StepOutcome.FAILED, probe=path,
        )

    try:
        own_mtime = (await conn.stat(path)).mtime
    except (SftpError, AttributeError):
        own_mtime = None

    download = StepOutcome.OK
    problem = ""
    try:
        back = await conn.download_bytes(path, limit=len(data) + 1024)
        if back != data:
            download = StepOutcome.MISMATCH
            problem = "the probe read back differs from what was uploaded"
    except SftpError as exc:
        download = StepOutcome.FAILED
        problem = f"downloading the probe failed: {exc}"

    try:
        await conn.remove(path)
        delete = StepOutcome.OK
    except SftpError as exc:
        delete = StepOutcome.DENIED if isinstance(exc, PermissionDenied) else StepOutcome.FAILED
        left = f"deleting the probe failed ({exc}); remove '{path}' by hand"
        problem = f"{problem}; {left}" if problem else left

    if own_mtime is not None:
        await _remove_leftovers(conn, remote_dir, name, own_mtime, listed_probes)

    if problem:
        log.warning("connection test failed: download %s, delete %s", download, delete)
        return ConnTestResult(
            ok=False, message=f"Connection test in {where}: {problem}", write_test=WriteTest.FAILED,
            upload=StepOutcome.OK, download=download, delete=delete, probe=path,
        )
    log.info("connection test passed")
    return ConnTestResult(
        ok=True, message=f"Upload ok, download ok, delete ok in {where}", write_test=WriteTest.OK,
        upload=StepOutcome.OK, download=StepOutcome.OK, delete=StepOutcome.OK, probe=path,
    )


async def _remove_leftovers(conn: SftpConnection, remote_dir: str, own: str, own_mtime: float,
                            listed: Sequence[RemoteFile] | None = None) -> int:
    """Delete probes earlier tests left behind (ours only), among ``listed`` when given (else
    the folder is listed); never raises."""
    if listed is None:
        try:
            listed = (await conn.listdir(remote_dir)).probes
        except SftpError as exc:
            log.info("connection test: could not look for leftover probes: %s", exc)
            return 0
    removed = 0
    for f in listed:
        if f.name == own or f.mtime.timestamp() > own_mtime - LEFTOVER_AGE:
            continue  # ours of this test, or a test running right now elsewhere
        path = _join(remote_dir, f.name)
        try:
            head = await conn.download_bytes(path, limit=len(PROBE_HEADER))
            if head != PROBE_HEADER:
                log.info("connection test: %s is not one of our probes; left alone",
                         escape_name(f.name))
                continue
            await conn.remove(path)
            removed += 1
        except SftpError as exc:
            log.info("connection test: could not remove the leftover probe %s: %s",
                     escape_name(f.name), exc)
    if removed:
        log.info("connection test: removed %d probe files left by interrupted tests", removed)
    return removed


async def connect_and_test(
    opts: ConnectOptions,
    remote_dir: str,
    *,
    host_key_policy: HostKeyPolicy = "reject",
    passphrase_cb: PassphraseCallback | None = None,
) -> ConnTestResult:
    """Connect with ``opts``, list ``remote_dir``, run the test (its look for leftover probes
    uses that listing: the folder is read once).

    Connection, authentication, host-key and listing failures give ``ok=False`` and
    ``write_test="skipped"`` with the error's message (what happened and what to do).
    """
    try:
        conn = await connect(opts, host_key_policy=host_key_policy, passphrase_cb=passphrase_cb)
    except SftpError as exc:
        return ConnTestResult(ok=False, message=str(exc), write_test=WriteTest.SKIPPED)
    except OSError as exc:
        return ConnTestResult(ok=False, message=str(translate(exc, host=opts.host, port=opts.port)),
                              write_test=WriteTest.SKIPPED)
    try:
        try:
            listing = await conn.listdir(remote_dir)
        except SftpError as exc:
            return ConnTestResult(ok=False, message=f"Connected, but listing failed: {exc}",
                                  write_test=WriteTest.SKIPPED)
        return await probe_connection(conn, remote_dir, listed_probes=listing.probes)
    finally:
        await conn.close()
