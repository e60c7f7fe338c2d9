"""The worker's verdicts stay what they were: every field of every verdict for a varied set of
workbooks (tests/verdict_corpus.py) and for every hostile case (tests/hostile_workbooks.py),
against the verdicts recorded in tests/verify_verdicts.json. A change meant to make reading
cheaper must not change a status, a message, a count, a column, a fingerprint or a day."""

from __future__ import annotations

import hashlib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.hostile_workbooks import write_all
from tests.verdict_corpus import VERDICTS, write_corpus
from tui.core import isolation


def _one(pool: isolation.WorkerPool, path: Path, rules: dict[str, object]) -> dict[str, object]:
    try:
        answer = pool.call("verify", {"path": str(path), "rules": rules})
    except isolation.WorkerFailed as exc:
        return {"worker_failed": exc.failure.kind}
    if answer.get("ok") is not True or not isinstance(answer.get("result"), dict):
        return {"worker_error": answer.get("type")}
    reply = dict(answer["result"])
    digest = reply.pop("sha256", None)
    if path.is_file() and not path.is_symlink():
        # the hash is of the bytes judged: the file's own
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest(), path.name
    return reply


def verdicts_of(folder: Path) -> dict[str, dict[str, object]]:
    cases = write_corpus(folder / "corpus")
    cases.update({f"hostile/{name}": (path, {}) for name, path in write_all(folder / "hostile").items()})
    pool = isolation.WorkerPool(2)
    try:
        with ThreadPoolExecutor(2) as ex:
            futures = {name: ex.submit(_one, pool, path, rules) for name, (path, rules) in cases.items()}
            return {name: f.result() for name, f in futures.items()}
    finally:
        pool.close()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("verdicts")


@pytest.fixture(scope="module")
def verdicts(folder) -> dict[str, dict[str, object]]:
    return verdicts_of(folder)


def test_every_recorded_verdict_is_given_again(verdicts):
    recorded = json.loads(VERDICTS.read_text())
    assert sorted(verdicts) == sorted(recorded)
    differ = {name: (recorded[name], verdicts[name]) for name in recorded if recorded[name] != verdicts[name]}
    assert not differ


def test_the_corpus_covers_each_kind_of_verdict(verdicts):
    statuses = {v.get("status") for v in verdicts.values()}
    assert {"ok", "empty", "empty-closed", "schema", "unreadable"} <= statuses
    assert any("worker_failed" in v for v in verdicts.values())
    assert verdicts["loans-7000"]["rows"] == 7000 and verdicts["loans-7000"]["fingerprint"]
    assert verdicts["loans-7000-rules"]["dates"]


def _minor_faults(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    return int(raw[raw.rindex(b")") + 2 :].split()[7])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and glibc's heap")
def test_a_worker_keeps_its_heap_for_the_next_workbook(folder, verdicts):
    """Reading one large workbook after another, a worker reuses the memory the last one
    freed: it gave ~3 MB back to the kernel after each 7,000-row workbook and faulted them in
    again, zeroed, for the next (~680 page faults a workbook, 1-3 ms of system time)."""
    path = folder / "corpus" / "loans-7000.xlsx"
    pool = isolation.WorkerPool(1)
    try:
        for _ in range(2):  # started, and its heap grown to a workbook's size
            assert pool.call("verify", {"path": str(path), "rules": {}})["result"]["rows"] == 7000
        (pid,) = pool.worker_pids()
        before = _minor_faults(pid)
        for _ in range(3):
            pool.call("verify", {"path": str(path), "rules": {}})
        per_workbook = (_minor_faults(pid) - before) / 3
    finally:
        pool.close()
    assert per_workbook < 100, per_workbook
