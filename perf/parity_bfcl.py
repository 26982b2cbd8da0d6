"""Side-by-side agreement of our BFCL text decoding and scoring with BFCL's own code.

For items of the AST and relevance categories (BFCL data from the installed ``bfcl-eval``) we
render the gold calls as model text in two styles, BFCL's Python prompting format and Qwen's
``<tool_call>`` format, and perturb the text (fences, quotes, spacing, line endings, argument
spellings such as ``+10``, ``-(-10)``, ``'x' + '**2'``, sets, ``**{}``; tag newlines,
``parameters`` for ``arguments``, arguments as a JSON string, missing or doubled tags, text
between calls, reasoning before the calls, ...). Each text is decoded by

* BFCL: ``default_decode_ast_prompting`` (python) or ``QwenFCHandler.decode_ast`` (qwen), after
  ``QwenFCHandler._parse_query_response_prompting`` (what BFCL stores for a generation), then
  scored with BFCL's format check and ``ast_checker`` (relevance: decoded and not empty);
* ours: ``bfcl_decode.decode_output`` and ``bfcl.score_output`` under each rule set.

Printed: agreement of the decoded calls (exact, types included; a failed decode must fail on
both sides) and of the item verdicts, per style and rule set, then the disagreeing kinds.

BFCL's modules are imported with stand-ins for the packages this project does not install
(``tree_sitter*``, ``openai``, ``overrides``; only the Python decoders and checker are used) and
for its model registry (as in ``perf/bfcl_agreement.py``). No BFCL code is copied.

    python perf/parity_bfcl.py [--limit 25] [--show 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import types
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ftrl_lab.benchmarks import bfcl, bfcl_decode  # noqa: E402


# --- BFCL's code ---------------------------------------------------------------------------------
def _stub_packages() -> None:
    class _Anything(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {"__init__": lambda self, *a, **k: None, "__getattr__": lambda self, n: _noop})

    def _noop(*a, **k):
        return None

    for name in ("tree_sitter", "tree_sitter_java", "tree_sitter_javascript", "openai"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = _Anything(name)
    try:
        __import__("overrides")
    except ImportError:
        ov = types.ModuleType("overrides")
        ov.override = ov.final = lambda f: f
        ov.EnforceOverrides = type("EnforceOverrides", (), {})
        sys.modules["overrides"] = ov


def load_bfcl():
    """(python decoder, qwen decoder, stored-response function, checker, format check, language)."""
    _stub_packages()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bfcl_agreement import import_official  # noqa: PLC0415 - same registry stand-in

    checker, language, model_name, how = import_official()
    from bfcl_eval.model_handler.local_inference.qwen_fc import QwenFCHandler  # noqa: PLC0415
    from bfcl_eval.model_handler.utils import default_decode_ast_prompting  # noqa: PLC0415
    from bfcl_eval.utils import is_empty_output, is_function_calling_format_output  # noqa: PLC0415

    handler = object.__new__(QwenFCHandler)

    def stored(text):
        usage = types.SimpleNamespace(prompt_tokens=0, completion_tokens=0)
        resp = types.SimpleNamespace(choices=[types.SimpleNamespace(text=text)], usage=usage)
        return handler._parse_query_response_prompting(resp)["model_responses"]

    def check(item, calls):
        return checker(
            item["functions"], copy.deepcopy(calls), item["ground_truth"], language, item["category"], model_name
        )

    decoders = {
        "python": lambda t: default_decode_ast_prompting(t, language=_python_format()),
        "qwen": lambda t: handler.decode_ast(t, None, False),
    }
    return decoders, stored, check, is_function_calling_format_output, is_empty_output, how


def _python_format():
    from bfcl_eval.constants.enums import ReturnFormat  # noqa: PLC0415

    return ReturnFormat.PYTHON


def bfcl_verdict(item, text, style, decoders, stored, check, fmt_ok, empty) -> tuple[str, bool]:
    """(decoded repr or 'FAIL', valid) as BFCL's pipeline records them."""
    try:
        text = stored(text)
        decoded = decoders[style](text)
        shown = repr(decoded)
    except Exception:  # noqa: BLE001 - a failed decode is the outcome
        decoded, shown = None, "FAIL"
    cat = item["category"]
    if cat in bfcl.RELEVANCE:
        called = decoded is not None and not empty(decoded)
        return shown, (not called) if "irrelevance" in cat else called
    if decoded is None or not fmt_ok(decoded):
        return shown, False
    try:
        return shown, bool(check(item, decoded)["valid"])
    except Exception:  # noqa: BLE001 - BFCL's checker crashing: the item is not valid
        return shown, False


def our_verdict(item, text, style, rules) -> tuple[str, bool]:
    try:
        shown = repr(
            bfcl_decode.decode_output(bfcl_decode.bfcl_response(text) if rules == "official" else text, style, rules)
        )
    except bfcl_decode.DecodeError:
        shown = "FAIL"
    return shown, bfcl.score_output(item, text, style, rules=rules).valid


# --- texts ---------------------------------------------------------------------------------------
def gold_calls(item) -> list[tuple[str, dict]]:
    if item["ground_truth"] is None:
        fn = item["functions"][0]
        props = fn["parameters"].get("properties", {})
        return [(fn["name"], {p: "x" for p in fn["parameters"].get("required", []) if p in props})]
    text = bfcl.gold_output(item, "qwen")
    return [(c["name"], c["arguments"]) for c in (json.loads(b) for b in bfcl_decode.tool_call_bodies(text))]


def _py(calls, value_text=None) -> str:
    parts = []
    for k, (name, args) in enumerate(calls):
        items = [
            f"{p}={value_text if (value_text and k == 0 and i == 0) else repr(v)}"
            for i, (p, v) in enumerate(args.items())
        ]
        parts.append(f"{name}({', '.join(items)})")
    return "[" + ", ".join(parts) + "]"


PY_VALUES = [
    "+10",
    "-10",
    "-(-10)",
    "- 5.5",
    "not True",
    "~3",
    "-x",
    "-'a'",
    "1 + 1",
    "2 * 3",
    "7 / 2",
    "2 ** 10",
    "10 % 3",
    "'x' + '**2'",
    "'ab' 'cd'",
    "'a' * 3",
    "[1] + [2]",
    "(1, 2)",
    "{1, 2}",
    "{'k': 1}",
    "{**{'k': 1}}",
    "f'{1}'",
    "lambda: 1",
    "a[0]",
    "math.pi",
    "math.sqrt(2)",
    "str(5)",
    "g(x=1)",
    "None",
    "True",
    "...",
    "b'x'",
    "1j",
    "1e400",
    "0x10",
    "1 < 2",
    "1 if True else 2",
    "[i for i in range(3)]",
    "x + 1",
    "'a' + 1",
    "1 / 0",
    "2 ** 100000000",
    "'é'",
    "'\\n'",
    '"quoted"',
    "[]",
    "{}",
    "()",
    "str(5) + 'x'",
    "len('ab') * 2",
    "[str] + [1]",
    "x[0] + 1",
    "-True",
    "1 and 2",
    "[1, 2][0] * 3",
    "'x'.upper() + 'y'",
    "(x := 1) + 1",
]


def python_texts(calls, rng) -> list[tuple[str, object]]:
    gold = _py(calls)
    inner = gold[1:-1]
    out = [
        ("gold", gold),
        ("no_brackets", inner),
        ("fence_python", f"```python\n{gold}\n```"),
        ("fence", f"```\n{gold}\n```"),
        ("python_prefix", f"python\n{gold}"),
        ("single_quoted", f"'{gold}'"),
        ("double_quoted", f'"{gold}"'),
        ("spaces", f"  {gold}  \n"),
        ("tabs", f"\t{gold}\t"),
        ("crlf", gold + "\r\n"),
        ("trailing_text", gold + " Done."),
        ("leading_prose", "Here you go: " + gold),
        ("semicolons", "; ".join(inner.split(", ")) if len(calls) > 1 else inner + ";"),
        ("tuple", f"({inner},)"),
        ("set", "{" + inner + "}"),
        ("nested_list", f"[{gold}]"),
        ("empty_list", "[]"),
        ("empty", ""),
        ("none", None),
        ("prose", "I cannot do that."),
        ("json", json.dumps([{n: a} for n, a in calls])),
        ("positional", gold.replace("(", "(1, ", 1)),
        ("star_kwargs", gold.replace("(", "(**{}, ", 1) if calls[0][1] else gold.replace("()", "(**{})", 1)),
        ("repeated_kw", gold.replace(")", ", a=1, a=2)", 1)),
        ("think", "<think>\nf(a=1)\n</think>\n\n" + gold),
        ("dotted", gold.replace(calls[0][0], "mod." + calls[0][0], 1)),
        ("call_on_call", gold.replace(calls[0][0], f"g().{calls[0][0]}", 1)),
    ]
    if calls[0][1]:
        out += [(f"value:{v}", _py(calls, v)) for v in PY_VALUES]
        out.append(("value:random_int", _py(calls, str(rng.randint(-99, 99)))))
    return out


def _qwen_call(name, args, key="arguments", args_as_string=False, **dump) -> str:
    value = json.dumps(args, **dump) if args_as_string else args
    return json.dumps({"name": name, key: value}, **dump)


def qwen_texts(calls, rng) -> list[tuple[str, object]]:
    bodies = [_qwen_call(n, a) for n, a in calls]
    std = "\n".join(f"<tool_call>\n{b}\n</tool_call>" for b in bodies)
    name, args = calls[0]
    first = bodies[0]
    return [
        ("gold", std),
        ("no_newlines", "".join(f"<tool_call>{b}</tool_call>" for b in bodies)),
        ("spaces_inside", "\n".join(f"<tool_call> \n{b}\n </tool_call>" for b in bodies)),
        ("crlf", std.replace("\n", "\r\n")),
        ("parameters_key", "\n".join(f"<tool_call>\n{_qwen_call(n, a, 'parameters')}\n</tool_call>" for n, a in calls)),
        (
            "args_as_string",
            "\n".join(f"<tool_call>\n{_qwen_call(n, a, args_as_string=True)}\n</tool_call>" for n, a in calls),
        ),
        ("missing_last_close", std[: -len("\n</tool_call>")]),
        ("missing_last_close_nl", std[: -len("</tool_call>")]),
        ("text_between", "\nAlso:\n".join(f"<tool_call>\n{b}\n</tool_call>" for b in bodies) + "\nand more text"),
        ("no_separator", "".join(f"<tool_call>\n{b}\n</tool_call>" for b in bodies)),
        ("text_before_after", f"Sure!\n{std}\nDone."),
        ("think_before", f"<think>\nLet me call {name}.\n</think>\n\n{std}"),
        ("call_inside_think", f"<think>\n<tool_call>\n{first}\n</tool_call>\n</think>\nNo call needed."),
        ("unclosed_think", f"<think>\n{std}"),
        ("indented_json", "\n".join(f"<tool_call>\n{_qwen_call(n, a, indent=2)}\n</tool_call>" for n, a in calls)),
        ("invalid_json", std.replace("}", "", 1)),
        ("one_invalid_of_two", f"<tool_call>\n{{bad json}}\n</tool_call>\n{std}"),
        ("array_body", f"<tool_call>\n[{first}]\n</tool_call>"),
        ("string_body", f'<tool_call>\n"{name}"\n</tool_call>'),
        ("name_int", f"<tool_call>\n{json.dumps({'name': 7, 'arguments': args})}\n</tool_call>"),
        ("name_list", f"<tool_call>\n{json.dumps({'name': [name], 'arguments': args})}\n</tool_call>"),
        ("no_name", f"<tool_call>\n{json.dumps({'arguments': args})}\n</tool_call>"),
        ("no_arguments", f"<tool_call>\n{json.dumps({'name': name})}\n</tool_call>"),
        ("arguments_null", f"<tool_call>\n{json.dumps({'name': name, 'arguments': None})}\n</tool_call>"),
        ("arguments_list", f"<tool_call>\n{json.dumps({'name': name, 'arguments': [args]})}\n</tool_call>"),
        ("extra_key", f"<tool_call>\n{json.dumps({'name': name, 'arguments': args, 'id': 1})}\n</tool_call>"),
        ("empty_body", "<tool_call>\n\n</tool_call>"),
        ("nested_tags", f"<tool_call>\n<tool_call>\n{first}\n</tool_call>\n</tool_call>"),
        ("duplicate", f"{std}\n{std}"),
        ("python_style_json", std.replace("true", "True").replace("false", "False")),
        (
            "nan_value",
            f"<tool_call>\n{json.dumps({'name': name, 'arguments': {**args, 'v': float('nan')}})}\n</tool_call>",
        ),
        ("plain_python", _py(calls)),
        ("plain_json", first),
        ("empty", ""),
        ("none", None),
        ("prose", "I cannot help with that."),
        ("close_only", "</tool_call>"),
        ("random_cut", std[: rng.randint(1, max(1, len(std) - 1))]),
    ]


# --- main ---------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--categories", nargs="*", default=list(bfcl.CATEGORIES))
    ap.add_argument("--limit", type=int, default=25, help="items per category")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=5, help="disagreements to print per (style, rules)")
    ap.add_argument("--out", type=Path, default=None, help="write the counts as JSON here")
    args = ap.parse_args(argv)
    try:
        decoders, stored, check, fmt_ok, empty, how = load_bfcl()
    except Exception as e:  # noqa: BLE001 - no BFCL here: skip
        print(f"SKIP: BFCL's code cannot be imported here ({type(e).__name__}: {e})")
        return 0
    print(f"BFCL: bfcl_eval decoders + ast_checker ({how})")
    rng = random.Random(args.seed)
    items = bfcl.load(args.categories, limit=args.limit)
    stats: dict[tuple[str, str, str], Counter] = defaultdict(Counter)  # (style, rules, kind)
    shown: Counter = Counter()
    for item in items:
        calls = gold_calls(item)
        for style, texts in (("python", python_texts(calls, rng)), ("qwen", qwen_texts(calls, rng))):
            for kind, text in texts:
                ref_dec, ref_ok = bfcl_verdict(item, text, style, decoders, stored, check, fmt_ok, empty)
                for rules in bfcl_decode.RULES:
                    dec, ok = our_verdict(item, text, style, rules)
                    s = stats[(style, rules, kind)]
                    s["n"] += 1
                    s["decode"] += dec == ref_dec
                    s["verdict"] += ok == ref_ok
                    if (dec != ref_dec or ok != ref_ok) and rules == "official" and shown[style] < args.show:
                        shown[style] += 1
                        print(
                            f"DIFF {style} [{kind}] {item['id']}: ours {ok} {dec[:120]} | BFCL {ref_ok} {ref_dec[:120]} | {text!r:.160}"
                        )
    summary = {}
    print(f"\n{len(items)} items")
    print(f"{'style':<8}{'rules':<10}{'n':>8}{'decode %':>10}{'verdict %':>11}")
    for style in ("python", "qwen"):
        for rules in bfcl_decode.RULES:
            per = {k: c for (st, r, k), c in stats.items() if st == style and r == rules}
            n = sum(c["n"] for c in per.values())
            dec = sum(c["decode"] for c in per.values())
            ver = sum(c["verdict"] for c in per.values())
            summary[f"{style}_{rules}"] = {"n": n, "decode_agree": dec, "verdict_agree": ver}
            print(f"{style:<8}{rules:<10}{n:>8}{100 * dec / n:>10.2f}{100 * ver / n:>11.2f}")
            if rules == "official":
                for k, c in sorted(per.items()):
                    if c["decode"] < c["n"] or c["verdict"] < c["n"]:
                        print(
                            f"    {k:<28} decode {c['n'] - c['decode']:>5} / verdict {c['n'] - c['verdict']:>5} of {c['n']}"
                        )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
