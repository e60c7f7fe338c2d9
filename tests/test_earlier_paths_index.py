"""The check of earlier releases' ledgers and folders finds the same verdicts through its index.

Which earlier ledger or folder a profile may use where it is decides which history and
downloads it gets: no profile may be given another's, and no path may escape. The check
compared each profile's earlier path with every other profile's paths (8 s of CPU for 250
profiles, 31 s for 500); it now looks them up in an index made once per read of the config
(``config._Places``). A faithful copy of the comparison it replaced is kept here (only here:
the product has the index alone), and random configs over random trees of files, folders and
links must load to the same profiles, problems, paths and messages with either.
"""

from __future__ import annotations

import os
import random
import stat
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest

from tui.core import config
from tui.core.config import (
    EarlierPath,
    _earlier_ledger_path,
    _earlier_local_dir,
    _holds_something,
    _inside,
    _left_behind,
    _Paths,
    _Places,
    _Reader,
    default_data_dir,
    default_ledger_path,
    default_local_dir,
    parse_config,
    parse_profile,
)
from tui.core.names import profile_file_part

# ------------------------------------------------------------------ the comparison it replaced
# Copied as it was (config.py before the index), with its helpers from the product.


def _old_check_earlier_defaults(r: _Reader, name: str, names: tuple[str, ...], paths: _Paths, *,
                                ledger: bool, local_dir: bool,
                                claimed: Mapping[str, tuple[Path, ...]]) -> tuple[EarlierPath, ...]:
    if profile_file_part(name) == name:
        return ()  # the very paths earlier releases gave it
    found: list[tuple[str, str]] = []
    kept: list[EarlierPath] = []
    data = paths.data_dir
    checks = ((ledger, "ledger", _earlier_ledger_path, default_ledger_path, os.path.lexists),
              (local_dir, "local_dir", _earlier_local_dir, default_local_dir, _holds_something))
    for wanted, key, earlier, current, holds in checks:
        old, new = earlier(name, data), current(name, data)
        if not wanted or not holds(old):
            continue
        others = [p for p in names if p != name and current(p, data) == old]
        setting = [p for p in names if p != name and p not in others
                   and any(_old_overlap(paths, old, path) for path in claimed.get(p, ()))]
        theirs = [p for p in names if p != name and profile_file_part(p) != p and earlier(p, data) == new]
        if not holds(new) and _old_unambiguous(key, name, old, names, claimed, paths):
            kept.append(EarlierPath(name, key, old, new))
        elif not holds(new) or theirs:
            found.append((key, _left_behind(key, old, new, others, theirs if holds(new) else [],
                                            first=not found, setting=setting)))
    if found:
        raise r.error(found[0][0], "; ".join(text for _key, text in found))
    return tuple(kept)


def _old_unambiguous(key: str, name: str, old: Path, names: tuple[str, ...],
                     claimed: Mapping[str, tuple[Path, ...]], paths: _Paths) -> bool:
    data = paths.data_dir
    parent = data if key == "ledger" else data / "reports"
    raw = f"ledger-{name}.sqlite3" if key == "ledger" else name
    if os.sep in raw or (os.altsep and os.altsep in raw) or raw in (".", "..") or old != parent / raw:
        return False
    try:
        mode = os.lstat(old).st_mode
    except OSError:
        return False
    if not (stat.S_ISREG(mode) if key == "ledger" else stat.S_ISDIR(mode)):
        return False
    for other in names:
        if other == name:
            continue
        theirs = (*claimed.get(other, ()), default_ledger_path(other, data), default_local_dir(other, data),
                  _earlier_ledger_path(other, data), _earlier_local_dir(other, data))
        if any(_old_overlap(paths, old, path) for path in theirs):
            return False
    return True


def _old_overlap(paths: _Paths, one: Path, other: Path) -> bool:
    a, b = paths.resolved(one), paths.resolved(other)
    return _inside(a, b) or _inside(b, a)


def _old_way(r: _Reader, name: str, places: _Places, *, ledger: bool, local_dir: bool) -> tuple[EarlierPath, ...]:
    """The product's call, answered by the old comparison."""
    return _old_check_earlier_defaults(r, name, places.names, places.paths, ledger=ledger,
                                       local_dir=local_dir, claimed=places.claimed)


# ------------------------------------------------------------------ random configs over random trees

#: Names whose earlier paths meet each other's, this release's, or leave their folder: a '/',
#: '..', '%XX' that another name's part is, letter case, composed and decomposed letters.
NAMES = [
    "Main Library", "main library", "MAIN LIBRARY", "Main%20Library", "a b", "a%20b", "a%2520b", "a",
    "b", "a/b", "a/b/c", "a b/c", "a/b/../c", "b c/d", "x/../y", "y", "x/..", "../x", "../../x",
    "../reports/a b", "x/../a b", "reports", "reports/a b", "../reports", "ledger-a", "ledger-a b.sqlite3",
    "..a", "a..", "x%2Fy", "x/y", "ü", "u\u0308", "Ü", "Straße", "STRASSE", "café", "Café", "Ω ω",
    "..", ".", "", "a\\b", "p1", "p 1", "p/1", "%",
]
#: Names whose places meet: one's earlier path is another's path now, or lies in or around it.
FAMILIES = [
    ["a b", "a%20b", "a%2520b"], ["Main Library", "main library", "Main%20Library"], ["x/y", "x%2Fy", "x"],
    ["a/b", "a", "a b/c", "a%2Fb"], ["../reports/a b", "x/../a b", "a b", "reports/a b", "reports"],
    ["ü", "u\u0308", "%C3%BC"], ["p 1", "p%201", "p/1", "p1"],
]


class Tree:
    """A fresh data folder (and what lies around it) under ``root``, filled at random."""

    def __init__(self, root: Path, rng: random.Random, monkeypatch) -> None:
        self.root, self.rng = root, rng
        xdg = root / "xdg"
        xdg.mkdir(parents=True)
        monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
        data = default_data_dir()
        if rng.random() < 0.1:  # the data folder itself a link
            (root / "real-data").mkdir()
            data.symlink_to(root / "real-data", target_is_directory=True)
        else:
            data.mkdir()
        self.data = data
        (root / "cfg").mkdir()
        self.config = root / "cfg" / "config.toml"
        (root / "elsewhere").mkdir()
        (root / "elsewhere" / "ledger.sqlite3").write_bytes(b"x")
        (root / "elsewhere" / "folder").mkdir()
        (root / "elsewhere" / "folder" / "f.xlsx").write_bytes(b"x")
        if rng.random() < 0.6:
            (data / "reports").mkdir()

    def _room(self, path: Path) -> bool:
        """A path inside the test's own folder, its parent made (False: it cannot be)."""
        path = Path(os.path.normpath(path))
        if not path.is_relative_to(self.root) or path == self.root:
            return False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            return False
        return not os.path.lexists(path)

    def ledger_at(self, path: Path) -> None:
        if not self._room(path):
            return
        kind = self.rng.choice(["file", "file", "file", "folder", "link in", "link out", "dangling", "fifo"])
        try:
            if kind == "file":
                path.write_bytes(b"SQLite format 3\0")
            elif kind == "folder":
                path.mkdir()
            elif kind == "link in":
                target = self.data / "target.sqlite3"
                if not os.path.lexists(target):
                    target.write_bytes(b"x")
                path.symlink_to(target)
            elif kind == "link out":
                path.symlink_to(self.root / "elsewhere" / "ledger.sqlite3")
            elif kind == "dangling":
                path.symlink_to(self.root / "nothing")
            else:
                os.mkfifo(path)
        except OSError:
            pass

    def folder_at(self, path: Path) -> None:
        if not self._room(path):
            return
        kind = self.rng.choice(["holding", "holding", "holding", "empty", "link in", "link out", "file"])
        try:
            if kind in ("holding", "empty"):
                path.mkdir()
                if kind == "holding":
                    (path / "Loans_20260301_070000.xlsx").write_bytes(b"PK")
            elif kind == "link in":
                target = self.data / "target-folder"
                if not os.path.lexists(target):
                    target.mkdir()
                    (target / "f.xlsx").write_bytes(b"PK")
                path.symlink_to(target, target_is_directory=True)
            elif kind == "link out":
                path.symlink_to(self.root / "elsewhere" / "folder", target_is_directory=True)
            else:
                path.write_bytes(b"x")
        except OSError:
            pass

    def links(self) -> list[Path]:
        """Links inside the data folder to places in it: settings may name a place through them."""
        made = []
        for link, target in ((self.data / "alias", self.data / "reports"), (self.data / "self", self.data),
                             (self.data / "reports" / "link", self.data / "reports" / self.rng.choice(NAMES))):
            if self.rng.random() < 0.5 and self._room(link):
                try:
                    link.symlink_to(target, target_is_directory=True)
                except OSError:
                    continue
                made.append(link)
        return made


def _setting(tree: Tree, rng: random.Random, names: list[str], links: list[Path]) -> object:
    """A ledger or local_dir value: often another profile's place, or one around or in it."""
    data = tree.data
    other = rng.choice(names)
    places = [
        _earlier_ledger_path(other, data), _earlier_local_dir(other, data),
        default_ledger_path(other, data), default_local_dir(other, data),
        data, data / "reports", data.parent, tree.root / "elsewhere" / "own",
        _earlier_local_dir(other, data) / "inside", _earlier_local_dir(other, data).parent,
        *(link / rng.choice(["", other, "a b", "x"]) for link in links),
    ]
    choice = rng.random()
    if choice < 0.05:
        return rng.choice([3, "", "   "])  # no path: the profile is broken, and claims nothing
    if choice < 0.15:  # relative: to the config's folder
        return rng.choice(["rel/ledger.sqlite3", "../xdg/report-keeper/reports/a b",
                           "../xdg/report-keeper", f"../xdg/report-keeper/ledger-{other}.sqlite3"])
    text = str(rng.choice(places))
    return text + "/" if rng.random() < 0.1 else text


def _random_config(tree: Tree, rng: random.Random) -> dict:
    family = rng.choice(FAMILIES)
    names = rng.sample(family, rng.randint(1, len(family)))
    names += [n for n in rng.sample(NAMES, rng.randint(1, 4)) if n not in names]
    strays = rng.sample(NAMES, 3)  # what earlier releases kept for profiles no longer configured
    for name in names + strays:
        data = tree.data
        if rng.random() < 0.7:
            tree.ledger_at(_earlier_ledger_path(name, data))
        if rng.random() < 0.3:
            tree.ledger_at(default_ledger_path(name, data))
        if rng.random() < 0.7:
            tree.folder_at(_earlier_local_dir(name, data))
        if rng.random() < 0.3:
            tree.folder_at(default_local_dir(name, data))
    links = tree.links()
    profiles: dict[str, dict[str, object]] = {}
    for name in names:
        table: dict[str, object] = {"host": "h.example.org", "timezone": "UTC"}
        if rng.random() < 0.3:
            table["ledger"] = _setting(tree, rng, names, links)
        if rng.random() < 0.3:
            table["local_dir"] = _setting(tree, rng, names, links)
        profiles[name] = table
    return {"profile": profiles}


def _outcome(data: dict, file: Path, alone: str) -> list[tuple]:
    """What a read of the config gives each profile, and what reading profile ``alone`` by
    itself gives."""
    cfg = parse_config(data, file)
    out: list[tuple] = []
    for name in cfg.names:
        if name in cfg.broken:
            out.append((name, "broken", str(cfg.broken[name])))
            continue
        p = cfg.profiles[name]
        out.append((name, str(p.problem) if p.problem else None, str(p.ledger_path), str(p.local_dir),
                    tuple(tuple(sorted(e.to_json().items())) for e in p.earlier_paths)))
    try:
        profile = parse_profile(data, alone, file)
    except config.ConfigError as exc:
        out.append((alone, "alone", str(exc)))
    else:
        out.append((alone, "alone", str(profile.ledger_path), str(profile.local_dir),
                    tuple(e.message for e in profile.earlier_paths)))
    return out


def _differences(tmp_path: Path, monkeypatch, seed: int, rounds: int, *,
                 first: bool = False) -> tuple[list[str], Counter]:
    """The configs (by round) whose outcome differs between the index and the old comparison
    (``first``: the first one alone), and how often each kind of verdict was seen."""
    rng = random.Random(seed)
    seen: Counter = Counter()
    wrong: list[str] = []
    for i in range(rounds):
        tree = Tree(tmp_path / f"r{i}", rng, monkeypatch)
        data = _random_config(tree, rng)
        alone = rng.choice(list(data["profile"]))
        now = _outcome(data, tree.config, alone)
        with monkeypatch.context() as m:
            m.setattr(config, "_check_earlier_defaults", _old_way)
            before = _outcome(data, tree.config, alone)
        if now != before:
            wrong.append(f"round {i}: {data}\n  index: {now}\n  old:   {before}")
            if first:
                break
        for row in now:
            if row[1] == "broken" or row[1] == "alone":
                seen[row[1]] += 1
                continue
            problem, earlier = row[1], row[4]
            if earlier:
                seen["earlier used"] += 1
            if problem is None:
                continue
            for kind in ("by name", "names it, or a folder around it", "is where earlier releases kept",
                         "or move it", "or move the folder", "earlier releases kept this profile's ledger",
                         "earlier releases put this profile's downloads"):
                if kind in problem:
                    seen[kind] += 1
    return wrong, seen


#: Rounds of the comparison (a few seconds of CPU).
ROUNDS = 400


def test_the_index_gives_every_random_config_the_verdicts_of_the_old_comparison(tmp_path, monkeypatch):
    wrong, seen = _differences(tmp_path, monkeypatch, seed=20261203, rounds=ROUNDS)
    assert not wrong, "\n".join(wrong[:3])
    # The configs reach every verdict: a test that never met one could not tell it changed.
    for kind in ("earlier used", "by name", "names it, or a folder around it", "is where earlier releases kept",
                 "or move it", "or move the folder", "broken", "alone"):
        assert seen[kind] >= 5, seen


@pytest.mark.parametrize("flaw", ["no paths inside", "no folders around", "no claims"])
def test_the_comparison_of_random_configs_finds_an_index_that_misses_overlaps(tmp_path, monkeypatch, flaw):
    """The differential test has teeth: an index that misses one way paths overlap is caught."""
    def exact_and_around(self, path):
        text = os.fspath(self._paths.resolved(path))
        yield from self._owners.get(text, ())
        at = text.find("/")
        while at != -1:
            yield from self._owners.get(text[:at], ())
            at = text.find("/", at + 1)

    def exact_and_inside(self, path):
        text = os.fspath(self._paths.resolved(path))
        prefix = text.rstrip("/") + "/"
        yield from self._owners.get(text, ())
        yield from (o for t, owners in self._owners.items() if t.startswith(prefix) for o in owners)

    if flaw == "no paths inside":
        monkeypatch.setattr(config._Overlaps, "overlapping", exact_and_around)
    elif flaw == "no folders around":
        monkeypatch.setattr(config._Overlaps, "overlapping", exact_and_inside)
    else:
        monkeypatch.setattr(config._Places, "claiming", lambda self, path, *, besides: [])
    wrong, _seen = _differences(tmp_path, monkeypatch, seed=20261203, rounds=ROUNDS, first=True)
    assert wrong
