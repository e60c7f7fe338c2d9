"""A config file for one daily report on a test server (the real sshd or the embedded one).

Tests that run the commands as a person would (``sync``, ``check`` as processes) need the same
profile: the server's address and keys, a private known_hosts copy and an empty ssh_config,
``local_dir`` and the ledger under the test's folder, the library in America/Chicago, and one
report delivered daily at 07:00 with two hours' grace. ``report_extra`` is added to the
report's table, ``tail`` after it (another table, such as the profile's ``notify``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def write_daily_config(tmp: Path, server, remote_dir: str, report: str, *, report_extra: str = "",
                       tail: str = "") -> Path:
    kh = tmp / "known_hosts"
    shutil.copy(server.known_hosts, kh)
    (tmp / "ssh_config").write_text("")
    cfg = tmp / "config.toml"
    cfg.write_text(f"""
[profile.default]
host = "127.0.0.1"
port = {server.port}
username = "{server.username}"
key = "{server.key}"
known_hosts = "{kh}"
ssh_config = "{tmp / 'ssh_config'}"
remote_dir = "{remote_dir}"
local_dir = "{tmp / 'local'}"
ledger = "{tmp / 'ledger.sqlite3'}"
timezone = "America/Chicago"

[[profile.default.report]]
name = "{report}"
schedule = "daily"
at = "07:00"
grace = "2h"
lag_days = 3
anonymize_days = 7
{report_extra}
{tail}
""")
    return cfg


@contextmanager
def server_folder(root: Path, prefix: str) -> Iterator[Path]:
    """A fresh folder of the test's own under a test server's root (one the server may read),
    removed afterwards: the server is shared by the tests of a session."""
    sub = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    os.chmod(sub, 0o755)
    try:
        yield sub
    finally:
        shutil.rmtree(sub, ignore_errors=True)


def write_plain_config(tmp: Path, server, remote_dir: str) -> Path:
    """A config of one profile ``main`` on a test server with no report configured (every
    report's schedule inferred), the library in UTC; ``local_dir`` and the ledger under ``tmp``."""
    cfg = tmp / "config.toml"
    cfg.write_text(
        "[profile.main]\n"
        f'host = "127.0.0.1"\nport = {server.port}\nusername = "{server.username}"\nkey = "{server.key}"\n'
        f'known_hosts = "{server.known_hosts}"\nssh_config = "{server.ssh_config}"\n'
        f'remote_dir = "{remote_dir}"\nlocal_dir = "{tmp / "local"}"\n'
        f'ledger = "{tmp / "ledger.sqlite3"}"\ntimezone = "UTC"\n'
    )
    return cfg


def write_profiles_config(tmp: Path, names: list[str], extra: dict[str, str] | None = None,
                          file: str = "config.toml", common: str = "") -> Path:
    """A config of one bare profile per name (host 127.0.0.1, then ``common``, then the
    name's ``extra`` lines): for tests of how profile names map to files."""
    path = tmp / file
    text = ""
    for name in names:
        key = json.dumps(name, ensure_ascii=False)  # json's escapes are TOML's
        text += f'[profile.{key}]\nhost = "127.0.0.1"\n{common}{(extra or {}).get(name, "")}\n'
    path.write_text(text, encoding="utf-8")
    return path
