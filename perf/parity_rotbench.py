"""Side-by-side agreement of our RoTBench scorer with the two official ones, on perturbed answers.

For every item of the shared ``rotbench/First_Turn`` split (plus constructed variants of some
items: a gold value made numeric, the gold tool renamed ``finish`` / ``ask_to_user``) we build
predictions from the gold answers (as is, re-spaced, re-cased, re-typed, with keys and values
changed, wrong tools, non-object inputs, empty output, ...) and score each with

* RoTBench's ``Code/Evaluation/evaluate.py`` (``ts_eval``, ``pi_eval``, ``cf_eval`` on a one-item
  file; a pass that raises counts 0 for its metric, as ``rules="official"`` documents), and
* FTRL's ``Code/evaluation/evaluation_rotbench.py`` (``sample_process_open`` with the model call
  replaced by the prediction; a run that raises counts 0),

next to ``ftrl_lab.benchmarks.rotbench.score_output`` under each rule set (an OpenAI message is
given to the scripts as its ``content``, as FTRL's API path does). An item agrees when
TS, PI and CF are all equal. The official scripts are not part of this project: give the folder
holding ``evaluate.py`` and ``evaluation_rotbench.py`` (copies of the upstream files; the FTRL
one is imported with stand-ins for its model helpers) with ``--official DIR``; without them
the script says so and exits 0.

    python perf/parity_rotbench.py --official /tmp/official [--limit N] [--show 5]
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import random
import sys
import types
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftrl_lab.benchmarks import rotbench as rb  # noqa: E402

METRICS = ("TS", "PI", "CF")


# --- the official scripts ----------------------------------------------------------------------
def _load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_official(folder: Path):
    """(rotbench evaluate module, ftrl evaluation module), FTRL's model helpers stood in for."""
    rot = _load_module(folder / "evaluate.py", "rotbench_official_evaluate")
    utils_pkg = types.ModuleType("utils")
    utils_pkg.__path__ = []
    helpers = types.ModuleType("utils.utils")
    for fn in ("load_model", "get_params", "answer_verify", "get_feedback", "chat_close"):
        setattr(helpers, fn, lambda *a, **k: None)
    helpers.chat_open = lambda messages, args, tools=None: [args.prediction]
    parse = types.ModuleType("utils.parse_output")
    parse.get_parse_output = lambda *a, **k: None
    sys.modules.update({"utils": utils_pkg, "utils.utils": helpers, "utils.parse_output": parse})
    ftrl = _load_module(folder / "evaluation_rotbench.py", "ftrl_official_evaluation_rotbench")
    return rot, ftrl


def official_scores(rot, record: dict, prediction) -> dict:
    """TS/PI/CF from RoTBench's three passes on a one-item file; a pass that raises gives 0."""
    test = [{"conversations": [{"from": "assistant", "value": prediction}]}]
    out = {}
    for metric, fn in zip(METRICS, (rot.ts_eval, rot.pi_eval, rot.cf_eval)):
        rot.cata_list, rot.check_list = [], []
        try:
            fn(copy.deepcopy(test), [record])
            out[metric] = float(rot.check_list[-1][0])
        except Exception:  # noqa: BLE001 - a crash is the outcome we compare with
            out[metric] = 0.0
    return out


def ftrl_scores(ftrl, item: dict, prediction) -> dict:
    args = types.SimpleNamespace(model_path="m", prediction=prediction)
    sample = {"messages": item["messages"], "answer": item["answers"], "data_source": "RoTBench"}
    try:
        return ftrl.sample_process_open(sample, args)["metrics"]
    except Exception:  # noqa: BLE001
        return dict.fromkeys(METRICS, 0.0)


# --- constructed items -------------------------------------------------------------------------
def _split(answer: str) -> tuple[str, str, dict]:
    """(thought, action, input) of a well-formed gold answer."""
    head, _, rest = answer.partition("\nAction: ")
    action, _, inp = rest.partition("\nAction Input: ")
    return head, action, json.loads(inp)


def _react(thought: str, action: str, args, **dump) -> str:
    dump.setdefault("ensure_ascii", False)
    return f"{thought}\nAction: {action}\nAction Input: {json.dumps(args, **dump)}"


def _rename_tool(record: dict, old: str, new: str) -> dict:
    rec = copy.deepcopy(record)
    conv = rec["conversations"]
    conv[0]["value"] = conv[0]["value"].replace(f'"name": "{old}"', f'"name": "{new}"')
    conv[-1]["value"] = [a.replace(f"Action: {old}\n", f"Action: {new}\n") for a in conv[-1]["value"]]
    return rec


def constructed(record: dict) -> list[tuple[str, dict]]:
    """Variants of one record that exercise rules the shared data rarely reaches."""
    out = []
    _, action, args = _split(record["conversations"][-1]["value"][0])
    tools = rb.tool_names(record["conversations"][0]["value"])
    if action not in tools[-2:]:
        for new in ("finish", "ask_to_user"):
            if new not in tools:
                out.append((f"renamed_{new}", _rename_tool(record, action, new)))
    key = next((k for k, v in args.items() if v != "None"), None)
    if key is not None:
        for kind, value in (("numeric_int", 7), ("numeric_float", 7.0), ("numeric_list", [1, 2])):
            rec = copy.deepcopy(record)
            answers = rec["conversations"][-1]["value"]
            thought, act, a = _split(answers[0])
            answers[0] = _react(thought, act, {**a, key: value})
            out.append((kind, rec))
    return out


# --- predictions -------------------------------------------------------------------------------
def predictions(item: dict, rng: random.Random) -> list[tuple[str, object]]:
    """(kind, prediction) pairs built from the item's gold answers."""
    out: list[tuple[str, object]] = []
    tools = item["tools"]
    for k, gold in enumerate(item["answers"][:2]):
        thought, action, args = _split(gold)
        out.append((f"gold{k}", gold))
        if k:
            continue
        out += [
            ("action_no_space", gold.replace("Action: ", "Action:", 1)),
            ("action_two_spaces", gold.replace("Action: ", "Action:  ", 1)),
            ("action_trailing_space", gold.replace("\nAction Input:", " \nAction Input:", 1)),
            ("action_crlf", gold.replace("\n", "\r\n")),
            ("input_no_space", gold.replace("Action Input: ", "Action Input:", 1)),
            ("input_two_spaces", gold.replace("Action Input: ", "Action Input:  ", 1)),
            ("input_newline", gold.replace("Action Input: ", "Action Input:\n", 1)),
            ("blank_line_between", gold.replace("\nAction Input:", "\n\nAction Input:", 1)),
            ("no_thought", f"Action: {action}\nAction Input: {json.dumps(args, ensure_ascii=False)}"),
            ("leading_text", "Sure.\n" + gold),
            ("trailing_text", gold + "\nObservation: done"),
            ("trailing_newline", gold + "\n"),
            ("thought_mentions_action", gold.replace(thought, thought + " The Action: is clear.", 1)),
            ("input_before_action", f"{thought}\nAction Input: {json.dumps(args)}\nAction: {action}"),
            ("compact_json", _react(thought, action, args, separators=(",", ":"))),
            ("indented_json", _react(thought, action, args, indent=2)),
            ("ascii_json", _react(thought, action, args, ensure_ascii=True)),
            ("keys_shuffled", _react(thought, action, dict(rng.sample(list(args.items()), len(args))))),
            ("truncated_json", gold[:-1]),
            ("action_upper", _react(thought, action.upper(), args)),
            ("finish", _react(thought, "finish", args)),
            ("ask_to_user", _react(thought, "ask_to_user", args)),
            ("last_tool", _react(thought, tools[-1], args)),
            ("second_last_tool", _react(thought, tools[-2], args)),
            ("wrong_tool", _react(thought, rng.choice(tools), args)),
            ("empty_input", _react(thought, action, {})),
            ("list_input", _react(thought, action, [args])),
            ("int_input", _react(thought, action, 5)),
            ("string_input", _react(thought, action, "x")),
            ("null_input", _react(thought, action, None)),
            ("true_input", _react(thought, action, True)),
            ("empty_output", ""),
            ("none_output", None),
            ("whitespace_output", "  \n"),
            ("prose", "I cannot help with that."),
            ("message_dict", {"role": "assistant", "content": gold}),
            ("two_blocks", gold + "\n" + gold),
            ("action_twice", gold.replace("\nAction Input:", f"\nAction: {action}\nAction Input:", 1)),
            ("input_twice", gold + "\nAction Input: {}"),
            ("python_literal_input", f"{thought}\nAction: {action}\nAction Input: {args!r}"),
            ("deep_nesting", f"{thought}\nAction: {action}\nAction Input: " + "[" * 100_000),
            ("nan_input", f'{thought}\nAction: {action}\nAction Input: {{"v": NaN}}'),
        ]
        if args:
            key = rng.choice(list(args))
            others = [k for k in args if k != key]
            out += [
                ("value_changed", _react(thought, action, {**args, key: "changed"})),
                ("value_int", _react(thought, action, {**args, key: 7})),
                ("value_float", _react(thought, action, {**args, key: 7.0})),
                ("value_true", _react(thought, action, {**args, key: True})),
                ("value_one", _react(thought, action, {**args, key: 1})),
                ("value_list", _react(thought, action, {**args, key: [args[key]]})),
                ("value_dict", _react(thought, action, {**args, key: {"v": args[key]}})),
                ("value_none_string", _react(thought, action, {**args, key: "None"})),
                ("value_null", _react(thought, action, {**args, key: None})),
                ("value_spaced", _react(thought, action, {**args, key: f" {args[key]} "})),
                ("value_nan", _react(thought, action, {**args, key: float("nan")})),
                ("duplicate_key", _react(thought, action, args)[:-1] + f', {json.dumps(key)}: "dup"}}'),
                ("key_missing", _react(thought, action, {k: v for k, v in args.items() if k != key})),
                ("key_extra", _react(thought, action, {**args, "extra_key": "x"})),
                ("key_renamed", _react(thought, action, {("X" + k if k == key else k): v for k, v in args.items()})),
            ]
            if isinstance(args[key], (int, float)) and not isinstance(args[key], bool):
                other = float(args[key]) if isinstance(args[key], int) else int(args[key])
                out.append(("numeric_retyped", _react(thought, action, {**args, key: other})))
            if others:
                k2 = others[0]
                swapped = {**args, key: args[k2], k2: args[key]}
                out.append(("values_swapped", _react(thought, action, swapped)))
    return out


# --- main ---------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--official", type=Path, required=False, help="folder with evaluate.py and evaluation_rotbench.py")
    ap.add_argument("--limit", type=int, default=None, help="items per noise level")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=5, help="disagreements to print per (rules, scorer)")
    ap.add_argument("--out", type=Path, default=None, help="write the counts as JSON here")
    args = ap.parse_args(argv)
    if args.official is None or not (args.official / "evaluate.py").exists():
        print("SKIP: give --official DIR holding RoTBench's evaluate.py and FTRL's evaluation_rotbench.py")
        return 0
    rot, ftrl = load_official(args.official)
    rng = random.Random(args.seed)
    folder = rb.default_dir()
    cases = []  # (kind, item, record)
    for level in rb.LEVELS:
        records = json.loads((folder / f"{level}.json").read_text(encoding="utf-8"))
        items = rb.load(folder, levels=[level], limit=args.limit)
        for item, rec in zip(items, records):
            cases.append(("data", item, rec))
            for kind, variant in constructed(rec):
                conv = variant["conversations"]
                derived = {
                    **item,
                    "id": f"{item['id']}/{kind}",
                    "answers": conv[-1]["value"],
                    "tools": rb.tool_names(conv[0]["value"]),
                    "messages": [{"role": c["from"], "content": c["value"]} for c in conv[:-1]],
                }
                cases.append((kind, derived, variant))

    # (rules, scorer) -> kind -> Counter(n, agree); scorer: "official" or "ftrl" script
    stats: dict[tuple[str, str], dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    shown: Counter = Counter()
    n_pred = 0
    for item_kind, item, record in cases:
        for kind, pred in predictions(item, rng):
            n_pred += 1
            text = pred["content"] if isinstance(pred, dict) else pred  # an API message: its content
            theirs = {"official": official_scores(rot, record, text), "ftrl": ftrl_scores(ftrl, item, text)}
            for rules in rb.RULES:
                ours = rb.score_output(item, pred, rules)
                for scorer, ref in theirs.items():
                    same = all(ours[m] == ref[m] for m in METRICS)
                    label = kind if item_kind == "data" else f"{item_kind}:{kind}"
                    s = stats[(rules, scorer)][label]
                    s["n"] += 1
                    s["agree"] += same
                    if not same and (rules == scorer) and shown[(rules, scorer)] < args.show:
                        shown[(rules, scorer)] += 1
                        print(
                            f"DIFF rules={rules} vs {scorer} [{label}] {item['id']}: ours "
                            f"{[ours[m] for m in METRICS]} theirs {[ref[m] for m in METRICS]} {pred!r:.200}"
                        )
    print(f"\n{len(cases)} items (shared data + constructed variants), {n_pred} predictions")
    print(f"\n{'our rules':<10}{'vs script':<11}{'n':>8}{'agree %':>10}")
    summary = {}
    for (rules, scorer), per in sorted(stats.items()):
        n = sum(c["n"] for c in per.values())
        agree = sum(c["agree"] for c in per.values())
        summary[f"{rules}_vs_{scorer}"] = {"n": n, "agree": agree}
        print(f"{rules:<10}{scorer:<11}{n:>8}{100 * agree / n:>10.2f}")
    for rules, scorer in (("official", "official"), ("ftrl", "ftrl")):
        bad = {k: c for k, c in stats[(rules, scorer)].items() if c["agree"] < c["n"]}
        if bad:
            print(f"\nkinds where rules={rules} disagrees with the {scorer} script:")
            for k, c in sorted(bad.items()):
                print(f"  {k:<40}{c['n'] - c['agree']:>6} of {c['n']}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
