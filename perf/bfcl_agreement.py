"""Agreement between our BFCL AST checker (ftrl_lab.benchmarks.bfcl) and BFCL's own one.

For every item of the single-turn AST categories we build a set of decoded model outputs
(the gold answer, the gold answer with another possible value, type and formatting variants
that should pass, and systematic corruptions that should fail) and ask both checkers. The
script prints the agreement per variant and overall, and the disagreements.

BFCL's checker lives in ``bfcl_eval.eval_checker.ast_eval.ast_checker``. Importing it imports
``bfcl_eval.constants.model_config``, the registry of every model handler, which pulls in heavy
pinned packages (anthropic, mistralai, cohere, google-genai, qwen-agent, ...). The checker uses
the registry for one thing only: whether a model had dots in function names replaced by
underscores. Unless ``--no-stub`` is given, when the plain import fails we import the checker
with a stand-in registry that answers "no" to that question (we compare with dotted names), and
say so. If the checker still cannot be imported, the script prints why and exits 0.

    python perf/bfcl_agreement.py [--limit N] [--categories simple multiple ...] [--out report.json]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
import time
import types
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftrl_lab.benchmarks import bfcl  # noqa: E402
from ftrl_lab.benchmarks.common import concrete_value, function_doc  # noqa: E402


# --- importing BFCL's checker ------------------------------------------------------------------
def import_official(allow_stub: bool = True):
    """(ast_checker, Language.PYTHON, model_name, how) or raise ImportError with the reason."""
    try:
        mod = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
        enums = importlib.import_module("bfcl_eval.constants.enums")
        mapping = mod.MODEL_CONFIG_MAPPING
        name = next(k for k, cfg in mapping.items() if not getattr(cfg, "underscore_to_dot", True))
        return mod.ast_checker, enums.Language.PYTHON, name.replace("/", "_"), "plain import"
    except ImportError as first:
        if not allow_stub:
            raise
        reason = f"{type(first).__name__}: {first}"
    for key in [k for k in sys.modules if k.startswith("bfcl_eval")]:
        del sys.modules[key]

    class _Config:
        underscore_to_dot = False

    class _Registry(dict):
        def __missing__(self, key):
            return _Config()

    stub = types.ModuleType("bfcl_eval.constants.model_config")
    stub.MODEL_CONFIG_MAPPING = _Registry()
    sys.modules["bfcl_eval.constants.model_config"] = stub
    mod = importlib.import_module("bfcl_eval.eval_checker.ast_eval.ast_checker")
    enums = importlib.import_module("bfcl_eval.constants.enums")
    return (
        mod.ast_checker,
        enums.Language.PYTHON,
        "stub-model",
        f"stubbed model registry (plain import failed: {reason})",
    )


# --- output variants -------------------------------------------------------------------------
def _required(item, name):
    return function_doc(item["functions"], name)["parameters"].get("required", [])


def _gold_calls(item, pick: int = 0):
    """Decoded gold calls; ``pick`` chooses the possible value (clamped) of every parameter."""
    calls = []
    for expected in item["ground_truth"]:
        name, options = next(iter(expected.items()))
        req = set(_required(item, name))
        args = {}
        for p, vals in options.items():
            vals = [v for v in vals if v != ""] if p in req else vals
            if not vals:
                continue
            v = vals[min(pick, len(vals) - 1)]
            if v != "":
                args[p] = concrete_value(v)
        calls.append({name: args})
    return calls


def _perturb(v):
    """A value of the same type that should not be accepted."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 7
    if isinstance(v, float):
        return v + 7.5
    if isinstance(v, str):
        return v + " zzqx"
    if isinstance(v, list):
        return v + [v[0]] if v else ["zzqx"]
    if isinstance(v, dict):
        return {**v, "zzqx": 1}
    return "zzqx"


def _retype(v):
    """The same value as another type (int -> str, str -> int when numeric, float -> str, ...)."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            return [v]
    if isinstance(v, list):
        return json.dumps(v)
    if isinstance(v, dict):
        return json.dumps(v)
    return v


def variants(item):
    """(kind, decoded calls) pairs for one AST item."""
    gold = _gold_calls(item)
    out = [("gold", gold), ("gold_second_value", _gold_calls(item, 1))]
    first_name, first_args = next(iter(gold[0].items()))
    mutable = [p for p in first_args]
    # formatting variants
    alt = copy.deepcopy(gold)
    args = alt[0][first_name]
    for p, v in args.items():
        if isinstance(v, str):
            args[p] = v.upper().replace(" ", "  ") + "."
            break
    out.append(("string_case_punct", alt))
    alt = copy.deepcopy(gold)
    for p, v in alt[0][first_name].items():
        if isinstance(v, float) and v == int(v):
            alt[0][first_name][p] = int(v)
            break
    out.append(("int_for_float", alt))
    alt = copy.deepcopy(gold)
    for p, v in alt[0][first_name].items():
        if isinstance(v, int) and not isinstance(v, bool):
            alt[0][first_name][p] = float(v)
            break
    out.append(("float_for_int", alt))
    alt = copy.deepcopy(gold)
    for p, v in alt[0][first_name].items():
        if isinstance(v, list) and v and all(isinstance(x, float) for x in v):
            alt[0][first_name][p] = [int(x) for x in v]
            break
        if isinstance(v, list) and v and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
            alt[0][first_name][p] = [float(x) for x in v]
            break
    out.append(("list_item_numeric_type", alt))
    alt = copy.deepcopy(gold)
    for p, v in alt[0][first_name].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            alt[0][first_name][p] = "some_variable"
            break
    out.append(("variable_for_number", alt))
    alt = copy.deepcopy(gold)
    for p, v in alt[0][first_name].items():
        if isinstance(v, list):
            alt[0][first_name][p] = tuple(v)
            break
    out.append(("tuple_for_list", alt))
    # corruptions
    alt = copy.deepcopy(gold)
    alt[0] = {first_name + "_x": alt[0][first_name]}
    out.append(("wrong_function", alt))
    for p in mutable[:3]:
        alt = copy.deepcopy(gold)
        del alt[0][first_name][p]
        out.append(("missing_param", alt))
        alt = copy.deepcopy(gold)
        alt[0][first_name][p] = _perturb(alt[0][first_name][p])
        out.append(("wrong_value", alt))
        alt = copy.deepcopy(gold)
        alt[0][first_name][p] = _retype(alt[0][first_name][p])
        out.append(("wrong_type", alt))
    alt = copy.deepcopy(gold)
    alt[0][first_name]["zzqx_unknown"] = 1
    out.append(("unknown_param", alt))
    out.append(("extra_call", copy.deepcopy(gold) + [copy.deepcopy(gold[0])]))
    out.append(("no_call", []))
    if len(gold) > 1:
        out.append(("reversed_order", list(reversed(copy.deepcopy(gold)))))
        out.append(("missing_call", copy.deepcopy(gold[:-1])))
    return out


# --- main ---------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--categories", nargs="*", default=list(bfcl.NON_LIVE_AST + bfcl.LIVE_AST))
    ap.add_argument("--limit", type=int, default=None, help="items per category")
    ap.add_argument("--no-stub", action="store_true", help="do not stub BFCL's model registry")
    ap.add_argument("--out", type=Path, default=None, help="write a JSON report here")
    ap.add_argument("--show", type=int, default=10, help="disagreements to print")
    args = ap.parse_args(argv)

    try:
        official, language, model_name, how = import_official(allow_stub=not args.no_stub)
    except Exception as e:  # noqa: BLE001 - any failure to import means: skip
        print(f"SKIP: BFCL's own checker cannot be imported here ({type(e).__name__}: {e}).")
        print("      Install bfcl-eval with its dependencies to run the agreement check.")
        return 0
    print(f"BFCL checker: bfcl_eval.eval_checker.ast_eval.ast_checker ({how})")

    t0 = time.time()
    items = bfcl.load(args.categories, limit=args.limit)
    stats = defaultdict(Counter)
    disagreements, official_errors = [], []
    for item in items:
        for kind, calls in variants(item):
            ours = bfcl.check_ast(item["functions"], calls, item["ground_truth"], item["category"]).valid
            try:
                theirs = official(
                    item["functions"],
                    copy.deepcopy(calls),
                    item["ground_truth"],
                    language,
                    item["category"],
                    model_name,
                )["valid"]
            except Exception as e:  # noqa: BLE001 - their checker crashing is a result to report
                official_errors.append({"id": item["id"], "kind": kind, "error": f"{type(e).__name__}: {e}"})
                continue
            s = stats[kind]
            s["n"] += 1
            s["agree"] += ours == theirs
            s["ours_valid"] += ours
            s["theirs_valid"] += theirs
            if ours != theirs:
                disagreements.append(
                    {
                        "id": item["id"],
                        "category": item["category"],
                        "kind": kind,
                        "ours": ours,
                        "theirs": theirs,
                        "calls": calls,
                    }
                )
    total = Counter()
    print(f"\n{'variant':<20}{'n':>7}{'agree %':>9}{'ours ok %':>11}{'BFCL ok %':>11}")
    for kind, s in sorted(stats.items()):
        total.update(s)
        print(
            f"{kind:<20}{s['n']:>7}{100 * s['agree'] / s['n']:>9.2f}{100 * s['ours_valid'] / s['n']:>11.2f}"
            f"{100 * s['theirs_valid'] / s['n']:>11.2f}"
        )
    agreement = 100 * total["agree"] / max(1, total["n"])
    print(f"{'ALL':<20}{total['n']:>7}{agreement:>9.2f}")
    print(
        f"\n{len(items)} items, {total['n']} outputs compared in {time.time() - t0:.1f}s; "
        f"BFCL's checker raised on {len(official_errors)} more."
    )
    for d in disagreements[: args.show]:
        print("DISAGREE", json.dumps(d, ensure_ascii=False, default=str)[:400])
    for e in official_errors[: args.show]:
        print("BFCL ERROR", json.dumps(e, ensure_ascii=False)[:300])
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "import": how,
                    "agreement_percent": agreement,
                    "compared": total["n"],
                    "per_variant": {k: dict(v) for k, v in stats.items()},
                    "disagreements": disagreements,
                    "official_errors": official_errors,
                },
                indent=1,
                default=str,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
