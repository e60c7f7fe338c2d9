"""What the headless commands print cannot drive the terminal or fake a line.

Text from a server (file names, error texts), from a workbook (sheet names, column headers),
from the config and from the environment reaches the human output of ``sync``, ``check``,
``verify``, ``export``, ``purge``, ``notify`` and the alerts. A control character (ESC, the
8-bit CSI ``\\x9b``, a carriage return), a line break or a bidirectional override in any of
them must arrive escaped: visible, on its own line, never interpreted. rich markup in such
text (``[bold red]``, ``[link=...]``) is printed as it is. Normal names, accents and CJK
included, print unchanged; ``--json`` keeps every value exactly.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import xlsxwriter

from tests.notify_servers import SmtpServer
from tests.xlsx_factory import write_report
from tui.cli import main
from tui.core.names import escape_name
from tui.demo import data as demo_data
from tui.demo.server import profile_toml

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-06-10T14:00:00+00:00"

#: What a hostile text tries: reset the terminal, clear it through the 8-bit CSI, reverse the
#: rest of the line, return to the line's start and print a fake verdict on a line of its own.
SPOOF = "\x1bc\x9b2J\u202e\rOK\nStatus: OK"
#: Characters that must never reach a terminal raw from untrusted text.
RAW_CONTROLS = ("\x1b", "\x9b", "\u202e", "\r", "\x07")


def assert_inert(text: str, what: object = "") -> None:
    for ch in RAW_CONTROLS:
        assert ch not in text, (what, repr(ch), text[-2000:])


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    full = {**os.environ, "REPORT_KEEPER_NOW": NOW, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, env=full,
                          cwd=ROOT, timeout=180)


def text_of(done: subprocess.CompletedProcess[bytes]) -> tuple[str, str]:
    return done.stdout.decode("utf-8"), done.stderr.decode("utf-8")


#: The same as a sheet name (Excel refuses ``:`` in one).
SHEET = "Loans" + SPOOF.replace(":", "")


def hostile_sheet_workbook(path: Path) -> Path:
    """A workbook whose first sheet is blank and named with terminal controls: the verdict
    ("The first sheet ('...') is blank") quotes the sheet's name."""
    wb = xlsxwriter.Workbook(str(path))
    wb.add_worksheet(SHEET)
    wb.add_worksheet("Data")
    wb.close()
    return path


# ------------------------------------------------------------------------------ sync


async def test_sync_prints_the_folder_and_every_verdict_escaped_on_one_line(embedded_sftp, tmp_path):
    """The known gap: ``sync`` printed ``local_dir`` (config) and each verdict's message (which
    quotes a sheet name from the workbook) as they were."""
    info = embedded_sftp
    served = info.root / info.remote_dir
    hostile_sheet_workbook(served / "Hostile Sheet_20260610_070000.xlsx")
    write_report(served / "Zürich Ausleihen 東京.xlsx")  # no timestamp: no day to judge
    def config_for(local: Path, ledger: Path, path: Path) -> Path:
        profile = replace(demo_data.demo_config(
            host=info.host, port=info.port, username=info.username, key=info.key,
            known_hosts=info.known_hosts, local_dir=local, ledger=ledger),
            remote_dir=info.remote_dir, ssh_config=info.ssh_config)
        path.write_text(profile_toml(profile))
        return path

    # The config refuses a local_dir holding controls (one line, escaped, exit 3)...
    config = config_for(tmp_path / ("local" + SPOOF), tmp_path / "ledger.sqlite3", tmp_path / "c.toml")
    done = await asyncio.to_thread(run_cli, "sync", "--config", str(config), "--profile", "demo")
    out, err = text_of(done)
    assert done.returncode == 3 and out == "", err
    assert_inert(err)
    assert len(err.splitlines()) == 1 and "local_dir" in err
    # ...and prints an ordinary one as it is.
    local = tmp_path / "local Zürich 東京"
    config = config_for(local, tmp_path / "ledger.sqlite3", tmp_path / "c.toml")
    done = await asyncio.to_thread(run_cli, "sync", "--config", str(config), "--profile", "demo")
    out, err = text_of(done)
    assert done.returncode in (1, 2), err  # the blank sheet is a warning
    assert_inert(out + err)
    assert str(local) in out  # where the files went
    lines = out.splitlines()
    assert not [line for line in lines if line.strip().startswith(("OK", "Status: OK"))], out
    [verdict] = [line for line in lines if "The first sheet" in line]
    assert "\\u001bc\\u009b2J\\u202e\\u000dOK\\u000aStatus OK" in verdict and "is blank" in verdict
    assert "Zürich Ausleihen 東京.xlsx" in out  # a normal name is unchanged

    # --json keeps the message exactly (JSON escapes it), and its raw text carries no 8-bit
    # control or direction override either (they would reach a terminal showing the JSON).
    config = config_for(tmp_path / "local2", tmp_path / "ledger2.sqlite3", tmp_path / "c2.toml")
    done = await asyncio.to_thread(run_cli, "sync", "--config", str(config), "--profile", "demo",
                                   "--json")
    out, err = text_of(done)
    assert done.returncode in (1, 2), err
    assert_inert(out + err)
    [f] = [f for f in json.loads(out)["files"] if f["status"] == "empty"]
    assert f"('{SHEET}')" in f["message"] and f["sheet"] == SHEET


def test_plain_and_rich_progress_show_names_and_reasons_literally():
    """The progress lines: a server's reason and a name holding rich markup are printed as
    they are, escaped, never interpreted (on a terminal the display is rich's)."""
    from tui.commands.sync import _PlainProgress, _RichProgress
    from tui.core import status as st
    from tui.core.model import VerifyResult
    from tui.sftp.queue import Done, Failed, Retrying, Running
    from tui.sftp.sync import Listed, Verified

    markup = "[bold red]x[link=file:evil]y[blink]_20260610_070000.xlsx"  # no "/": a server name
    reason = "the server said " + SPOOF
    verdict = VerifyResult(path="/tmp/p.xlsx", name=markup, report="x", delivered_at=None,
                           status=st.EMPTY, rows=0, header_row=None, message="blank " + SPOOF)
    events = [Listed(files=2, wanted=2, refused=0),
              Running(job_id=1, name=markup, bytes=1, total=10),
              Retrying(job_id=1, name=markup, reason=reason),
              Done(job_id=1, name=markup, size=10),
              Verified(name=markup, result=verdict),
              Failed(job_id=2, name="b" + SPOOF, reason=reason)]
    for display in (_PlainProgress, _RichProgress):
        out = io.StringIO()
        with display(out) as progress:
            for event in events:
                progress.on_event(event)
        assert_inert(out.getvalue(), display)
        assert "[bold red]x[link=file:evil]y[blink]" in out.getvalue(), display
        assert not [line for line in out.getvalue().splitlines()
                    if line.strip().startswith(("OK", "Status: OK"))], display


# ------------------------------------------------------------------------------ verify


def test_verify_prints_markup_literally_and_keeps_its_own_colours(tmp_path):
    """File names holding rich markup are shown as they are; rich's own styling (forced on
    here, as on a terminal) still reaches the terminal; the names' controls do not."""
    folder = tmp_path / "in"
    folder.mkdir()
    names = ["[bold red]x[blink].xlsx", "[link=file:evil]y.xlsx", "Zürich Ausleihen 東京.xlsx",
             "e\u202eslx.exe.xlsx"]  # no timestamps: no day to judge
    for name in names:
        write_report(folder / name)
    hostile_sheet_workbook(folder / "sheet.xlsx")
    done = run_cli("verify", str(folder), env={"FORCE_COLOR": "1", "TERM": "xterm-256color"})
    out, err = text_of(done)
    assert done.returncode == 1, err
    for name in names[:3]:
        assert name in out
    assert "e\\u202eslx.exe.xlsx" in out
    assert "\x1b[" in out  # rich's own colours
    for ch in RAW_CONTROLS[1:]:
        assert ch not in out + err
    assert "\x1bc" not in out  # the sheet's reset sequence arrives escaped
    assert "\\u001bc" in out


# ------------------------------------------------------------------------------ the JSON text


def test_json_text_escapes_8bit_controls_and_direction_overrides_but_keeps_each_value(capsys):
    from tui.commands.common import print_json

    document = {"name": "a\x9b2Jb\u202ec\x7fd\u2066e", "plain": "Zürich Ausleihen 東京 ü é",
                "nested": [{"sheet": "\x1b]0;x\x07\u200f"}], "emoji": "\U0001f600 \U000e0041"}
    print_json(document)
    out = capsys.readouterr().out
    for ch in ("\x9b", "\u202e", "\x7f", "\u2066", "\u200f", "\x1b", "\x07", "\U000e0041"):
        assert ch not in out
    assert "Zürich Ausleihen 東京 ü é" in out and "\U0001f600" in out  # readable as before
    assert json.loads(out) == document  # every value exactly


def _stdlib_json_text(document):
    """What json_text wrote before: the standard library's indenting encoder, then the escapes."""
    from tui.commands.common import _JSON_MAYBE_CONTROL, _json_escaped

    return _JSON_MAYBE_CONTROL.sub(_json_escaped, json.dumps(document, ensure_ascii=False, indent=2))


def _random_value(rng, depth=0):
    import math
    from enum import IntEnum, StrEnum

    class Kind(StrEnum):
        MISSING = "missing"

    class Level(IntEnum):
        HIGH = 3

    scalars = [None, True, False, 0, -1, 2**70, 1.5, -0.0, 1e16, 1e-7, math.nan, math.inf, -math.inf,
               "", "plain", "Zürich 東京", "a\x9b2J\u202eb", "\x7f\x00\x1b\n\t\"\\", "\ud800 lone",
               "\U0001f600\U000e0041", "\u2028\u2029", Kind.MISSING, Level.HIGH, (), [], {}]
    pick = rng.random()
    if depth > 4 or pick < 0.5:
        return rng.choice(scalars)
    if pick < 0.75:
        keys = ["day", "status", "files", "Zürich", "\u202ekey", "", "x" * 3]
        value = {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(0, 7))}
        if rng.random() < 0.2:
            value.update({1: "int key", 2.5: "float key", False: "bool key", None: "null key"})
        return value
    items = [_random_value(rng, depth + 1) for _ in range(rng.randrange(0, 6))]
    return tuple(items) if rng.random() < 0.3 else items


def test_json_text_is_the_standard_librarys_indented_text_character_for_character():
    """json_text writes an object or array of scalars with the C encoder in one call (the
    standard library's indenting encoder is pure Python, and a check over decades of missed
    runs is tens of MB): the text must stay the same, escapes, numbers, keys and empty
    containers included."""
    import random

    from tui.commands.common import json_text

    rng = random.Random(20991231)
    documents = [{}, {"a": []}, {"a": {}}, {"a": [[]]}, {"a": [{}]}, {"a": [[], [1]]},
                 {"runs": [{"day": "2099-12-31", "files": [], "content": [], "purged": []},
                           {"day": "2099-12-30", "files": ["x.xlsx"], "content": ["stale"]}]},
                 {"name": "a\x9b2Jb\u202ec\x7fd\u2066e", "nested": [{"sheet": "\x1b]0;x\x07\u200f"}]}]
    documents += [{"doc": _random_value(rng)} for _ in range(400)]
    for document in documents:
        assert json_text(document) == _stdlib_json_text(document), document


def test_json_text_of_decades_of_runs_never_takes_the_pure_python_encoder(monkeypatch):
    """The standard library indents in pure Python, a generator per level for every value:
    ``check --json`` at the end of the clock's range (73 years of missed runs, 31 MB) spent
    seconds there. Only the containers above the runs and problems are walked in Python."""
    import json.encoder

    from tui.commands.common import json_text

    def refused(*args, **kwargs):
        raise AssertionError("the pure-Python indenting encoder")

    monkeypatch.setattr(json.encoder, "_make_iterencode", refused)
    runs = [{"day": f"2099-12-{d:02d}", "status": "missing", "files": [], "rows": None, "closed": False}
            for d in range(1, 32)]
    document = {"status": "critical", "reports": [{"name": "Loans", "runs": runs, "problems": []}]}
    text = json_text(document)
    assert json.loads(text) == document and text.count("\n") > 31 * 5


def test_json_text_refuses_what_json_dumps_refuses():
    from tui.commands.common import json_text

    looped: dict[str, object] = {"a": [1]}
    looped["self"] = [looped]
    for document, error in (({"a": [object()]}, TypeError), ({"a": {(1, 2): 1}}, TypeError),
                            ({"b": [1, {"c": object()}]}, TypeError), (looped, ValueError)):
        with pytest.raises(error):
            _stdlib_json_text(document)
        with pytest.raises(error):
            json_text(document)


def test_escape_text_escapes_the_same_characters_as_before_and_leaves_plain_ascii_as_it_is():
    import re

    from tui.core.names import _escaped_char, escape_text

    def before(text: str) -> str:
        return re.sub(r"[^\n\x20-\x7e]", _escaped_char, text)

    every = "".join(map(chr, range(0x3000))) + "\U0001f600\U000e0041\ud800"
    for text in (every, *every, "line one\nline two\n" * 3, "tab\there", "del\x7f", "", "Zürich\n"):
        assert escape_text(text) == before(text), repr(text)
    plain = "{\n  \"status\": \"ok\"\n}\n" * 1000
    assert escape_text(plain) is plain


# ------------------------------------------------------------------------------ the output guard


def test_a_headless_command_writes_no_raw_control_from_any_source(tmp_path, capsys):
    """The one guard in front of every headless command's human output: whatever text a
    command forgets to escape reaches the terminal escaped; line breaks a command writes
    stay; normal letters stay. The config no longer lets such text in at all: a profile or
    report name holding it is refused in one inert line."""
    from tui.commands.common import terminal_text

    raw = io.StringIO()
    guarded = terminal_text(raw)
    guarded.write("Zürich 東京 é\n" + SPOOF + "\tend\n")
    guarded.flush()
    assert raw.getvalue().startswith("Zürich 東京 é\n")
    assert_inert(raw.getvalue())
    assert raw.getvalue().count("\n") == 3  # the command's own two, and the SPOOF's one
    assert "\\u001bc\\u009b2J\\u202e\\u000dOK" in raw.getvalue()

    name = "lib" + SPOOF  # a profile name is a TOML key: any text
    key = json.dumps(name)  # JSON's string escapes are TOML's
    config = tmp_path / "c.toml"
    config.write_text(
        f'[profile.{key}]\nhost = "127.0.0.1"\nremote_dir = "up"\n'
        f'ledger = "{tmp_path / "l.sqlite3"}"\nlocal_dir = "{tmp_path / "local"}"\n'
        f'[[profile.{key}.report]]\nname = {json.dumps("Loans" + SPOOF)}\nschedule = "daily"\n')
    # The config refuses such names where it is read: the profile is broken (the others would
    # run); its header and its refusal are two inert lines.
    code = main(["check", "--offline", "--all-profiles", "--config", str(config)])
    both = capsys.readouterr()
    assert code == 3, both.err
    assert_inert(both.out + both.err)
    assert both.out == "All 1 profiles: CRITICAL\n" and len(both.err.splitlines()) == 2, both
    assert both.err.startswith(f"== {escape_name(name)}\n"), both.err
    assert f'profile."{escape_name(name)}"' in both.err and "profile name" in both.err


# ------------------------------------------------------------------------------ e-mail


@pytest.fixture
def smtp(tmp_path, monkeypatch):
    server = SmtpServer(tmp_path / "smtp", security="none", username=None).start()
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    yield server
    server.stop()


def test_an_email_header_cannot_be_injected_through_a_name(smtp, tmp_path):
    """A subject holding a line break is written escaped, on one line: no header is added
    (and the alert still goes out; Python's e-mail package would refuse the raw value and
    stop every alert of the run). The config refuses a name holding a line break anyway."""
    from tui.core.config import NotifyConfig
    from tui.notify.channels import send_email

    cfg = NotifyConfig(email_to=("circ-team@example.edu",), email_from="report-keeper@example.edu",
                       smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_security="none")
    send_email(cfg, "x\r\nBcc: thief@example.edu", "body")
    [sent] = smtp.messages
    assert sent.rcpt_tos == ["circ-team@example.edu"] and sent.message["Bcc"] is None
    assert sent.subject == "x\\u000d\\u000aBcc: thief@example.edu"
    smtp.messages.clear()

    hostile = "lib\r\nBcc: thief@example.edu\r\n\x1b]0;owned\x07\u202e"
    table = f'''[profile.{json.dumps(hostile)}]
host = "127.0.0.1"
remote_dir = "up"
ledger = "{tmp_path / 'l.sqlite3'}"
[profile.{json.dumps(hostile)}.notify]
email_to = ["circ-team@example.edu"]
email_from = "report-keeper@example.edu"
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
smtp_security = "none"
'''
    config = tmp_path / "c.toml"
    config.write_text(table)
    # The config refuses such a profile name where it is read: no e-mail is sent at all.
    assert main(["notify", "--test", "--config", str(config), "--profile", hostile]) == 3
    assert smtp.messages == []
