"""``--json`` before the subcommand (``report-keeper --json check``), and its abbreviations.

A cron line or a monitoring system may put the option first; it asked for the document and
must get exactly one, never the human text. ``--json`` is accepted in either position by
every command that has it, abbreviated as argparse abbreviates any long option (``--js``),
and a usage error recognises it the same way. A command without a JSON document (``init``,
the TUI) refuses it in either position alike.
"""

from __future__ import annotations

import json

import pytest

from tests.test_json_errors import COMMANDS, argv, error_line, one_document, place, rk, run  # noqa: F401 - place is a fixture

FIRST = ["--json", "--js", "--j"]


@pytest.mark.parametrize("flag", FIRST)
@pytest.mark.parametrize("command", COMMANDS)
def test_json_first_with_a_missing_config_prints_one_config_document(capsys, place, command, flag):
    code, out, err = run(capsys, [flag, *argv(command, place, "--config", str(place["missing"]), json_flag=False)])
    assert code == 3, err
    doc = one_document(out, command)
    assert doc["error_kind"] == "config" and "does not exist" in doc["error"]


@pytest.mark.parametrize("flag", FIRST)
@pytest.mark.parametrize("command", COMMANDS)
def test_json_first_with_an_unknown_option_prints_one_usage_document(capsys, place, command, flag):
    code, out, err = run(capsys, [flag, *argv(command, place, "--bogus", json_flag=False)])
    assert code == 3, err
    doc = one_document(out, command)
    assert doc["error_kind"] == "usage" and "--bogus" in doc["error"]


@pytest.mark.parametrize("flag", ["--js", "--jso", "--json=yes"])
@pytest.mark.parametrize("command", ["sync", "check", "verify"])
def test_an_abbreviated_json_after_the_command_with_a_usage_error_prints_one_document(capsys, place,
                                                                                    command, flag):
    code, out, err = run(capsys, [*argv(command, place, flag, "--bogus", json_flag=False)])
    assert code == 3, err
    assert one_document(out, command)["error_kind"] == "usage"


@pytest.mark.parametrize("command", ["sync", "check"])
def test_json_first_with_all_profiles_and_an_error_prints_the_profiles_document(capsys, place, command):
    code, out, _ = run(capsys, ["--json", command, "--all-profiles", "--bogus"])
    assert code == 3
    one_document(out, command, all_profiles=True)
    code, out, _ = run(capsys, ["--js", command, "--all", "--config", str(place["missing"])])
    assert code == 3
    one_document(out, command, all_profiles=True)


def test_json_first_gives_the_real_document(capsys, place):
    """The very document the option after the command gives, in either position or both."""
    words = ["verify", str(place["folder"])]
    code, after, err = run(capsys, [*words, "--json"])
    first = json.loads(after)
    assert first["files"][0]["name"] == "Loans_20260609_070000.xlsx", err
    for line in (["--json", *words], ["--js", *words], ["--json", *words, "--json"]):
        again, out, err = run(capsys, line)
        assert (again, json.loads(out)) == (code, first), err


@pytest.mark.parametrize("words", [["--json", "init"], ["--json"], ["--js", "schedule"]])
def test_json_first_for_what_has_no_document_is_a_usage_error_as_after_it(capsys, words):
    code, out, err = run(capsys, words)
    assert code == 3 and out == "", out
    assert "--json" in error_line(err)


def test_as_a_process_json_first_prints_one_document(place):
    done = rk("--json", "check", "--offline", "--config", str(place["missing"]))
    assert done.returncode == 3, done.stderr
    assert one_document(done.stdout, "check")["error_kind"] == "config"
    done = rk("--js", "sync", "--bogus")
    assert done.returncode == 3, done.stderr
    assert one_document(done.stdout, "sync")["error_kind"] == "usage"
    assert "Traceback" not in done.stderr
