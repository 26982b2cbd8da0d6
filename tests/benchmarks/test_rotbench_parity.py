"""RoTBench rule sets: for each way the scorers differ, a concrete input and each script's outcome.

Expected values are what RoTBench's ``Code/Evaluation/evaluate.py`` (``official``), FTRL's
``Code/evaluation/evaluation_rotbench.py`` (``ftrl``) and our own reading (``lenient``) give;
``perf/parity_rotbench.py`` checks the same against the scripts themselves.
"""

import json

import pytest

from ftrl_lab.benchmarks import rotbench as rb

TOOLS = ["search", "lookup", "ask_to_user", "finish"]
GOLD = 'Thought: look it up\nAction: search\nAction Input: {"q": "cats"}'


def _item(answers, tools=TOOLS):
    return {"id": "t", "category": "clean", "scenario": "TG", "tools": list(tools), "answers": list(answers)}


def _react(action, args, thought="Thought: x"):
    return f"{thought}\nAction: {action}\nAction Input: {json.dumps(args)}"


def _scores(item, output):
    return {r: tuple(rb.score_output(item, output, r)[m] for m in rb.METRICS) for r in rb.RULES}


# (case, gold answers, tools, output, {rules: (TS, PI, CF)})
CASES = [
    ("gold", [GOLD], TOOLS, GOLD, {"official": (1, 1, 1), "ftrl": (1, 1, 1), "lenient": (1, 1, 1)}),
    # evaluate.py slices 8 characters after "Action:"; FTRL splits on "Action: " with its space
    (
        "no_space_after_action",
        [GOLD],
        TOOLS,
        GOLD.replace("Action: ", "Action:"),
        {"official": (0, 0, 0), "ftrl": (0, 0, 0), "lenient": (1, 1, 1)},
    ),
    (
        "two_spaces_after_action",
        [GOLD],
        TOOLS,
        GOLD.replace("Action: ", "Action:  "),
        {"official": (0, 0, 0), "ftrl": (1, 1, 1), "lenient": (1, 1, 1)},
    ),
    (
        "space_before_newline",
        [GOLD],
        TOOLS,
        GOLD.replace("search\n", "search \n"),
        {"official": (0, 0, 0), "ftrl": (1, 1, 1), "lenient": (1, 1, 1)},
    ),
    (
        "crlf",
        [GOLD],
        TOOLS,
        GOLD.replace("\n", "\r\n"),
        {"official": (0, 0, 0), "ftrl": (1, 1, 1), "lenient": (1, 1, 1)},
    ),
    # evaluate.py reads the JSON 14 characters after "Action Input:" (one character skipped)
    (
        "no_space_after_input",
        [GOLD],
        TOOLS,
        GOLD.replace("Input: ", "Input:"),
        {"official": (0, 0, 0), "ftrl": (0, 0, 0), "lenient": (1, 1, 1)},
    ),
    (
        "newline_after_input",
        [GOLD],
        TOOLS,
        GOLD.replace("Input: ", "Input:\n"),
        {"official": (1, 1, 1), "ftrl": (0, 0, 0), "lenient": (1, 1, 1)},
    ),
    # an empty input is falsy: evaluate.py skips the item, even when the gold answer is {}
    (
        "empty_input",
        [_react("search", {})],
        TOOLS,
        _react("search", {}),
        {"official": (0, 0, 0), "ftrl": (1, 1, 1), "lenient": (1, 1, 1)},
    ),
    # Python equality: 1 == 1.0 == True for both scripts; JSON text for lenient
    (
        "int_vs_float",
        [_react("search", {"n": 1})],
        TOOLS,
        _react("search", {"n": 1.0}),
        {"official": (1, 1, 1), "ftrl": (1, 1, 1), "lenient": (1, 1, 0)},
    ),
    (
        "int_vs_true",
        [_react("search", {"n": 1})],
        TOOLS,
        _react("search", {"n": True}),
        {"official": (1, 1, 1), "ftrl": (1, 1, 1), "lenient": (1, 1, 0)},
    ),
    # FTRL compares the values as a multiset, not key by key
    (
        "values_swapped",
        [_react("search", {"a": "x", "b": "y"})],
        TOOLS,
        _react("search", {"a": "y", "b": "x"}),
        {"official": (1, 1, 0), "ftrl": (1, 1, 1), "lenient": (1, 1, 0)},
    ),
    # a gold value "None" is a free slot for evaluate.py (and lenient), not for FTRL
    (
        "none_value_free",
        [_react("search", {"q": "x", "k": "None"})],
        TOOLS,
        _react("search", {"q": "x", "k": "5"}),
        {"official": (1, 1, 1), "ftrl": (1, 1, 0), "lenient": (1, 1, 1)},
    ),
    # ... and evaluate.py drops that key from the model's input for the later answers too
    (
        "none_key_dropped_for_later_answers",
        [_react("search", {"q": "x", "k": "None"}), _react("search", {"q": "z", "k": "v"})],
        TOOLS,
        _react("search", {"q": "z", "k": "v"}),
        {"official": (1, 1, 0), "ftrl": (1, 1, 1), "lenient": (1, 1, 1)},
    ),
    # a tool literally named ask_to_user / finish skips the content check anywhere in the list
    (
        "literal_ask_to_user_first",
        [_react("ask_to_user", {"q": "Which?"})],
        ["ask_to_user", "b", "c", "d"],
        _react("ask_to_user", {"q": "other"}),
        {"official": (1, 1, 1), "ftrl": (1, 1, 0), "lenient": (1, 1, 0)},
    ),
    (
        "literal_finish_first",
        [_react("finish", {"a": "Paris"})],
        ["finish", "b", "c", "d"],
        _react("finish", {"a": "Rome"}),
        {"official": (1, 1, 1), "ftrl": (1, 1, 0), "lenient": (1, 1, 0)},
    ),
    # the last two tools (by position) are free for evaluate.py and lenient
    (
        "renamed_last_tool_content",
        [_react("fnish", {"a": "Paris"})],
        ["search", "ask", "fnish"],
        _react("fnish", {"a": "Rome"}),
        {"official": (1, 1, 1), "ftrl": (1, 1, 0), "lenient": (1, 1, 1)},
    ),
    # "finish" written for a renamed last tool selects it (not in FTRL's script)
    (
        "finish_for_renamed_last",
        [_react("fnish", {"a": "Paris"})],
        ["search", "ask", "fnish"],
        _react("finish", {"a": "Rome"}),
        {"official": (1, 1, 1), "ftrl": (0, 0, 0), "lenient": (1, 1, 1)},
    ),
    # a value FTRL cannot count (a list) ends its try block: CF 0, TS and PI kept
    (
        "unhashable_value",
        [_react("search", {"q": ["a", "b"]})],
        TOOLS,
        _react("search", {"q": ["a", "b"]}),
        {"official": (1, 1, 1), "ftrl": (1, 1, 0), "lenient": (1, 1, 1)},
    ),
    (
        "unhashable_stops_later_answers",
        [_react("search", {"q": ["a"]}), _react("search", {"q": "b"})],
        TOOLS,
        _react("search", {"q": "b"}),
        {"official": (1, 1, 1), "ftrl": (1, 1, 0), "lenient": (1, 1, 1)},
    ),
    # where evaluate.py raises, the metric of the raising pass is 0
    ("empty_output", [GOLD], TOOLS, "", {"official": (0, 0, 0), "ftrl": (0, 0, 0), "lenient": (0, 0, 0)}),
    ("none_output", [GOLD], TOOLS, None, {"official": (0, 0, 0), "ftrl": (0, 0, 0), "lenient": (0, 0, 0)}),
    (
        "input_before_action",
        [GOLD],
        TOOLS,
        'Action Input: {"q": "cats"}\nAction: search',
        {"official": (0, 0, 0), "ftrl": (0, 0, 0), "lenient": (0, 0, 0)},
    ),
    (
        "list_input_right_action",
        [GOLD],
        TOOLS,
        "Action: search\nAction Input: [1]",
        {"official": (1, 0, 0), "ftrl": (0, 0, 0), "lenient": (0, 0, 0)},
    ),
    (
        "string_input",
        [GOLD],
        TOOLS,
        'Action: search\nAction Input: "cats"',
        {"official": (0, 0, 0), "ftrl": (0, 0, 0), "lenient": (0, 0, 0)},
    ),
    (
        "trailing_text",
        [GOLD],
        TOOLS,
        GOLD + "\nObservation: none",
        {"official": (0, 0, 0), "ftrl": (0, 0, 0), "lenient": (0, 0, 0)},
    ),
]


@pytest.mark.parametrize(("case", "answers", "tools", "output", "expected"), CASES, ids=[c[0] for c in CASES])
def test_rule_sets_match_their_scripts(case, answers, tools, output, expected):
    got = _scores(_item(answers, tools), output)
    assert got == {r: tuple(float(x) for x in v) for r, v in expected.items()}


def test_official_crashes_are_named():
    it = _item([GOLD])
    assert "IndexError" in rb.score_output(it, "", "official")["error"]
    assert "AttributeError" in rb.score_output(it, None, "official")["error"]
    assert "IndexError" in rb.score_output(it, 'Action Input: {"q": 1}\nAction: search', "official")["error"]
    err = rb.score_output(it, "Action: search\nAction Input: [1]", "official")["error"]
    assert "AttributeError" in err and "PI pass" in err


def test_default_and_names():
    assert rb.DEFAULT_RULES == "ftrl" and set(rb.RULES) == {"official", "ftrl", "lenient"}
    assert rb.score_output(_item([GOLD]), GOLD.replace("Input: ", "Input:\n"))["CF"] == 0  # the default is FTRL's
    with pytest.raises(ValueError, match="unknown RoTBench rules"):
        rb.score_output(_item([GOLD]), GOLD, "rotbench")


@pytest.fixture(scope="module")
def items():
    if not rb.default_dir().exists():
        pytest.skip(f"{rb.default_dir()} not found")
    return rb.load()


def test_official_rejects_its_own_empty_gold_answers(items):
    """The shared First_Turn split: every gold answer scores 1 under ftrl and lenient; under
    official, the 65 gold answers with an empty input ``{}`` score 0 (58 items' first answer)."""
    empty = [(it, a) for it in items for a in it["answers"] if a.rstrip().endswith("Action Input: {}")]
    assert len(empty) == 65
    for it, a in empty:
        s = {r: rb.score_output(it, a, r) for r in rb.RULES}
        assert s["official"]["TS"] == 0 and s["ftrl"]["CF"] == 1 and s["lenient"]["CF"] == 1
    rows = rb.score(items, [{"id": it["id"], "output": it["answers"][0]} for it in items], "official")
    assert all(r["rules"] == "official" for r in rows)
    assert sum(r["CF"] for r in rows) == len(items) - 58
    table = rb.table(rows)
    assert table.attrs["rules"] == "official"
