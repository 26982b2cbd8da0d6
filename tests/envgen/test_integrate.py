"""Function integration: overlapping tools merge; calls follow; n -> m is reported."""

import random

from ftrl_lab.envgen.documents import generate_documents
from ftrl_lab.envgen.integrate import integrate
from ftrl_lab.envgen.spec import Decomposition, SubQuestion
from ftrl_lab.envgen.world import build_world

WORLD = build_world(0)


def _decomposition(specs):
    subs = []
    for i, (t, f, name) in enumerate(specs):
        subs.append(
            SubQuestion(
                id=f"q{i + 1}",
                text="?",
                answer=WORLD.answer(name, f),
                kind="attribute",
                entity_type=t,
                field=f,
                subject=name,
            )
        )
    return Decomposition("parallel_single_hop", "?", "?", subs, "list")


def test_same_field_lookups_become_one_tool_with_several_answers():
    a, b = WORLD.by_type["city"][:2]
    draft = integrate(
        generate_documents(
            _decomposition([("city", "population", a.name), ("city", "population", b.name)]), random.Random(0)
        ),
        random.Random(0),
    )
    assert len(draft.tools) == 1
    tool = draft.tools[0]
    assert tool.subjects == [a.name, b.name] and tool.by_role("selector") is None
    assert [c.tool for c in draft.calls] == [tool.name, tool.name]
    assert draft.notes["integration"]["n"] == 2 and draft.notes["integration"]["m"] == 1


def test_different_fields_of_one_type_get_an_info_type_enum():
    c, p = WORLD.by_type["city"][0], WORLD.by_type["person"][0]
    dec = _decomposition([("city", "population", c.name), ("person", "birth_date", p.name), ("city", "mayor", c.name)])
    draft = integrate(generate_documents(dec, random.Random(1)), random.Random(1))
    assert len(draft.tools) == 2
    city_tool = next(t for t in draft.tools if t.entity_type == "city")
    sel = city_tool.by_role("selector")
    assert sel is not None and sel.enum == ["population", "mayor"] and sel.required
    city_calls = [x for x in draft.calls if x.tool == city_tool.name]
    assert [x.arguments[sel.name] for x in city_calls] == ["population", "mayor"]
    merged = draft.notes["integration"]["merged"][city_tool.name]
    assert len(merged) == 2
    assert draft.notes["integration"] == {"n": 3, "m": 2, "merged": {city_tool.name: merged}}


def test_nothing_to_merge_keeps_everything():
    c, p = WORLD.by_type["city"][0], WORLD.by_type["person"][0]
    before = generate_documents(
        _decomposition([("city", "population", c.name), ("person", "nickname", p.name)]), random.Random(2)
    )
    after = integrate(before, random.Random(2))
    assert [t.name for t in after.tools] == [t.name for t in before.tools]
    assert after.notes["integration"]["m"] == 2
    assert before.tools[0].by_role("selector") is None  # the input draft is untouched
