"""The demo server keeps SFTP clients inside the served folder, and read-only unless writable.

Escape attempts with OpenSSH's ``sftp`` (batch mode, one session per attempt so its exit code
says whether the server allowed it) and with asyncssh (SFTP v3 and v6): symlinks (relative,
renamed, absolute), ``..`` chains, hard links, ``posix-rename``, attribute changes, and reads
and writes through links that were in the folder before the server started.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from tui.demo import data as demo_data
from tui.demo.server import start_demo_server

NOW = "2026-06-10T09:00:00+00:00"
SFTP = shutil.which("sftp")
REPORTS = demo_data.DEMO_REMOTE_DIR


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


class Jail:
    """A served folder with links pointing out of it, and the outside it must protect."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.outside = base / "outside"
        self.outside.mkdir()
        self.secret = self.outside / "secret.txt"
        self.secret.write_text("SECRET")
        os.chmod(self.secret, 0o600)
        (self.outside / "hard.txt").write_text("HARD")
        self.served = base / "served"
        demo_data.generate(self.served)
        # Links left in the folder before the server started.
        os.symlink("../outside/secret.txt", self.served / "pre_rel")
        os.symlink(str(self.secret), self.served / "pre_abs")
        os.symlink(str(self.outside), self.served / "pre_dir")
        os.link(self.outside / "hard.txt", self.served / "pre_hard")
        os.mkfifo(self.served / "pre_fifo")  # opening it would block the server
        self.report = sorted((self.served / REPORTS).iterdir())[0].name
        self.q = f'"{REPORTS}/{self.report}"'  # quoted for sftp's batch commands
        self.upload = base / "upload.txt"
        self.upload.write_text("UPLOADED")
        self.server = None

    def outside_untouched(self) -> None:
        assert sorted(p.name for p in self.outside.iterdir()) == ["hard.txt", "secret.txt"]
        assert self.secret.read_text() == "SECRET" and (self.secret.stat().st_mode & 0o777) == 0o600
        assert (self.outside / "hard.txt").read_text() == "HARD"

    async def sftp(self, commands: str) -> Done:
        """One OpenSSH ``sftp -b`` session; returncode 0 only if every command succeeded.
        (Awaited: the server runs on this test's event loop.)"""
        s = self.server
        cmd = [SFTP, "-b", "-", "-F", "none", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
               "-o", f"UserKnownHostsFile={s.known_hosts_path}", "-o", "StrictHostKeyChecking=yes",
               "-i", str(s.client_key_path), "-P", str(s.port), f"{s.user}@{s.host}"]
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=self.base)
        out, err = await asyncio.wait_for(proc.communicate((commands + "\n").encode()), 30)
        return Done(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    async def client(self, version: int = 3):
        s = self.server
        conn = await asyncssh.connect(s.host, s.port, username=s.user,
                                      client_keys=[str(s.client_key_path)],
                                      known_hosts=str(s.known_hosts_path), agent_path=None, config=[])
        sftp = await conn.start_sftp_client(sftp_version=version)
        return conn, sftp


@pytest.fixture
def pinned(monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", NOW)


async def _jail(tmp_path: Path, writable: bool) -> Jail:
    jail = Jail(tmp_path)
    jail.server = await start_demo_server(jail.served, keys_dir=tmp_path / "keys",
                                          local_dir=tmp_path / "local", writable=writable)
    return jail


# The jails' demo reports are copied from the session's generation at NOW (``demo_generated_once``,
# tests/demo_cache.py: the files, bytes and times a fresh one writes).
@pytest.fixture
async def writable_jail(tmp_path, pinned, demo_generated_once):
    jail = await _jail(tmp_path, True)
    yield jail
    await jail.server.close()


@pytest.fixture
async def readonly_jail(tmp_path, pinned, demo_generated_once):
    jail = await _jail(tmp_path, False)
    yield jail
    await jail.server.close()


# ---------------------------------------------------------------------------- OpenSSH's sftp

needs_sftp = pytest.mark.skipif(SFTP is None, reason="OpenSSH sftp is not installed")


@needs_sftp
async def test_openssh_sftp_cannot_leave_the_folder(writable_jail: Jail):
    j = writable_jail
    assert (await j.sftp(f"ls {REPORTS}")).returncode == 0  # the session itself works
    attempts = {
        # the escape: a relative link made inside, then moved one level up
        "relative link then rename": "symlink ../../outside/secret.txt upload/l\nrename upload/l l2\nget l2 got1",
        "relative link at the top": "symlink ../outside/secret.txt l3\nget l3 got2",
        "absolute link": f"symlink {j.secret} l4\nget l4 got3",
        "dot-dot read": "get ../../outside/secret.txt got4",
        "dot-dot read, absolute": f"get /../..{j.secret} got5",
        "dot-dot write": "put upload.txt ../outside/new.txt",
        "hard link": f"ln {j.q} h1\nget h1 got6",
        "hard link to outside": "ln ../outside/secret.txt h2",
        "posix-rename out": f"rename {j.q} ../outside/moved.xlsx",
        "chmod outside": "chmod 777 ../outside/secret.txt",
        "chmod through a link": "chmod 777 pre_rel",
        "read through a relative link": "get pre_rel got7",
        "read through an absolute link": "get pre_abs got8",
        "read through a folder link": "get pre_dir/secret.txt got9",
        "write through a link": "put upload.txt pre_rel",
        "write into a linked folder": "put upload.txt pre_dir/new.txt",
        "read a file hard-linked from outside": "get pre_hard got10",
        "move a link": "rename pre_rel upload/pre_rel",
        "readlink": "readlink pre_abs",
    }
    for what, commands in attempts.items():
        done = await j.sftp(commands)
        assert done.returncode != 0, f"{what}: allowed\n{done.stdout}\n{done.stderr}"
        j.outside_untouched()
    listing = await j.sftp("ls -la pre_dir/")
    assert "secret.txt" not in listing.stdout + listing.stderr
    assert not [p for p in j.base.iterdir() if p.name.startswith("got")]  # nothing was read
    assert os.readlink(j.served / "pre_rel") == "../outside/secret.txt"  # links stay where they were
    links = [p for p in j.served.rglob("*") if p.is_symlink()]
    assert sorted(p.name for p in links) == ["pre_abs", "pre_dir", "pre_rel"]  # none was made
    # moving a real report inside the folder is allowed in a writable folder
    assert (await j.sftp(f"rename {j.q} moved.xlsx")).returncode == 0
    assert (j.served / "moved.xlsx").is_file()


@needs_sftp
async def test_openssh_sftp_on_a_read_only_folder_reads_but_changes_nothing(readonly_jail: Jail):
    j = readonly_jail
    before = sorted(str(p.relative_to(j.served)) for p in j.served.rglob("*"))
    done = await j.sftp(f"get {j.q} fetched.xlsx")
    assert done.returncode == 0, done.stderr
    assert (j.base / "fetched.xlsx").read_bytes() == (j.served / REPORTS / j.report).read_bytes()
    for commands in (f"put upload.txt {REPORTS}/new.xlsx", f"rm {j.q}", "mkdir newdir",
                     f"rename {j.q} x.xlsx", f"chmod 600 {j.q}", f"put upload.txt {j.q}",
                     f"ln -s {j.q} l", f"rmdir {REPORTS}"):
        done = await j.sftp(commands)
        assert done.returncode != 0, commands
    assert sorted(str(p.relative_to(j.served)) for p in j.served.rglob("*")) == before
    j.outside_untouched()


# ---------------------------------------------------------------------------- asyncssh


@pytest.mark.parametrize("version", [3, 6])
async def test_asyncssh_cannot_leave_the_folder(writable_jail: Jail, version):
    j = writable_jail
    conn, sftp = await j.client(version)
    denied = (asyncssh.SFTPError,)
    try:
        assert REPORTS.split("/")[0] in await sftp.listdir(".")
        with pytest.raises(denied):
            await sftp.symlink("../outside/secret.txt", "l1")
        with pytest.raises(denied):
            await sftp.symlink(str(j.secret), "l2")
        with pytest.raises(denied):
            await sftp.link(f"{REPORTS}/{j.report}", "h1")
        for path in ("pre_rel", "pre_abs", "pre_dir/secret.txt", "pre_hard", "../outside/secret.txt",
                     "pre_fifo"):
            with pytest.raises(denied):
                async with sftp.open(path, "rb") as f:
                    await f.read()
            with pytest.raises(denied):
                async with sftp.open(path, "r+b") as f:
                    await f.write(b"OVERWRITTEN")
        for path in ("pre_rel", "pre_dir"):
            with pytest.raises(denied):
                await sftp.realpath(path)  # says nothing about where a link points
            with pytest.raises(denied):
                await sftp.stat(path)
        with pytest.raises(denied):
            await sftp.readlink("pre_abs")
        with pytest.raises(denied):
            await sftp.chmod("pre_rel", 0o777)
        with pytest.raises(denied):
            await sftp.setstat("../outside/secret.txt", asyncssh.SFTPAttrs(permissions=0o777))
        with pytest.raises(denied):
            await sftp.rename("pre_rel", "upload/pre_rel")
        with pytest.raises(denied):
            await sftp.remove("pre_rel")
        # ".." cannot climb out: a folder named "outside" made here is inside the served folder
        await sftp.mkdir("../../outside")
        if version == 3:
            await sftp.posix_rename(f"{REPORTS}/{j.report}", "../outside/moved.xlsx")
        else:
            await sftp.rename(f"{REPORTS}/{j.report}", "../outside/moved.xlsx")
        assert (j.served / "outside" / "moved.xlsx").is_file()
        # the folder's own attributes and existence are not the client's to change
        with pytest.raises(denied):
            await sftp.chmod("/", 0)
        with pytest.raises(denied):
            await sftp.rename("/", "/x")
        # lstat of a link is harmless: a listing shows it as a link
        attrs = await sftp.lstat("pre_abs")
        assert attrs.type == asyncssh.FILEXFER_TYPE_SYMLINK
    finally:
        sftp.exit()
        conn.close()
    j.outside_untouched()
    assert os.readlink(j.served / "pre_rel") == "../outside/secret.txt"


@pytest.mark.parametrize("version", [3, 6])
async def test_asyncssh_on_a_read_only_folder(readonly_jail: Jail, version):
    j = readonly_jail
    conn, sftp = await j.client(version)
    target = f"{REPORTS}/{j.report}"
    original = (j.served / target).read_bytes()
    try:
        async with sftp.open(target, "rb") as f:
            assert await f.read() == original
        for mode in ("wb", "ab", "r+b", "xb"):
            with pytest.raises(asyncssh.SFTPError):
                async with sftp.open(target if mode != "xb" else f"{REPORTS}/new.xlsx", mode) as f:
                    await f.write(b"x")
        for call in (lambda: sftp.remove(target), lambda: sftp.mkdir("d"),
                     lambda: sftp.rename(target, "x.xlsx"), lambda: sftp.chmod(target, 0o600),
                     lambda: sftp.rmdir(REPORTS), lambda: sftp.utime(target, (0, 0))):
            with pytest.raises(asyncssh.SFTPError):
                await call()
    finally:
        sftp.exit()
        conn.close()
    assert (j.served / target).read_bytes() == original
    assert not (j.served / REPORTS / "new.xlsx").exists()


# ---------------------------------------------------------------------------- the connection test


async def test_the_connection_test_writes_on_a_writable_demo_and_reports_read_only_otherwise(tmp_path, pinned,
                                                                                           demo_generated_once):
    from tui.sftp.client import ConnectOptions, connect
    from tui.sftp.conntest import probe_connection

    for writable, expected in ((True, "ok"), (False, "read-only")):
        server = await start_demo_server(tmp_path / f"served-{writable}", keys_dir=tmp_path / f"k{writable}",
                                         local_dir=tmp_path / "local", writable=writable)
        try:
            conn = await connect(ConnectOptions.from_profile(server.profile))
            try:
                result = await probe_connection(conn, server.remote_dir)
            finally:
                await conn.close()
        finally:
            await server.close()
        assert result.write_test == expected, result.message
        left = [p.name for p in (server.root / server.remote_dir).iterdir() if p.name.startswith(".")]
        assert left == []  # the probe is gone again (or was never written)


async def test_keys_inside_the_served_folder_are_refused(tmp_path, pinned):
    with pytest.raises(OSError) as err:
        await start_demo_server(tmp_path / "served", keys_dir=tmp_path / "served" / ".keys")
    assert "inside the served folder" in str(err.value)


async def test_a_clock_too_early_for_the_demo_history_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("REPORT_KEEPER_NOW", "1970-01-10T00:00:00Z")
    with pytest.raises(OSError) as err:
        await start_demo_server(tmp_path / "served", keys_dir=tmp_path / "keys")
    assert "REPORT_KEEPER_NOW" in str(err.value) and "1970-03" in str(err.value)
    assert not (tmp_path / "keys").exists()
