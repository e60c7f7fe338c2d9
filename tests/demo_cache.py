"""The demo reports written once per session and copied for each test.

``tui.demo.data.generate`` writes the same files for the same ``now`` (each day's numbers are
seeded by the day; the files' times are their delivery times), about 0.75 s of CPU each time.
``DemoOnce.template(now)`` writes them once per ``now`` (per test process) into a session
folder that is only ever copied; ``DemoOnce.generate`` copies them (times kept) into the
folder asked for and returns the scenario with that folder: each test still gets its own
files, the bytes a fresh generation would have written (``tests/test_demo.py`` checks).

The fixtures are shared by every module (``tests/conftest.py`` imports them):
``demo_once`` is the session's cache; ``demo_generated_once`` makes ``demo_data.generate``
(and so ``start_demo_server``) use it for the test. The TUI modules' demo servers serve a
copy of ``template(FIXED_NOW)`` (``tests/test_tui_fixtures.py``).
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tui.core import clock
from tui.demo import data as demo_data

_generate = demo_data.generate  # the real one, whatever a test has patched since


class DemoOnce:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.written: dict[datetime, tuple[Path, demo_data.DemoScenario]] = {}

    def template(self, now: datetime | None = None) -> tuple[Path, demo_data.DemoScenario]:
        """The session's generation at ``now``: its folder (a server root holding only
        ``DEMO_REMOTE_DIR``) and scenario. Copy it, never change it."""
        when = (now or clock.now()).astimezone(ZoneInfo(demo_data.DEMO_TZ))
        if when not in self.written:
            source = self.root / str(len(self.written))
            self.written[when] = (source, _generate(source, when))
        return self.written[when]

    def generate(self, folder: str | Path, now: datetime | None = None) -> demo_data.DemoScenario:
        """What ``demo_data.generate(folder, now)`` writes and returns, from the session's copy."""
        source, scenario = self.template(now)
        target = Path(folder)
        shutil.copytree(source / demo_data.DEMO_REMOTE_DIR, target / demo_data.DEMO_REMOTE_DIR,
                        dirs_exist_ok=True)  # copy2: the files' times stay
        return dataclasses.replace(scenario, folder=target)


@pytest.fixture(scope="session")
def demo_once(tmp_path_factory: pytest.TempPathFactory) -> DemoOnce:
    return DemoOnce(tmp_path_factory.mktemp("demo-once"))


@pytest.fixture
def demo_generated_once(monkeypatch: pytest.MonkeyPatch, demo_once: DemoOnce) -> DemoOnce:
    """The demo server's reports copied from the session's (``demo_data.generate`` patched)."""
    monkeypatch.setattr(demo_data, "generate", demo_once.generate)
    return demo_once
