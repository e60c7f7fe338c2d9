"""Real SFTP servers for the tests, all on 127.0.0.1.

- ``sshd`` (session): a real OpenSSH ``sshd`` with its own config, host key and authorized
  user key, ``internal-sftp`` starting in its own folder; skipped only when sshd is absent.
- ``embedded_sftp`` (function): a minimal asyncssh server whose SFTP root is chrooted to a
  temporary folder; ``make_embedded_sftp(sftp_factory=...)`` serves a custom SFTPServer
  subclass (hostile names, ...).
- ``TcpProxy``: a local TCP proxy that can cut the connection after N bytes from the server,
  delay every chunk by a fixed latency each way, and limit the rate from the server.
- ``server_params``: both servers behind one interface (``ServerInfo``) for tests that must
  pass against each.

``start_sshd`` and ``TcpProxy`` are plain helpers, reused by ``benchmarks/download.py``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
import pytest

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)

__all__ = [
    "ServerInfo",
    "TcpProxy",
    "threaded_proxy",
    "start_sshd",
    "start_embedded_sftp",
    "ssh_keys",
    "sshd",
    "embedded_sftp",
    "make_embedded_sftp",
    "sftp_server",
    "free_port",
]


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerInfo:
    """How to reach one test SFTP server."""

    kind: str  # "sshd" | "embedded"
    host: str
    port: int
    username: str
    key: Path  # the user's private key
    known_hosts: Path  # a known_hosts file that already trusts the server
    root: Path  # the local folder the SFTP session starts in
    host_key: Any = None  # asyncssh.SSHKey of the server (private)
    stop: Callable[[], Any] | None = field(default=None, repr=False)
    remote_dir: str = "."  # the folder to list/download, as the server names ``root``
    ssh_config: Path | None = None  # an empty ssh config, so ~/.ssh/config cannot interfere

    def path(self, name: str) -> Path:
        """The local path of a file in the served folder."""
        return self.root / name

    def options(self, **overrides: Any):
        from tui.sftp.client import ConnectOptions

        values = dict(host=self.host, port=self.port, username=self.username, key=self.key,
                      known_hosts=self.known_hosts, connect_timeout=10, login_timeout=20,
                      ssh_config=self.ssh_config, use_agent=False)
        values.update(overrides)
        return ConnectOptions(**values)


def _write_key(key: Any, path: Path) -> None:
    path.write_bytes(key.export_private_key())
    os.chmod(path, 0o600)
    (path.with_suffix(".pub")).write_bytes(key.export_public_key())


def _known_hosts_line(host: str, port: int, key: Any) -> bytes:
    pattern = host if port == 22 else f"[{host}]:{port}"
    return pattern.encode() + b" " + key.export_public_key().strip() + b"\n"


def start_sshd(workdir: Path, user_pub: Path, host_key_type: str = "ssh-ed25519") -> ServerInfo:
    """Start ``sshd -D -e -f cfg`` on a free 127.0.0.1 port; returns when it accepts.

    ``host_key_type``: the only host key the server has (e.g. ``ecdsa-sha2-nistp256``)."""
    if SSHD is None:
        raise RuntimeError("sshd is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    host_key = asyncssh.generate_private_key(host_key_type)
    host_key_path = workdir / "ssh_host_key"
    _write_key(host_key, host_key_path)
    root = workdir / "root"
    root.mkdir(exist_ok=True)
    authorized = workdir / "authorized_keys"
    shutil.copy(user_pub, authorized)
    # Readable by an unprivileged second user ("nobody"), whom tests use where root would
    # ignore file permissions.
    os.chmod(authorized, 0o644)
    os.chmod(workdir, 0o755)
    os.chmod(root, 0o755)
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
    import pwd

    username = pwd.getpwuid(os.getuid()).pw_name
    for _attempt in range(5):
        port = free_port()
        cfg = workdir / "sshd_config"
        cfg.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key_path}\n"
            f"PidFile {workdir / 'sshd.pid'}\nAuthorizedKeysFile {authorized}\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "MaxSessions 64\nMaxStartups 64:30:128\nLogLevel ERROR\nPrintMotd no\n"
            f"Subsystem sftp internal-sftp -d {root}\n"
        )
        log = open(workdir / "sshd.log", "ab")
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(cfg)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)
        pid_file = workdir / "sshd.pid"
        pid_file.unlink(missing_ok=True)
        deadline = time.monotonic() + 60  # a bound for a busy machine, not a timing
        while time.monotonic() < deadline and proc.poll() is None:
            # sshd writes its pid file once it listens: until then a banner on the port may be
            # another server's (the port was free a moment ago, another sshd may have taken it).
            if _pid_in(pid_file) == proc.pid:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                        s.settimeout(2)
                        if s.recv(4).startswith(b"SSH-"):
                            break
                except OSError:
                    pass
            time.sleep(0.05)
        if proc.poll() is None and _pid_in(pid_file) == proc.pid:
            break
        proc.kill()
        proc.wait()
        log.close()
    else:
        raise RuntimeError(f"sshd did not start; see {workdir / 'sshd.log'}")
    known_hosts = workdir / "known_hosts"
    known_hosts.write_bytes(_known_hosts_line("127.0.0.1", port, host_key))
    (workdir / "empty_ssh_config").write_text("")

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

    return ServerInfo("sshd", "127.0.0.1", port, username, user_pub.with_suffix(""), known_hosts,
                      root, host_key, stop, ".", workdir / "empty_ssh_config")


async def start_embedded_sftp(workdir: Path, user_pub: Path,
                              sftp_factory: Callable[..., Any] | None = None) -> ServerInfo:
    """A minimal asyncssh SFTP server chrooted to ``workdir/root`` on 127.0.0.1."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "root"
    root.mkdir(exist_ok=True)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    factory = sftp_factory or asyncssh.SFTPServer

    def make_sftp(chan: Any) -> Any:
        return factory(chan, chroot=str(root).encode())

    server = await asyncssh.listen(
        "127.0.0.1", 0, server_host_keys=[host_key],
        authorized_client_keys=str(user_pub), sftp_factory=make_sftp,
        allow_scp=False,
    )
    port = server.sockets[0].getsockname()[1]
    known_hosts = workdir / "known_hosts"
    known_hosts.write_bytes(_known_hosts_line("127.0.0.1", port, host_key))
    (workdir / "empty_ssh_config").write_text("")
    import pwd

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return ServerInfo("embedded", "127.0.0.1", port, pwd.getpwuid(os.getuid()).pw_name,
                      user_pub.with_suffix(""), known_hosts, root, host_key, stop, ".",
                      workdir / "empty_ssh_config")


class TcpProxy:
    """A TCP proxy on 127.0.0.1 between a client and ``target``.

    ``cut_after``: after that many bytes from the server (on the first connection only),
    both sides are closed abruptly. ``delay``: every chunk is held that many seconds in
    each direction (latency, order kept; throughput is not limited). ``rate``: at most that
    many bytes a second from the server on each connection (None: no limit; it may be changed
    while the proxy runs). :meth:`pause` holds everything from the server until :meth:`resume`
    (both called on the proxy's loop).
    """

    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1",
                 cut_after: int | None = None, delay: float = 0.0, rate: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.cut_after = cut_after
        self.delay = delay
        self.rate = rate
        self.port = 0
        self.connections = 0
        self.cuts = 0
        self.bytes_down = 0  # server -> client, all connections
        self.open = 0  # connections not ended yet
        self._idle = asyncio.Event()  # set while no connection is open (the proxy's loop only)
        self._idle.set()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()  # cleared: nothing from the server is passed on
        self._flowing.set()

    def pause(self) -> None:
        """Pass nothing more from the server to any client until :meth:`resume`: a download
        stands still between two of its replies, whatever the machine's load."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def idle(self) -> None:
        """Until every connection through the proxy has ended (awaited on the proxy's loop).

        A client killed mid-download leaves read requests on their way (held ``delay``) that
        the server still answers; its connection ends once the server has seen the client go.
        Only then is all it sent counted in ``bytes_down``: read the counter after this to
        charge the next connection nothing of the killed one."""
        await self._idle.wait()

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.open += 1
        self._idle.clear()
        try:
            await self._relay(creader, cwriter)
        finally:
            self.open -= 1
            if not self.open:
                self._idle.set()

    async def _relay(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        try:
            sreader, swriter = await asyncio.open_connection(*self.target)
        except OSError:
            cwriter.close()
            return
        self._writers.update((cwriter, swriter))
        state = {"down": 0}

        def cut() -> None:
            self.cuts += 1
            cwriter.transport.abort()
            swriter.transport.abort()

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, down: bool) -> None:
            q: asyncio.Queue = asyncio.Queue()

            async def sender() -> None:
                while True:
                    item = await q.get()
                    if item is None:
                        break
                    due, data = item
                    wait = due - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    if down:
                        await self._flowing.wait()
                    writer.write(data)
                    await writer.drain()
                try:
                    writer.write_eof()
                except (OSError, RuntimeError):
                    pass

            send_task = asyncio.ensure_future(sender()) if self.delay else None
            try:
                while True:
                    data = await reader.read(16 * 1024 if down and self.rate else 256 * 1024)
                    if not data:
                        break
                    if down and self.rate:
                        await asyncio.sleep(len(data) / self.rate)
                    if down:
                        if first and self.cut_after is not None:
                            room = self.cut_after - state["down"]
                            if room <= len(data):
                                writer.write(data[:max(room, 0)])
                                cut()
                                return
                        state["down"] += len(data)
                        self.bytes_down += len(data)
                    if send_task is not None:
                        q.put_nowait((time.monotonic() + self.delay, data))
                    else:
                        if down:
                            await self._flowing.wait()
                        writer.write(data)
                        await writer.drain()
                if send_task is not None:
                    q.put_nowait(None)
                    await send_task
                else:
                    writer.write_eof()
            except (OSError, RuntimeError, asyncio.IncompleteReadError):
                # One side reset (a killed client): the other is ended too, not left open
                # waiting for bytes that never come (the connection would last until the
                # proxy stops, counting whatever the server still sends).
                writer.transport.abort()
            finally:
                if send_task is not None and not send_task.done():
                    send_task.cancel()

        try:
            await asyncio.gather(pump(creader, swriter, False), pump(sreader, cwriter, True))
        except asyncio.CancelledError:
            pass  # the proxy is stopping; the connection simply ends
        finally:
            for w in (cwriter, swriter):
                self._writers.discard(w)
                w.transport.abort()


@contextmanager
def threaded_proxy(target_port: int, **kwargs: Any) -> Iterator[TcpProxy]:
    """A :class:`TcpProxy` served by an event loop in a thread of its own, for tests that wait
    on processes rather than on a loop of their own (its ``rate`` may be changed meanwhile)."""
    proxy = TcpProxy(target_port, **kwargs)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(proxy.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, name="test-proxy", daemon=True)
    thread.start()
    if not started.wait(60):
        raise RuntimeError("the proxy did not start")
    async def stop() -> None:
        await proxy.stop()
        pumps = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in pumps:  # the connections' own tasks end with the proxy
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)

    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(60)
        loop.close()


# ---------------------------------------------------------------- fixtures


@dataclass
class UserKeys:
    private: Path
    public: Path
    key: Any


@pytest.fixture(scope="session")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> UserKeys:
    d = tmp_path_factory.mktemp("userkey")
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = d / "id_ed25519"
    _write_key(key, path)
    return UserKeys(path, path.with_suffix(".pub"), key)


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory, ssh_keys: UserKeys) -> ServerInfo:
    """A real OpenSSH sshd for the whole session (tests use their own sub-folders of root)."""
    if SSHD is None:
        pytest.skip("OpenSSH sshd is not installed (make test installs openssh-server)")
    workdir = Path(tempfile.mkdtemp(prefix="rk-sshd-"))
    info = start_sshd(workdir, ssh_keys.public)
    yield info
    info.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def make_embedded_sftp(tmp_path: Path, ssh_keys: UserKeys):
    """Factory: ``await make_embedded_sftp(sftp_factory=MySFTPServer)``."""
    started: list[ServerInfo] = []

    async def make(sftp_factory: Callable[..., Any] | None = None) -> ServerInfo:
        info = await start_embedded_sftp(tmp_path / f"embedded{len(started)}", ssh_keys.public,
                                         sftp_factory)
        started.append(info)
        return info

    yield make
    for info in started:
        await info.stop()


@pytest.fixture
async def embedded_sftp(make_embedded_sftp) -> ServerInfo:
    return await make_embedded_sftp()


@pytest.fixture(params=["embedded", "sshd"])
async def sftp_server(request: pytest.FixtureRequest, tmp_path: Path, ssh_keys: UserKeys) -> ServerInfo:
    """Each test runs against the embedded server and the real sshd.

    For sshd, ``root`` is a fresh sub-folder and ``known_hosts`` a private copy, so tests
    stay independent; remote paths are relative to ``info.root`` in both cases.
    """
    if request.param == "embedded":
        info = await start_embedded_sftp(tmp_path / "embedded", ssh_keys.public)
        yield info
        await info.stop()
        return
    base: ServerInfo = request.getfixturevalue("sshd")
    sub = Path(tempfile.mkdtemp(prefix="t-", dir=base.root))
    kh = tmp_path / "known_hosts"
    shutil.copy(base.known_hosts, kh)
    (tmp_path / "empty_ssh_config").write_text("")
    os.chmod(sub, 0o755)
    info = ServerInfo("sshd", base.host, base.port, base.username, base.key, kh, sub,
                      base.host_key, None, sub.name, tmp_path / "empty_ssh_config")
    yield info
    shutil.rmtree(sub, ignore_errors=True)
