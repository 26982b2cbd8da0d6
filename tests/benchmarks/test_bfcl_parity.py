"""BFCL rule sets: for each way our decoding differed from BFCL's handlers, a concrete output and
what BFCL's decoder (``official``) and ours (``lenient``) give. ``FAIL`` = the decode fails.
``perf/parity_bfcl.py`` checks the same against BFCL's code on perturbed outputs of its data."""

import json

import pytest

from ftrl_lab.benchmarks import bfcl, bfcl_decode

FAIL = "FAIL"


def _decode(text, fmt, rules):
    try:
        return bfcl_decode.decode_output(text, fmt, rules)
    except bfcl_decode.DecodeError:
        return FAIL


def _qwen(*bodies):
    return "\n".join(f"<tool_call>\n{b}\n</tool_call>" for b in bodies)


CALL = json.dumps({"name": "f", "arguments": {"a": 1}})
CALL_G = json.dumps({"name": "g", "arguments": {"b": "x"}})

# (case, format, output, official, lenient)
CASES = [
    ("py_gold", "python", "[f(a=1, b='x')]", [{"f": {"a": 1, "b": "x"}}], [{"f": {"a": 1, "b": "x"}}]),
    ("py_fence_label", "python", "```python\n[f(a=1)]\n```", FAIL, [{"f": {"a": 1}}]),
    ("py_fence", "python", "```\n[f(a=1)]\n```", [{"f": {"a": 1}}], [{"f": {"a": 1}}]),
    ("py_bare_python_prefix", "python", "python\n[f(a=1)]", FAIL, [{"f": {"a": 1}}]),
    ("py_single_quoted", "python", "'[f(a=1)]'", FAIL, [{"f": {"a": 1}}]),
    ("py_unary_plus", "python", "f(a=+10)", [{"f": {"a": -10}}], [{"f": {"a": 10}}]),
    ("py_double_minus", "python", "f(a=-(-10))", FAIL, [{"f": {"a": 10}}]),
    ("py_not", "python", "f(a=not True)", [{"f": {"a": -1}}], [{"f": {"a": "not True"}}]),
    ("py_set_value", "python", "f(a={1, 2})", FAIL, [{"f": {"a": [1, 2]}}]),
    ("py_star_kwargs", "python", "f(**{})", [{"f": {None: {}}}], [{"f": {}}]),
    ("py_string_concat", "python", "f(a='x' + '**2')", [{"f": {"a": "x**2"}}], [{"f": {"a": "'x' + '**2'"}}]),
    ("py_string_repeat", "python", "f(a='ab' * 2)", [{"f": {"a": "abab"}}], [{"f": {"a": "'ab' * 2"}}]),
    ("py_arithmetic", "python", "f(a=2 * 3)", [{"f": {"a": 6}}], [{"f": {"a": 6}}]),
    ("py_name_in_operation", "python", "f(a=x + 1)", FAIL, [{"f": {"a": "x + 1"}}]),
    ("py_builtin_in_operation", "python", "f(a=str(5) + 'x')", [{"f": {"a": "5x"}}], [{"f": {"a": "str(5) + 'x'"}}]),
    ("py_bool_arithmetic", "python", "f(a=True + 1)", [{"f": {"a": 2}}], [{"f": {"a": "True + 1"}}]),
    ("py_zero_division", "python", "f(a=1 / 0)", FAIL, [{"f": {"a": "1 / 0"}}]),
    ("py_attribute", "python", "f(a=math.pi)", FAIL, [{"f": {"a": "math.pi"}}]),
    ("py_lambda", "python", "f(a=lambda: 1)", FAIL, [{"f": {"a": "lambda: 1"}}]),
    ("py_subscript", "python", "f(a=x[0])", [{"f": {"a": "x[0]"}}], [{"f": {"a": "x[0]"}}]),
    ("py_call_value", "python", "f(a=g(1))", [{"f": {"a": "g(1)"}}], [{"f": {"a": "g(1)"}}]),
    ("py_method_on_call", "python", "g().f(a=1)", [{"f": {"a": 1}}], FAIL),
    ("py_tuple_of_calls", "python", "(f(a=1), g(b=2))", FAIL, FAIL),
    ("py_set_of_calls", "python", "{f(a=1)}", FAIL, FAIL),  # wrapped in [...]: a list holding a set
    ("py_empty", "python", "", [], []),
    ("py_prose", "python", "I cannot help.", FAIL, FAIL),
    (
        "qw_gold",
        "qwen",
        _qwen(CALL, CALL_G),
        [{"f": {"a": 1}}, {"g": {"b": "x"}}],
        [{"f": {"a": 1}}, {"g": {"b": "x"}}],
    ),
    ("qw_no_newlines", "qwen", f"<tool_call>{CALL}</tool_call>", [], [{"f": {"a": 1}}]),
    ("qw_crlf", "qwen", f"<tool_call>\r\n{CALL}\r\n</tool_call>", [], [{"f": {"a": 1}}]),
    ("qw_parameters_key", "qwen", _qwen(json.dumps({"name": "f", "parameters": {"a": 1}})), FAIL, [{"f": {"a": 1}}]),
    ("qw_arguments_string", "qwen", _qwen(json.dumps({"name": "f", "arguments": '{"a": 1}'})), FAIL, [{"f": {"a": 1}}]),
    ("qw_arguments_null", "qwen", _qwen(json.dumps({"name": "f", "arguments": None})), FAIL, FAIL),
    (
        "qw_missing_last_close",
        "qwen",
        _qwen(CALL) + "\n" + f"<tool_call>\n{CALL_G}",
        [{"f": {"a": 1}}],
        [{"f": {"a": 1}}, {"g": {"b": "x"}}],
    ),
    (
        "qw_text_between",
        "qwen",
        f"<tool_call>\n{CALL}\n</tool_call>\nthen\n<tool_call>\n{CALL_G}\n</tool_call>",
        [{"f": {"a": 1}}, {"g": {"b": "x"}}],
        [{"f": {"a": 1}}],
    ),
    ("qw_bad_json_skipped", "qwen", _qwen("{bad", CALL), [{"f": {"a": 1}}], [{"f": {"a": 1}}]),
    ("qw_array_body", "qwen", _qwen(f"[{CALL}]"), FAIL, FAIL),
    ("qw_name_int", "qwen", _qwen(json.dumps({"name": 7, "arguments": {}})), [{7: {}}], FAIL),
    ("qw_no_call", "qwen", "The answer is 4.", [], FAIL),
    ("qw_plain_python", "qwen", "[f(a=1)]", [], FAIL),
    (
        "oa_calls",
        "openai",
        {"content": "", "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}]},
        [{"f": {"a": 1}}],
        [{"f": {"a": 1}}],
    ),
    (
        "oa_null_arguments",
        "openai",
        {"content": "", "tool_calls": [{"function": {"name": "f", "arguments": "null"}}]},
        [{"f": None}],
        FAIL,
    ),
    ("oa_no_calls_empty", "openai", {"content": ""}, [], FAIL),
    ("oa_no_calls_text", "openai", {"content": "hi"}, FAIL, FAIL),
]


@pytest.mark.parametrize(("case", "fmt", "output", "official", "lenient"), CASES, ids=[c[0] for c in CASES])
def test_decoders_match(case, fmt, output, official, lenient):
    assert _decode(output, fmt, "official") == official
    assert _decode(output, fmt, "lenient") == lenient


DOC = {
    "name": "f",
    "parameters": {"type": "dict", "required": ["a"], "properties": {"a": {"type": "integer"}}},
}
ITEM = {"id": "s", "category": "simple", "functions": [DOC], "ground_truth": [{"f": {"a": [10]}}]}
IRR = {"id": "i", "category": "irrelevance", "functions": [DOC], "ground_truth": None}


@pytest.mark.parametrize(
    ("output", "fmt", "official", "lenient"),
    [
        ("[f(a=10)]", "python", True, True),
        ("f(a=+10)", "python", False, True),  # BFCL decodes +10 as -10
        ("f(a=-(-10))", "python", False, True),
        ("```python\nf(a=10)\n```", "python", False, True),
        ("f(a=10, **{})", "python", False, True),  # the parameter None is unexpected
        ("f(a=5 + 5)", "python", True, True),
        ("f(a=2 * 5)", "python", True, True),
        (f"<tool_call>{json.dumps({'name': 'f', 'arguments': {'a': 10}})}</tool_call>", "qwen", False, True),
        (_qwen(json.dumps({"name": "f", "arguments": '{"a": 10}'})), "qwen", False, True),
        ("<think>\nmaybe\n</think>\n\n" + _qwen(json.dumps({"name": "f", "arguments": {"a": 10}})), "qwen", True, True),
    ],
)
def test_item_verdicts(output, fmt, official, lenient):
    assert bfcl.score_output(ITEM, output, fmt, rules="official").valid is official
    assert bfcl.score_output(ITEM, output, fmt, rules="lenient").valid is lenient


def test_relevance_and_reasoning():
    think_call = "<think>\n" + _qwen(CALL) + "\n</think>\nNo function fits."
    assert bfcl.score_output(IRR, think_call, "qwen", rules="official").valid  # only the text after </think>
    assert not bfcl.score_output(IRR, think_call, "qwen", rules="lenient").valid
    unclosed = f"<tool_call>{CALL}</tool_call>"
    assert bfcl.score_output(IRR, unclosed, "qwen", rules="official").valid  # no call decoded
    assert not bfcl.score_output(IRR, unclosed, "qwen", rules="lenient").valid
    assert bfcl_decode.bfcl_response("a</think>\n\nb</think>\nc") == "c"


def test_rules_names_and_rows():
    assert bfcl.DEFAULT_RULES == "official" and bfcl.RULES == ("official", "lenient")
    rows = bfcl.score([ITEM], [{"id": "s", "output": "[f(a=10)]", "format": "python"}])
    assert rows[0]["rules"] == "official" and rows[0]["correct"] == 1.0
    rows = bfcl.score([ITEM], [{"id": "s", "output": "f(a=+10)", "format": "python"}], rules="lenient")
    assert rows[0]["rules"] == "lenient" and rows[0]["correct"] == 1.0
    assert bfcl.table(rows).attrs["rules"] == "lenient"
    with pytest.raises(ValueError, match="unknown BFCL rules"):
        bfcl.score([ITEM], [], rules="bfcl")


def test_huge_expressions_are_refused_not_built():
    assert _decode("f(a=2 ** 100000000)", "python", "official") == FAIL
    assert _decode("f(a='x' * 10**9)", "python", "official") == FAIL
    assert _decode("f(a=2 ** 10)", "python", "official") == [{"f": {"a": 1024}}]
