"""``report-keeper demo-server`` as a user runs it: the printed config keeps downloads and ledger
out of the throwaway key folder, the host key of a served folder survives a restart, and the
printed config works with ``sync``/``check`` end to end (real subprocesses throughout)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tui.demo import data as demo_data

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-06-10T14:00:00+00:00"


def _env(home: Path, now: str = NOW) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPORT_KEEPER_")}
    env.update({"XDG_CONFIG_HOME": str(home / "config"), "XDG_DATA_HOME": str(home / "data"),
                "XDG_STATE_HOME": str(home / "state"), "XDG_CACHE_HOME": str(home / "cache"),
                "HOME": str(home), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
                "REPORT_KEEPER_NOW": now})
    return env


class Server:
    def __init__(self, home: Path, *args: str, now: str = NOW) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tui", "demo-server", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=_env(home, now), cwd=ROOT)
        self.info: dict[str, str] = {}
        lines = []
        for line in self.proc.stdout:
            lines.append(line)
            m = re.match(r"\s+([a-z_ ]+):\s+(.*)$", line)
            if m:
                self.info[m[1].strip()] = m[2].strip()
            if line.startswith("Press Ctrl-C"):
                break
        else:
            self.proc.wait()
            raise AssertionError("demo-server ended early: " + "".join(lines) + self.proc.stderr.read())
        self.config = Path(self.info["config"])

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        out, _err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0
        return out


def _rk(home: Path, *args: str) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "tui", *args], env=_env(home), cwd=ROOT,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def test_a_served_folder_keeps_its_host_key_downloads_and_ledger_across_restarts(tmp_path):
    home = tmp_path / "home"
    served = tmp_path / "served"
    first = Server(home, "--dir", str(served))
    try:
        cfg = tomllib.loads(first.config.read_text())["profile"]["demo"]
        keys = Path(first.info["key"]).parent
        local_dir, ledger = Path(cfg["local_dir"]), Path(cfg["ledger"])
        assert not _inside(local_dir, keys) and not _inside(ledger, keys)
        assert not _inside(local_dir, served) and not _inside(keys, served)
        assert first.info["downloads"] == str(local_dir) and first.info["ledger"] == str(ledger)
        assert first.info["writable"].startswith("no")
        _code, doc, _ = _rk(home, "sync", "--config", str(first.config), "--profile", "demo", "--json")
        assert doc["error"] is None and len(doc["downloaded"]) > 50, doc.get("error")
        fetched = {d["name"] for d in doc["downloaded"]}
        _code2, doc2, _ = _rk(home, "sync", "--config", str(first.config), "--profile", "demo", "--json")
        assert doc2["error"] is None and doc2["downloaded"] == [] and set(doc2["skipped"]) >= fetched
        # the connection test of `check`: a read-only folder is a warning, not a failure
        _code, check, _ = _rk(home, "check", "--config", str(first.config), "--profile", "demo", "--json")
        assert check["connection"]["write_test"] == "read-only"
    finally:
        out = first.stop()
    assert str(local_dir) in out  # says where the downloads stay
    assert {p.name for p in local_dir.iterdir() if not p.name.startswith(".")} >= fetched
    assert ledger.is_file()

    second = Server(home, "--dir", str(served), "--writable")
    try:
        assert second.info["host key"] == first.info["host key"]
        assert second.config == first.config
        assert second.info["writable"].startswith("yes")
        code3, doc3, err3 = _rk(home, "sync", "--config", str(second.config), "--profile", "demo", "--json")
        assert doc3["error"] is None, doc3["error"]
        assert "CHANGED" not in err3 and doc3["downloaded"] == [] and set(doc3["skipped"]) >= fetched
        assert code3 in (0, 1, 2)  # a sync, not a usage or configuration error
        _code, check, _ = _rk(home, "check", "--config", str(second.config), "--profile", "demo", "--json")
        assert check["connection"]["write_test"] == "ok", check["connection"]["message"]
    finally:
        second.stop()


def _closed_days(config: Path) -> dict[str, list[str]]:
    reports = tomllib.loads(config.read_text())["profile"]["demo"]["report"]
    return {r["name"]: r["closed_days"] for r in reports}


def test_a_served_folder_restarted_days_later_keeps_the_holiday_it_was_generated_with(tmp_path):
    home = tmp_path / "home"
    served = tmp_path / "served"
    first = Server(home, "--dir", str(served))
    try:
        generated = _closed_days(first.config)
    finally:
        first.stop()
    holiday = (datetime.fromisoformat(NOW).astimezone(ZoneInfo(demo_data.DEMO_TZ)).date()
               - timedelta(days=demo_data.HOLIDAY_AGO + 3)).isoformat()
    assert set(map(tuple, generated.values())) == {(holiday,)}
    later = (datetime.fromisoformat(NOW) + timedelta(days=9)).isoformat()
    second = Server(home, "--dir", str(served), now=later)
    try:
        assert _closed_days(second.config) == generated  # the files' holiday, not nine days on
    finally:
        second.stop()


def test_two_servers_cannot_share_a_served_folder(tmp_path):
    home = tmp_path / "home"
    served = tmp_path / "served"
    first = Server(home, "--dir", str(served))
    try:
        done = subprocess.run([sys.executable, "-m", "tui", "demo-server", "--dir", str(served)],
                              env=_env(home), cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 3 and done.stdout == ""
        assert len(done.stderr.splitlines()) == 1 and "already" in done.stderr, done.stderr
    finally:
        first.stop()


def test_without_a_folder_the_downloads_outlive_the_server(tmp_path):
    home = tmp_path / "home"
    server = Server(home)
    try:
        keys = Path(server.info["key"]).parent
        cfg = tomllib.loads(server.config.read_text())["profile"]["demo"]
        local_dir, ledger = Path(cfg["local_dir"]), Path(cfg["ledger"])
        assert not _inside(local_dir, keys) and not _inside(ledger, keys)
        assert server.info["writable"].startswith("yes")  # its own throwaway folder
        _code, doc, _ = _rk(home, "sync", "--config", str(server.config), "--profile", "demo", "--json")
        assert doc["error"] is None and doc["downloaded"]
    finally:
        out = server.stop()
    try:
        assert not keys.exists()  # the throwaway keys are gone ...
        assert str(local_dir) in out
        assert len([p for p in local_dir.iterdir() if not p.name.startswith(".")]) == len(doc["downloaded"])
        assert ledger.is_file()  # ... the downloads and the ledger are not
    finally:
        import shutil

        shutil.rmtree(local_dir.parent, ignore_errors=True)


def test_without_a_folder_and_without_a_sync_nothing_is_left_behind(tmp_path):
    server = Server(tmp_path / "home")
    local_dir = Path(tomllib.loads(server.config.read_text())["profile"]["demo"]["local_dir"])
    assert local_dir.parent.is_dir()
    server.stop()
    assert not local_dir.parent.exists()


def test_bad_folders_are_one_line(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "afile").write_text("x")
    done = subprocess.run([sys.executable, "-m", "tui", "demo-server", "--dir", str(tmp_path / "afile")],
                          env=_env(home), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and len(done.stderr.splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr and "not a folder" in done.stderr
