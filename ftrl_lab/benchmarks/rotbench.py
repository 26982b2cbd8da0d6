"""RoTBench (Ye et al., 2024): robustness of tool selection under noisy tool documents.

Single turn. The system turn lists the tools (JSON) and asks for a ReAct answer
``Thought: ... / Action: <tool> / Action Input: <json object>``; the gold is a list of
acceptable answers in the same format. Per item, three nested scores:

* TS (tool selection): the action names the tool of an acceptable answer;
* PI (parameter identification): and the input has exactly that answer's keys;
* CF (content filling): and the values are right too.

``rules="rotbench"`` (default) follows RoTBench's published ``evaluate.py``: values are compared
key by key after dropping the keys whose gold value is the string ``"None"``; the content of the
last two tools of the list (``finish`` and ``ask_to_user``, by position, so also when noise
renamed them) is not checked, and ``finish`` written for a renamed last tool still selects it.
``rules="ftrl"`` follows FTRL's ``evaluation_rotbench.py``: CF compares the multisets of values
(keys ignored) and has none of those exceptions. Known differences from the official script,
in both modes: an empty ``{}`` input is a valid input (the official script counts it wrong,
``if not test_action_input``, though 9 gold answers per level are ``{}``), and the action name
is stripped of surrounding whitespace (the official script removes one trailing newline).

Noise levels: clean, slight, medium, heavy, union (first-turn split); reported per level and
as the mean over the levels (the paper's "average across scenarios").
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftrl_lab.benchmarks.common import (
    category_table,
    in_item_order,
    pending,
    progress,
    read_records,
    require,
    respond,
    response_text,
    write_output,
)
from ftrl_lab.core.records import RecordError, shared_dir

LEVELS = ("clean", "slight", "medium", "heavy", "union")
SCENARIOS = {
    "TG": "Text Generation",
    "RS": "Real-Time Search",
    "DU": "Data Understanding",
    "PL": "Personal Life",
    "AM": "Application Manipulation",
    "IR": "Information Retrieval",
    "FT": "Financial Transactions",
}
RULES = ("rotbench", "ftrl")
METRICS = ("TS", "PI", "CF")


def default_dir() -> Path:
    """``../shared/benchmarks/rotbench/First_Turn`` (``FTRL_ROTBENCH`` overrides it)."""
    env = os.environ.get("FTRL_ROTBENCH")
    return Path(env) if env else shared_dir() / "benchmarks" / "rotbench" / "First_Turn"


# --- parsing -------------------------------------------------------------------------------------
def parse_react(text: str) -> tuple[str, dict] | str:
    """(action, input) from a ReAct answer, or an error message.

    The action is the text between the first ``Action:`` and ``Action Input:``; the input is all
    that follows ``Action Input:``, which must be a JSON object (trailing text makes it invalid,
    as in RoTBench).
    """
    if not isinstance(text, str):
        return f"not text: {type(text).__name__}"
    a = text.find("Action:")
    b = text.find("Action Input:")
    if a == -1:
        return "no 'Action:'"
    if b == -1:
        return "no 'Action Input:'"
    if b < a:
        return "'Action Input:' before 'Action:'"
    action = text[a + len("Action:") : b].strip()
    try:
        args = json.loads(text[b + len("Action Input:") :].strip())
    except json.JSONDecodeError as e:
        return f"Action Input is not valid JSON ({e.msg})"
    except (ValueError, RecursionError) as e:  # an integer over the digit limit, or too deep
        return f"Action Input is not valid JSON ({type(e).__name__}: {str(e)[:80]})"
    if not isinstance(args, dict):
        return f"Action Input is a JSON {type(args).__name__}, not an object"
    return action, args


def tool_names(system_prompt: str) -> list[str]:
    """Names of the tools listed (as a JSON array) in a RoTBench system prompt, in order."""
    start = system_prompt.find("[")
    if start == -1:
        raise ValueError("no tool list ('[') in the system prompt")
    tools, _ = json.JSONDecoder().raw_decode(system_prompt, start)
    return [t["name"] for t in tools]


# --- loading -------------------------------------------------------------------------------------
def load(path: str | os.PathLike | None = None, levels: Sequence[str] = LEVELS, limit: int | None = None) -> list[dict]:
    """RoTBench items from a ``First_Turn`` folder (``<level>.json`` per noise level).

    Each item: ``id`` (``<level>/<index in the file>``), ``source_id``, ``category`` (the level), ``scenario``, ``messages``
    (system + user), ``answers`` (the acceptable ReAct strings) and ``tools`` (tool names in
    listed order). ``limit`` keeps the first N items of each level.
    """
    folder = Path(path) if path is not None else default_dir()
    unknown = [lv for lv in levels if lv not in LEVELS]
    if unknown:
        raise ValueError(f"unknown RoTBench level(s) {unknown} (choose from {LEVELS})")
    items = []
    for level in levels:
        file = folder / f"{level}.json"
        for n, (rec, loc) in enumerate(read_records(file)):
            if limit is not None and n >= limit:
                break
            items.append(_item(rec, loc, level))
    return items


def _item(rec: Any, loc: dict, level: str) -> dict:
    require(rec, {"conversations": list, "scenario": str}, loc)
    conv = rec["conversations"]
    roles = [c.get("from") if isinstance(c, dict) else None for c in conv]
    if roles[:2] != ["system", "user"] or roles[-1] != "assistant":
        raise RecordError(f"expected system, user, ..., assistant turns, got {roles}", field="conversations", **loc)
    answers = conv[-1].get("value")
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise RecordError(
            "the last turn's value must be a non-empty list of answer strings", field="conversations[-1].value", **loc
        )
    for k, ans in enumerate(answers):
        parsed = parse_react(ans)
        if isinstance(parsed, str):
            raise RecordError(f"gold answer {k} does not parse: {parsed}", field="conversations[-1].value", **loc)
    try:
        names = tool_names(conv[0]["value"])
    except (ValueError, KeyError, TypeError) as e:
        raise RecordError(f"cannot read the tool list: {e}", field="conversations[0].value", **loc) from None
    index = loc.get("row", loc.get("line"))
    return {
        "id": f"{level}/{index}",  # RoTBench's own ids repeat within a noisy level
        "source_id": rec.get("id"),
        "category": level,
        "scenario": rec["scenario"],
        "messages": [{"role": c["from"], "content": c["value"]} for c in conv[:-1]],
        "answers": answers,
        "tools": names,
    }


# --- scoring -------------------------------------------------------------------------------------
def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def score_output(item: dict, output: Any, rules: str = "rotbench") -> dict:
    """TS, PI, CF (0.0 / 1.0) of one model output (text or OpenAI message) for one item."""
    if rules not in RULES:
        raise ValueError(f"unknown rules {rules!r} (choose from {RULES})")
    scores = {"TS": 0.0, "PI": 0.0, "CF": 0.0, "error": None}
    parsed = parse_react(response_text(output))
    if isinstance(parsed, str):
        scores["error"] = parsed
        return scores
    action, args = parsed
    names = item["tools"]
    last = names[-1] if names else None
    second_last = names[-2] if len(names) > 1 else None
    for gold_text in item["answers"]:
        gold_action, gold_args = parse_react(gold_text)
        selected = action
        if rules == "rotbench" and gold_action == last and action == "finish":
            selected = gold_action  # "finish" still names the (possibly renamed) last tool
        if gold_action != selected:
            continue
        scores["TS"] = 1.0
        if set(gold_args) != set(args):
            continue
        scores["PI"] = 1.0
        if rules == "ftrl":
            same = Counter(map(_canon, gold_args.values())) == Counter(map(_canon, args.values()))
        elif gold_action in (last, second_last):
            same = True  # finish / ask_to_user: content is free text, not checked
        else:
            keep = [k for k, v in gold_args.items() if v != "None"]
            same = all(_canon(gold_args[k]) == _canon(args[k]) for k in keep)
        if same:
            scores["CF"] = 1.0
            break
    return scores


def score(items: Sequence[dict], outputs: Sequence[dict], rules: str = "rotbench") -> list[dict]:
    """Per-item results ``{id, category, scenario, TS, PI, CF, error}``; an item with no output
    row scores 0 with error ``"no output"``."""
    by_id = {str(o["id"]): o for o in outputs}
    results = []
    for it in items:
        row = by_id.get(str(it["id"]))
        if row is None:
            s = {"TS": 0.0, "PI": 0.0, "CF": 0.0, "error": "no output"}
        else:
            s = score_output(it, row.get("output"), rules)
        results.append({"id": it["id"], "category": it["category"], "scenario": it["scenario"], **s})
    return results


def table(results: Sequence[dict], by: str = "category"):
    """TS / PI / CF in percent per noise level (``by="scenario"``: per scenario), with the mean
    over the rows as ``overall``."""
    order = LEVELS if by == "category" else list(SCENARIOS)
    return category_table(results, METRICS, by=by, order=order, overall="macro")


# --- running -------------------------------------------------------------------------------------
def run(
    policy: Any,
    items: Sequence[dict],
    out_path: str | os.PathLike | None = None,
    batch_size: int = 8,
    show_progress: bool = True,
) -> list[dict]:
    """Ask the policy once per item (no tools offered: the tools are in the system prompt);
    rows ``{id, output}`` are appended to ``out_path`` as they finish."""
    todo, done = pending(items, out_path)
    steps = range(0, len(todo), max(1, batch_size))
    for start in progress(steps, total=len(steps), desc="RoTBench", enabled=show_progress):
        batch = todo[start : start + batch_size]
        responses = respond(policy, [it["messages"] for it in batch], [None] * len(batch))
        for it, out in zip(batch, responses):
            row = {"id": it["id"], "output": out}
            done[str(it["id"])] = row
            write_output(out_path, row)
    return in_item_order(items, done)
