"""The demo reports written once per session and copied for each test.

``tui.demo.data.generate`` writes the same files for the same ``now`` (each day's numbers are
seeded by the day; the files' times are their delivery times), about 0.75 s of CPU each time.
``demo_once.generate`` writes them once per ``now`` into a session folder and copies them
(times kept) into the folder asked for, returning the scenario with that folder: each test
still gets its own files, the bytes a fresh generation would have written.

``demo_generated_once`` makes ``start_demo_server`` (which calls ``demo_data.generate``) use it.
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

    def generate(self, folder: str | Path, now: datetime | None = None) -> demo_data.DemoScenario:
        """What ``demo_data.generate(folder, now)`` writes and returns, from the session's copy."""
        when = (now or clock.now()).astimezone(ZoneInfo(demo_data.DEMO_TZ))
        if when not in self.written:
            source = self.root / str(len(self.written))
            self.written[when] = (source, _generate(source, when))
        source, scenario = self.written[when]
        target = Path(folder)
        shutil.copytree(source / demo_data.DEMO_REMOTE_DIR, target / demo_data.DEMO_REMOTE_DIR,
                        dirs_exist_ok=True)
        return dataclasses.replace(scenario, folder=target)


@pytest.fixture(scope="session")
def demo_once(tmp_path_factory: pytest.TempPathFactory) -> DemoOnce:
    return DemoOnce(tmp_path_factory.mktemp("demo-once"))


@pytest.fixture
def demo_generated_once(monkeypatch: pytest.MonkeyPatch, demo_once: DemoOnce) -> DemoOnce:
    """The demo server's reports copied from the session's (``demo_data.generate`` patched)."""
    monkeypatch.setattr(demo_data, "generate", demo_once.generate)
    return demo_once
