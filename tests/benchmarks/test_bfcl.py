"""BFCL loader, decoders and AST checker: gold answers pass, systematic corruptions fail."""

import copy
import json

import pytest

from ftrl_lab.benchmarks import bfcl, bfcl_decode
from ftrl_lab.benchmarks.common import function_doc

# Items whose possible answers no call can satisfy (BFCL data quirks: a required parameter
# missing from the answer, a nested key listed at the top level, a parameter outside the
# schema, a dict nested in a dict). BFCL's own checker rejects their gold too
# (perf/bfcl_agreement.py).
UNSATISFIABLE = {
    "parallel_multiple_26",
    "live_simple_106-63-0",
    "live_simple_112-68-0",
    "live_multiple_121-46-0",
    "live_multiple_507-149-4",
    "live_multiple_862-181-3",
    "live_multiple_964-207-0",
}


@pytest.fixture(scope="module")
def items():
    try:
        bfcl.data_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    return bfcl.load()


def test_load_counts(items):
    counts = {c: sum(it["category"] == c for it in items) for c in bfcl.CATEGORIES}
    assert counts["simple"] == 400 and counts["multiple"] == 200 and counts["parallel"] == 200
    assert counts["irrelevance"] == 240 and all(counts[c] > 0 for c in bfcl.CATEGORIES)
    assert len({it["id"] for it in items}) == len(items)
    assert all((it["ground_truth"] is None) == (it["category"] in bfcl.RELEVANCE) for it in items)


def _gold_rows(items, style):
    rows = []
    for it in items:
        if it["ground_truth"] is not None:
            out = bfcl.gold_output(it, style)
        elif it["category"] == "live_relevance":
            out = bfcl.gold_output({**it, "ground_truth": [{it["functions"][0]["name"]: {}}]}, style)
        else:
            out = "None of the functions can answer that."
        rows.append({"id": it["id"], "output": out})
    return rows


@pytest.mark.parametrize("style", ["python", "qwen"])
def test_gold_outputs_pass(items, style):
    results = bfcl.score(items, _gold_rows(items, style))
    failed = {r["id"] for r in results if not r["correct"]}
    assert failed <= UNSATISFIABLE
    df = bfcl.table(results)
    assert df.loc["irrelevance", "accuracy"] == 100 and df.loc["live_relevance", "accuracy"] == 100
    assert df.loc["simple", "accuracy"] == 100 and df.loc["non_live_ast", "accuracy"] > 99.8


def _first_call(item):
    return bfcl.decode_output(bfcl.gold_output(item))


def test_corruptions_fail(items):
    ast_items = [it for it in items if it["ground_truth"] and it["id"] not in UNSATISFIABLE]
    checked = {"wrong_function": 0, "missing_required": 0, "wrong_value": 0, "wrong_type": 0}
    for it in ast_items[::3]:
        calls = _first_call(it)
        name = next(iter(calls[0]))
        args = calls[0][name]
        bad = copy.deepcopy(calls)
        bad[0] = {name + "_v2": args}
        assert not bfcl.check_ast(it["functions"], bad, it["ground_truth"], it["category"]).valid
        checked["wrong_function"] += 1
        required = function_doc(it["functions"], name)["parameters"].get("required", [])
        for p in [p for p in required if p in args][:1]:
            bad = copy.deepcopy(calls)
            del bad[0][name][p]
            assert not bfcl.check_ast(it["functions"], bad, it["ground_truth"], it["category"]).valid
            checked["missing_required"] += 1
        for p, v in list(args.items())[:2]:
            if isinstance(v, bool):
                continue
            bad = copy.deepcopy(calls)
            if isinstance(v, (int, float)):
                bad[0][name][p] = v + 1000
                wrong_type = str(v)
            elif isinstance(v, str):
                bad[0][name][p] = v + " qqq"
                wrong_type = [v]
            else:
                continue
            if len(calls) == 1:  # in parallel items a changed call may match another expected call
                assert not bfcl.check_ast(it["functions"], bad, it["ground_truth"], it["category"]).valid, (it["id"], p)
                checked["wrong_value"] += 1
                bad[0][name][p] = wrong_type
                assert not bfcl.check_ast(it["functions"], bad, it["ground_truth"], it["category"]).valid, (it["id"], p)
                checked["wrong_type"] += 1
    assert all(n > 100 for n in checked.values()), checked


DOC = {
    "name": "geo.distance",
    "parameters": {
        "type": "dict",
        "required": ["city", "km"],
        "properties": {
            "city": {"type": "string"},
            "km": {"type": "float"},
            "n": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "opts": {"type": "dict", "properties": {}},
        },
    },
}
GT = [
    {
        "geo.distance": {
            "city": ["New York, NY"],
            "km": [5.0],
            "n": [3, ""],
            "tags": [["a b", "c"], ""],
            "opts": [{"unit": ["km"], "fast": [True, ""]}, ""],
        }
    }
]


def _ok(args, name="geo.distance", category="simple", **kw):
    return bfcl.check_ast([DOC], [{name: args}], GT, category, **kw).valid


def test_value_and_type_rules():
    assert _ok({"city": "new york ny", "km": 5})  # string normalisation, int for float
    assert _ok({"city": "New-York, NY.", "km": 5.0, "n": 3, "tags": ["A B", "c"]})
    assert not _ok({"city": "New York", "km": 5.0})
    assert not _ok({"city": "New York, NY", "km": "5"})
    assert not _ok({"city": "New York, NY", "km": 5.0, "n": 3.0})  # float for int
    assert not _ok({"city": "New York, NY", "km": 5.0, "tags": ["c", "a b"]})  # list order matters
    assert not _ok({"city": "New York, NY"})  # missing required
    assert not _ok({"city": "New York, NY", "km": 5.0, "other": 1})  # unknown parameter
    assert _ok({"city": "New York, NY", "km": 5.0, "opts": {"unit": "KM"}})  # optional dict key omitted
    assert not _ok({"city": "New York, NY", "km": 5.0, "opts": {"unit": "mi"}})
    assert not _ok({"city": "New York, NY", "km": 5.0, "opts": {"speed": 1}})
    assert _ok({"city": "New York, NY", "km": 5.0}, name="geo_distance", dots_as_underscores=True)
    assert not _ok({"city": "New York, NY", "km": 5.0}, name="geo_distance")


def test_parallel_order_free_and_counts():
    doc = {"name": "f", "parameters": {"type": "dict", "required": ["x"], "properties": {"x": {"type": "integer"}}}}
    gt = [{"f": {"x": [1]}}, {"f": {"x": [2]}}]
    assert bfcl.check_ast([doc], [{"f": {"x": 2}}, {"f": {"x": 1}}], gt, "parallel").valid
    assert not bfcl.check_ast([doc], [{"f": {"x": 2}}], gt, "parallel").valid
    assert not bfcl.check_ast([doc], [{"f": {"x": 1}}, {"f": {"x": 1}}], gt, "parallel").valid
    assert not bfcl.check_ast([doc], [{"f": {"x": 1}}, {"f": {"x": 2}}], gt[:1], "simple").valid


def test_decoders():
    assert bfcl_decode.decode_python_lenient("[f(a=1, b='x'), g.h(c=[1, -2.5], d={'k': True})]") == [
        {"f": {"a": 1, "b": "x"}},
        {"g.h": {"c": [1, -2.5], "d": {"k": True}}},
    ]
    assert bfcl_decode.decode_python_lenient("```\nf(a=2*3, b=x, c=(1, 2))\n```") == [
        {"f": {"a": 6, "b": "x", "c": (1, 2)}}
    ]
    assert bfcl_decode.decode_python_lenient("f(a=__import__('os').system('x'))") == [
        {"f": {"a": "__import__('os').system('x')"}}
    ]
    assert bfcl_decode.decode_python_lenient("") == []  # an empty answer decodes to no call (BFCL: no call)
    for bad in ["I cannot help with that.", "[1, 2]", "None"]:
        with pytest.raises(bfcl.DecodeError):
            bfcl_decode.decode_python_lenient(bad)
    qwen = '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>'
    assert bfcl.decode_output(qwen) == [{"f": {"a": 1}}]
    msg = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": json.dumps({"a": 1})}}],
    }
    assert bfcl.decode_output(msg) == [{"f": {"a": 1}}]
    assert not bfcl.has_call("Sorry, none of these functions fit.") and bfcl.has_call("[f(a=1)]")
    assert not bfcl.has_call("[]") and not bfcl.has_call({"role": "assistant", "content": "no"})


def test_relevance_scoring():
    irr = {"id": "i", "category": "irrelevance", "functions": [DOC], "ground_truth": None}
    rel = {"id": "r", "category": "live_relevance", "functions": [DOC], "ground_truth": None}
    assert bfcl.score_output(irr, "No function can do this.").valid
    assert not bfcl.score_output(irr, "[geo.distance(city='x', km=1)]").valid
    assert bfcl.score_output(rel, "[geo.distance(city='x')]").valid
    assert not bfcl.score_output(rel, "I need more information.").valid


def test_summary_rows():
    results = (
        [{"category": "simple", "correct": 1.0}] * 3
        + [{"category": "multiple", "correct": 0.0}]
        + [{"category": "live_simple", "correct": 1.0}] * 3
        + [{"category": "live_multiple", "correct": 0.0}]
    )
    s = bfcl.summary(results)
    assert s == {"non_live_ast": 50.0, "live_ast": 75.0}  # unweighted vs. item-weighted
    df = bfcl.table(results)
    assert df.loc["non_live_ast", "n"] == 4 and df.loc["live_ast", "accuracy"] == 75.0


@pytest.mark.parametrize("mode", ["fc", "python"])
def test_run_resumable_with_scripted_policy(items, tmp_path, mode):
    subset = [it for it in items if it["category"] in ("simple", "irrelevance")][:3] + [
        it for it in items if it["category"] == "irrelevance"
    ][:2]
    seen = []

    def policy(convs, tools):
        seen.append(len(convs))
        if mode == "fc":
            assert all(isinstance(t, list) and t[0]["type"] == "function" for t in tools)
        else:
            assert all(t is None for t in tools) and convs[0][0]["role"] == "system"
        out = []
        for conv in convs:
            it = next(i for i in subset if i["messages"][-1] == conv[-1])
            gold = bfcl.gold_output(it, "qwen" if mode == "fc" else "python") if it["ground_truth"] else "no"
            out.append(gold)
        return out

    path = tmp_path / f"bfcl_{mode}.jsonl"
    rows = bfcl.run(policy, subset, path, mode=mode, batch_size=2, show_progress=False)
    assert sum(seen) == len(subset)
    assert bfcl.run(policy, subset, path, mode=mode, show_progress=False) == rows and sum(seen) == len(subset)
    assert all(r["correct"] for r in bfcl.score(subset, rows))


def test_openai_tools_types():
    tool = bfcl.openai_tools([DOC], dots_as_underscores=True)[0]["function"]
    assert tool["name"] == "geo_distance"
    assert tool["parameters"]["type"] == "object" and tool["parameters"]["properties"]["km"]["type"] == "number"
    assert tool["parameters"]["properties"]["opts"]["type"] == "object"
