"""BFCL (Berkeley Function Calling Leaderboard): single-turn AST categories and relevance.

Data: the ``data/`` folder of the PyPI package ``bfcl-eval`` (found with
``importlib.util.find_spec``, never imported: its checker pulls in heavy pinned dependencies;
``FTRL_BFCL_DATA`` overrides the folder). Only its JSON files are read.

The checker here is our own, written from BFCL's published rules, and
``perf/bfcl_agreement.py`` measures how often it agrees with BFCL's own one.

* Function name: the model's call must name the expected function (``dots_as_underscores``:
  a model that was shown ``a_b`` for ``a.b``, as OpenAI-style APIs require).
* Parameters: every required one present; none outside the function's schema or the possible
  answer; every possible-answer parameter present unless ``""`` is among its values (optional).
* Types (Python): exact, except int for float; tuples are lists; an array's items are checked
  against their declared type (one level deep). A value of another type whose type is that of
  the possible answers (a variable name for a number, say) is compared as is.
* Values: strings compared after removing spaces and ``,./-_*^``, lower-casing and ``'``->``"``;
  lists element by element (string elements normalised); dicts key by key against each
  possible dict; lists of dicts position by position; other values by ``==``.
* Parallel categories: as many calls as expected, matched in any order (greedily, each
  expected call taking the first still-unmatched call that passes, as BFCL does).
* ``irrelevance`` / ``live_irrelevance``: correct when no call is decoded; ``live_relevance``:
  correct when at least one is.

Model outputs: Qwen ``<tool_call>`` JSON, OpenAI assistant messages, or BFCL's prompting
format, Python call syntax ``[f(a=1), g(b="x")]``, decoded by ``ftrl_lab.benchmarks.bfcl_decode``
under a rule set: ``rules="official"`` (:data:`DEFAULT_RULES`, BFCL's own handlers' decoders,
exactly) or ``"lenient"`` (this project's forgiving decoders). Every result row carries ``rules``;
``perf/parity_bfcl.py`` measures the decoders against BFCL's.

Reported as on the leaderboard: accuracy per category; ``non_live_ast`` = unweighted mean of
simple, multiple, parallel, parallel_multiple (our ``simple`` is Python only: the leaderboard's
simple also averages in Java and JavaScript); ``live_ast`` = mean over all live AST items.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftrl_lab.benchmarks.bfcl_decode import (
    DEFAULT_RULES,
    FORMATS,
    RULES,
    DecodeError,
    bfcl_response,
    check_rules,
    decode_output,
    has_call,
    well_formed,
)
from ftrl_lab.benchmarks.common import (
    category_table,
    in_item_order,
    pending,
    progress,
    read_records,
    require,
    respond,
    write_output,
)
from ftrl_lab.benchmarks.common import concrete_value as _concrete
from ftrl_lab.benchmarks.common import function_doc as _doc
from ftrl_lab.core.records import RecordError

__all__ = ["DEFAULT_RULES", "FORMATS", "RULES", "DecodeError", "decode_output", "has_call", "well_formed"]

NON_LIVE_AST = ("simple", "multiple", "parallel", "parallel_multiple")
LIVE_AST = ("live_simple", "live_multiple", "live_parallel", "live_parallel_multiple")
RELEVANCE = ("irrelevance", "live_irrelevance", "live_relevance")
CATEGORIES = NON_LIVE_AST + LIVE_AST + RELEVANCE
FILE_STEMS = {c: ("simple_python" if c == "simple" else c) for c in CATEGORIES}

PYTHON_TYPES = {
    "string": str,
    "integer": int,
    "float": float,
    "boolean": bool,
    "array": list,
    "tuple": list,
    "dict": dict,
    "any": str,
}
OPENAPI_TYPES = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}


# --- data ----------------------------------------------------------------------------------------
def data_dir() -> Path:
    """The ``data`` folder of the installed ``bfcl-eval`` package (``FTRL_BFCL_DATA`` overrides)."""
    env = os.environ.get("FTRL_BFCL_DATA")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("bfcl_eval")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "BFCL data not found: `pip install --no-deps bfcl-eval`, or set FTRL_BFCL_DATA "
            "to a folder holding BFCL_v*_<category>.json and possible_answer/"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _category_file(folder: Path, category: str) -> Path:
    pattern = re.compile(rf"BFCL_v(\d+)_{FILE_STEMS[category]}\.json")
    matches = [(int(m.group(1)), p) for p in folder.glob("BFCL_v*.json") if (m := pattern.fullmatch(p.name))]
    files = [p for _, p in sorted(matches)]
    if not files:
        raise FileNotFoundError(f"{folder}: no BFCL_v*_{FILE_STEMS[category]}.json for category '{category}'")
    return files[-1]


def load(
    categories: Sequence[str] = CATEGORIES, path: str | os.PathLike | None = None, limit: int | None = None
) -> list[dict]:
    """BFCL items: ``id``, ``category``, ``messages`` (the single turn), ``functions`` (BFCL
    documents) and ``ground_truth`` (list of ``{function: {param: [possible values]}}``, or None
    for the relevance categories). ``limit`` keeps the first N items per category."""
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"unknown BFCL categories {unknown} (choose from {CATEGORIES})")
    folder = Path(path) if path is not None else data_dir()
    items = []
    for cat in categories:
        file = _category_file(folder, cat)
        answers = {}
        if cat not in RELEVANCE:
            for rec, loc in read_records(folder / "possible_answer" / file.name):
                require(rec, {"id": str, "ground_truth": list}, loc)
                answers[rec["id"]] = rec["ground_truth"]
        for n, (rec, loc) in enumerate(read_records(file)):
            if limit is not None and n >= limit:
                break
            require(rec, {"id": str, "question": list, "function": list}, loc)
            if not rec["question"] or not isinstance(rec["question"][0], list):
                raise RecordError("expected a list of turns, each a list of messages", field="question", **loc)
            if cat not in RELEVANCE and rec["id"] not in answers:
                raise RecordError(
                    f"no possible answer for '{rec['id']}' in possible_answer/{file.name}", field="id", **loc
                )
            items.append(
                {
                    "id": rec["id"],
                    "category": cat,
                    "messages": rec["question"][0],
                    "functions": rec["function"],
                    "ground_truth": answers.get(rec["id"]),
                }
            )
    return items


# --- prompts -------------------------------------------------------------------------------------
def _openapi(schema: Any) -> Any:
    """A BFCL parameter schema with OpenAPI type names (dict->object, float->number, ...)."""
    if isinstance(schema, list):
        return [_openapi(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k == "type" and isinstance(v, str):
            out[k] = OPENAPI_TYPES.get(v, v)
        elif k in ("properties",) and isinstance(v, dict):
            out[k] = {name: _openapi(s) for name, s in v.items()}
        elif k in ("items", "additionalProperties"):
            out[k] = _openapi(v)
        else:
            out[k] = v
    return out


def openai_tools(functions: Sequence[dict], dots_as_underscores: bool = False) -> list[dict]:
    """BFCL function documents as OpenAI tool dicts (for chat templates and API backends)."""
    tools = []
    for f in functions:
        name = f["name"].replace(".", "_") if dots_as_underscores else f["name"]
        tools.append(
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": f.get("description", ""),
                    "parameters": _openapi(f["parameters"]),
                },
            }
        )
    return tools


PYTHON_FORMAT_PROMPT = (
    "You can call the functions listed below. Read the request and answer with the function "
    "call(s) that fulfil it, and nothing else, written as a Python list of calls with keyword "
    "arguments: [func_a(param1=value1, param2=value2), func_b(param=value)]. If no function fits "
    "the request, or the request lacks a value a function requires, say so in plain words "
    "instead of calling anything.\n\nFunctions (JSON):\n{functions}\n"
)


def build_prompt(
    item: dict, mode: str = "fc", dots_as_underscores: bool = False
) -> tuple[list[dict], list[dict] | None]:
    """(messages, tools) for one item. ``fc``: the tools go to the chat template and the model
    answers with tool calls; ``python``: the function list and the Python-call format are
    described in the system prompt (BFCL's prompting style), no tools offered."""
    messages = [dict(m) for m in item["messages"]]
    if mode == "fc":
        return messages, openai_tools(item["functions"], dots_as_underscores)
    if mode == "python":
        system = PYTHON_FORMAT_PROMPT.format(functions=json.dumps(item["functions"], ensure_ascii=False, indent=1))
        if messages and messages[0].get("role") == "system":
            messages[0] = {"role": "system", "content": system + "\n" + (messages[0].get("content") or "")}
        else:
            messages.insert(0, {"role": "system", "content": system})
        return messages, None
    raise ValueError(f"unknown BFCL prompt mode {mode!r} (choose 'fc' or 'python')")


# --- the AST checker -----------------------------------------------------------------------------
@dataclass
class Check:
    valid: bool
    error_type: str = ""
    error: str = ""


OK = Check(True)


def normalise_string(s: str) -> str:
    """BFCL's string normal form: no spaces or ``,./-_*^``, lower case, ``'`` -> ``"``."""
    return re.sub(r"[ ,./\-_*^]", "", s).lower().replace("'", '"')


def _norm(v: Any) -> Any:
    return normalise_string(v) if isinstance(v, str) else v


def _answer_type(possible: list) -> type | None:
    """The type of the first non-optional possible value (None if all are ``""``)."""
    return next((type(p) for p in possible if p != ""), None)


def _type_ok(value: Any, possible: list, want: type, item_type: type | None) -> tuple[bool, bool]:
    """(type accepted, value is a "variable": compare it as is). BFCL's one-level nested check."""
    ans_type = _answer_type(possible)
    variable = ans_type is not None and ans_type is not want
    if type(value) is want:
        if item_type is None:
            return True, variable
        for p in possible:
            if not isinstance(p, list):
                return True, variable  # an optional "" passes the nested check, as in BFCL
            p_type = _answer_type(p)
            if all(type(v) is item_type or (p_type is not None and type(v) is p_type) for v in value):
                return True, variable
        return False, False  # items of the wrong type
    if ans_type is not None and type(value) is ans_type:
        return True, True
    return False, False


def _check_dict(value: dict, possible: list) -> Check:
    last = Check(False, "value_error:dict", "no possible dict")
    for p in possible:
        if p == "":
            continue
        if not isinstance(p, dict):
            continue
        bad = next((k for k in value if k not in p), None)
        if bad is not None:
            last = Check(False, "value_error:dict_key", f"unexpected dict key {bad!r}")
            continue
        wrong = next((k for k, v in value.items() if _norm(v) not in [_norm(x) for x in p[k]]), None)
        if wrong is not None:
            last = Check(False, "value_error:dict_value", f"dict value {wrong!r}={value[wrong]!r} not in {p[wrong]}")
            continue
        missing = next((k for k, vals in p.items() if k not in value and "" not in vals), None)
        if missing is not None:
            last = Check(False, "value_error:dict_key", f"missing dict key {missing!r}")
            continue
        return OK
    return last


def _check_list_of_dicts(value: list, possible: list) -> Check:
    last = Check(False, "value_error:list_dict", "no possible list of dicts")
    for p in possible:
        if len(value) != len(p):
            last = Check(False, "value_error:list_dict_count", "wrong number of dicts")
            continue
        for v, pd in zip(value, p):
            last = _check_dict(v, [pd])
            if not last.valid:
                break
        else:
            return OK
    return last


def _check_list(value: list, possible: list) -> Check:
    got = [_norm(v) for v in value]
    options = [[_norm(v) for v in p] if isinstance(p, (list, str)) else p for p in possible]
    if got in options:
        return OK
    return Check(False, "value_error:list", f"{value!r} not in {possible}")


def check_call(doc: dict, call: dict, expected: dict, dots_as_underscores: bool = False) -> Check:
    """One decoded call ``{name: args}`` against one possible answer ``{name: {param: [values]}}``."""
    exp_name, options = next(iter(expected.items()))
    name = doc["name"]
    if dots_as_underscores:
        name = name.replace(".", "_")
    if name not in call:
        return Check(False, "simple_function_checker:wrong_func_name", f"function {name!r} not called")
    args = call[name]
    props = doc["parameters"].get("properties", {})
    for p in doc["parameters"].get("required", []):
        if p not in args:
            return Check(False, "simple_function_checker:missing_required", f"missing required parameter {p!r}")
    for p, value in args.items():
        if p not in props or p not in options:
            return Check(False, "simple_function_checker:unexpected_param", f"unexpected parameter {p!r}")
        spec = props[p]
        type_name = spec.get("type")
        if type_name not in PYTHON_TYPES:
            return Check(False, "type_error:unknown", f"unknown parameter type {type_name!r} for {p!r}")
        want = PYTHON_TYPES[type_name]
        item_type = None
        if type_name in ("array", "tuple"):
            item_type = PYTHON_TYPES.get((spec.get("items") or {}).get("type"))
        if type_name == "tuple" and isinstance(value, tuple):
            value = list(value)
        if type_name == "float" and type(value) is int:
            value = float(value)
        possible = options[p]
        accepted, variable = _type_ok(value, possible, want, item_type)
        if not accepted:
            return Check(False, "type_error", f"parameter {p!r}: expected {type_name}, got {type(value).__name__}")
        if not variable:
            if want is dict:
                result = _check_dict(value, possible)
            elif want is list and item_type is dict:
                result = _check_list_of_dicts(value, possible)
            elif want is str:
                ok = _norm(value) in [_norm(x) for x in possible if isinstance(x, str)]
                result = OK if ok else Check(False, "value_error:string", f"{p!r}={value!r} not in {possible}")
            elif want is list:
                result = _check_list(value, possible)
            else:
                result = None
            if result is not None:
                if not result.valid:
                    return result
                continue
        if value not in possible:
            return Check(False, "value_error:others", f"{p!r}={value!r} not in {possible}")
    for p, vals in options.items():
        if p not in args and "" not in vals:
            return Check(False, "simple_function_checker:missing_optional", f"parameter {p!r} not given")
    return OK


def check_ast(
    functions: Sequence[dict],
    calls: list[dict],
    ground_truth: list[dict],
    category: str,
    dots_as_underscores: bool = False,
) -> Check:
    """The decoded calls of one item against its possible answers, per BFCL's category rules."""
    if "parallel" in category:
        if len(calls) != len(ground_truth):
            return Check(False, "parallel:wrong_count", f"{len(calls)} calls, {len(ground_truth)} expected")
        used: set[int] = set()
        for k, expected in enumerate(ground_truth):
            doc = _doc(functions, next(iter(expected)))
            hit = next(
                (
                    i
                    for i, c in enumerate(calls)
                    if i not in used and check_call(doc, c, expected, dots_as_underscores).valid
                ),
                None,
            )
            if hit is None:
                return Check(False, "parallel:cannot_find_match", f"no call matches expected call {k}")
            used.add(hit)
        return OK
    if "multiple" in category:
        if len(calls) != len(ground_truth):
            return Check(False, "multiple:wrong_count", f"{len(calls)} calls, {len(ground_truth)} expected")
        expected = ground_truth[0]
        return check_call(_doc(functions, next(iter(expected))), calls[0], expected, dots_as_underscores)
    if len(calls) != 1:
        return Check(False, "simple:wrong_count", f"{len(calls)} calls, 1 expected")
    return check_call(functions[0], calls[0], ground_truth[0], dots_as_underscores)


# --- scoring -------------------------------------------------------------------------------------
def score_output(
    item: dict, output: Any, fmt: str = "auto", dots_as_underscores: bool = False, rules: str = DEFAULT_RULES
) -> Check:
    """Whether one model output is correct for one item. Under ``rules="official"`` a text output
    is first cut as BFCL's Qwen handlers store it (:func:`bfcl_decode.bfcl_response`)."""
    check_rules(rules)
    if rules == "official":
        output = bfcl_response(output)
    cat = item["category"]
    if cat in RELEVANCE:
        called = has_call(output, fmt, rules)
        if "irrelevance" in cat:
            return Check(not called, "" if not called else "irrelevance:called", "")
        return Check(called, "" if called else "relevance:no_call", "")
    try:
        calls = decode_output(output, fmt, rules)
    except (DecodeError, ValueError, TypeError, RecursionError) as e:
        return Check(False, "ast_decoder:decoder_failed", str(e)[:300])
    if not well_formed(calls):
        return Check(False, "ast_decoder:wrong_output_format", "")
    return check_ast(item["functions"], calls, item["ground_truth"], cat, dots_as_underscores)


def score(
    items: Sequence[dict],
    outputs: Sequence[dict],
    fmt: str = "auto",
    dots_as_underscores: bool = False,
    rules: str = DEFAULT_RULES,
) -> list[dict]:
    """Per-item results ``{id, category, correct, error_type, error, rules}`` (no output row:
    wrong). A row's own ``format`` / ``dots_as_underscores`` (as :func:`run` writes them) win."""
    check_rules(rules)
    by_id = {str(o["id"]): o for o in outputs}
    results = []
    for it in items:
        row = by_id.get(str(it["id"]))
        if row is None:
            c = Check(False, "no_output", "")
        else:
            c = score_output(
                it,
                row.get("output"),
                row.get("format", fmt),
                row.get("dots_as_underscores", dots_as_underscores),
                rules,
            )
        results.append(
            {
                "id": it["id"],
                "category": it["category"],
                "correct": float(c.valid),
                "error_type": c.error_type,
                "error": c.error,
                "rules": rules,
            }
        )
    return results


def summary(results: Sequence[dict]) -> dict[str, float]:
    """Leaderboard summaries in percent: ``non_live_ast`` (unweighted mean of the non-live AST
    categories present) and ``live_ast`` (mean over all live AST items present)."""
    per: dict[str, list[float]] = {}
    for r in results:
        per.setdefault(r["category"], []).append(r["correct"])
    out = {}
    non_live = [sum(per[c]) / len(per[c]) for c in NON_LIVE_AST if per.get(c)]
    if non_live:
        out["non_live_ast"] = round(100 * sum(non_live) / len(non_live), 2)
    live = [x for c in LIVE_AST for x in per.get(c, [])]
    if live:
        out["live_ast"] = round(100 * sum(live) / len(live), 2)
    return out


def table(results: Sequence[dict]):
    """Accuracy (percent) per category, then the ``non_live_ast`` and ``live_ast`` summary rows;
    ``attrs["rules"]`` names the rule set(s) of the results."""
    df = category_table(results, ["correct"], order=CATEGORIES, overall=None)
    df = df.rename(columns={"correct": "accuracy"})
    for name, value in summary(results).items():
        cats = NON_LIVE_AST if name == "non_live_ast" else LIVE_AST
        df.loc[name] = [int(df.loc[[c for c in cats if c in df.index], "n"].sum()), value]
    df["n"] = df["n"].astype(int)
    df.attrs["rules"] = ",".join(sorted({r["rules"] for r in results if r.get("rules")}))
    return df


# --- running -------------------------------------------------------------------------------------
def run(
    policy: Any,
    items: Sequence[dict],
    out_path: str | os.PathLike | None = None,
    mode: str = "fc",
    dots_as_underscores: bool = False,
    batch_size: int = 8,
    show_progress: bool = True,
) -> list[dict]:
    """One response per item; rows ``{id, output, format, dots_as_underscores}`` appended to
    ``out_path`` as they finish. ``format`` names the BFCL handler that decodes the output:
    ``python`` in python mode; in fc mode ``openai`` for a message dict (API backends) and
    ``qwen`` for text (a local model's ``<tool_call>`` output)."""
    todo, done = pending(items, out_path)
    steps = range(0, len(todo), max(1, batch_size))
    for start in progress(steps, total=len(steps), desc="BFCL", enabled=show_progress):
        batch = todo[start : start + batch_size]
        prompts = [build_prompt(it, mode, dots_as_underscores) for it in batch]
        responses = respond(policy, [m for m, _ in prompts], [t for _, t in prompts])
        for it, out in zip(batch, responses):
            fmt = "python" if mode == "python" else ("openai" if isinstance(out, dict) else "qwen")
            row = {"id": it["id"], "output": out, "format": fmt, "dots_as_underscores": dots_as_underscores}
            done[str(it["id"])] = row
            write_output(out_path, row)
    return in_item_order(items, done)


def gold_output(item: dict, style: str = "python") -> str | None:
    """A correct output built from the first possible value of each parameter (``""`` = omit;
    a required parameter takes its first value that is not ``""``):
    Python call syntax or Qwen ``<tool_call>`` text. None for the relevance categories."""
    if item["ground_truth"] is None:
        return None
    calls = []
    for expected in item["ground_truth"]:
        name, options = next(iter(expected.items()))
        required = set(_doc(item["functions"], name)["parameters"].get("required", []))
        args = {}
        for p, vals in options.items():
            given = [v for v in vals if v != ""] if p in required else vals[:1]
            if given and given[0] != "":
                args[p] = _concrete(given[0])
        calls.append((name, args))
    if style == "python":
        return "[" + ", ".join(f"{n}(" + ", ".join(f"{k}={v!r}" for k, v in a.items()) + ")" for n, a in calls) + "]"
    if style == "qwen":
        return "\n".join(
            "<tool_call>\n" + json.dumps({"name": n, "arguments": a}, ensure_ascii=False) + "\n</tool_call>"
            for n, a in calls
        )
    raise ValueError(f"unknown style {style!r} (choose 'python' or 'qwen')")
