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

Gold plans (given or derived in the sandbox) and the oracle policy that replays them live in
:mod:`ftrl_lab.benchmarks.toolhop_gold`; their names are re-exported here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftrl_lab.agent.policies import as_rollout_policy
from ftrl_lab.benchmarks.common import category_table, read_records, require, write_output
from ftrl_lab.benchmarks.toolhop_gold import (
    GoldCallError,
    GoldCallFormatError,
    GoldCalls,
    OraclePolicy,
    candidate_arguments,
    derive_gold_calls,
    gold_plan,
    mentions,
    parameter_names,
    parse_gold_calls,
    plan_table,
    reason_tally,
)
from ftrl_lab.core.records import EnvRecord, RecordError, function_names_defined, shared_dir
from ftrl_lab.core.reward import answer_verify, normalise

__all__ = [  # this module's names and the gold-plan names re-exported from toolhop_gold
    "DEFAULT_RULES",
    "MAX_TURNS",
    "MODES",
    "PROMPTS",
    "RULES",
    "GoldCallError",
    "GoldCallFormatError",
    "GoldCalls",
    "OraclePolicy",
    "Verdict",
    "answer_correct",
    "candidate_arguments",
    "chain",
    "check_rules",
    "default_path",
    "derive_gold_calls",
    "gold_plan",
    "judge",
    "load",
    "parse_gold_calls",
    "plan_table",
    "prompt",
    "reason_tally",
    "run",
    "score",
    "table",
    "to_env_record",
]

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
    gold = rec.get("gold_calls") or []
    try:
        gold_calls = parse_gold_calls(gold, parameter_names(codes)) if gold else []
    except GoldCallFormatError as e:
        raise RecordError(str(e), field="gold_calls", **loc) from None
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
        "gold_calls": gold_calls,
        "hop_count": rec.get("hop_count", len(steps)),
        "domain": rec.get("domain", ""),
    }


def chain(steps: list[dict], final_answer: str = "") -> list[dict]:
    """Steps in dependency order: a step whose question mentions another step's answer comes
    after it; among ready steps the file order is kept, and the one giving the final answer
    goes last."""
    n = len(steps)
    deps = {i: {j for j in range(n) if j != i and mentions(steps[i]["question"], steps[j]["answer"])} for i in range(n)}
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
RULES = ("official", "ftrl", "lenient")
"""Answer-correctness rule sets. ``official``: ToolHop's own ``evaluation_open.py`` (the answer,
trailing "." and "0" characters stripped and lower-cased, is a substring of the last reply, or
of the tool message before it, lower-cased, commas removed, same stripping; not split at ", ").
``ftrl``: FTRL's ``Code/evaluation/evaluation_toolhop.py`` (FTRL's ``answer_verify`` on the last
reply, or on the tool message before it: every ", "-separated part, lower-cased without commas,
is a substring). ``lenient``: this project's earlier rule, as ``ftrl`` except that a tool message without
text counts as empty (FTRL reads ``None`` as "none", which contains "no" and "one"). Where a
script would crash or record nothing, its rule set scores 0 and says so in ``note``."""
DEFAULT_RULES = "ftrl"
"""FTRL's paper ran ToolHop through its own evaluation_toolhop.py."""


@dataclass(frozen=True)
class Verdict:
    """One transcript judged: ``correct``, and ``note`` when the official script would not have
    recorded a plain 0/1 (it crashes, or leaves the field out and its final sum crashes)."""

    correct: bool
    note: str = ""


def _official_form(text: str) -> str:
    return text.rstrip(".0").replace(",", "").lower()


def _official_verdict(messages: Sequence[dict], answer: str) -> Verdict:
    if not messages:
        return Verdict(False, "official script: IndexError on an empty conversation")
    last = messages[-1]
    content = last.get("content")
    if last.get("role") != "assistant" or not content:
        return Verdict(False, "official script records no answer_correct (its final sum raises KeyError)")
    if not isinstance(content, str):
        return Verdict(False, f"official script: AttributeError ({type(content).__name__} content)")
    gold = answer.rstrip(".0").lower()
    if gold in _official_form(content):
        return Verdict(True)
    if len(messages) < 2:
        return Verdict(False, "official script: IndexError (no message before the reply)")
    before = messages[-2]
    if before.get("role") != "tool":
        return Verdict(False)
    if not isinstance(before.get("content"), str):
        return Verdict(False, f"official script: AttributeError ({type(before.get('content')).__name__} tool content)")
    return Verdict(gold in _official_form(before["content"]))


def _ftrl_verdict(messages: Sequence[dict], answer: str) -> Verdict:
    if not messages:
        return Verdict(False, "FTRL script: IndexError on an empty conversation")
    last = messages[-1]
    if last.get("role") != "assistant" or not last.get("content"):
        return Verdict(False)
    if answer_verify(last["content"], answer):
        return Verdict(True)
    if len(messages) < 2:
        return Verdict(False, "FTRL script: IndexError (no message before the reply)")
    before = messages[-2]
    if before.get("role") != "tool":
        return Verdict(False)
    if "content" not in before:
        return Verdict(False, "FTRL script: KeyError (tool message without content)")
    return Verdict(answer_verify(before["content"], answer))


def _lenient_verdict(messages: Sequence[dict], answer: str) -> Verdict:
    if not messages or messages[-1].get("role") != "assistant" or not messages[-1].get("content"):
        return Verdict(False)
    if answer_verify(messages[-1]["content"], answer):
        return Verdict(True)
    return Verdict(
        len(messages) > 1
        and messages[-2].get("role") == "tool"
        and answer_verify(messages[-2].get("content") or "", answer)
    )


_VERDICTS = {"official": _official_verdict, "ftrl": _ftrl_verdict, "lenient": _lenient_verdict}


def check_rules(rules: str) -> str:
    """``rules`` if it names a rule set, else a ``ValueError`` listing them."""
    if rules not in RULES:
        raise ValueError(f"unknown ToolHop rules {rules!r} (choose from {RULES})")
    return rules


def judge(messages: Sequence[dict], answer: str, rules: str = DEFAULT_RULES) -> Verdict:
    """Answer correctness of one transcript under a rule set (:data:`RULES`)."""
    return _VERDICTS[check_rules(rules)](messages, str(answer))


def answer_correct(messages: Sequence[dict], answer: str, rules: str = DEFAULT_RULES) -> bool:
    """AC: the last message is a non-empty assistant reply containing the answer, or the tool
    message just before it does, by the rule set's substring test (:data:`RULES`)."""
    return judge(messages, answer, rules).correct


def score(items: Sequence[dict], outputs: Sequence[dict], rules: str = DEFAULT_RULES) -> list[dict]:
    """Per (item, mode) results ``{id, category: mode, AC, calls, missing, rules, note}``, one per
    output row; items without an output row in a mode that other rows have are scored 0."""
    check_rules(rules)
    by_key = {(str(o["id"]), o["mode"]): o for o in outputs}
    modes = [m for m in MODES if any(k[1] == m for k in by_key)]
    results = []
    for mode in modes:
        for it in items:
            row = by_key.get((str(it["id"]), mode))
            messages = row["messages"] if row else []
            calls = sum(len(m.get("tool_calls") or []) for m in messages if m.get("role") == "assistant")
            verdict = judge(messages, it["answer"], rules) if row else Verdict(False, "no output row")
            results.append(
                {
                    "id": it["id"],
                    "category": mode,
                    "AC": float(verdict.correct),
                    "calls": calls,
                    "missing": row is None,
                    "rules": rules,
                    "note": verdict.note,
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
