"""The checkers checked: systematically corrupted outputs must score as wrong.

:func:`corruption_table` takes known-good outputs (ToolHop's gold calls replayed by the oracle
policy, RoTBench's first acceptable answer, BFCL's first possible answers), breaks them one way
at a time and scores them through each benchmark's own ``score``:

* ``wrong_function``: another tool/function name;
* ``missing_required``: a required argument left out (ToolHop: all arguments left out);
* ``wrong_value``: a value changed, same type;
* ``wrong_type``: a value of another type.

Each row gives how many outputs were built and the share the checker accepted (ToolHop AC,
RoTBench CF, BFCL accuracy; RoTBench also TS and PI, which a wrong value or a missing key
still earns by design). Gold rows should read 100, corruption rows 0. Known exceptions, from
FTRL's substring rule for ToolHop AC: a one-character answer is found inside unrelated text, so
``toolhop-009`` (answer "s") passes on any error message and ``toolhop-010`` (answer "7") on a
changed name whose letter count is 17.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from ftrl_lab.benchmarks import bfcl, rotbench, toolhop
from ftrl_lab.benchmarks.common import function_doc
from ftrl_lab.benchmarks.registry import benchmark

CORRUPTIONS = ("wrong_function", "missing_required", "wrong_value", "wrong_type")


def changed(value: Any) -> Any:
    """The same type, another value."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1000
    if isinstance(value, str):
        return value + " (changed)"
    return "changed"


def retyped(value: Any) -> Any:
    """Another type: a string becomes a number, anything else its text."""
    return 12345 if isinstance(value, str) else json.dumps(value)


# --- BFCL ----------------------------------------------------------------------------------------
def _python_calls(calls: list[dict]) -> str:
    return (
        "["
        + ", ".join(
            f"{name}(" + ", ".join(f"{k}={v!r}" for k, v in args.items()) + ")"
            for call in calls
            for name, args in call.items()
        )
        + "]"
    )


def _bfcl_corrupt(item: dict, kind: str) -> str | None:
    """A corrupted Python-call output for one AST item (None when this item cannot show it:
    value and type changes are made only where a single call is expected, since in parallel
    items a changed call may rightly match another expected one)."""
    calls = bfcl.decode_output(bfcl.gold_output(item))
    name, args = next(iter(calls[0].items()))
    bad = copy.deepcopy(calls)
    if kind == "wrong_function":
        bad[0] = {name + "_x": args}
        return _python_calls(bad)
    if kind == "missing_required":
        required = [p for p in function_doc(item["functions"], name)["parameters"].get("required", []) if p in args]
        if not required:
            return None
        del bad[0][name][required[0]]
        return _python_calls(bad)
    if len(calls) != 1:
        return None
    p, v = next(
        ((p, v) for p, v in args.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)), (None, None)
    )
    if p is None:
        return None
    bad[0][name][p] = changed(v) if kind == "wrong_value" else retyped(v)
    return _python_calls(bad)


def bfcl_rows(items: Sequence[dict]) -> list[dict]:
    """Gold and corrupted outputs of the BFCL AST items, scored."""
    items = [it for it in items if it["ground_truth"] is not None]
    rows = []
    gold = bfcl.score(items, [{"id": it["id"], "output": bfcl.gold_output(it)} for it in items])
    rows.append(_row("bfcl", "gold", [r["correct"] for r in gold]))
    for kind in CORRUPTIONS:
        cases = [(it, out) for it in items if (out := _bfcl_corrupt(it, kind)) is not None]
        scored = bfcl.score([it for it, _ in cases], [{"id": it["id"], "output": out} for it, out in cases])
        rows.append(_row("bfcl", kind, [r["correct"] for r in scored]))
    return rows


# --- RoTBench ------------------------------------------------------------------------------------
def _react(action: str, args: dict) -> str:
    return f"Thought: corrupted\nAction: {action}\nAction Input: {json.dumps(args, ensure_ascii=False)}"


def _rot_corrupt(item: dict, kind: str) -> str | None:
    action, args = rotbench.parse_react(item["answers"][0])
    key = next((k for k, v in args.items() if v != "None"), None)
    if len(item["answers"]) != 1 or action in item["tools"][-2:] or key is None:
        return None  # finish/ask_to_user content is free; several answers may accept a change
    if kind == "wrong_function":
        other = next((t for t in item["tools"] if t not in (action, "finish")), None)
        return None if other is None else _react(other, args)
    if kind == "missing_required":
        return _react(action, {k: v for k, v in args.items() if k != key})
    return _react(action, {**args, key: changed(args[key]) if kind == "wrong_value" else retyped(args[key])})


def rotbench_rows(items: Sequence[dict], rules: str | None = None) -> list[dict]:
    """Gold and corrupted ReAct answers of the RoTBench items, scored (CF; TS and PI alongside)
    by a RoTBench rule set (default: the paper's)."""
    rules = benchmark("rotbench").check_rules(rules)
    rows = []
    gold = rotbench.score(items, [{"id": it["id"], "output": it["answers"][0]} for it in items], rules)
    rows.append(_row("rotbench", "gold", [r["CF"] for r in gold], gold))
    for kind in CORRUPTIONS:
        cases = [(it, out) for it in items if (out := _rot_corrupt(it, kind)) is not None]
        scored = rotbench.score([it for it, _ in cases], [{"id": it["id"], "output": o} for it, o in cases], rules)
        rows.append(_row("rotbench", kind, [r["CF"] for r in scored], scored))
    return rows


# --- ToolHop -------------------------------------------------------------------------------------
def _toolhop_corrupt(calls: list[dict], kind: str) -> list[dict]:
    calls = copy.deepcopy(calls)
    last = calls[-1]["function"]
    args = json.loads(last["arguments"])
    if kind == "wrong_function":
        last["name"] += "_x"
    elif kind == "missing_required":
        args = {}
    elif kind == "wrong_value":
        args = {k: changed(v) for k, v in args.items()}
    else:
        args = {k: retyped(v) for k, v in args.items()}
    last["arguments"] = json.dumps(args)
    return calls


def toolhop_rows(items: Sequence[dict], gold: dict[str, list[dict]], mode: str = "mandatory") -> list[dict]:
    """The oracle policy replaying the gold calls, then with its last call corrupted, scored (AC)."""
    rows = []
    usable = [it for it in items if gold.get(it["id"])]
    for kind in ("gold", *CORRUPTIONS):
        calls = {i: (g if kind == "gold" else _toolhop_corrupt(g, kind)) for i, g in gold.items() if g}
        out = toolhop.run(toolhop.OraclePolicy(usable, calls), usable, None, modes=[mode], show_progress=False)
        rows.append(_row("toolhop", kind, [r["AC"] for r in toolhop.score(usable, out)]))
    return rows


# --- the table -----------------------------------------------------------------------------------
def _row(benchmark: str, output: str, accepted: list[float], results: list[dict] | None = None) -> dict:
    row: dict[str, Any] = {
        "benchmark": benchmark,
        "output": output,
        "n": len(accepted),
        "expected %": 100.0 if output == "gold" else 0.0,
        "accepted %": round(100 * sum(accepted) / len(accepted), 2) if accepted else float("nan"),
    }
    for m in ("TS", "PI"):
        row[f"{m} %"] = round(100 * sum(r[m] for r in results) / len(results), 2) if results else float("nan")
    return row


def corruption_table(
    toolhop_items: Sequence[dict] | None = None,
    gold: dict[str, list[dict]] | None = None,
    rotbench_items: Sequence[dict] | None = None,
    bfcl_items: Sequence[dict] | None = None,
    bfcl_limit: int | None = 20,
):
    """Gold and corrupted outputs per benchmark (defaults: the ToolHop sample with gold calls
    derived in the sandbox, all RoTBench levels, the first ``bfcl_limit`` items of each BFCL
    AST category). One row per (benchmark, output kind)."""
    import pandas as pd

    th_items = list(toolhop_items) if toolhop_items is not None else toolhop.load()
    if gold is None:
        gold = {it["id"]: toolhop.derive_gold_calls(it, strict=False) for it in th_items}
    rot = list(rotbench_items) if rotbench_items is not None else rotbench.load()
    bf = list(bfcl_items) if bfcl_items is not None else bfcl.load(bfcl.NON_LIVE_AST + bfcl.LIVE_AST, limit=bfcl_limit)
    rows = toolhop_rows(th_items, gold) + rotbench_rows(rot) + bfcl_rows(bf)
    return pd.DataFrame(rows).set_index(["benchmark", "output"])
