import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftrl_lab.core.parsing import (
    ParsedResponse,
    parse_llama31,
    parse_openai_message,
    parse_qwen,
    parse_response,
    render_qwen_calls,
)


def call(name, args):
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': args})}\n</tool_call>"


def names_args(parsed: ParsedResponse):
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed.tool_calls]


def test_qwen_several_calls_with_content():
    text = "Let me look.\n" + call("a", {"x": 1}) + "\n" + call("b", {"y": "z"}) + "<|im_end|>"
    p = parse_qwen(text)
    assert p.content == "Let me look." and not p.malformed
    assert names_args(p) == [("a", {"x": 1}), ("b", {"y": "z"})]
    assert p.tool_calls[0]["type"] == "function" and p.tool_calls[0]["id"] != p.tool_calls[1]["id"]
    assert p.to_message()["tool_calls"] == p.tool_calls


def test_qwen_string_arguments_and_unclosed_last_call():
    text = '<tool_call>{"name": "a", "arguments": "{\\"x\\": 2}"}</tool_call><tool_call>{"name": "b", "arguments": {}}'
    assert names_args(parse_qwen(text)) == [("a", {"x": 2}), ("b", {})]


def test_qwen_plain_answer():
    p = parse_qwen("The answer is 42.")
    assert p == ParsedResponse(content="The answer is 42.") and "tool_calls" not in p.to_message()


def test_qwen_malformed_keeps_good_calls():
    p = parse_qwen(call("a", {}) + "<tool_call>{bad json</tool_call>")
    assert names_args(p) == [("a", {})] and p.malformed and p.errors


def test_qwen_all_malformed_content_is_whole_text():
    for text in [
        "<tool_call>{bad</tool_call>",
        '<tool_call>{"arguments": {}}</tool_call>',
        '<tool_call>["a"]</tool_call>',
        '<tool_call>{"name": "a", "arguments": "[1"}</tool_call>',
        '<tool_call>{"name": "a"}</tool_call>',
        "oops </tool_call>",
    ]:
        p = parse_qwen(text)
        assert p.tool_calls == [] and p.malformed and p.content == text.strip(), text


def test_qwen_call_after_stray_text_is_ignored_like_ftrl():
    p = parse_qwen(call("a", {}) + " and also " + call("b", {}))
    assert names_args(p) == [("a", {})] and p.malformed


def test_deterministic_ids():
    text = call("a", {"x": 1})
    assert parse_qwen(text).tool_calls == parse_qwen(text).tool_calls


def test_llama31_python_tag_and_bare_json():
    p = parse_llama31('Sure.<|python_tag|>{"name": "f", "parameters": {"q": "x"}}<|eom_id|>')
    assert p.content == "Sure." and names_args(p) == [("f", {"q": "x"})] and not p.malformed
    p = parse_llama31('{"name": "f", "parameters": {"q": 1}}; {"name": "g", "parameters": {}}')
    assert names_args(p) == [("f", {"q": 1}), ("g", {})]
    assert parse_llama31('{"answer": 3}').tool_calls == []
    assert parse_llama31("<|python_tag|>not json").malformed


def test_openai_message():
    msg = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}},
            {"id": "c2", "type": "function", "function": {"name": "g", "arguments": {"b": 2}}},
            {"id": "c3", "type": "function", "function": {"name": "h", "arguments": "{oops"}},
        ],
    }
    p = parse_openai_message(msg)
    assert names_args(p) == [("f", {"a": 1}), ("g", {"b": 2})] and p.malformed and p.content == ""
    assert [c["id"] for c in p.tool_calls] == ["c1", "c2"]


def test_parse_response_dispatch():
    assert names_args(parse_response(call("a", {}))) == [("a", {})]
    convo = [{"role": "assistant", "content": call("a", {"k": 1})}]
    assert names_args(parse_response(convo)) == [("a", {"k": 1})]
    assert parse_response({"content": "hi"}).content == "hi"


def test_render_round_trip():
    calls = parse_qwen(call("a", {"x": [1, 2]}) + call("b", {"s": "é"})).tool_calls
    assert names_args(parse_qwen(render_qwen_calls(calls, "c"))) == [("a", {"x": [1, 2]}), ("b", {"s": "é"})]


# --- properties -----------------------------------------------------------------------------
TAGS = [
    "<tool_call>",
    "</tool_call>",
    "<|python_tag|>",
    "<|im_end|>",
    "{",
    "}",
    '"name"',
    '"arguments"',
    '"parameters"',
    ":",
    ",",
    "[",
    "]",
    '"',
    "\\",
    "\n",
    ";",
]
texts = st.lists(st.one_of(st.sampled_from(TAGS), st.text(max_size=12)), max_size=25).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=8,
)
any_input = st.one_of(
    texts, json_values, st.lists(st.dictionaries(st.sampled_from(["role", "content", "tool_calls"]), json_values))
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_input, st.sampled_from(["qwen", "llama31", "openai"]))
def test_parsers_never_raise(x, fmt):
    for p in (parse_response(x, fmt), parse_qwen(x), parse_llama31(x), parse_openai_message(x)):
        assert isinstance(p, ParsedResponse) and isinstance(p.content, str) and isinstance(p.malformed, bool)
        for c in p.tool_calls:
            assert isinstance(json.loads(c["function"]["arguments"]), dict) and c["function"]["name"]


names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10)
args = st.dictionaries(names, json_values, max_size=4)


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.tuples(names, args), min_size=1, max_size=4),
    st.text(max_size=20).filter(lambda s: "<tool_call>" not in s and "</tool_call>" not in s),
)
def test_rendered_calls_parse_back(calls, content):
    rendered = render_qwen_calls([{"function": {"name": n, "arguments": a}} for n, a in calls], content)
    p = parse_qwen(rendered)
    assert names_args(p) == [(n, a) for n, a in calls] and not p.malformed
