"""Complexity scaling: four separate strategies, each with levels 0-3."""

import random
import statistics

import pytest

from ftrl_lab.core.records import tool_schema_errors
from ftrl_lab.envgen.decompose import SCENARIOS, decompose
from ftrl_lab.envgen.documents import generate_documents
from ftrl_lab.envgen.integrate import integrate
from ftrl_lab.envgen.scaling import (
    TOOLSET_TARGETS,
    functional_generalization,
    parameter_expansion,
    scale,
    toolset_extension,
    type_generalization,
)
from ftrl_lab.envgen.world import build_world

WORLD = build_world(0)


def _draft(scenario="multi_hop", seed=0):
    rng = random.Random(seed)
    return integrate(generate_documents(decompose(WORLD, scenario, rng), rng), rng)


def test_level_zero_changes_nothing():
    d = _draft()
    for step in (functional_generalization, parameter_expansion, type_generalization, toolset_extension):
        out = step(d, 0, random.Random(0))
        assert out.documents() == d.documents() and [c.to_dict() for c in out.calls] == [c.to_dict() for c in d.calls]


def test_functional_generalization_broadens_and_keeps_calls_consistent():
    d = _draft(seed=3)
    one = functional_generalization(d, 1, random.Random(0))
    assert [t.name for t in one.tools] == [t.name for t in d.tools]
    assert all(a.description != b.description for a, b in zip(one.tools, d.tools))
    three = functional_generalization(d, 3, random.Random(0))
    names = {t.name for t in three.tools}
    for t3, t0 in zip(three.tools, d.tools):
        if t0.kind == "lookup":
            assert len(t3.fields) > len(t0.fields) and t3.by_role("selector") is not None
    for call in three.calls:
        assert call.tool in names
        sel = three.tool(call.tool).by_role("selector")
        if sel is not None:
            assert call.arguments[sel.name] == d.decomposition.sub(call.sub_id).field


def test_parameter_expansion_adds_optional_params_reaching_about_seven():
    counts = []
    for seed in range(30):
        d = parameter_expansion(_draft(seed=seed), 3, random.Random(seed))
        for t in d.tools:
            counts.append(len(t.params))
            assert all(not p.required for p in t.params if p.role == "option")
            assert all(p.type == "string" for p in t.params if p.role == "option")
    assert 6.3 <= statistics.mean(counts) <= 8.0
    d0 = _draft(seed=1)
    d1 = parameter_expansion(d0, 1, random.Random(1))
    assert all(1 <= len(b.params) - len(a.params) <= 2 for a, b in zip(d0.tools, d1.tools))


def test_type_generalization_levels():
    base = parameter_expansion(functional_generalization(_draft(seed=5), 2, random.Random(5)), 3, random.Random(5))
    types, plain = {}, {}
    for level in range(4):
        d = type_generalization(base, level, random.Random(5))
        types[level] = {p.type for t in d.tools for p in t.params}
        plain[level] = sum(t.by_role("selector") is not None and t.by_role("selector").enum is None for t in d.tools)
        for t in d.tools:
            assert tool_schema_errors(t.to_openai()) == []
    assert plain[0] > 0 and plain[1] == plain[2] == plain[3] == 0  # string selectors become enums
    assert types[0] == {"string"} or types[0] <= {"string", "array"}  # operands of a calculator
    assert types[2] - types[1] and {"boolean", "integer", "number"} & types[2]
    assert {"array", "object"} & (types[3] - types[2])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_toolset_extension_hits_ftrl_tool_counts(scenario):
    lo, hi = TOOLSET_TARGETS[scenario]
    for seed in range(15):
        d = _draft(scenario, seed)
        gold = {t.name for t in d.tools}
        d = functional_generalization(d, 3, random.Random(seed))
        d.levels["functional"] = 3
        gold = {t.name for t in d.tools}
        out = toolset_extension(d, 3, random.Random(seed))
        assert lo <= len(out.tools) <= hi or len(out.tools) == len(d.tools) + 1
        assert gold <= {t.name for t in out.tools}
        origins = {t.origin for t in out.tools if t.name not in gold}
        assert origins <= {"distractor", "near_duplicate"}
        served = {(t.entity_type, f) for t in out.tools if t.name in gold for f in t.fields}
        assert not any((t.entity_type, f) in served for t in out.tools if t.name not in gold for f in t.fields)
        assert len({t.name for t in out.tools}) == len(out.tools)
        one = toolset_extension(d, 1, random.Random(seed))
        assert 1 <= len(one.tools) - len(d.tools) <= 2


def test_scale_applies_all_four_and_rejects_bad_levels():
    d = scale(
        _draft("parallel_multi_hop", 2), {"functional": 3, "parameters": 3, "types": 3, "toolset": 3}, random.Random(2)
    )
    assert d.levels == {"functional": 3, "parameters": 3, "types": 3, "toolset": 3}
    assert [name for name, _, _ in d.notes["scaling_trace"]] == [
        "integrated",
        "functional",
        "parameters",
        "types",
        "toolset",
    ]
    with pytest.raises(ValueError, match="level"):
        parameter_expansion(d, 4, random.Random(0))
    with pytest.raises(ValueError, match="unknown strategy"):
        scale(d, {"speed": 1}, random.Random(0))


def test_steps_copy_unless_told_and_scale_leaves_its_input_alone():
    d = _draft("parallel_multi_hop", seed=3)
    before = repr(d)
    top = {"functional": 3, "parameters": 3, "types": 3, "toolset": 3}
    scaled = scale(d, top, random.Random(3))
    assert repr(d) == before  # scale copies once, then its steps edit that copy
    for step in (functional_generalization, parameter_expansion, type_generalization, toolset_extension):
        assert step(d, 3, random.Random(3)) is not d and repr(d) == before
    one, rng = d, random.Random(7)  # the same steps, each making its own copy, give what scale gives
    for step in (functional_generalization, parameter_expansion, type_generalization, toolset_extension):
        one = step(one, 3, rng)
    again = scale(d, top, random.Random(7))
    assert again.documents() == one.documents() and repr(again.tools) == repr(one.tools)
    assert scaled.documents() != d.documents()
    edited = parameter_expansion(d, 3, random.Random(3), copy=False)
    assert edited is d and repr(d) != before
