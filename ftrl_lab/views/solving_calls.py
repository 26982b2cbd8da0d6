"""Find tool calls that solve a record's gold answers, for the reward explorer's examples.

FTRL's test records carry no gold arguments, so a call that earns a positive reward has to be
found. :func:`find_solving_calls` runs, per gold tool, a bounded set of candidate calls (one
executor batch per tool): the schema's example arguments with one parameter replaced by a
candidate value. Candidates, in order: the constants in the tool's own code (FTRL's tools
compare their arguments with literals), the schema's enum values, and word spans of the
question. A call counts only when its output contains a still-unsolved gold answer of that tool
*and* none of its argument values contains that answer (no echo).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

from ftrl_lab.core.executor import ToolExecutor, sandbox_executor
from ftrl_lab.core.records import EnvRecord, docstring_ids
from ftrl_lab.core.reward import answer_verify, normalise
from ftrl_lab.core.schema_args import example_arguments

MAX_SPAN_WORDS = 12


def code_constants(code: str) -> list[Any]:
    """String, int, float and bool literals of a tool's code, in order of appearance, deduplicated
    (docstrings and strings over 200 characters left out). Code that does not parse gives []."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    docstrings = docstring_ids(tree)
    seen, out = set(), []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in docstrings or node.value is None:
            continue
        value = node.value
        if isinstance(value, str) and not 0 < len(value) <= 200:
            continue
        key = (type(value).__name__, value)
        if key not in seen:
            seen.add(key)
            out.append(value)
    return out


def question_spans(question: str, max_words: int = MAX_SPAN_WORDS) -> list[str]:
    """Contiguous word spans of the question (punctuation stripped), longest first."""
    words = re.findall(r"[\w'’.-]+", question)
    words = [w.strip(".") for w in words if w.strip(".")]
    spans = []
    for n in range(min(max_words, len(words)), 0, -1):
        spans += [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    return list(dict.fromkeys(spans))


def _fits(value: Any, schema: dict) -> bool:
    kind = schema.get("type")
    if isinstance(kind, list):
        return any(_fits(value, {**schema, "type": k}) for k in kind)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return False


def candidate_calls(record: EnvRecord, tool: str, limit: int = 400) -> Iterator[dict]:
    """Argument dicts to try for one tool: the example arguments, then one parameter at a time
    replaced by each candidate value (required parameters first)."""
    fn = next(t["function"] for t in record.tools if t["function"]["name"] == tool)
    params = fn.get("parameters") or {}
    base = example_arguments(params)
    props = params.get("properties", {})
    required = [p for p in params.get("required", []) if p in props]
    order = required + [p for p in props if p not in required]
    constants = code_constants(record.codes.get(tool, ""))
    spans = question_spans(record.question)
    seen: set[str] = set()
    count = 0
    for name in [None, *order]:
        schema = props.get(name, {})
        values = [None] if name is None else [*constants, *schema.get("enum", []), *spans]
        for value in values:
            if name is not None and not _fits(value, schema):
                continue
            args = dict(base) if name is None else {**base, name: value}
            key = json.dumps(args, sort_keys=True, ensure_ascii=False, default=str)
            if key in seen:
                continue
            seen.add(key)
            yield args
            count += 1
            if count >= limit:
                return


def _echoes(arguments: dict, answer: str) -> bool:
    text = normalise(json.dumps(arguments, ensure_ascii=False, default=str))
    return all(normalise(part) in text for part in answer.split(", "))


def find_solving_calls(
    record: EnvRecord, executor: ToolExecutor | None = None, limit_per_tool: int = 400
) -> list[dict]:
    """One OpenAI-style tool call per gold answer that a candidate call solves without echoing it
    (at most one call per answer); [] when none is found within ``limit_per_tool`` tries per tool."""
    executor = executor or sandbox_executor()
    found: list[dict] = []
    for tool, answers in record.unsolved_set.items():
        if tool not in record.codes or not answers:
            continue
        argsets = list(candidate_calls(record, tool, limit_per_tool))
        calls = [
            {"type": "function", "function": {"name": tool, "arguments": json.dumps(a, ensure_ascii=False)}}
            for a in argsets
        ]
        outputs = executor([(record.codes, calls)])[0]
        remaining = list(answers)
        for args, call, out in zip(argsets, calls, outputs):
            hit = next((a for a in remaining if answer_verify(out, a) and not _echoes(args, a)), None)
            if hit is not None:
                remaining.remove(hit)
                found.append(call)
            if not remaining:
                break
    return found
