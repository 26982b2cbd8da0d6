"""ToolHop (Ye et al., 2025): multi-hop questions answered through executable tools.

Each record holds a question, its answer, the sub-questions (``sub_task``: sub-question ->
answer), one tool document per sub-question (``tools``) and one Python source per tool
(``functions``). The sources end with example code that runs (and prints) when the source is
exec'd, so tools always run in the sandbox (:mod:`ftrl_lab.core.sandbox`), never in this process.

An item becomes an FTRL-like environment (:func:`to_env_record`: OpenAI tool documents, codes
``name -> source``, the sub-answers as ``unsolved_set``), so the same multi-turn loop runs it.
Three modes, as in the paper: ``direct`` (no tools; answer from knowledge), ``mandatory``
(the prompt demands a tool call at every step) and ``free`` (tools offered).

Answer correctness (AC), FTRL's rule: the conversation ends with an assistant message whose
content contains the gold answer, or whose preceding tool message does (FTRL's
``answer_verify``: every ", "-separated part, lower-cased and without commas, is a substring).

ToolHop ships no gold calls; :func:`derive_gold_calls` finds them by running candidate calls in
the sandbox, built from the hard-coded branches of each function (``if name == 'X'``), its
example calls, the chain of sub-answers and the schema, and keeping the first call whose output
contains the step's answer. The oracle policy (:class:`OraclePolicy`) replays them.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftrl_lab.agent.policies import as_rollout_policy
from ftrl_lab.benchmarks.common import category_table, read_records, require, write_output
from ftrl_lab.core.executor import ToolExecutor, run_calls
from ftrl_lab.core.parsing import make_tool_call, render_qwen_calls
from ftrl_lab.core.records import EnvRecord, RecordError, function_names_defined, shared_dir
from ftrl_lab.core.reward import answer_verify, normalise

MODES = ("direct", "mandatory", "free")
MAX_TURNS = 9

_FORMAT = (
    "Keep the answer short. Write a date as YYYY-MM-DD, a person's name as Firstname Lastname, and "
    "any number in digits (not words, no leading zeros).\n"
    "Put the answer between <answer> and </answer>.\n"
)
PROMPTS = {
    "direct": "Answer the following question.\n" + _FORMAT + "Question: {question}",
    "mandatory": (
        "Answer the following question with the tools you are given.\n"
        "Call a tool for every step of the reasoning: do not answer any step from your own knowledge, "
        "and take the final answer from a tool's output.\n" + _FORMAT + "Question: {question}"
    ),
    "free": "Answer the following question; you may call the tools you are given.\n" + _FORMAT + "Question: {question}",
}


class GoldCallError(RuntimeError):
    """No candidate call reproduces a step's answer."""


def default_path() -> Path:
    """``../shared/benchmarks/toolhop/sample.jsonl`` (``FTRL_TOOLHOP`` overrides it)."""
    env = os.environ.get("FTRL_TOOLHOP")
    return Path(env) if env else shared_dir() / "benchmarks" / "toolhop" / "sample.jsonl"


# --- loading -------------------------------------------------------------------------------------
def load(path: str | os.PathLike | None = None, limit: int | None = None) -> list[dict]:
    """ToolHop items from a JSONL (or JSON list) file: the 10-record sample by default, the
    full 995-query file by path. Each item: ``id``, ``question``, ``answer``, ``sub_task``,
    ``steps`` (``{question, answer, tool}`` in chain order), ``tools`` (OpenAI tool dicts),
    ``codes`` (name -> source), ``gold_calls`` (when the file has them), ``hop_count``, ``domain``."""
    items = []
    for n, (rec, loc) in enumerate(read_records(path if path is not None else default_path())):
        if limit is not None and n >= limit:
            break
        items.append(_item(rec, loc, n))
    ids = [it["id"] for it in items]
    if len(set(ids)) != len(ids):
        raise RecordError("duplicate record ids", source=str(path or default_path()))
    return items


def _item(rec: Any, loc: dict, index: int) -> dict:
    require(
        rec,
        {"question": str, "answer": (str, int, float), "sub_task": dict, "tools": dict, "functions": (list, dict)},
        loc,
    )
    tools: dict[str, dict] = {}
    step_tool: dict[str, str] = {}
    for sub_q, schema in rec["tools"].items():
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str) or "parameters" not in schema:
            raise RecordError(
                f"tool for {sub_q!r} is not a {{name, description, parameters}} schema", field="tools", **loc
            )
        tools.setdefault(schema["name"], {"type": "function", "function": dict(schema)})
        step_tool[sub_q] = schema["name"]
    missing = [q for q in rec["sub_task"] if q not in step_tool]
    if missing:
        raise RecordError(f"sub-question(s) without a tool: {missing[:2]}", field="tools", **loc)
    sources = list(rec["functions"].values()) if isinstance(rec["functions"], dict) else rec["functions"]
    codes: dict[str, str] = {}
    for k, src in enumerate(sources):
        if not isinstance(src, str):
            raise RecordError(f"expected Python source, got {type(src).__name__}", field=f"functions[{k}]", **loc)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                defined = function_names_defined(src)
        except SyntaxError as e:
            raise RecordError(f"does not parse: {e.msg} (line {e.lineno})", field=f"functions[{k}]", **loc) from None
        for name in defined & set(tools):
            codes.setdefault(name, src)
    no_code = [n for n in tools if n not in codes]
    if no_code:
        raise RecordError(f"no function source defines tool(s) {no_code}", field="functions", **loc)
    steps = chain(
        [{"question": q, "answer": str(a), "tool": step_tool[q]} for q, a in rec["sub_task"].items()],
        str(rec["answer"]),
    )
    return {
        "id": str(rec.get("id", index)),
        "question": rec["question"],
        "answer": str(rec["answer"]),
        "sub_task": rec["sub_task"],
        "steps": steps,
        "tools": list(tools.values()),
        "codes": codes,
        "gold_calls": rec.get("gold_calls") or [],
        "hop_count": rec.get("hop_count", len(steps)),
        "domain": rec.get("domain", ""),
    }


def _mentions(text: str, answer: str) -> bool:
    """``answer`` occurs in ``text`` as a whole token (case-insensitive)."""
    answer = answer.strip()
    return bool(answer) and re.search(r"(?<!\w)" + re.escape(answer) + r"(?!\w)", text, re.IGNORECASE) is not None


def chain(steps: list[dict], final_answer: str = "") -> list[dict]:
    """Steps in dependency order: a step whose question mentions another step's answer comes
    after it; among ready steps the file order is kept, and the one giving the final answer
    goes last."""
    n = len(steps)
    deps = {
        i: {j for j in range(n) if j != i and _mentions(steps[i]["question"], steps[j]["answer"])} for i in range(n)
    }
    order: list[int] = []
    while len(order) < n:
        ready = [i for i in range(n) if i not in order and deps[i] <= set(order)]
        if not ready:  # a cycle: take the remaining steps in file order
            ready = [i for i in range(n) if i not in order]
        last = [i for i in ready if normalise(steps[i]["answer"]) == normalise(final_answer)]
        pick = next((i for i in ready if i not in last), ready[0]) if len(ready) > 1 or not last else ready[0]
        order.append(pick)
    return [steps[i] for i in order]


# --- prompts and environments --------------------------------------------------------------------
def prompt(item: dict, mode: str) -> list[dict]:
    """The opening user message of a mode."""
    if mode not in MODES:
        raise ValueError(f"unknown ToolHop mode {mode!r} (choose from {MODES})")
    return [{"role": "user", "content": PROMPTS[mode].format(question=item["question"])}]


def to_env_record(item: dict, mode: str) -> EnvRecord:
    """The item as an FTRL environment record (no tools in ``direct`` mode)."""
    tools = [] if mode == "direct" else item["tools"]
    unsolved: dict[str, list[str]] = {}
    if mode != "direct":
        for step in item["steps"]:
            unsolved.setdefault(step["tool"], []).append(step["answer"])
    return EnvRecord(
        messages=prompt(item, mode),
        tools=tools,
        codes={} if mode == "direct" else dict(item["codes"]),
        unsolved_set=unsolved,
        data_source=f"toolhop/{mode}",
        split="test",
        answer=item["answer"],
        extra={"id": item["id"]},
    )


# --- scoring -------------------------------------------------------------------------------------
def answer_correct(messages: Sequence[dict], answer: str) -> bool:
    """FTRL's AC: the last message is a non-empty assistant reply containing the answer, or the
    tool message just before it does."""
    if not messages or messages[-1].get("role") != "assistant" or not messages[-1].get("content"):
        return False
    if answer_verify(messages[-1]["content"], answer):
        return True
    return (
        len(messages) > 1
        and messages[-2].get("role") == "tool"
        and answer_verify(messages[-2].get("content") or "", answer)
    )


def score(items: Sequence[dict], outputs: Sequence[dict]) -> list[dict]:
    """Per (item, mode) results ``{id, category: mode, AC, calls}``, one per output row; items
    without an output row in a mode that other rows have are scored 0."""
    by_key = {(str(o["id"]), o["mode"]): o for o in outputs}
    modes = [m for m in MODES if any(k[1] == m for k in by_key)]
    results = []
    for mode in modes:
        for it in items:
            row = by_key.get((str(it["id"]), mode))
            messages = row["messages"] if row else []
            calls = sum(len(m.get("tool_calls") or []) for m in messages if m.get("role") == "assistant")
            results.append(
                {
                    "id": it["id"],
                    "category": mode,
                    "AC": float(answer_correct(messages, it["answer"])),
                    "calls": calls,
                    "missing": row is None,
                }
            )
    return results


def table(results: Sequence[dict]):
    """AC (percent) per mode and the mean over the modes (the paper's ToolHop AC)."""
    return category_table(results, ["AC"], order=MODES, overall="macro")


# --- running -------------------------------------------------------------------------------------
def run(
    policy: Any,
    items: Sequence[dict],
    out_path: str | os.PathLike | None = None,
    modes: Sequence[str] = MODES,
    executor: Any = None,
    max_turns: int = MAX_TURNS,
    fmt: str = "qwen",
    batch_size: int = 8,
    show_progress: bool = True,
) -> list[dict]:
    """Play the items in each mode with :func:`ftrl_lab.agent.rollout.rollout` (tools in the sandbox
    by default; ``executor`` is a rollout tool executor). Rows ``{id, mode, messages, calls,
    solved, total}`` are appended to ``out_path`` as episodes finish; (item, mode) pairs already
    there are skipped."""
    from ftrl_lab.agent.rollout import rollout

    rows = _read_mode_rows(out_path)
    policy = as_rollout_policy(policy, fmt)
    for mode in modes:
        todo = [it for it in items if (str(it["id"]), mode) not in rows]
        if not todo:
            continue

        def save(ep, mode=mode, todo=todo):
            it = todo[ep.index]
            row = {
                "id": it["id"],
                "mode": mode,
                "messages": ep.messages,
                "calls": ep.calls,
                "solved": ep.solved,
                "total": ep.total,
            }
            rows[(str(it["id"]), mode)] = row
            write_output(out_path, row)

        rollout(
            [to_env_record(it, mode) for it in todo],
            policy,
            max_turns=1 if mode == "direct" else max_turns,
            max_active=batch_size,
            executor=executor,
            on_episode=save,
            progress=show_progress,
            desc=f"ToolHop {mode}",
        )
    return [rows[(str(it["id"]), m)] for m in modes for it in items if (str(it["id"]), m) in rows]


def _read_mode_rows(out_path: str | os.PathLike | None) -> dict[tuple[str, str], dict]:
    if out_path is None or not Path(out_path).exists():
        return {}
    rows = {}
    for row, loc in read_records(Path(out_path)):
        require(row, {"id": (str, int), "mode": str, "messages": list}, loc)
        rows[(str(row["id"]), row["mode"])] = row
    return rows


# --- gold calls ----------------------------------------------------------------------------------
def _function_def(source: str, name: str) -> ast.FunctionDef | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


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


_OMIT = object()


def _typed(value: str, spec: dict) -> Any:
    kind = spec.get("type")
    if kind == "array":
        return [value]
    if kind in ("integer", "number"):
        try:
            return int(value) if kind == "integer" else float(value)
        except ValueError:
            return None
    if kind == "boolean" or kind == "object":
        return None
    return value


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


def _fallback(spec: dict) -> Any:
    return {"string": "default", "integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}.get(
        spec.get("type"), "default"
    )


def candidate_arguments(item: dict, step: dict, known: Sequence[str], limit: int = 96) -> list[dict]:
    """Candidate argument dicts for one step's tool, most plausible first (see module doc)."""
    name = step["tool"]
    schema = next(t["function"] for t in item["tools"] if t["function"]["name"] == name)
    props: dict = schema.get("parameters", {}).get("properties", {}) or {}
    required = set(schema.get("parameters", {}).get("required", []) or [])
    fn = _function_def(item["codes"][name], name)
    positional = [a.arg for a in fn.args.args] if fn else list(props)
    if fn:  # parameters without a default value must be given, whatever the schema says
        required |= set(positional[: len(positional) - len(fn.args.defaults)]) & set(props)
    params = set(props) | set(positional)
    equal, allowed = _branch_constants(fn, params) if fn else ({}, {})
    examples = _example_calls(item["codes"][name], name, positional)
    entities = [a for a in known if _mentions(step["question"], a)]
    entities += _phrases(step["question"]) + [step["question"]]
    entities += [d for e in entities for d in _date_forms(e)]

    options: dict[str, list] = {}
    for p in props:
        spec = props[p] if isinstance(props[p], dict) else {}
        opts: list = list(equal.get(p, []))
        opts += [ex[p] for ex in examples if p in ex]
        if p not in required and not opts:
            opts.append(_OMIT)
        opts += [v for v in (_typed(e, spec) for e in entities) if v is not None]
        opts += list(spec.get("enum", [])) + allowed.get(p, [])
        if p not in required:
            opts.append(_OMIT)
        opts.append(_fallback(spec))
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


class GoldCalls(list):
    """Gold calls in chain order; ``skipped`` lists the steps no candidate reproduced."""

    skipped: list[str]

    def __init__(self, calls=(), skipped=None):
        super().__init__(calls)
        self.skipped = skipped or []


def derive_gold_calls(
    item: dict, executor: ToolExecutor | None = None, strict: bool = True, limit: int = 96
) -> GoldCalls:
    """One OpenAI-style call per step, in chain order, whose output contains the step's answer.

    The candidates of a step (:func:`candidate_arguments`) run in the sandbox as one batch.
    When none reproduces the step's answer (ToolHop has tools whose code cannot return it),
    ``strict`` raises :class:`GoldCallError`; otherwise the step is left out and described in
    ``result.skipped``. Later steps use the gold sub-answers either way.
    """
    calls, skipped, known = [], [], []
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
    return GoldCalls(calls, skipped)


class OraclePolicy:
    """A scripted policy that replays each item's gold calls, one per turn, then answers with
    the last tool output. ``gold``: item id -> calls (default: the items' ``gold_calls``)."""

    def __init__(self, items: Sequence[dict], gold: dict[str, list[dict]] | None = None):
        gold = gold or {it["id"]: it["gold_calls"] for it in items}
        self.by_question = {it["question"]: gold[it["id"]] for it in items if it["id"] in gold}

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
