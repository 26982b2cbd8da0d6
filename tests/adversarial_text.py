"""Hostile model outputs for the parser tests and perf/bench_parsers.py: each builder makes an
input of about ``size`` characters (huge integers, deep nesting, unclosed and repeated tags,
end markers, lone surrogates, odd content parts, many calls)."""

import json

CALL = '<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'


def _repeat(unit: str, size: int, head: str = "", tail: str = "") -> str:
    return head + unit * max(1, (size - len(head) - len(tail)) // len(unit)) + tail


def text_inputs(size: int) -> dict[str, str]:
    """Hostile strings of about ``size`` characters, by name."""
    half = max(1, size // 2)
    return {
        "huge_int": '<tool_call>{"name": "f", "arguments": {"x": ' + "9" * (size - 50) + "}}</tool_call>",
        "huge_int_in_string_args": json.dumps({"name": "f", "arguments": '{"x": ' + "9" * (size - 60) + "}"}),
        "deep_nesting": "<tool_call>" + "[" * half + "]" * half,
        "deep_args": '<tool_call>{"name": "f", "arguments": ' + '{"a": ' * (size // 6) + "1" + "}" * (size // 6),
        "unclosed_tags": _repeat("<tool_call>{", size),
        "repeated_prefix": _repeat("<tool_call>", size),
        "repeated_end_tags": _repeat("</tool_call>", size),
        "many_calls": _repeat(CALL, size),
        "calls_after_text": _repeat("x" + CALL, size, head=CALL),
        "end_markers": _repeat("<|im_end|>", size, head="answer"),
        "end_markers_spaced": _repeat("</s> \n", size, head="answer"),
        "whitespace": _repeat(" \n\t", size, head="a"),
        "python_tags": _repeat("<|python_tag|>", size),
        "python_tag_objects": _repeat('{"name": "f", "parameters": {}};', size, head="<|python_tag|>"),
        "bare_objects": _repeat("{}", size),
        "bare_strings": _repeat('"a" ', size, tail="{"),
        "unclosed_string": '<tool_call>{"name": "' + "a" * (size - 20),
        "lone_surrogates": _repeat("\ud800", size, head='<tool_call>{"name": "f", "arguments": {"x": "', tail='"}}'),
        "surrogate_escapes": _repeat("\\ud800", size, head='<tool_call>{"name": "f", "arguments": {"x": "', tail='"}}'),
        "nul_and_controls": _repeat("\x00\x1b[31m\r", size, head=CALL),
        "react_actions": _repeat("Action: f\n", size, tail="Action Input: {"),
        "python_calls": _repeat("f(a=1),", min(size, 60_000), head="[", tail="]"),
        "binop_chain": _repeat("1+", size, head="f(x=", tail="1)"),
    }


def message_inputs(size: int) -> dict[str, dict]:
    """Hostile OpenAI-style messages of about ``size`` characters, by name."""
    n_calls = max(1, size // 60)
    return {
        "content_parts_odd": {"content": [{"text": None}, {"text": 3}, 5, None, {"type": "image"}, {"text": "ok"}]},
        "content_parts_many": {"content": [{"type": "text", "text": "ab"}] * (size // 30)},
        "content_an_int": {"content": 12345, "tool_calls": "not a list"},
        "many_calls_without_ids": {
            "content": "x" * (size // 2),
            "tool_calls": [{"function": {"name": "f", "arguments": '{"x": 1}'}}] * n_calls,
        },
        "huge_int_arguments": {"tool_calls": [{"function": {"name": "f", "arguments": '{"x": ' + "9" * size + "}"}}]},
        "deep_arguments": {
            "tool_calls": [{"function": {"name": "f", "arguments": "[" * (size // 2) + "]" * (size // 2)}}]
        },
        "surrogate_arguments": {"tool_calls": [{"function": {"name": "f", "arguments": '{"x": "\\ud800"}'}}]},
        "surrogate_name": {"tool_calls": [{"function": {"name": "f\ud800", "arguments": "{}"}}]},
        "odd_calls": {"tool_calls": [None, 3, "x", {"function": None}, {"function": {"name": 5}}, {"id": 7}]},
        "odd_arguments": {"tool_calls": [{"function": {"name": "f", "arguments": a}} for a in (3, [1], None, True)]},
    }


def deep_object(depth: int) -> dict:
    """A dict nested ``depth`` levels (built without recursion)."""
    obj: dict = {}
    for _ in range(depth):
        obj = {"a": obj}
    return obj


def circular_message() -> dict:
    message: dict = {"content": "hi", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]}
    message["self"] = message
    return message
