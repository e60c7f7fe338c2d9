"""The worker's verdicts stay what they were: every field of every verdict for a varied set of
workbooks (tests/verdict_corpus.py) and for every hostile case (tests/hostile_workbooks.py),
against the verdicts recorded in tests/verify_verdicts.json. A change meant to make reading
cheaper must not change a status, a message, a count, a column, a fingerprint or a day."""

from __future__ import annotations

import hashlib
import json
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
def verdicts(tmp_path_factory) -> dict[str, dict[str, object]]:
    return verdicts_of(tmp_path_factory.mktemp("verdicts"))


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
