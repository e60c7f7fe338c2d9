"""docs/KEYS.md names every key the app binds: the help screen and the document cannot drift."""

from __future__ import annotations

from pathlib import Path

from tui.app import ReportKeeperApp
from tui.screens.help import help_sections

KEYS_DOC = Path(__file__).resolve().parent.parent / "docs" / "KEYS.md"


def test_every_key_of_the_help_screen_is_in_the_keys_document():
    text = KEYS_DOC.read_text(encoding="utf-8")
    missing = []
    for title, rows in help_sections(ReportKeeperApp):
        for label, description in rows:
            for key in label.split("/") if label != "/" else [label]:
                shown = "escape" if key == "esc" else key
                if f"`{shown}`" not in text:
                    missing.append(f"{title}: {key} ({description})")
    assert not missing, "docs/KEYS.md lacks: " + "; ".join(missing)
