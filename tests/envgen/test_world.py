"""The seeded fictional world: deterministic, unique names, values inside the schema."""

import random
import re

import pytest

from ftrl_lab.envgen.schema import TYPES, entity_type
from ftrl_lab.envgen.world import World, build_world, format_value, invent_word, parse_number


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = World(3), World(3), World(4)
    assert [e.name for e in a.by_type["city"]] == [e.name for e in b.by_type["city"]]
    assert a.by_type["person"][5].values == b.by_type["person"][5].values
    assert len({e.name for e in a.by_type["city"]} & {e.name for e in c.by_type["city"]}) < 3
    assert build_world(3) is build_world(3)  # cached


def test_names_are_unique_and_never_contain_one_another():
    w = build_world(0)
    names = list(w.by_name)
    assert len(names) == len(w) == len(TYPES) * w.per_type
    lowered = {n.lower() for n in names}
    assert len(lowered) == len(names)
    # a name never occurs as whole words inside another name (the core word is unique)
    sample = random.Random(0).sample(names, 150)
    for n in sample:
        pat = re.compile(r"(?<![a-z0-9])" + re.escape(n.lower()) + r"(?![a-z0-9])")
        assert sum(bool(pat.search(m)) for m in lowered) == 1, n


def test_values_follow_the_schema_and_relations_point_to_other_entities():
    w = build_world(0)
    for t in TYPES:
        for e in w.by_type[t.name][:10]:
            for a in t.attributes:
                v = e.values[a.name]
                if a.kind in ("count", "measure", "year"):
                    assert a.lo * 0.99 <= v <= a.hi * 1.01, (t.name, a.name, v)
                elif a.kind == "date":
                    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", v)
                elif a.kind == "code":
                    assert re.fullmatch(r"[A-Z]{2}-\d{4}", v)
            for r in t.relations:
                target = w.entity(e.values[r.name])
                assert target.type == r.target and target.name != e.name


def test_gold_formatting_round_trips():
    assert format_value("count", 2432) == "2,432"
    assert format_value("measure", 1234.5) == "1,234.5"
    assert format_value("year", 1871) == "1871"
    assert parse_number("2,432") == 2432 and parse_number("1,234.5") == 1234.5
    w = build_world(0)
    city = w.by_type["city"][0]
    assert w.answer(city.name, "population") == f"{city.values['population']:,}"
    assert w.answer(city.name, "country") == city.values["country"]


def test_invented_words_and_clear_errors():
    rng = random.Random(1)
    words = [invent_word(rng) for _ in range(50)]
    assert all(w[0].isupper() and w.isalpha() for w in words)
    w = build_world(0)
    with pytest.raises(KeyError, match="no entity named"):
        w.entity("Atlantis")
    with pytest.raises(KeyError, match="has no field"):
        w.value(w.by_type["city"][0].name, "moons")
    with pytest.raises(ValueError, match="no city left"):
        w.sample("city", rng, exclude=[e.name for e in w.by_type["city"]])
    assert entity_type("person").wh == "Who"
