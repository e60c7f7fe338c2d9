"""How the nightly run names the program: a checkout reachable only through this shell's
PYTHONPATH (cron and a user timer start without it, in the home folder) still runs, and runs
this very copy, not another report-keeper the interpreter happens to have installed.

The checkout is a real copy of the package whose ``__main__`` records the nightly commands
instead of syncing; ``schedule --install`` runs from it as a librarian would
(``PYTHONPATH=... python -m tui schedule --install``), and the crontab line it writes is run by
``sh -c`` in cron's minimal environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.test_unattended import _cron_command, _tools

ROOT = Path(__file__).resolve().parent.parent

_RECORDING_MAIN = """\
import json, sys
if sys.argv[1:2] in (["sync"], ["check"]):
    import tui
    with open({record!r}, "a", encoding="utf-8") as f:
        f.write(json.dumps({{"argv": sys.argv[1:], "tui": tui.__file__}}) + "\\n")
    raise SystemExit(0)
"""


def _checkout(where: Path, record: Path) -> Path:
    shutil.copytree(ROOT / "tui", where / "tui", ignore=shutil.ignore_patterns("__pycache__"))
    main = where / "tui" / "__main__.py"
    main.write_text(_RECORDING_MAIN.format(record=str(record)) + main.read_text())
    return where


def _config(tmp_path: Path) -> Path:
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[profile.library]\nhost = "127.0.0.1"\nport = 1\ntimezone = "UTC"\n'
                   f'ledger = {str(tmp_path / "ledger.sqlite3")!r}\n')
    return cfg


def _schedule(tmp_path: Path, checkout: Path, cfg: Path, *extra: str,
              from_inside: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m tui schedule`` of the checkout: through PYTHONPATH, or (``from_inside``) run
    in the checkout's folder, where ``-m`` finds it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(XDG_STATE_HOME=str(tmp_path / "state"), XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    if not from_inside:
        env["PYTHONPATH"] = str(checkout)
    return subprocess.run([sys.executable, "-m", "tui", "schedule", "--config", str(cfg), "--profile", "library",
                           *extra], env=env, cwd=checkout if from_inside else tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_a_checkout_on_pythonpath_runs_at_night(tmp_path, monkeypatch):
    record = tmp_path / "record.jsonl"
    checkout = _checkout(tmp_path / "checkout", record)
    cfg = _config(tmp_path)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    res = _schedule(tmp_path, checkout, cfg, "--install")
    assert res.returncode == 0, res.stderr
    [line] = tab.read_text(encoding="utf-8").splitlines()
    command, stdin = _cron_command(line)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "SHELL": "/bin/sh", "LOGNAME": "tester"}
    night = subprocess.run(["/bin/sh", "-c", command], input=stdin or "", env=env, cwd=home,
                           capture_output=True, text=True, timeout=120)
    runs = [json.loads(x) for x in record.read_text().splitlines()] if record.exists() else []
    assert [r["argv"] for r in runs] == [[sub, "--config", str(cfg), "--profile", "library"]
                                        for sub in ("sync", "check")], night.stderr
    assert all(Path(r["tui"]).resolve().is_relative_to(checkout.resolve()) for r in runs), runs
    # the timer's service starts it the same way
    shown = _schedule(tmp_path, checkout, cfg)
    assert f'Environment="PYTHONPATH={checkout}' in shown.stdout, shown.stdout


def test_a_checkout_pythonpath_cannot_name_is_refused_in_one_line(tmp_path, monkeypatch):
    """Run from inside a checkout whose folder holds ':', which no PYTHONPATH entry can hold:
    refused, nothing installed (the line would have started another copy, or none)."""
    record = tmp_path / "record.jsonl"
    checkout = _checkout(tmp_path / "with:colon", record)
    cfg = _config(tmp_path)
    _log, tab = _tools(tmp_path, monkeypatch, systemd=False)
    res = _schedule(tmp_path, checkout, cfg, "--install", from_inside=True)
    assert res.returncode == 3, res.stdout + res.stderr
    assert res.stderr.count("\n") == 1 and "PYTHONPATH" in res.stderr and "pip install" in res.stderr, res.stderr
    assert not tab.exists()
