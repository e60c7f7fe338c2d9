"""TUI benchmark: files landing while the screens are watched (the app's own drawing cost).

Run by ``benchmarks/tui.py`` (``--land-files``, ``--runs``).

The embedded demo SFTP server (127.0.0.1, in a thread of its own so its work is not counted)
serves a folder of ``--files`` report files (2 kB each, made as the listing benchmark makes
them: no workbooks, so each verification ends at once). The app runs headless at 80x24 (a
terminal over SSH), lists the server and downloads every file (``a`` then ``d`` on the Remote
screen), watched on the Remote list and then, with a fresh ledger and folder, on the Queue
screen. Measured from the key until every file has landed and the snapshot built after the
batch is shown, median of ``--runs``:

1. **cpu**: the CPU time of the app's thread (its event loop: the screens, their drawing, and
   the SFTP client's own work, the same whatever is drawn); the machine may be shared, so this
   is the time to compare;
2. **wall**: the time it took;
3. what was drawn meanwhile, counted (the same on a busy machine): **layouts** of the screen,
   **frames** (compositor updates) and **cells** of a table rendered.

Figures are printed as one JSON document on stdout (human lines on stderr).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tui.core.config import Profile

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def log(message: str) -> None:
    sys.stderr.write(message + "\n")


class _ServerThread:
    """The demo server on an event loop of its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bench-server", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(120)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@contextmanager
def _counting() -> Iterator[Counter[str]]:
    """Count the screens' layouts and frames and the tables' cells rendered meanwhile."""
    from textual.screen import Screen
    from textual.widgets import DataTable

    counts: Counter[str] = Counter()
    patched = [(Screen, "_refresh_layout", "layouts"), (Screen, "_compositor_refresh", "frames"),
               (DataTable, "_render_cell", "cells")]
    originals = [getattr(cls, name) for cls, name, _what in patched]
    for (cls, name, what), original in zip(patched, originals, strict=True):
        def counted(*args: Any, _original: Any = original, _what: str = what, **kwargs: Any) -> Any:
            counts[_what] += 1
            return _original(*args, **kwargs)

        setattr(cls, name, counted)
    try:
        yield counts
    finally:
        for (cls, name, _what), original in zip(patched, originals, strict=True):
            setattr(cls, name, original)


async def _land(profile: Profile, screen_key: str) -> tuple[float, float]:
    from tui.app import create_app
    from tui.core.ledger import Ledger

    app = create_app(profile, ledger=Ledger.open(profile.ledger_path, profile=profile.name))
    async with app.run_test(size=(80, 24)) as pilot:
        while app.connection.state != "connected" or app.snapshot.version < 2 or any(
                w.group in ("listing", "snapshot") and not w.is_finished for w in app.workers):
            await pilot.pause(0.02)
        await pilot.press("2")
        await pilot.press("a")
        wanted = len(app.screen.selected)
        cpu, wall = time.thread_time(), time.perf_counter()
        await pilot.press("d")
        if screen_key != "2":
            await pilot.press(screen_key)
        while app.board.active or app.board.counts()["done"] < wanted:
            await pilot.pause(0.02)
        version = app._snapshot_version
        while app.snapshot.version < version or any(
                w.group in ("download", "snapshot") and not w.is_finished for w in app.workers):
            await pilot.pause(0.02)
        await pilot.pause()
        return time.thread_time() - cpu, time.perf_counter() - wall


async def land_files(files: int, runs: int) -> dict:
    import logging

    from benchmarks.tui import make_folder
    from tui.demo.server import start_demo_server

    logging.getLogger("report_keeper").setLevel(logging.ERROR)  # the files are no workbooks: said once each
    root = Path(tempfile.mkdtemp(prefix="rk-bench-landing-"))
    make_folder(root / "server", files)
    server_loop = _ServerThread()
    server = server_loop.run(start_demo_server(dir=root / "server", local_dir=root / "unused",
                                               ledger=root / "unused.sqlite3"))
    result: dict[str, object] = {"files": files, "runs": runs}
    try:
        for name, key in (("remote", "2"), ("queue", "3")):
            cpu, wall, drawn = [], [], []
            for i in range(runs):
                home = root / f"{name}-{i}"
                profile = replace(server.profile, local_dir=home / "reports", ledger=home / "ledger.sqlite3")
                with _counting() as counts:
                    c, w = await _land(profile, key)
                cpu.append(c)
                wall.append(w)
                drawn.append(counts)
                log(f"{files} files landing on the {name} screen, run {i + 1}: cpu {c:.2f} s, wall {w:.2f} s; "
                    f"{counts['layouts']} layouts, {counts['frames']} frames, {counts['cells']} table cells drawn")
            result[f"{name}_cpu_s"] = statistics.median(cpu)
            result[f"{name}_wall_s"] = statistics.median(wall)
            for what in ("layouts", "frames", "cells"):
                result[f"{name}_{what}"] = statistics.median(d[what] for d in drawn)
    finally:
        server_loop.run(server.close())
        server_loop.stop()
    return result


if __name__ == "__main__":
    import json
    import os

    os.environ.setdefault("REPORT_KEEPER_NOW", "2026-10-15T14:00:00+00:00")
    os.environ.setdefault("TEXTUAL_ANIMATIONS", "none")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    print(json.dumps(asyncio.run(land_files(count, int(sys.argv[2]) if len(sys.argv) > 2 else 1)), indent=2))
