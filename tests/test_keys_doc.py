"""docs/KEYS.md names every key the app binds: the help screen and the document cannot drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from tui.app import ReportKeeperApp
from tui.screens.help import help_sections
from tui.setup_app import FirstRunApp

KEYS_DOC = Path(__file__).resolve().parent.parent / "docs" / "KEYS.md"


@pytest.mark.parametrize("app", [ReportKeeperApp, FirstRunApp])
def test_every_key_of_the_help_screen_is_in_the_keys_document(app):
    text = KEYS_DOC.read_text(encoding="utf-8")
    missing = []
    for title, rows in help_sections(app):
        for label, description in rows:
            for key in label.split("/") if label != "/" else [label]:
                shown = "escape" if key == "esc" else key
                if f"`{shown}`" not in text:
                    missing.append(f"{title}: {key} ({description})")
    assert not missing, "docs/KEYS.md lacks: " + "; ".join(missing)
