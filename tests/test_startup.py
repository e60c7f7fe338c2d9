"""What each command loads: the headless commands start without what they do not use.

Start-up time is measured in ``benchmarks/``; here the imported module set is checked, which
is what start-up time follows and what stays true on a busy machine. Each case runs the real
command in a fresh interpreter and lists ``sys.modules`` once it returned.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.daily_config import write_plain_config
from tests.xlsx_factory import write_report
from tui.demo import data as demo_data

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-06-10T14:00:00+00:00"

#: Never loaded by a headless command's own process.
UI = ("textual", "tui.app", "tui.screens", "tui.widgets", "tui.messages")
#: The workbook reader runs in worker processes only.
READER = ("fastexcel", "nanoarrow")


def loaded_by(*argv: str) -> tuple[int, set[str], str]:
    """Run ``report-keeper ARGV`` in a fresh interpreter: (exit code, modules loaded, stdout)."""
    code = (
        "import json, sys\n"
        "from tui.cli import main\n"
        f"code = main({list(argv)!r})\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\nMODULES ' + json.dumps(sorted(sys.modules)) + '\\n')\n"
        "sys.exit(code)\n"
    )
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=env, timeout=180)
    marker = out.stderr.rfind("\nMODULES ")
    assert marker >= 0, out.stderr[-3000:]
    modules = set(json.loads(out.stderr[marker + len("\nMODULES "):].strip()))
    return out.returncode, modules, out.stdout


def present(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_help_loads_no_command_and_no_machinery():
    code, modules, stdout = loaded_by("--help")
    assert code == 0 and "sync" in stdout and "check" in stdout
    heavy = ("asyncio", "sqlite3", "asyncssh", "polars", "rich", "tomllib", "platformdirs",
             "tui.commands", "tui.core.config", "tui.core.ledger", *UI, *READER)
    assert present(modules, heavy) == []


def test_sync_help_loads_its_command_only():
    code, modules, stdout = loaded_by("sync", "--help")
    assert code == 0 and "--json" in stdout
    assert "tui.commands.sync" in modules
    assert present(modules, ("polars", "rich", "tui.commands.check", "tui.commands.verify", *UI,
                             *READER)) == []


@pytest.fixture
def served(sshd, tmp_path):
    """A fresh folder on the real sshd with three real workbooks; yields its remote name."""
    import shutil
    import tempfile

    sub = Path(tempfile.mkdtemp(prefix="startup-", dir=sshd.root))
    os.chmod(sub, 0o755)
    for n in range(3):
        day = date(2026, 6, 8 + n)
        write_report(sub / f"{demo_data.DAILY}_{day:%Y%m%d}_070012.xlsx", n_rows=5,
                     day=day - timedelta(days=3), seed=n)
    yield sub.name
    shutil.rmtree(sub, ignore_errors=True)


@pytest.mark.sshd
def test_sync_and_check_load_neither_textual_nor_polars_nor_the_reader(sshd, served, tmp_path):
    cfg = str(write_plain_config(tmp_path, sshd, served))
    code, modules, stdout = loaded_by("sync", "--config", cfg, "--json")
    doc = json.loads(stdout)
    assert code in (0, 1), doc  # really synced: three files downloaded and verified
    assert len(doc["downloaded"]) == 3 and {f["status"] for f in doc["files"]} <= {"ok", "empty"}
    assert "asyncssh" in modules  # (it talked to the server)
    # rich draws progress on a terminal only; polars is for the export alone; without a
    # [notify] table no alert machinery (mail, HTTP, the health evaluation) loads
    assert present(modules, ("polars", "rich", *UI, *READER)) == []
    assert present(modules, ("tui.notify", "tui.core.health", "smtplib", "urllib.request")) == []
    assert doc["notify"] == {"configured": False, "sent": [], "failed": []}

    # The health evaluation is plain Python: a check (a cron job) pays no polars start-up.
    code, modules, stdout = loaded_by("check", "--config", cfg, "--json")
    assert json.loads(stdout)["connection"]["ok"] is True
    assert present(modules, ("polars", "rich", *UI, *READER)) == []

    code, modules, stdout = loaded_by("check", "--config", cfg, "--json", "--offline")
    assert "reports" in json.loads(stdout)
    assert present(modules, ("asyncssh", "polars", "rich", *UI, *READER)) == []


@pytest.mark.sshd
def test_the_parent_of_a_run_in_several_processes_loads_no_ssh(sshd, served, tmp_path):
    """``sync --all-profiles`` shared out among processes: the parent only starts them and
    joins their documents; the SSH library (a fifth of a start) is loaded by the processes that
    go online, not by the parent before it starts them."""
    cfg = write_plain_config(tmp_path, sshd, served)
    text = cfg.read_text()
    second = text.replace("[profile.main]", "[profile.other]").replace(
        str(tmp_path / "local"), str(tmp_path / "local2")).replace(
        str(tmp_path / "ledger.sqlite3"), str(tmp_path / "ledger2.sqlite3"))
    cfg.write_text(text + "\n" + second)
    code, modules, stdout = loaded_by("sync", "--config", str(cfg), "--all-profiles", "--json",
                                      "--processes", "2")
    doc = json.loads(stdout)
    assert code in (0, 1), doc
    assert [len(d["downloaded"]) for d in doc["profiles"].values()] == [3, 3]  # really synced
    assert present(modules, ("asyncssh", "tui.sftp")) == []


def test_verify_loads_no_ssh_no_polars_no_textual(tmp_path):
    path = write_report(tmp_path / f"{demo_data.DAILY}_20260610_070012.xlsx", n_rows=5,
                        day=date(2026, 6, 7), seed=1)
    code, modules, stdout = loaded_by("verify", str(path), "--json")
    assert json.loads(stdout)["files"][0]["rows"] == 5
    assert present(modules, ("asyncssh", "polars", "rich", *UI, *READER)) == []


def _spawned_by(statement: str) -> tuple[list[list[str]], str]:
    """Run ``statement`` in a fresh interpreter; (argv of every process it started, stdout)."""
    code = (
        "import json, sys\n"
        "started = []\n"
        "def hook(event, args):\n"
        "    if event == 'subprocess.Popen':\n"
        "        started.append([str(a) for a in (args[1] or [])])\n"
        "sys.addaudithook(hook)\n"
        f"{statement}\n"
        "sys.stderr.write('\\nSTARTED ' + json.dumps(started) + '\\n')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=180)
    marker = out.stderr.rfind("\nSTARTED ")
    assert marker >= 0, out.stderr[-3000:]
    return json.loads(out.stderr[marker + len("\nSTARTED "):].strip()), out.stdout


def test_loading_the_sftp_side_compiles_nothing():
    """asyncssh looks for optional C libraries while it loads; the stdlib's lookup would run a
    C compiler and the linker for each one that is missing (tens of milliseconds each, in every
    sync process). Only the loader's cache is consulted."""
    started, _ = _spawned_by("import tui.sftp.sync")
    tools = sorted({os.path.basename(argv[0]) for argv in started if argv})
    assert not [t for t in tools if t not in ("ldconfig", "ldconfig.real")], started


def test_loading_the_sftp_side_reads_the_loaders_cache_once():
    """asyncssh asks for several library names (nettle's three spellings, liboqs's two): the
    loader's cache is listed once for all of them, not once per name (~5 ms of CPU each)."""
    started, _ = _spawned_by("import tui.sftp.sync")
    assert len([a for a in started if a and os.path.basename(a[0]).startswith("ldconfig")]) <= 1, started


def test_the_sftp_side_offers_what_plain_asyncssh_offers():
    """The quicker library lookup finds what the stdlib's finds: the same algorithms."""
    show = ("from asyncssh.kex import get_default_kex_algs\n"
            "from asyncssh.mac import get_default_mac_algs\n"
            "print(sorted(get_default_kex_algs()), sorted(get_default_mac_algs()))")
    _, plain = _spawned_by("import asyncssh\n" + show)
    _, ours = _spawned_by("import tui.sftp\n" + show)
    assert plain.strip() and ours == plain
