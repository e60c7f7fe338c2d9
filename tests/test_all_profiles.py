"""``sync --all-profiles`` and ``check --all-profiles`` against the real sshd.

Several profiles of one config (some sharing a ledger file, one whose server cannot be
reached) run in one process: one JSON document ``{"status", "profiles": {name: ...}}`` whose
entries are the single-profile documents, and the worst exit code.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.fixtures_sshd import free_port
from tests.xlsx_factory import write_report
from tui.core.ledger import Ledger
from tui.demo import data as demo_data

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-06-10T14:00:00+00:00"
SYNC_FIELDS = {"status", "downloaded", "skipped", "failed", "refused", "files", "lost", "refetched",
               "missing_locally", "error"}
CHECK_FIELDS = {"status", "now", "connection", "reports", "refused", "notify"}

pytestmark = pytest.mark.sshd


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "REPORT_KEEPER_NOW": NOW}
    return subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


@pytest.fixture
def folders(sshd):
    """Three folders on the real sshd: two of good workbooks, one with an empty report."""
    base = Path(tempfile.mkdtemp(prefix="all-", dir=sshd.root))
    os.chmod(base, 0o755)
    made: dict[str, list[str]] = {}
    for folder, n_good, empty in (("a", 3, False), ("b", 2, False), ("w", 1, True)):
        d = base / folder
        d.mkdir()
        os.chmod(d, 0o755)
        names = []
        for n in range(n_good):
            day = date(2026, 6, 8 + n)
            name = f"{demo_data.DAILY}_{day:%Y%m%d}_070012.xlsx"
            write_report(d / name, n_rows=5, day=day - timedelta(days=3), seed=n)
            names.append(name)
        if empty:
            name = f"{demo_data.DAILY}_20260610_070012.xlsx".replace(demo_data.DAILY, "Empty Loans")
            write_report(d / name, rows=[])
            names.append(name)
        made[folder] = names
    yield base, made
    shutil.rmtree(base, ignore_errors=True)


def profile_toml(name: str, sshd, remote_dir: str, tmp_path: Path, ledger: str, port: int | None = None) -> str:
    return (
        f"[profile.{name}]\n"
        f'host = "127.0.0.1"\nport = {port or sshd.port}\nusername = "{sshd.username}"\n'
        f'key = "{sshd.key}"\nknown_hosts = "{sshd.known_hosts}"\nssh_config = "{sshd.ssh_config}"\n'
        f'remote_dir = "{remote_dir}"\nlocal_dir = "{tmp_path / "local" / name}"\n'
        f'ledger = "{tmp_path / ledger}"\ntimezone = "UTC"\nconnect_timeout = 5\n\n'
    )


def config(tmp_path: Path, sshd, base: Path, *, unreachable: bool) -> Path:
    text = (profile_toml("alpha", sshd, f"{base.name}/a", tmp_path, "shared.sqlite3")
            + profile_toml("beta", sshd, f"{base.name}/b", tmp_path, "shared.sqlite3")
            + profile_toml("warn", sshd, f"{base.name}/w", tmp_path, "warn.sqlite3"))
    if unreachable:  # nothing listens there
        text += profile_toml("gone", sshd, "x", tmp_path, "gone.sqlite3", port=free_port())
    path = tmp_path / ("config-gone.toml" if unreachable else "config.toml")
    path.write_text(text)
    return path


def test_sync_all_profiles_one_document_worst_code_and_own_ledgers(sshd, folders, tmp_path):
    base, made = folders
    cfg = config(tmp_path, sshd, base, unreachable=False)
    done = run_cli("sync", "--config", str(cfg), "--all-profiles", "--json")
    doc = json.loads(done.stdout)  # exactly one document
    assert done.returncode == 1, done.stderr  # the empty report is a warning; nothing worse
    assert doc["status"] == "warning" and list(doc["profiles"]) == ["alpha", "beta", "warn"]
    for name, folder in (("alpha", "a"), ("beta", "b"), ("warn", "w")):
        one = doc["profiles"][name]
        assert SYNC_FIELDS <= set(one) and one["error"] is None and one["failed"] == []
        assert sorted(d["name"] for d in one["downloaded"]) == sorted(made[folder])
        for d in one["downloaded"]:
            local = tmp_path / "local" / name / d["name"]
            assert hashlib.sha256(local.read_bytes()).hexdigest() == d["sha256"]
            assert local.read_bytes() == (base / folder / d["name"]).read_bytes()
    assert doc["profiles"]["alpha"]["status"] == doc["profiles"]["beta"]["status"] == "ok"
    assert doc["profiles"]["warn"]["status"] == "warning"
    # alpha and beta share one ledger file, each under its own name
    for name, folder in (("alpha", "a"), ("beta", "b")):
        with Ledger.open(tmp_path / "shared.sqlite3", profile=name) as led:
            assert sorted(d.name for d in led.deliveries()) == sorted(made[folder])
            assert all(d.verification is not None for d in led.deliveries())
            assert led.integrity_ok()
    with Ledger.open(tmp_path / "warn.sqlite3", profile="warn") as led:
        assert sorted(d.name for d in led.deliveries()) == sorted(made["w"])
    assert "All 3 profiles: WARNING" in done.stderr  # human output went to stderr

    # Again, with a profile whose server cannot be reached: it is critical, the others skip.
    cfg2 = config(tmp_path, sshd, base, unreachable=True)
    again = run_cli("sync", "--config", str(cfg2), "--all-profiles", "--json", "--parallel", "2")
    doc = json.loads(again.stdout)
    assert again.returncode == 2 and doc["status"] == "critical"
    assert doc["profiles"]["gone"]["status"] == "critical" and doc["profiles"]["gone"]["error"]
    for name, folder in (("alpha", "a"), ("beta", "b"), ("warn", "w")):
        one = doc["profiles"][name]
        assert one["downloaded"] == [] and sorted(one["skipped"]) == sorted(made[folder])


def test_all_profiles_refuses_a_profile_choice_and_a_silly_parallel(sshd, folders, tmp_path):
    base, _made = folders
    cfg = config(tmp_path, sshd, base, unreachable=False)
    for command in ("sync", "check"):
        done = run_cli(command, "--config", str(cfg), "--all-profiles", "--profile", "alpha", "--json")
        assert done.returncode == 3 and "--profile" in done.stderr
        doc = json.loads(done.stdout)  # one document, no profile run
        assert doc == {"status": "critical", "profiles": {}, "error": doc["error"], "error_kind": "usage"}
        assert done.stderr == f"report-keeper: {doc['error']}\n"
        done = run_cli(command, "--config", str(cfg), "--all-profiles", "--parallel", "0", "--json")
        assert done.returncode == 3 and "--parallel" in done.stderr
        assert json.loads(done.stdout)["profiles"] == {}
        done = run_cli(command, "--config", str(cfg), "--all-profiles", "--parallel", "0")
        assert done.returncode == 3 and done.stdout == "" and "--parallel" in done.stderr


def test_check_all_profiles_online_and_offline(sshd, folders, tmp_path):
    base, made = folders
    cfg = config(tmp_path, sshd, base, unreachable=True)
    done = run_cli("check", "--config", str(cfg), "--all-profiles", "--json")
    doc = json.loads(done.stdout)
    assert done.returncode == 2 and doc["status"] == "critical"
    assert list(doc["profiles"]) == ["alpha", "beta", "warn", "gone"]
    for name in ("alpha", "beta", "warn"):
        one = doc["profiles"][name]
        assert CHECK_FIELDS <= set(one)
        assert one["connection"]["ok"] is True and one["connection"]["write_test"] == "ok"
    assert doc["profiles"]["gone"]["connection"]["ok"] is False
    # The listings were recorded, each in its profile's ledger.
    with Ledger.open(tmp_path / "shared.sqlite3", profile="beta") as led:
        assert sorted(d.name for d in led.deliveries()) == sorted(made["b"])
    codes = {name: {"ok": 0, "warning": 1, "critical": 2}[one["status"]]
             for name, one in doc["profiles"].items()}
    assert done.returncode == max(codes.values())

    offline = run_cli("check", "--config", str(cfg), "--all-profiles", "--offline")
    assert offline.returncode in (0, 1, 2)
    assert "== alpha" in offline.stdout and "== gone" in offline.stdout
    assert "All 4 profiles:" in offline.stdout
    off = json.loads(run_cli("check", "--config", str(cfg), "--all-profiles", "--offline", "--json").stdout)
    assert all(one["connection"]["write_test"] == "skipped" for one in off["profiles"].values())
