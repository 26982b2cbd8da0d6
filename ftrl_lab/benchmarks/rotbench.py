"""RoTBench (Ye et al., 2024): robustness of tool selection under noisy tool documents.

Single turn. The system turn lists the tools (JSON) and asks for a ReAct answer
``Thought: ... / Action: <tool> / Action Input: <json object>``; the gold is a list of
acceptable answers in the same format. Per item, three nested scores:

* TS (tool selection): the action names the tool of an acceptable answer;
* PI (parameter identification): and the input has exactly that answer's keys;
* CF (content filling): and the values are right too.

Three rule sets (``rules=``), each reproducing one scorer exactly, quirks included:

* ``"ftrl"`` (:data:`DEFAULT_RULES`: FTRL's paper numbers were made with it) follows FTRL's
  ``Code/evaluation/evaluation_rotbench.py``: the action is the text between the first
  ``"Action: "`` and ``"Action Input: "`` (each with its space), stripped; the input is the JSON
  between the first and a second ``"Action Input: "``, stripped, and must be an object (``{}``
  is fine); PI compares the key sets; CF compares the values as multisets (keys ignored; Python
  equality, so ``1``, ``1.0`` and ``true`` are one value). The script scores inside one
  ``try``: a value that cannot be counted (a list or object) stops the scoring of that item
  with the scores reached so far (TS and PI of that answer kept, CF 0, later answers unseen).
* ``"official"`` follows RoTBench's ``Code/Evaluation/evaluate.py`` (version 0): the action is
  the text from 8 characters after ``"Action:"`` to ``"Action Input:"`` with one trailing
  newline removed, the input the JSON from 14 characters after ``"Action Input:"`` (fixed
  offsets: a missing space after a colon or extra whitespace around the action scores 0); an
  input that is not JSON, a string or falsy (``{}``, even for gold answers that are ``{}``)
  scores 0; ``finish`` written for the (possibly renamed) last tool selects it; CF compares
  key by key with Python equality (``1 == 1.0``) after dropping the keys whose gold value is
  ``"None"`` (also from the model's input, which then stays dropped for the item's later
  answers) and is not checked for the last two tools of the list and for tools literally named
  ``finish`` or ``ask_to_user``. Where the official script raises (an empty action, as for an
  empty output or ``Action Input`` before ``Action``: IndexError; a non-object input with the
  right action: AttributeError in ``pi_eval``), its run stops with no score at all; here the
  metric whose pass raises scores 0 (the passes that complete keep their score: TS of a
  non-object input with the right action is 1) and ``error`` names the exception.
* ``"lenient"`` is this module's own forgiving reading: whitespace around the action and
  after the colons is ignored, ``{}`` is a valid input, and the content rules are the official
  ones except that values compare as JSON (``1`` is not ``1.0``) and the no-check exception
  is by position only (the last two tools).

Each result row carries ``rules``. Noise levels: clean, slight, medium, heavy, union
(first-turn split); reported per level and as the mean over the levels (the paper's "average
across scenarios").
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Sequence
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
RULES = ("ftrl", "official", "lenient")
DEFAULT_RULES = "ftrl"
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
def _zero(error: str | None = None) -> dict:
    return {"TS": 0.0, "PI": 0.0, "CF": 0.0, "error": error}


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _score_lenient(item: dict, text: str) -> dict:
    scores = _zero()
    parsed = parse_react(text)
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
        if gold_action == last and action == "finish":
            selected = gold_action  # "finish" still names the (possibly renamed) last tool
        if gold_action != selected:
            continue
        scores["TS"] = 1.0
        if set(gold_args) != set(args):
            continue
        scores["PI"] = 1.0
        if gold_action in (last, second_last):
            same = True  # finish / ask_to_user: content is free text, not checked
        else:
            keep = [k for k, v in gold_args.items() if v != "None"]
            same = all(_canon(gold_args[k]) == _canon(args[k]) for k in keep)
        if same:
            scores["CF"] = 1.0
            break
    return scores


# FTRL's evaluation_rotbench.py ----------------------------------------------------------------
def _ftrl_split(text: str) -> tuple[str, dict]:
    """(tool, parameters) cut as FTRL's script cuts them; raises where it raises."""
    tool = text.split("Action: ")[1].split("Action Input: ")[0].strip()
    parameters = json.loads(text.split("Action Input: ")[1].strip())
    if type(parameters) is not dict:
        raise TypeError(f"parameters should be dict, got {type(parameters).__name__}")
    return tool, parameters


def _score_ftrl(item: dict, text: str) -> dict:
    scores = _zero()
    try:
        answers = [_ftrl_split(a) for a in item["answers"]]
    except Exception as e:  # noqa: BLE001 - FTRL's run stops on a gold answer it cannot cut
        scores["error"] = f"FTRL's script raises {type(e).__name__} on a gold answer: {e}"
        return scores
    try:
        tool, parameters = _ftrl_split(text)
        for gold_tool, gold_parameters in answers:
            if gold_tool != tool:
                continue
            scores["TS"] = 1.0
            if gold_parameters.keys() != parameters.keys():
                continue
            scores["PI"] = 1.0
            if Counter(gold_parameters.values()) == Counter(parameters.values()):
                scores["CF"] = 1.0
                break
    except Exception as e:  # noqa: BLE001 - FTRL's script catches everything and keeps the scores so far
        scores["error"] = f"{type(e).__name__}: {e}"
    return scores


# RoTBench's evaluate.py -----------------------------------------------------------------------
class _OfficialCrash(Exception):
    """Where RoTBench's evaluate.py raises: its run ends there."""


def _official_action(text: str) -> str:
    action = text[text.find("Action:") + 8 : text.find("Action Input:")]
    if not action:
        raise _OfficialCrash("IndexError (empty action)")
    return action[:-1] if action[-1] == "\n" else action


def _official_input(text: str) -> Any:
    try:
        return json.loads(text[text.find("Action Input:") + 14 :])
    except json.JSONDecodeError:
        return 0
    except RecursionError:
        raise _OfficialCrash("RecursionError (input nested too deeply)") from None


def _official_pass(item: dict, text: str, metric: str) -> float:
    """One of evaluate.py's three passes (ts_eval, pi_eval, cf_eval) on one item: 1.0 or 0.0."""
    names = item["tools"]
    action = _official_action(text)
    given = _official_input(text)
    if isinstance(given, str) or not given:
        return 0.0
    for gold_text in item["answers"]:
        gold_action = _official_action(gold_text)
        if metric != "TS":
            try:
                gold_input = json.loads(gold_text[gold_text.find("Action Input:") + 14 :])
            except (json.JSONDecodeError, RecursionError) as e:
                raise _OfficialCrash(f"{type(e).__name__} on a gold answer") from None
        if gold_action == names[-1] and action == "finish":
            action = gold_action  # and stays so for the later answers
        if gold_action != action:
            continue
        if metric == "TS":
            return 1.0
        if not hasattr(given, "keys"):
            raise _OfficialCrash(f"AttributeError ('{type(given).__name__}' object has no attribute 'keys')")
        if gold_input.keys() != given.keys():
            continue
        if metric == "PI":
            return 1.0
        if len(names) < 2:
            raise _OfficialCrash("IndexError (fewer than two tools)")
        free = gold_action in (names[-1], names[-2], "finish", "ask_to_user")
        for key in [k for k, v in gold_input.items() if v == "None"]:
            del gold_input[key]
            del given[key]  # the model's input keeps this loss for the later answers
        if free or gold_input == given:
            return 1.0
    return 0.0


def _score_official(item: dict, output: Any) -> dict:
    scores = _zero()
    if not isinstance(output, str):
        scores["error"] = f"official evaluate.py raises AttributeError (output is {type(output).__name__})"
        return scores
    for metric in METRICS:
        try:
            scores[metric] = _official_pass(item, output, metric)
        except Exception as e:  # noqa: BLE001 - every exception ends evaluate.py's run
            why = str(e) if isinstance(e, _OfficialCrash) else f"{type(e).__name__} ({e})"
            scores["error"] = scores["error"] or f"official evaluate.py raises {why} in its {metric} pass"
    if scores["error"] is None and scores["TS"] == 0.0:
        given = _official_input(output) if _official_action_ok(output) else None
        if isinstance(given, str) or not given:
            scores["error"] = "the input at 'Action Input:' + 14 characters is not JSON, is a string, or is empty"
    return scores


def _official_action_ok(text: str) -> bool:
    try:
        _official_action(text)
        _official_input(text)
    except _OfficialCrash:
        return False
    return True


_SCORERS: dict[str, Callable[[dict, str], dict]] = {"ftrl": _score_ftrl, "lenient": _score_lenient}


def score_output(item: dict, output: Any, rules: str = DEFAULT_RULES) -> dict:
    """TS, PI, CF (0.0 / 1.0) and ``error`` of one model output (text or OpenAI message) for one
    item, under one rule set (see the module docstring)."""
    if rules not in RULES:
        raise ValueError(f"unknown RoTBench rules {rules!r} (choose from {RULES})")
    if rules == "official":
        return _score_official(item, response_text(output) if isinstance(output, dict) else output)
    return _SCORERS[rules](item, response_text(output))


def score(items: Sequence[dict], outputs: Sequence[dict], rules: str = DEFAULT_RULES) -> list[dict]:
    """Per-item results ``{id, category, scenario, TS, PI, CF, error, rules}``; an item with no
    output row scores 0 with error ``"no output"``."""
    if rules not in RULES:
        raise ValueError(f"unknown RoTBench rules {rules!r} (choose from {RULES})")
    by_id = {str(o["id"]): o for o in outputs}
    results = []
    for it in items:
        row = by_id.get(str(it["id"]))
        s = _zero("no output") if row is None else score_output(it, row.get("output"), rules)
        results.append({"id": it["id"], "category": it["category"], "scenario": it["scenario"], **s, "rules": rules})
    return results


def table(results: Sequence[dict], by: str = "category"):
    """TS / PI / CF in percent per noise level (``by="scenario"``: per scenario), with the mean
    over the rows as ``overall``; ``attrs["rules"]`` names the rule set(s) of the results."""
    order = LEVELS if by == "category" else list(SCENARIOS)
    df = category_table(results, METRICS, by=by, order=order, overall="macro")
    df.attrs["rules"] = ",".join(sorted({r["rules"] for r in results if r.get("rules")}))
    return df


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
