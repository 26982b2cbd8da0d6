"""run_cli: a user error is one line on stderr and status 2; --debug and bugs keep the traceback."""

import pytest

from ftrl_lab.core.cli import UserError, run_cli
from ftrl_lab.core.records import RecordError


def raising(error):
    def main(argv):
        raise error

    return main


@pytest.mark.parametrize(
    "error, text",
    [
        (RecordError("expected list", source="a.jsonl", line=3, field="tools"), "a.jsonl:3: field 'tools'"),
        (FileNotFoundError(2, "No such file or directory", "b.jsonl"), "b.jsonl: No such file"),
        (UserError("bad\nname"), "bad\\nname"),
        (ValueError("x" * 5000), " ... "),
        (SystemExit("give both --a and --b"), "give both"),
    ],
)
def test_user_errors_are_one_line_and_status_2(error, text, capsys):
    assert run_cli(raising(error), []) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and text in err and len(err) < 800


def test_debug_flag_lets_the_error_through_and_is_not_passed_on():
    seen = []
    assert run_cli(lambda argv: seen.append(argv) or 0, ["--x", "--debug"]) == 0 and seen == [["--x"]]
    with pytest.raises(RecordError):
        run_cli(raising(RecordError("bad")), ["--debug"])


def test_bugs_and_exit_codes_are_left_alone():
    with pytest.raises(KeyError):
        run_cli(raising(KeyError("k")), [])
    with pytest.raises(SystemExit):
        run_cli(raising(SystemExit(3)), [])
    assert run_cli(lambda argv: 1, []) == 1
