"""Hostile workbooks against the validator, its worker pool, `verify`, `sync` and the app.

Every case of tests/hostile_workbooks.py: the test process survives (it would die with a
signal if a reader aborted in it), the file gets its status and a message that says why, the
other files are unharmed, no cell value and no local file leaks out.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.hostile_workbooks import CASES, HEADER, SECRET, copy_all, inline_row, package, sheet, write_all
from tests.xlsx_factory import daily_names, loan_rows, write_report
from tui.core import isolation
from tui.core import status as st
from tui.core.validate import preview_rows, validate_file, validate_many

ROOT = Path(__file__).resolve().parent.parent
GIB = 1 << 30


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    return write_all(tmp_path_factory.mktemp("hostile"))


@pytest.fixture
def pool():
    p = isolation.WorkerPool(2)
    yield p
    p.close()


def gone(pid: int) -> bool:
    """True when ``pid`` is neither running nor a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("X",)
    except FileNotFoundError:
        return True


# ------------------------------------------------------------------ every case, one by one


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_hostile_case_gets_its_status_and_a_plain_message(hostile, case):
    spec = CASES[case]
    result = validate_file(hostile[case])
    assert result.status == spec.expect, result.message
    message = result.message.lower()
    for word in spec.says:
        assert word in message, (word, result.message)
    assert "\n" not in result.message and len(result.message) < 400
    if result.status == st.UNREADABLE:
        assert result.rows is None and result.columns == () and result.header_row is None
    # nothing from a workbook or a local file in what is kept or shown
    shown = json.dumps(result.to_json())
    assert SECRET not in shown and "lol" not in shown and "LLLL" not in shown


def test_xxe_is_never_resolved_not_even_in_the_preview(hostile):
    header, rows = preview_rows(hostile["xxe-local-file"], 1)
    assert SECRET not in json.dumps([header, rows])
    result = validate_file(hostile["xxe-local-file"])
    assert SECRET not in json.dumps(result.to_json())


@pytest.mark.parametrize("case", ["huge-dimension", "far-corner", "shared-string-bomb", "named-pipe", "lying-entry-size"])
def test_preview_of_hostile_cases_never_fails(hostile, case):
    header, rows = preview_rows(hostile[case], 1, 10)
    if CASES[case].expect == st.OK:
        assert header == list(HEADER) and len(rows) == 3
    else:
        assert (header, rows) == ([], [])


# ------------------------------------------------------------------ the batch goes on


def test_other_files_in_a_batch_are_unharmed(hostile, tmp_path, pool):
    good = [write_report(tmp_path / f"good{i}.xlsx", n_rows=i + 1) for i in range(6)]
    items = []
    for i, p in enumerate(good):
        items.append((p, None, None, {}))
        bad = sorted(CASES)[i * 4 % len(CASES)]
        items.append((hostile[bad], None, None, {}))
    items += [(hostile["far-corner"], None, None, {}), (hostile["far-corner-implicit"], None, None, {})]
    results = validate_many(items, pool=pool)
    assert [r.name for r in results] == [Path(p).name for p, *_ in items]
    assert [r.rows for r in results[0:12:2]] == [1, 2, 3, 4, 5, 6]
    assert all(r.status == st.OK for r in results[0:12:2])
    for r, (p, *_rest) in zip(results, items):
        name = Path(p).stem
        if name in CASES:
            assert r.status == CASES[name].expect, name
    assert pool.started >= 3  # the far corners cost their workers; replacements took over


def test_a_dying_worker_is_attributed_to_its_own_file(hostile, tmp_path, pool):
    """Two workers, a file that aborts its reader running beside good ones, many times over:
    the good ones never get its failure."""
    good = write_report(tmp_path / "good.xlsx", n_rows=4)
    items = [(hostile["far-corner"] if i % 3 == 0 else good, None, None, {}) for i in range(24)]
    results = validate_many(items, pool=pool)
    for i, r in enumerate(results):
        if i % 3 == 0:
            assert r.status == st.UNREADABLE and "memory" in r.message
        else:
            assert (r.status, r.rows) == (st.OK, 4)


# ------------------------------------------------------------------ the pool's workers


def slow_workbook(path: Path) -> Path:
    """A legal sheet that takes the reader a noticeable time (Excel's widest rows, 30 of them)."""
    rows = "".join(inline_row(r, [str(r)] * 16384) for r in range(1, 31))
    return package(path, sheet(rows))


def hang(pool: isolation.WorkerPool) -> int:
    """Start the pool's one worker and freeze it (SIGSTOP): its next job hangs as a reader
    stuck in native code would."""
    pool.prestart(1)
    (pid,) = pool.worker_pids()
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_a_worker_past_its_time_limit_is_killed_reaped_and_replaced(tmp_path):
    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    pool = isolation.WorkerPool(1, time_limit=0.5)
    try:
        first = hang(pool)
        started = time.monotonic()
        result = validate_file(good, pool=pool)
        assert time.monotonic() - started < 10
        assert result.status == st.UNREADABLE
        assert "took longer than 0.5 s" in result.message
        assert gone(first)
        pool.time_limit = 60
        assert validate_file(good, pool=pool).status == st.OK  # a fresh worker
        assert pool.worker_pids() != [first]
    finally:
        pool.close()


def test_a_worker_killed_from_outside_fails_only_its_job(tmp_path, monkeypatch):
    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    pool = isolation.WorkerPool(1, time_limit=120)
    delivered = threading.Event()
    real_send = isolation._Worker._send

    def send(worker: isolation._Worker, line: bytes) -> None:  # the seam: the job is in its pipe
        real_send(worker, line)
        delivered.set()

    monkeypatch.setattr(isolation._Worker, "_send", send)
    try:
        pid = hang(pool)
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", validate_file(good, pool=pool)))
        t.start()
        # Killed before the job reached it, the worker would have died idle: the job would go
        # to a fresh worker, rightly (a bound for a busy machine, not a timing).
        assert delivered.wait(60)
        os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
        t.join(30)
        assert out["r"].status == st.UNREADABLE and "memory" in out["r"].message
        assert gone(pid)
        assert validate_file(good, pool=pool).status == st.OK
        # a worker that dies while idle is replaced, and the next file is not blamed for it
        (idle,) = pool.worker_pids()
        os.kill(idle, signal.SIGKILL)
        time.sleep(0.1)
        assert validate_file(good, pool=pool).status == st.OK
        assert gone(idle)
    finally:
        pool.close()


def test_a_cancelled_job_stops_its_worker_at_once(tmp_path):
    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    pool = isolation.WorkerPool(1, time_limit=120)
    try:
        pid = hang(pool)
        stop = threading.Event()
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        with pytest.raises(isolation.Cancelled):
            validate_file(good, pool=pool, cancel=stop.is_set)
        assert time.monotonic() - started < 5
        assert gone(pid)
        assert validate_file(good, pool=pool).status == st.OK
    finally:
        pool.close()


def test_a_program_exits_at_once_even_with_a_hung_reader(tmp_path):
    """Threads still waiting on a worker do not hold up the interpreter's exit: the pool is
    closed before threads are joined."""
    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    script = f"""
import os, signal, sys, time
from concurrent.futures import ThreadPoolExecutor
from tui.core import isolation
from tui.core.validate import validate_file
pool = isolation.shared_pool()
pool.prestart(1)
for pid in pool.worker_pids():
    os.kill(pid, signal.SIGSTOP)
ex = ThreadPoolExecutor(2)
futures = [ex.submit(validate_file, {str(good)!r}) for _ in range(2)]
deadline = time.monotonic() + 30
while not pool.busy_pids() and time.monotonic() < deadline:  # a thread waits on the hung one
    time.sleep(0.01)
print(" ".join(map(str, pool.worker_pids())), flush=True)
"""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert time.monotonic() - started < 20, "the exit waited for the hung worker"
    assert done.returncode == 0, done.stderr
    assert all(gone(int(pid)) for pid in done.stdout.split())


def test_closing_the_pool_ends_every_worker_without_zombies(tmp_path):
    good = write_report(tmp_path / "good.xlsx", n_rows=2)
    pool = isolation.WorkerPool(2)
    validate_many([(good, None, None, {})] * 4, pool=pool)
    pids = pool.worker_pids()
    assert pids
    pool.close()
    assert all(gone(pid) for pid in pids)
    with pytest.raises(isolation.PoolClosed):
        validate_file(good, pool=pool)


def test_workers_limit_their_own_address_space(tmp_path):
    """RLIMIT_AS is set in the worker itself (not via preexec_fn, unsafe with threads)."""
    pool = isolation.WorkerPool(1, memory_limit=300 << 20)
    try:
        validate_file(write_report(tmp_path / "g.xlsx", n_rows=1), pool=pool)
        (pid,) = pool.worker_pids()
        limits = Path(f"/proc/{pid}/limits").read_text()
        line = next(l for l in limits.splitlines() if l.startswith("Max address space"))
        assert line.split()[3] == str(300 << 20)
        core = next(l for l in limits.splitlines() if l.startswith("Max core file size"))
        assert core.split()[4] == "0"
    finally:
        pool.close()


def test_memory_limit_is_configurable_and_named_in_the_message(tmp_path):
    """A legal 100,000-cell sheet needs more than 64 MiB: the message names the limit."""
    rows = "".join(inline_row(r, ["x" * 200] * 20) for r in range(1, 3001))
    big = package(tmp_path / "big.xlsx", sheet(rows))
    pool = isolation.WorkerPool(1, memory_limit=64 << 20)
    try:
        result = validate_file(big, pool=pool)
        assert result.status == st.UNREADABLE
        assert "more memory than allowed" in result.message and "64.0 MiB" in result.message
    finally:
        pool.close()
    assert validate_file(big).status == st.OK  # the default 1 GiB reads it


# ------------------------------------------------------------------ no cell value kept: item 8


def test_a_sheet_without_a_header_gets_positions_not_cells(tmp_path, pool):
    people = [
        ["Synthetic Person 1", "person1@example.org", "000123"],
        ["Synthetic Person 2", "person2@example.org", "000456"],
        ["Synthetic Person 3", "person3@example.org", "000789"],
    ]
    path = write_report(tmp_path / "list.xlsx", people[1:], columns=people[0], header_row=1, title="")
    result = validate_file(path, pool=pool)
    assert result.status == st.OK
    assert result.columns == ("column 1", "column 2", "column 3")
    assert result.header_row is None and result.rows == 3
    assert "named by position" in result.message
    shown = json.dumps(result.to_json())
    assert "Synthetic Person" not in shown and "example.org" not in shown and "000123" not in shown


def test_a_one_column_list_gets_positions(tmp_path, pool):
    rows = [[f"person{i}@example.org"] for i in range(2, 9)]
    path = write_report(tmp_path / "emails.xlsx", rows, columns=["person1@example.org"], header_row=1, title="")
    result = validate_file(path, pool=pool)
    assert (result.status, result.columns, result.rows, result.header_row) == (st.OK, ("column 1",), 8, None)
    assert "example.org" not in json.dumps(result.to_json())


def test_value_like_cells_of_a_header_row_are_named_by_position(tmp_path, pool):
    cols = ["Title", "Contact", "someone@example.org"]
    path = write_report(tmp_path / "h.xlsx", [["A", "B", "C"]] * 3, columns=cols, header_row=1, title="")
    result = validate_file(path, pool=pool)
    assert result.columns == ("Title", "Contact", "column 3")


def test_no_cell_value_reaches_the_ledger_or_the_log(tmp_path, caplog):
    from tui.core.ledger import Ledger
    from tui.core.local_reports import find_local_reports, verify_local

    folder = tmp_path / "local"
    folder.mkdir()
    people = [[f"Synthetic Person {i}", f"person{i}@example.org"] for i in range(5)]
    write_report(folder / "people.xlsx", people[1:], columns=people[0], header_row=1, title="")
    with Ledger.open(tmp_path / "l.sqlite3", profile="t") as ledger:
        outcomes = verify_local(find_local_reports(folder), ledger)
        assert outcomes[0].result.columns == ("column 1", "column 2")
        stored = ledger._conn.execute("SELECT columns, message FROM verifications").fetchall()
    text = json.dumps(stored) + caplog.text
    assert "example.org" not in text and "Synthetic Person" not in text


# ------------------------------------------------------------------ the commands and the app


def test_verify_cli_on_100_good_reports_and_every_hostile_case(hostile, tmp_path):
    """One JSON document listing all of them; the peak memory of the whole process tree is
    measured (the largest process by getrusage, the sum by sampling /proc) and stays under 1 GiB."""
    folder = tmp_path / "reports"
    folder.mkdir()
    for i, (name, day) in enumerate(daily_names("Loans Daily", date(2026, 1, 1), 100)):
        # the rows describe the day each run covers (the default lag_days is 3)
        write_report(folder / name, loan_rows(5 + i % 7, day=day - timedelta(days=3), seed=i))
    copy_all(hostile, folder)
    probe = ROOT / "tests" / "hostile_workbooks.py"
    script = f"""
import json, os, resource, subprocess, sys, time
cmd = [sys.executable, "-m", "tui", "verify", "--json", {str(folder)!r}]
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd={str(ROOT)!r})
peak = 0
def tree(root):
    kids = {{}}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{{d}}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = [], [root]
    while todo:
        p = todo.pop(); out.append(p); todo += kids.get(p, [])
    return out
def rss(pid):
    try:
        with open(f"/proc/{{pid}}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
import threading
done = threading.Event()
def sample():
    global peak
    while not done.is_set():
        peak = max(peak, sum(rss(p) for p in tree(proc.pid)))
        time.sleep(0.01)
t = threading.Thread(target=sample); t.start()
out, err = proc.communicate(timeout=300)
done.set(); t.join()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({{"code": proc.returncode, "out": out.decode(), "err": err.decode()[-2000:],
                  "maxrss": usage.ru_maxrss * 1024, "tree_peak": peak}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["code"] == 2, report["err"]
    doc = json.loads(report["out"])  # exactly one JSON document
    by_name = {f["name"]: f for f in doc["files"]}
    assert len(doc["files"]) == 100 + len(CASES) == len(by_name)
    for name, case in CASES.items():
        assert by_name[f"{name}.xlsx"]["status"] == case.expect, name
    good = [f for f in doc["files"] if f["name"].startswith("Loans Daily")]
    assert len(good) == 100 and all(f["status"] == "ok" and f["rows"] >= 5 for f in good)
    print(f"peak RSS: largest process {report['maxrss'] / 2**20:.0f} MiB, "
          f"whole tree (sampled) {report['tree_peak'] / 2**20:.0f} MiB")
    assert report["maxrss"] < GIB
    assert report["tree_peak"] < GIB
    assert probe.exists()


def test_verify_starts_without_the_excel_reader_in_its_own_process(tmp_path):
    write_report(tmp_path / "r.xlsx", n_rows=2)
    probe = (
        "import sys; from tui.cli import main; "
        f"main(['verify', '--json', {str(tmp_path)!r}]); "
        "sys.stderr.write(' '.join(m for m in ('polars', 'fastexcel', 'nanoarrow', 'textual') if m in sys.modules) or 'clean')"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT)
    assert proc.stderr.strip().endswith("clean"), proc.stderr


def test_verify_cli_limits_are_flags_and_bad_values_exit_3(tmp_path, capsys):
    from tui.cli import main

    slow = slow_workbook(tmp_path / "slow.xlsx")
    code = main(["verify", "--json", "--max-seconds", "0.2", str(slow)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and "took longer than 0.2 s" in doc["files"][0]["message"]
    for bad in (["--max-seconds", "nan"], ["--max-seconds", "-1"], ["--max-memory", "10"], ["--jobs", "0"]):
        assert main(["verify", *bad, str(slow)]) == 3
    capsys.readouterr()
    # the flags were for that run: the shared pool is back to its defaults
    pool = isolation.shared_pool()
    assert (pool.time_limit, pool.memory_limit) == (isolation.DEFAULT_TIME_LIMIT, isolation.DEFAULT_MEMORY_BYTES)


async def test_sync_verifies_every_new_file_even_beside_hostile_ones(tmp_path, monkeypatch, hostile):
    from tui.core.ledger import Ledger
    from tui.demo.server import start_demo_server
    from tui.sftp.sync import SyncService

    monkeypatch.setenv("REPORT_KEEPER_NOW", "2026-06-10T14:00:00+00:00")
    server = await start_demo_server(tmp_path / "server", local_dir=tmp_path / "local", ledger=tmp_path / "l.sqlite3")
    try:
        served = server.root / server.remote_dir
        bad = ["far-corner", "row-beyond-limit", "shared-string-bomb", "lying-entry-size", "column-beyond-limit"]
        for name in bad:
            (served / f"{name}.xlsx").write_bytes(hostile[name].read_bytes())
        with Ledger.open(tmp_path / "l.sqlite3", profile="demo") as ledger:
            async with SyncService(server.profile, ledger) as service:
                result = await service.sync()
            files = {v.name: v for v in result.files}
            assert len(files) == len(list(served.iterdir()))  # every new file was verified
            for name in bad:
                assert files[f"{name}.xlsx"].status == st.UNREADABLE
            assert sum(v.status == st.OK for v in files.values()) >= len(server.scenario.files) // 2
            recorded = {d.name: d.verification for d in ledger.deliveries()}
            assert all(recorded[n] for n in files)  # and recorded: the next sync has nothing to redo
    finally:
        await server.close()


async def test_the_verify_screen_survives_hostile_workbooks(tmp_path, hostile, monkeypatch):
    from tests.stand_in import StandInApp
    from tui.core.config import Profile
    from tui.core.ledger import Ledger
    from tui.screens.verify import VerifyScreen

    local = tmp_path / "local"
    local.mkdir()
    for name in ("far-corner", "shared-string-bomb", "named-pipe", "huge-dimension", "row-beyond-limit"):
        src = hostile[name]
        if name == "named-pipe":
            os.mkfifo(local / src.name)
        else:
            (local / src.name).write_bytes(src.read_bytes())
    write_report(local / "good.xlsx", n_rows=3)

    # The Verify screen alone, on a profile whose local folder holds the hostile files.
    profile = Profile(name="hostile", host="127.0.0.1", local_dir=local)
    app = StandInApp(profile, Ledger.open(":memory:", profile="hostile"), VerifyScreen)
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(3):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        screen = app.screen
        got = {o.result.name: o.result.status for o in screen.outcomes}
        assert got == {
            "far-corner.xlsx": st.UNREADABLE, "shared-string-bomb.xlsx": st.UNREADABLE,
            "named-pipe.xlsx": st.UNREADABLE, "huge-dimension.xlsx": st.OK,
            "row-beyond-limit.xlsx": st.UNREADABLE, "good.xlsx": st.OK,
        }
        # the detail pane of the huge-dimension file loads its preview in a worker process
        index = next(i for i, o in enumerate(screen._shown) if o.result.name == "huge-dimension.xlsx")
        screen.query_one("DataTable").move_cursor(row=index)
        await pilot.press("enter")
        for _ in range(3):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        assert screen._preview is not None and screen._preview[0] == list(HEADER)
        await pilot.press("v")  # and once more: the app is still here
        for _ in range(3):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
        assert len(screen.outcomes) == 6
