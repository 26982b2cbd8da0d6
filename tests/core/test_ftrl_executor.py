"""FTRL's in-process executor, re-implemented: its exact feedback strings."""

import json

import pytest

from ftrl_lab.core.ftrl_executor import inprocess_feedback, inprocess_messages

CODES = {
    "info": "def info(name):\n    return {'name': name, 'ville': 'Zürich'}\n",
    "count": "def count(n):\n    return n + 1\n",
    "slow": "import time\ndef slow():\n    time.sleep(5)\n",
    "leave": "import sys\ndef leave():\n    sys.exit(1)\n",
    "boom": "def boom():\n    raise RuntimeError('boom')\n",
}


def call(name, args, i=0):
    return {
        "id": f"c{i}",
        "type": "function",
        "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)},
    }


def test_results_and_errors():
    got = inprocess_feedback(
        CODES,
        [
            call("info", {"name": "x"}),
            call("count", {"n": 1}),
            call("boom", {}),
            call("missing", {}),
            call("count", "{oops"),
            call("count", "[1]"),
        ],
    )
    assert got == [
        '{"name": "x", "ville": "Zürich"}',
        "2",
        "an error occured when call boom: boom",
        "an error occured when call missing: 'missing'",
        "an error occured when call count: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        "an error occured when call count: count() argument after ** must be a mapping, not list",
    ]


def test_timeout_text_is_func_timeouts_and_quotes_the_source():
    got = inprocess_feedback(CODES, [call("slow", {})], timeout=0.2)[0]
    assert got.startswith("an error occured when call slow: Function call_function (args=('slow', {}, ")
    assert "time.sleep(5)" in got and got.endswith("timed out after 0.200000 seconds.\n")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_system_exit_gives_none_like_ftrl():  # the thread dies of SystemExit; FTRL gets None
    assert inprocess_feedback(CODES, [call("leave", {})]) == [None]


def test_messages():
    assert inprocess_messages(CODES, [call("count", {"n": 2}, 5)]) == [
        {"role": "tool", "content": "3", "tool_call_id": "c5"}
    ]
