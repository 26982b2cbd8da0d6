"""Localized deployment: generated tool code validates, answers from its table, never echoes."""

import ast
import json
import random

import pytest

from ftrl_lab.core.ftrl_executor import inprocess_feedback
from ftrl_lab.core.records import FTRL_INSTRUCTION, validate_record
from ftrl_lab.core.reward import answer_verify
from ftrl_lab.envgen.backend import ProceduralBackend
from ftrl_lab.envgen.deploy import build_rows, render_code
from ftrl_lab.envgen.spec import Param, Tool
from ftrl_lab.envgen.world import build_world

WORLD = build_world(0)
TOP = {"functional": 3, "parameters": 3, "types": 3, "toolset": 3}


def _run(code: str, name: str, **args) -> str:
    return inprocess_feedback(
        {name: code}, [{"id": "c", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}]
    )[0]


def _tool(error_style="dict", output_style="dict"):
    params = [
        Param("city_name", "string", "The city.", required=True, role="key"),
        Param("info_type", "string", "What to return.", required=True, role="selector", enum=["population", "country"]),
        Param("max_results", "integer", "Max.", minimum=1, maximum=50, default=10, has_default=True),
        Param("include_sources", "boolean", "Sources.", default=False, has_default=True),
        Param(
            "fields", "array", "Extra.", items={"type": "string", "enum": ["summary", "aliases"]}, extra={"maxItems": 2}
        ),
        Param(
            "date_range",
            "object",
            "Period.",
            properties={"start_date": {"type": "string"}, "end_date": {"type": "string"}},
        ),
    ]
    return Tool(
        "city_info",
        "Facts about cities.",
        params,
        entity_type="city",
        fields=["population", "country"],
        output_style=output_style,
        error_style=error_style,
    )


def test_lookup_code_answers_and_validates():
    city = WORLD.by_type["city"][0]
    rows = {city.name: {f: WORLD.value(city.name, f) for f in ("population", "country")}}
    code = render_code(_tool(), rows)
    tree = ast.parse(code)
    assert [type(n).__name__ for n in tree.body] == ["FunctionDef"]
    assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in ast.walk(tree))
    ok = json.loads(_run(code, "city_info", city_name=city.name.upper(), info_type="population"))
    assert ok["population"] == city.values["population"] and ok["city_name"] == city.name
    assert answer_verify(_run(code, "city_info", city_name=city.name, info_type="country"), city.values["country"])
    src = json.loads(_run(code, "city_info", city_name=city.name, info_type="country", include_sources=True))
    assert "source" in src
    bad = {
        "missing": {"info_type": "population"},
        "enum": {"city_name": city.name, "info_type": "mayor"},
        "type": {"city_name": 42, "info_type": "population"},
        "range": {"city_name": city.name, "info_type": "population", "max_results": 99},
        "bool": {"city_name": city.name, "info_type": "population", "include_sources": "yes"},
        "items": {"city_name": city.name, "info_type": "population", "fields": ["history"]},
        "object": {"city_name": city.name, "info_type": "population", "date_range": {"when": "now"}},
        "unknown": {"city_name": city.name, "info_type": "population", "colour": "Zqxvred"},
        "not found": {"city_name": "Nowhere Special", "info_type": "population"},
    }
    for what, args in bad.items():
        out = _run(code, "city_info", **args)
        assert "error" in out.lower() and not out.startswith("an error occured"), (what, out)
        assert "Nowhere" not in out and "Zqxv" not in out and "colour" not in out  # free text is never echoed


def test_text_styles_and_calculator():
    city = WORLD.by_type["city"][1]
    rows = {city.name: {f: WORLD.value(city.name, f) for f in ("population", "country")}}
    text = render_code(_tool("text", "text"), rows)
    out = _run(text, "city_info", city_name=city.name, info_type="population")
    assert out.startswith("The population of") and answer_verify(out, f"{city.values['population']:,}")
    assert _run(text, "city_info", info_type="population").startswith("Error:")
    calc = Tool(
        "calc",
        "Arithmetic.",
        [
            Param("operation", "string", "Op.", required=True, role="operation"),
            Param("operands", "array", "Numbers.", required=True, role="operands", items={"type": "number"}),
        ],
        kind="calculator",
        fields=["add", "subtract", "max", "min", "divide"],
    )
    code = render_code(calc)
    assert json.loads(_run(code, "calc", operation="add", operands=[2432, 1471]))["result"] == 3903
    assert json.loads(_run(code, "calc", operation="subtract", operands=[10.5, 0.2]))["result"] == 10.3
    assert json.loads(_run(code, "calc", operation="max", operands=[3, 9, 4]))["result"] == 9
    for args in (
        {"operation": "add", "operands": [1]},
        {"operation": "pow", "operands": [1, 2]},
        {"operation": "add", "operands": ["1", 2]},
        {"operation": "divide", "operands": [1, 0]},
    ):
        assert "error" in _run(code, "calc", **args).lower()


def test_decoy_rows_never_contain_a_gold_answer():
    tool = _tool()
    city = WORLD.by_type["city"][2]
    tool.subjects = [city.name]
    golds = [WORLD.answer(city.name, "country")]
    for seed in range(20):
        rows, decoys = build_rows(tool, WORLD, random.Random(seed), golds)
        assert city.name in rows and 3 <= len(decoys) <= 6 and city.name not in decoys
        for d in decoys:
            assert not any(answer_verify(json.dumps(rows[d]), g) for g in golds)


@pytest.mark.parametrize("scenario", ["single_hop", "parallel_multi_hop"])
def test_deployed_record_is_ftrl_format(scenario):
    rec = ProceduralBackend(0).generate(scenario, TOP, random.Random(11), split="test", meta={"slot": 4})
    assert validate_record(rec) == []
    assert rec.messages == [{"role": "user", "content": FTRL_INSTRUCTION + rec.question}]
    assert rec.data_source == f"self/{scenario}" and rec.split == "test" and rec.solve_rate == 0.0
    meta = json.loads(rec.extra["env_meta"])
    assert meta["slot"] == 4 and meta["scenario"] == scenario and meta["levels"] == TOP
    plan_answers = {}
    subs = {s["id"]: s for s in meta["sub_questions"]}
    for call in meta["gold_plan"]:
        plan_answers.setdefault(call["tool"], []).append(subs[call["sub_id"]]["answer"])
    assert plan_answers == rec.unsolved_set
    row = rec.to_row()
    assert set(row) == {
        "messages",
        "tools",
        "codes",
        "unsolved_set",
        "solve_rate",
        "data_source",
        "split",
        "answer",
        "env_meta",
    }
    assert isinstance(row["tools"], str) and isinstance(row["env_meta"], str)
