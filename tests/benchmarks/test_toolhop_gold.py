"""ToolHop gold plans on constructed inputs: every schema type form, every gold-call form, the
oracle on string-form gold calls, and a plan or a stated reason for every shared record."""

import json

import pytest

from ftrl_lab.benchmarks import toolhop as th
from ftrl_lab.benchmarks import toolhop_gold as tg
from ftrl_lab.core.records import RecordError

SOURCE = """def lookup(name: str, year, verbose: bool = False):
    table = {"Ada": "1815", "Alan": "1912"}
    if str(year) == "7":
        return "seven"
    return table.get(name, "unknown")
"""


def record(schema_year: dict, gold_calls=None) -> dict:
    rec = {
        "id": "c1",
        "question": "When was Ada born?",
        "answer": "1815",
        "sub_task": {"When was Ada born?": "1815"},
        "tools": {
            "When was Ada born?": {
                "name": "lookup",
                "description": "birth years",
                "parameters": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "year": schema_year, "verbose": {"type": "boolean"}},
                    "required": ["name", "year"],
                },
            }
        },
        "functions": [SOURCE],
    }
    if gold_calls is not None:
        rec["gold_calls"] = gold_calls
    return rec


def load_one(tmp_path, rec) -> dict:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    return th.load(path)[0]


@pytest.mark.parametrize(
    "spec, types",
    [
        ({"type": "integer"}, ["integer"]),
        ({"type": ["string", "integer"]}, ["string", "integer"]),
        ({"type": "string|integer"}, ["string", "integer"]),
        ({"type": "integer | null"}, ["integer", "null"]),
        ({"anyOf": [{"type": "integer"}, {"type": "string", "enum": ["x"]}]}, ["integer", "string"]),
        ({"oneOf": [{"type": ["number", "array"]}, {"type": "boolean"}]}, ["number", "array", "boolean"]),
        ({"description": "no type"}, []),
        ("not a schema", []),
    ],
)
def test_schema_types(spec, types):
    assert tg.schema_types(spec) == types


def test_typed_values_and_fallback_per_form():
    assert tg.typed_values("7", {"type": ["string", "integer"]}) == ["7", 7]
    assert tg.typed_values("7", {"type": "integer|number"}) == [7, 7.0]
    assert tg.typed_values("x", {"anyOf": [{"type": "integer"}, {"type": "array"}]}) == [["x"]]
    assert tg.typed_values("inf", {"type": "number"}) == []  # not finite: no candidate
    assert tg.typed_values("x", {}) == ["x"]
    assert tg.fallback_value({"type": ["integer", "string"]}) == 1
    assert tg.fallback_value({"type": "boolean|string"}) is True
    assert tg.fallback_value({"anyOf": [{"type": "null"}]}) is None
    assert tg.fallback_value({"type": ["mystery"]}) == "default"
    assert tg.schema_enums({"anyOf": [{"enum": ["a", "b"]}, {"type": "integer"}]}) == ["a", "b"]


@pytest.mark.parametrize(
    "year_schema",
    [
        {"type": ["string", "integer"]},  # crashed before: unhashable type 'list'
        {"type": "string|integer"},
        {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        {"oneOf": [{"type": "integer"}, {"type": "null"}]},
        {"type": ["null", "array"]},
    ],
)
def test_derivation_with_union_types(tmp_path, year_schema):
    it = load_one(tmp_path, record(year_schema))
    candidates = tg.candidate_arguments(it, it["steps"][0], [])
    assert candidates and all(isinstance(c, dict) for c in candidates)
    calls = th.derive_gold_calls(it)
    assert json.loads(calls[0]["function"]["arguments"])["name"] == "Ada"
    plan = th.gold_plan(it)
    assert plan["status"] == "plan" and len(plan["calls"]) == 1


PY_ONE = 'lookup(name="Ada", year=1815)'
OPENAI = {"id": "x", "type": "function", "function": {"name": "lookup", "arguments": '{"name": "Ada", "year": 1815}'}}


@pytest.mark.parametrize(
    "given",
    [
        PY_ONE,
        [PY_ONE],
        'lookup("Ada", 1815)',  # positional: named from the def
        '[lookup(name="Ada", year=1815)]',
        "lookup(name='Ada', year=1815)\n",
        json.dumps({"name": "lookup", "arguments": {"name": "Ada", "year": 1815}}),
        json.dumps([{"name": "lookup", "parameters": {"name": "Ada", "year": 1815}}]),
        [OPENAI],
        OPENAI,
        [{"function": {"name": "lookup", "arguments": {"name": "Ada", "year": 1815}}}],
    ],
)
def test_gold_call_forms(tmp_path, given):
    it = load_one(tmp_path, record({"type": "integer"}, given))
    assert [c["function"]["name"] for c in it["gold_calls"]] == ["lookup"]
    assert json.loads(it["gold_calls"][0]["function"]["arguments"]) == {"name": "Ada", "year": 1815}
    rows = th.run(th.OraclePolicy([it]), [it], None, modes=["mandatory"], show_progress=False)
    assert th.score([it], rows)[0]["AC"] == 1.0
    assert th.gold_plan(it)["source"] == "given"


def test_several_python_calls_and_dotted_names():
    calls = tg.parse_gold_calls("f(a=1)\ng(b=[1, 2])\nm.h(c=None)")
    assert [c["function"]["name"] for c in calls] == ["f", "g", "m.h"]
    assert [c["id"] for c in calls] == ["gold_0", "gold_1", "gold_2"]
    assert json.loads(calls[1]["function"]["arguments"]) == {"b": [1, 2]}


@pytest.mark.parametrize(
    "bad, message",
    [
        ("lookup(name=x)", "not a literal"),
        ("lookup(**kw)", r"\*\*kwargs"),
        ("x = 1", "not a call expression"),
        ("lookup(", "neither JSON nor Python"),
        ("unknown_tool(1)", "positional argument 0 has no parameter name"),
        ([7], "entry 0: a gold call is a dict or text"),
        ([{"name": "lookup", "arguments": "[1]"}], "are a list, not an object"),
        ({"arguments": {}}, "no function name"),
    ],
)
def test_bad_gold_calls_are_located(tmp_path, bad, message):
    with pytest.raises(RecordError, match=r"r\.jsonl:1: field 'gold_calls'.*" + message):
        load_one(tmp_path, record({"type": "integer"}, bad))


def test_oracle_accepts_string_gold_calls(tmp_path):
    it = load_one(tmp_path, record({"type": "integer"}))
    oracle = th.OraclePolicy([it], {"c1": 'lookup(name="Ada", year=1)'})
    rows = th.run(oracle, [it], None, modes=["free"], show_progress=False)
    assert th.score([it], rows)[0]["AC"] == 1.0


def test_unreachable_answer_gets_a_reason(tmp_path):
    rec = record({"type": "integer"})
    rec["answer"] = rec["sub_task"]["When was Ada born?"] = "1816"
    it = load_one(tmp_path, rec)
    plan = th.gold_plan(it)
    assert plan["status"] == "reason" and plan["kinds"] == [tg.NOT_IN_SOURCE]
    assert "step 0 (lookup -> '1816')" in plan["reason"]


def test_failure_kinds_read_code_and_comments():
    item = {"codes": {"f": 'def f(x):\n    """Gives zab."""\n    return "Elizabeth"  # or qux\n'}}
    assert tg.failure_kind(item, {"tool": "f", "answer": "zab"}) == tg.ONLY_IN_COMMENTS
    assert tg.failure_kind(item, {"tool": "f", "answer": "qux"}) == tg.ONLY_IN_COMMENTS
    assert tg.failure_kind(item, {"tool": "f", "answer": "Elizabeth"}) == tg.IN_CODE
    assert tg.failure_kind(item, {"tool": "f", "answer": "beth"}) == tg.NOT_IN_SOURCE


def test_every_shared_record_has_a_plan_or_a_reason():
    if not th.default_path().exists():
        pytest.skip(f"{th.default_path()} not found")
    items = th.load()
    plans = [th.gold_plan(it) for it in items]
    table = th.plan_table(items, plans=plans)
    assert list(table.index) == [it["id"] for it in items]
    assert set(table["status"]) <= {"plan", "reason"}
    assert (table.loc[table["status"] == "reason", "reason"].str.len() > 0).all()
    assert (table.loc[table["status"] == "plan", "calls"] == table.loc[table["status"] == "plan", "steps"]).all()
    # the two sample steps whose gold answer the tool's code cannot return (ToolHop data errors)
    assert sorted(table.index[table["status"] == "reason"]) == ["toolhop-007", "toolhop-008"]
    assert th.reason_tally(plans) == {tg.ONLY_IN_COMMENTS: 2}
