"""FTRL's in-process executor, re-implemented: its exact feedback strings."""

import json

import pytest

from ftrl_lab.core.ftrl_executor import exec_tool, ftrl_module_globals, inprocess_feedback, inprocess_messages

CODES = {
    "info": "def info(name):\n    return {'name': name, 'ville': 'Zürich'}\n",
    "count": "def count(n):\n    return n + 1\n",
    "slow": "def slow():\n    import time\n    time.sleep(5)\n",
    "leave": "def leave():\n    import sys\n    sys.exit(1)\n",
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
        # the tool's function belongs to FTRL's module utils.utils, and the message says so
        "an error occured when call count: utils.utils.count() argument after ** must be a mapping, not list",
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


# --- namespace semantics: FTRL's exec inside the calling function vs a fresh namespace -------
MODULE_LEVEL = {
    "pattern": "import re\ndef pattern(text):\n    return re.findall('[0-9]+', text)\n",
    "stamp": "from datetime import datetime\ndef stamp():\n    return datetime(2020, 1, 2).year\n",
    "helper": "def _twice(x):\n    return 2 * x\ndef helper(x):\n    return _twice(x)\n",
    "const": "LIMIT = 3\ndef const():\n    return LIMIT\n",
    "uses_json": "def uses_json(x):\n    return json.dumps([x])\n",  # json: a name of FTRL's module
    "who": "def who():\n    return __name__\n",
}


@pytest.mark.parametrize(
    "name, args, ftrl, fresh",
    [
        ("pattern", {"text": "a1b22"}, "an error occured when call pattern: name 're' is not defined", '["1", "22"]'),
        ("stamp", {}, "an error occured when call stamp: name 'datetime' is not defined", "2020"),
        ("helper", {"x": 2}, "an error occured when call helper: name '_twice' is not defined", "4"),
        ("const", {}, "an error occured when call const: name 'LIMIT' is not defined", "3"),
        ("uses_json", {"x": 1}, "[1]", "an error occured when call uses_json: name 'json' is not defined"),
        ("who", {}, "utils.utils", "builtins"),  # the module a tool's function belongs to
    ],
)
def test_exec_modes_differ_on_module_level_names(name, args, ftrl, fresh):
    assert inprocess_feedback(MODULE_LEVEL, [call(name, args)]) == [ftrl]  # "ftrl" is the default
    assert inprocess_feedback(MODULE_LEVEL, [call(name, args)], mode="fresh") == [fresh]


def test_exec_tool_is_the_pure_core_and_rejects_unknown_modes():
    src = MODULE_LEVEL["const"]
    assert exec_tool(src, "const", {}, "fresh") == "3"
    assert exec_tool(compile(src, "<string>", "exec"), "const", {}, "fresh") == "3"  # code objects too
    with pytest.raises(NameError, match="LIMIT"):
        exec_tool(src, "const", {}, "ftrl")
    with pytest.raises(ValueError, match="exec mode"):
        exec_tool(src, "const", {}, "isolated")
    with pytest.raises(ValueError, match="exec mode"):
        inprocess_feedback(MODULE_LEVEL, [], mode="isolated")


def test_ftrl_mode_name_is_evaluated_after_the_tool_code_and_globals_can_persist():
    # FTRL eval()s the name: a source that does not define its tool still fails by NameError
    assert inprocess_feedback({"ghost": "x = 1\n"}, [call("ghost", {})]) == [
        "an error occured when call ghost: name 'ghost' is not defined"
    ]
    shared = ftrl_module_globals()
    counter = "def counter():\n    global N\n    N = N + 1 if 'N' in globals() else 1\n    return N\n"
    assert [exec_tool(counter, "counter", {}, "ftrl", shared) for _ in range(2)] == ["1", "2"]
    assert exec_tool(counter, "counter", {}, "ftrl") == "1"  # a new module per call by default
