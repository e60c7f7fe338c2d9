"""The import rules of docs/ARCHITECTURE.md, checked on the sources and at run time.

- ``tui/core``, ``tui/sftp``, ``tui/notify`` and ``tui/demo`` never import Textual (tests and
  the headless commands rely on it), nor the app, the screens or the widgets;
- ``tui/core`` never imports asyncssh, ``tui/sftp``, ``tui/notify`` or ``tui/demo``;
- ``tui/sftp`` and ``tui/notify`` never import the demo;
- ``tui/state.py`` and ``tui/setup_state.py`` (the view-models) never import Textual;
- ``tui/screens`` and ``tui/widgets`` never import ``tui/sftp``, ``tui/demo`` or the ledger
  (``tui/core/ledger``): they read the app's state and ask the app.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TUI = ROOT / "tui"
HEADLESS = [TUI / "core", TUI / "sftp", TUI / "notify", TUI / "demo"]
UI = ("textual", "tui.app", "tui.screens", "tui.widgets", "tui.messages")

RULES: list[tuple[list[Path], tuple[str, ...]]] = [
    (HEADLESS, UI),
    ([TUI / "state.py", TUI / "setup_state.py"],
     ("textual", "tui.app", "tui.setup_app", "tui.screens", "tui.widgets", "tui.messages")),
    ([TUI / "core"], ("asyncssh", "tui.sftp", "tui.notify", "tui.demo", "tui.state", "tui.commands")),
    ([TUI / "sftp", TUI / "notify"], ("tui.demo", "tui.state", "tui.commands")),
    ([TUI / "screens", TUI / "widgets"], ("tui.sftp", "tui.demo", "tui.core.ledger", "asyncssh",
                                          "tui.commands")),
]


def _files(targets: list[Path]) -> list[Path]:
    out: list[Path] = []
    for target in targets:
        out.extend([target] if target.is_file() else sorted(target.rglob("*.py")))
    return out


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _forbidden(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_sources_keep_the_import_rules():
    offenders = []
    for targets, forbidden in RULES:
        files = _files(targets)
        assert files, f"{targets} hold no sources: the rule would prove nothing"
        for path in files:
            for name in sorted(_imports(path)):
                if _forbidden(name, forbidden):
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_importing_every_headless_module_loads_no_textual():
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in _files([*HEADLESS, TUI / "state.py", TUI / "setup_state.py"])
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


def test_the_core_loads_without_asyncssh():
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in _files([TUI / "core"])
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] == 'asyncssh')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"asyncssh was imported: {out.stdout.strip()}"
