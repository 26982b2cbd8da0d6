"""ToolHop gold plans: one call per step that makes the step's tool return the step's answer.

A record may give its gold calls (``gold_calls``) in any of these forms, alone or in a list:
OpenAI tool calls (``{"function": {"name", "arguments"}}``, arguments as a dict or JSON text),
``{"name", "arguments" | "parameters"}`` dicts, JSON text of those, or Python call text
(``f(a=1, b="x")``, several on separate lines or in a list literal; positional arguments are
named from the tool's ``def``). :func:`parse_gold_calls` turns all of them into OpenAI calls.

ToolHop itself ships no gold calls, so :func:`derive_gold_calls` finds them: it runs candidate
calls in the sandbox, built from the hard-coded branches of each function (``if name == 'X'``),
its example calls, the chain of sub-answers and the schema (union types included: a ``type``
list, ``"string|integer"``, ``anyOf`` / ``oneOf``), and keeps the first call whose output
contains the step's answer. :func:`gold_plan` gives every record a plan or a stated reason;
:func:`plan_table` lists them. :class:`OraclePolicy` replays the plans.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from ftrl_lab.core.executor import ToolExecutor, run_calls
from ftrl_lab.core.parsing import make_tool_call, render_qwen_calls
from ftrl_lab.core.records import docstring_ids
from ftrl_lab.core.reward import answer_verify


class GoldCallError(RuntimeError):
    """No candidate call reproduces a step's answer."""


class GoldCallFormatError(ValueError):
    """A given gold call is in none of the accepted forms (see the module docstring)."""


def mentions(text: str, answer: str) -> bool:
    """``answer`` occurs in ``text`` as a whole token (case-insensitive)."""
    answer = answer.strip()
    return bool(answer) and re.search(r"(?<!\w)" + re.escape(answer) + r"(?!\w)", text, re.IGNORECASE) is not None


# --- gold calls given in a record ----------------------------------------------------------------
def parse_gold_calls(value: Any, positional: Mapping[str, Sequence[str]] | None = None) -> list[dict]:
    """Gold calls in any accepted form as OpenAI tool calls (ids ``gold_0``, ``gold_1``, ...).

    ``positional``: tool name -> its parameter names in order, to name positional arguments
    of Python call text. Raises :class:`GoldCallFormatError` naming the entry at fault."""
    entries = value if isinstance(value, list) else [value]
    calls: list[dict] = []
    for k, entry in enumerate(entries):
        try:
            calls += _entry_calls(entry, positional or {})
        except GoldCallFormatError as e:
            where = f"entry {k}: " if isinstance(value, list) else ""
            raise GoldCallFormatError(f"{where}{e}") from None
    return [make_tool_call(c["function"]["name"], c["function"]["arguments"], f"gold_{k}") for k, c in enumerate(calls)]


def _entry_calls(entry: Any, positional: Mapping[str, Sequence[str]]) -> list[dict]:
    if isinstance(entry, str):
        return _text_calls(entry, positional)
    if isinstance(entry, list):
        return [c for sub in entry for c in _entry_calls(sub, positional)]
    if not isinstance(entry, dict):
        raise GoldCallFormatError(f"a gold call is a dict or text, not {type(entry).__name__}")
    fn = entry.get("function", entry)
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
        raise GoldCallFormatError(f"no function name in {json.dumps(entry)[:120]}")
    args = fn.get("arguments", fn.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError as e:
            raise GoldCallFormatError(f"arguments of {fn['name']!r} are not JSON ({e.msg})") from None
    if not isinstance(args, dict):
        raise GoldCallFormatError(f"arguments of {fn['name']!r} are a {type(args).__name__}, not an object")
    return [make_tool_call(fn["name"], args, "gold")]


def _text_calls(text: str, positional: Mapping[str, Sequence[str]]) -> list[dict]:
    """JSON text of a call (or a list of calls), else Python call text."""
    stripped = text.strip()
    if not stripped:
        raise GoldCallFormatError("empty gold call text")
    if stripped[0] in "{[":
        try:
            return _entry_calls(json.loads(stripped), positional)
        except json.JSONDecodeError:
            pass  # a Python list literal of calls, e.g. [f(a=1), g(b=2)]
    return _python_calls(stripped, positional)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return None


def _python_calls(text: str, positional: Mapping[str, Sequence[str]]) -> list[dict]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text)
    except SyntaxError as e:
        raise GoldCallFormatError(f"neither JSON nor Python call text ({e.msg}): {text[:120]!r}") from None
    nodes: list[ast.AST] = []
    for stmt in tree.body:
        if not isinstance(stmt, ast.Expr):
            raise GoldCallFormatError(f"not a call expression: {ast.unparse(stmt)[:120]!r}")
        value = stmt.value
        nodes += list(value.elts) if isinstance(value, (ast.List, ast.Tuple)) else [value]
    calls = []
    for node in nodes:
        name = _dotted(node.func) if isinstance(node, ast.Call) else None
        if name is None:
            raise GoldCallFormatError(f"not a function call: {ast.unparse(node)[:120]!r}")
        params = list(positional.get(name, []))
        args: dict[str, Any] = {}
        for k, arg in enumerate(node.args):
            if k >= len(params):
                raise GoldCallFormatError(f"{name}: positional argument {k} has no parameter name (tool unknown)")
            args[params[k]] = _literal_arg(arg, name, params[k])
        for kw in node.keywords:
            if kw.arg is None:
                raise GoldCallFormatError(f"{name}: **kwargs are not a literal call")
            args[kw.arg] = _literal_arg(kw.value, name, kw.arg)
        calls.append(make_tool_call(name, args, "gold"))
    if not calls:
        raise GoldCallFormatError(f"no call in {text[:120]!r}")
    return calls


def _literal_arg(node: ast.AST, name: str, param: str) -> Any:
    ok, value = _literal(node)
    if not ok:
        raise GoldCallFormatError(f"{name}: argument {param!r} is not a literal ({ast.unparse(node)[:60]!r})")
    return value


# --- parameter schemas ---------------------------------------------------------------------------
def schema_types(spec: Any) -> list[str]:
    """The JSON types a parameter schema allows, in the order given: ``"string"``,
    ``["string", "integer"]``, ``"string|integer"``, or the types of its ``anyOf`` / ``oneOf``
    alternatives. Empty when the schema names no type."""
    if not isinstance(spec, dict):
        return []
    kind = spec.get("type")
    names = kind if isinstance(kind, list) else [kind]
    out = [part.strip() for k in names if isinstance(k, str) for part in k.split("|") if part.strip()]
    for key in ("anyOf", "oneOf"):
        alternatives = spec.get(key)
        if isinstance(alternatives, list):
            out += [t for alt in alternatives for t in schema_types(alt)]
    return list(dict.fromkeys(out))


def schema_enums(spec: Any) -> list:
    """The enumerated values of a schema and of its ``anyOf`` / ``oneOf`` alternatives."""
    if not isinstance(spec, dict):
        return []
    out = list(spec.get("enum") or []) if isinstance(spec.get("enum"), list) else []
    for key in ("anyOf", "oneOf"):
        alternatives = spec.get(key)
        if isinstance(alternatives, list):
            out += [v for alt in alternatives for v in schema_enums(alt)]
    return out


def typed_values(text: str, spec: Any) -> list:
    """``text`` as a value of each type the schema allows (a schema without a type: the text)."""
    out: list = []
    for kind in schema_types(spec) or ["string"]:
        if kind == "string":
            out.append(text)
        elif kind == "array":
            out.append([text])
        elif kind in ("integer", "number"):
            try:
                value = int(text) if kind == "integer" else float(text)
            except ValueError:
                continue
            if math.isfinite(value):
                out.append(value)
    return out


_FALLBACK = {"string": "default", "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}, "null": None}


def fallback_value(spec: Any) -> Any:
    """A placeholder of the schema's first type (``"default"`` when it names none)."""
    kinds = [k for k in schema_types(spec) if k in _FALLBACK]
    return _FALLBACK[kinds[0]] if kinds else "default"


# --- reading a tool's source ---------------------------------------------------------------------
def function_def(source: str, name: str) -> ast.FunctionDef | None:
    """The top-level ``def name`` of a source, or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def parameter_names(codes: Mapping[str, str]) -> dict[str, list[str]]:
    """Tool name -> its parameter names in order (tools whose source does not parse: left out)."""
    out = {}
    for name, source in codes.items():
        try:
            fn = function_def(source, name)
        except SyntaxError:
            continue
        if fn is not None:
            out[name] = [a.arg for a in fn.args.args]
    return out


def _literal(node: ast.AST) -> tuple[bool, Any]:
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        if isinstance(value, tuple):
            return True, list(value)
        return False, None
    return True, value


def _subject(node: ast.AST) -> str | None:
    """The parameter a comparison side is about: ``p``, ``p.lower()``, ``str(p)``, ``p[0]``."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            node = node.func.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
            node = node.args[0]
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            return None


def _branch_constants(fn: ast.FunctionDef, params: set[str]) -> tuple[dict, dict]:
    """(constants a parameter is compared equal to, constants listed in ``p in [...]``)."""
    equal: dict[str, list] = {}
    allowed: dict[str, list] = {}
    for node in ast.walk(fn):
        if not isinstance(node, ast.Compare) or len(node.ops) != 1:
            continue
        left, op, right = node.left, node.ops[0], node.comparators[0]
        for a, b in ((left, right), (right, left)):
            p = _subject(a)
            if p not in params:
                continue
            ok, value = _literal(b)
            if not ok:
                continue
            if isinstance(op, ast.Eq) and value is not None:
                equal.setdefault(p, []).append(value)
            elif isinstance(op, (ast.In, ast.NotIn)) and isinstance(value, list):
                allowed.setdefault(p, []).extend(value)
    return equal, allowed


def _example_calls(source: str, name: str, positional: list[str]) -> list[dict]:
    """Keyword arguments of the example calls of ``name`` in the source, commented or not."""
    texts = [source] + [line.split("#", 1)[1] for line in source.splitlines() if "#" in line]
    calls = []
    for text in texts:
        for m in re.finditer(re.escape(name) + r"\(", text):
            start, depth = m.start(), 0
            for end in range(m.end() - 1, len(text)):
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                if depth == 0:
                    break
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    node = ast.parse(text[start : end + 1], mode="eval").body
            except (SyntaxError, ValueError, RecursionError):
                continue
            if not isinstance(node, ast.Call):
                continue
            args, good = {}, True
            for k, arg in enumerate(node.args):
                ok, value = _literal(arg)
                if not ok or k >= len(positional):
                    good = False
                    break
                args[positional[k]] = value
            for kw in node.keywords:
                ok, value = _literal(kw.value)
                if kw.arg is None or not ok:
                    good = False
                    break
                args[kw.arg] = value
            if good and args:
                calls.append(args)
    return calls


# --- candidate arguments -------------------------------------------------------------------------
_OMIT = object()
_CONNECTORS = {"of", "de", "la", "van", "der", "von", "du", "the", "and", "&"}
_QUESTION_WORDS = {"What", "Who", "Whom", "Whose", "When", "Where", "Which", "Why", "How", "In", "The", "A", "An"}


def _phrases(question: str) -> list[str]:
    """Names in a question: runs of capitalised words or numbers, with connectors and commas
    inside ("William Paulet, 4Th Marquess Of Winchester")."""
    out, run = [], []

    def flush():
        while run and (run[-1] in _CONNECTORS or run[-1] == ","):
            run.pop()
        if run and not (len(run) == 1 and run[0] in _QUESTION_WORDS):
            out.append(" ".join(run).replace(" ,", ","))
        run.clear()

    for tok in re.findall(r"[\w.'&-]+|,", question):
        tok = tok.rstrip(".") if tok.endswith("?") else tok
        if tok[0].isupper() or tok[0].isdigit() or (run and (tok in _CONNECTORS or tok == ",")):
            run.append(tok)
        else:
            flush()
    flush()
    return out


def _date_forms(text: str) -> list[str]:
    """Other spellings of a date ("11 July 1302" -> "11 07 1302", "1302-07-11", ...)."""
    from datetime import datetime

    for fmt in ("%d %B %Y", "%B %d, %Y", "%B %d %Y", "%d %b %Y", "%Y-%m-%d"):
        try:
            d = datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
        day, month, year = f"{d.day:02d}", f"{d.month:02d}", f"{d.year:04d}"
        return [
            f"{day} {month} {year}",
            f"{d.day} {d.month} {d.year}",
            f"{year}-{month}-{day}",
            f"{month}/{day}/{year}",
            f"{day}/{month}/{year}",
            f"{day}-{month}-{year}",
        ]
    return []


def _tool_schema(item: dict, name: str) -> dict:
    schema = next((t["function"] for t in item["tools"] if t["function"]["name"] == name), None)
    if schema is None:
        raise KeyError(f"{item['id']}: no tool document named {name!r}")
    return schema


def candidate_arguments(item: dict, step: dict, known: Sequence[str], limit: int = 96) -> list[dict]:
    """Candidate argument dicts for one step's tool, most plausible first (see module doc)."""
    name = step["tool"]
    parameters = _tool_schema(item, name).get("parameters") or {}
    props = parameters.get("properties") or {} if isinstance(parameters, dict) else {}
    props = props if isinstance(props, dict) else {}
    required_list = parameters.get("required") if isinstance(parameters, dict) else None
    required = {r for r in required_list if isinstance(r, str)} if isinstance(required_list, list) else set()
    fn = function_def(item["codes"][name], name)
    positional = [a.arg for a in fn.args.args] if fn else list(props)
    if fn:  # parameters without a default value must be given, whatever the schema says
        required |= set(positional[: len(positional) - len(fn.args.defaults)]) & set(props)
    params = set(props) | set(positional)
    equal, allowed = _branch_constants(fn, params) if fn else ({}, {})
    examples = _example_calls(item["codes"][name], name, positional)
    entities = [a for a in known if mentions(step["question"], a)]
    entities += _phrases(step["question"]) + [step["question"]]
    entities += [d for e in entities for d in _date_forms(e)]

    options: dict[str, list] = {}
    for p in props:
        spec = props[p] if isinstance(props[p], dict) else {}
        opts: list = list(equal.get(p, []))
        opts += [ex[p] for ex in examples if p in ex]
        if p not in required and not opts:
            opts.append(_OMIT)
        opts += [v for e in entities for v in typed_values(e, spec)]
        opts += schema_enums(spec) + allowed.get(p, [])
        if p not in required:
            opts.append(_OMIT)
        opts.append(fallback_value(spec))
        seen, uniq = set(), []
        for o in opts:
            key = "<omit>" if o is _OMIT else json.dumps(o, sort_keys=True)
            if key not in seen:
                seen.add(key)
                uniq.append(o)
        options[p] = uniq[:8]

    def build(choice: dict) -> dict:
        return {p: v for p, v in choice.items() if v is not _OMIT}

    base = {p: opts[0] for p, opts in options.items()}
    out = [dict(ex) for ex in examples]
    out += [{**build(base), **ex} for ex in examples]
    out.append(build(base))
    for p, opts in options.items():
        out += [build({**base, p: o}) for o in opts[1:]]
    for (p, po), (q, qo) in itertools.combinations(options.items(), 2):
        out += [build({**base, p: a, q: b}) for a in po[1:4] for b in qo[1:4]]
    seen, uniq = set(), []
    for args in out:
        key = json.dumps(args, sort_keys=True)
        if key not in seen:
            seen.add(key)
            uniq.append(args)
    return uniq[:limit]


# --- derivation ----------------------------------------------------------------------------------
class GoldCalls(list):
    """Gold calls in chain order; ``skipped`` describes the steps no candidate reproduced and
    ``failures`` gives them as ``{step, tool, answer, candidates, kind}`` (``kind``: see
    :func:`failure_kind`)."""

    skipped: list[str]
    failures: list[dict]

    def __init__(self, calls=(), skipped=None, failures=None):
        super().__init__(calls)
        self.skipped = skipped or []
        self.failures = failures or []


NOT_IN_SOURCE = "answer not in the tool's source; no candidate call computes it"
ONLY_IN_COMMENTS = "answer only in a comment or docstring of the tool's source; its code computes another value"
IN_CODE = "answer is a literal in the tool's code; no candidate call reaches it"


def _code_literals_and_comments(source: str) -> tuple[str, str]:
    """(the string and number literals of a source's code, its comments and docstrings), one
    per line."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    docstrings = docstring_ids(tree)
    literals, notes = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
            (notes if id(node) in docstrings else literals).append(str(node.value))
    notes += [line.split("#", 1)[1] for line in source.splitlines() if "#" in line]
    return "\n".join(literals), "\n".join(notes)


def failure_kind(item: dict, step: dict) -> str:
    """Why no candidate call reproduces a step: :data:`NOT_IN_SOURCE` (the code would have to
    compute the answer, and none of our candidates made it), :data:`ONLY_IN_COMMENTS` (the
    answer is written only where the code does not return it: a ToolHop data error), or
    :data:`IN_CODE` (a literal the code can return, which no candidate reached)."""
    literals, notes = _code_literals_and_comments(item["codes"][step["tool"]])
    if mentions(literals, step["answer"]):  # as a whole token: "zab" is not in "Elizabeth"
        return IN_CODE
    if mentions(notes, step["answer"]):
        return ONLY_IN_COMMENTS
    return NOT_IN_SOURCE


def derive_gold_calls(
    item: dict, executor: ToolExecutor | None = None, strict: bool = True, limit: int = 96
) -> GoldCalls:
    """One OpenAI-style call per step, in chain order, whose output contains the step's answer.

    The candidates of a step (:func:`candidate_arguments`) run in the sandbox as one batch.
    When none reproduces the step's answer (ToolHop has tools whose code cannot return it),
    ``strict`` raises :class:`GoldCallError`; otherwise the step is left out and described in
    ``result.skipped`` / ``result.failures``. Later steps use the gold sub-answers either way.
    """
    calls, skipped, failures, known = [], [], [], []
    for k, step in enumerate(item["steps"]):
        candidates = candidate_arguments(item, step, known, limit)
        batch = [make_tool_call(step["tool"], args, f"gold_{k}_{j}") for j, args in enumerate(candidates)]
        outputs = run_calls(executor, item["codes"], batch)
        hit = next((c for c, out in zip(batch, outputs) if answer_verify(out, step["answer"])), None)
        known.append(step["answer"])
        if hit is not None:
            calls.append({**hit, "id": f"gold_{k}"})
            continue
        why = (
            f"{item['id']}: step {k} ({step['question']!r}): none of {len(batch)} candidate calls of "
            f"{step['tool']} returns {step['answer']!r}"
        )
        if strict:
            raise GoldCallError(why)
        skipped.append(why)
        failures.append(
            {
                "step": k,
                "tool": step["tool"],
                "answer": step["answer"],
                "candidates": len(batch),
                "kind": failure_kind(item, step),
            }
        )
    return GoldCalls(calls, skipped, failures)


# --- plans ---------------------------------------------------------------------------------------
def gold_plan(item: dict, executor: ToolExecutor | None = None, limit: int = 96) -> dict:
    """A record's gold plan or the reason it has none: ``{id, steps, calls, source, status,
    reason, kinds}``. ``source``: ``given`` (the record's ``gold_calls``) or ``derived``;
    ``status``: ``plan`` (a call for every step) or ``reason`` (``reason`` says which steps
    have no call and why, ``kinds`` lists the causes; the calls found for the other steps are
    kept). Never raises on a record: a failure of the derivation itself becomes the reason."""
    out = {"id": item["id"], "steps": len(item["steps"]), "calls": [], "source": "derived", "reason": "", "kinds": []}
    if item.get("gold_calls"):
        return {**out, "calls": list(item["gold_calls"]), "source": "given", "status": "plan"}
    try:
        calls = derive_gold_calls(item, executor, strict=False, limit=limit)
    except Exception as e:  # any record-made failure becomes this record's stated reason
        kind = f"derivation failed ({type(e).__name__})"
        return {**out, "status": "reason", "reason": f"{kind}: {e}", "kinds": [kind]}
    if not calls.failures:
        return {**out, "calls": list(calls), "status": "plan"}
    reason = "; ".join(
        f"step {f['step']} ({f['tool']} -> {f['answer']!r}): {f['kind']} ({f['candidates']} tried)"
        for f in calls.failures
    )
    return {
        **out,
        "calls": list(calls),
        "status": "reason",
        "reason": reason,
        "kinds": [f["kind"] for f in calls.failures],
    }


def plan_table(items: Sequence[dict], executor: ToolExecutor | None = None, plans: Sequence[dict] | None = None):
    """One row per record: ``id``, ``steps``, ``calls`` (steps with a gold call), ``source``,
    ``status`` (plan / reason) and ``reason``. ``plans``: :func:`gold_plan` results to reuse."""
    import pandas as pd

    plans = list(plans) if plans is not None else [gold_plan(it, executor) for it in items]
    rows = [
        {k: p[k] for k in ("id", "steps", "source", "status", "reason")} | {"calls": len(p["calls"])} for p in plans
    ]
    return pd.DataFrame(rows, columns=["id", "steps", "calls", "source", "status", "reason"]).set_index("id")


def reason_tally(plans: Sequence[dict]) -> dict[str, int]:
    """How many steps (over all records) fail for each cause."""
    tally: dict[str, int] = {}
    for p in plans:
        for kind in p["kinds"]:
            tally[kind] = tally.get(kind, 0) + 1
    return tally


# --- the oracle ----------------------------------------------------------------------------------
class OraclePolicy:
    """A scripted policy that replays each item's gold calls, one per turn, then answers with
    the last tool output. ``gold``: item id -> calls in any form :func:`parse_gold_calls`
    accepts (default: the items' ``gold_calls``)."""

    def __init__(self, items: Sequence[dict], gold: Mapping[str, Any] | None = None):
        gold = gold or {it["id"]: it.get("gold_calls") or [] for it in items}
        self.by_question = {
            it["question"]: parse_gold_calls(gold[it["id"]], parameter_names(it["codes"])) if gold[it["id"]] else []
            for it in items
            if it["id"] in gold
        }

    def __call__(self, conversations: list[list[dict]], tools: list) -> list[str]:
        out = []
        for conv in conversations:
            question = conv[0]["content"].rsplit("Question: ", 1)[-1]
            calls = self.by_question.get(question, [])
            done = sum(1 for m in conv if m.get("role") == "tool")
            if done < len(calls) and tools[len(out)] is not None:
                out.append(render_qwen_calls([calls[done]]))
            else:
                last = next((m["content"] for m in reversed(conv) if m.get("role") == "tool"), "")
                out.append(f"<answer>{last}</answer>")
        return out
