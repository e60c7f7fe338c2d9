"""The headless commands' key passphrase question on a real terminal (a pseudo-terminal):
what a hostile key path or a hostile paste can do to it."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import termios
import threading
import tty
from pathlib import Path

from tests.fixtures_sshd import free_port
from tui.commands.common import _ask_unechoed

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-06-10T14:00:00+00:00"


def spawn_with_locked_key(tmp_path: Path, command: list[str], *, key_name: str = "locked_key"):
    """``report-keeper COMMAND --json`` on a pseudo-terminal (pexpect), for a profile whose key
    is encrypted ("pw") and with no ssh-agent: the command asks for the passphrase. The key is
    read before any connection, so nothing need listen on the profile's port."""
    import asyncssh
    import pexpect

    key = tmp_path / key_name
    key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key("pkcs8-pem", passphrase="pw"))
    key.chmod(0o600)
    (tmp_path / "ssh_config").write_text("")
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f'[profile.default]\nhost = "127.0.0.1"\nport = {free_port()}\nusername = "x"\n'
        f'key = {json.dumps(str(key))}\n'
        f'known_hosts = "{tmp_path / "kh"}"\nssh_config = "{tmp_path / "ssh_config"}"\nremote_dir = "."\n'
        f'local_dir = "{tmp_path / "local"}"\nledger = "{tmp_path / "l.sqlite3"}"\ntimezone = "UTC"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORT_KEEPER_") and k != "SSH_AUTH_SOCK"}
    env.update({"HOME": str(tmp_path / "home"), "XDG_STATE_HOME": str(tmp_path / "s"),
                "XDG_DATA_HOME": str(tmp_path / "d"), "XDG_CONFIG_HOME": str(tmp_path / "c"),
                "PYTHONPATH": str(ROOT), "REPORT_KEEPER_NOW": NOW})
    return pexpect.spawn(sys.executable, ["-m", "tui", *command, "--config", str(cfg), "--json"],
                         env=env, cwd=str(ROOT), timeout=30)


def _read_until(fd: int, marker: bytes, limit: float = 30) -> bytes:
    import select

    seen = b""
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], limit)
        assert ready, f"no {marker!r} on the terminal; it said {seen!r}"
        seen += os.read(fd, 4096)
    return seen


def _ask_on_pty(setup, send: bytes) -> tuple[str | None, list, list]:
    """``_ask_unechoed`` on a pseudo-terminal set up by ``setup(slave)``; ``send`` is typed
    once the prompt is shown. The answer, and the terminal's attributes before and after."""
    master, slave = os.openpty()
    drainer = None
    try:
        setup(slave)
        before = termios.tcgetattr(slave)

        def typist() -> None:
            _read_until(master, b"p: ")
            view = memoryview(send)
            while view:
                view = view[os.write(master, view[:4096]):]

        def drain() -> None:  # what the question writes after the answer (its newline)
            try:
                while os.read(master, 4096):
                    pass
            except OSError:
                pass

        t = threading.Thread(target=typist, daemon=True)
        t.start()
        answer = asyncio.run(asyncio.wait_for(_ask_unechoed(slave, "p: "), 60))
        t.join(30)
        assert not t.is_alive()
        after = termios.tcgetattr(slave)
        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        return answer, before, after
    finally:
        # The drain thread ends (its read fails) once the slave is closed, and must end before
        # the master's descriptor is closed: the next openpty() may get the same number, and
        # a thread still reading it would swallow the next question's prompt.
        os.close(slave)
        if drainer is not None:
            drainer.join(10)
            assert not drainer.is_alive()
        os.close(master)


def test_a_megabyte_pasted_on_a_raw_terminal_keeps_a_bounded_answer_and_enter_ends_it():
    """A terminal another program left raw (no line editing, Enter sends CR): a megabyte
    pasted without a line break, then Enter. The question ends at that Enter, keeps at most
    a terminal line of it, and the terminal is left as it was found."""
    answer, before, after = _ask_on_pty(tty.setraw, b"x" * (1 << 20) + b"\r")
    assert answer is not None
    assert 0 < len(answer) <= 4096
    assert set(answer) == {"x"}
    assert after == before  # raw again, as it was


def test_an_ordinary_answer_and_ctrl_d_on_a_usual_terminal():
    answer, before, after = _ask_on_pty(lambda fd: None, b"s\xc3\xa9cret\n")
    assert answer == "s\u00e9cret"
    assert after == before and after[3] & termios.ECHO
    answer, before, after = _ask_on_pty(lambda fd: None, b"\x04")  # Ctrl-D: no answer
    assert answer is None
    assert after == before


def test_a_key_path_with_escape_sequences_is_refused_before_any_prompt(tmp_path):
    """The key's path comes from the config (and a file name may hold any byte but NUL and
    '/'): the config refuses one holding escape sequences, in one line that reaches the
    terminal escaped, never as commands (clear the screen, set the window title); no prompt
    quotes it. (The prompt escapes its path too: ``one_line``.)"""
    import pexpect

    hostile = "k\x1b[2J\x1b]0;owned\x07ey"
    child = spawn_with_locked_key(tmp_path, ["check"], key_name=hostile)
    try:
        child.expect(pexpect.EOF)
        said = child.before
    finally:
        child.close(force=True)
    assert child.exitstatus == 3, said
    assert b"Passphrase" not in said
    assert b"\x1b" not in said and b"\x07" not in said, said
    assert b"profile.default.key" in said and b"U+001B" in said
