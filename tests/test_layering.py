"""The core and the SFTP side never import Textual (tests and headless commands rely on it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUARDED = [ROOT / "tui" / "core", ROOT / "tui" / "sftp", ROOT / "tui" / "notify"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_core_and_sftp_sources_do_not_import_textual():
    offenders = []
    files = [p for folder in GUARDED for p in folder.rglob("*.py")]
    assert files, "the guarded packages are empty: the layering test would prove nothing"
    for path in files:
        for name in _imports(path):
            if name == "textual" or name.startswith("textual.") or name.startswith("tui.screens") or name.startswith("tui.widgets") or name == "tui.app":
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_importing_every_core_and_sftp_module_loads_no_textual():
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for folder in GUARDED
        for p in folder.rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"textual was imported: {out.stdout.strip()}"
