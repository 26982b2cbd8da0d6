"""The fictional world's schema and the option catalog are consistent data."""

import re

from ftrl_lab.envgen import options, schema


def test_schema_covers_many_domains_types_and_fields():
    assert len(schema.DOMAINS) >= 15
    assert len(schema.TYPES) >= 30
    fields = sum(len(t.fields) for t in schema.TYPES)
    assert fields >= 200, fields
    assert sum(len(t.relations) for t in schema.TYPES) >= 80


def test_relations_target_known_types_and_templates_hold_the_subject():
    for t in schema.TYPES:
        assert t.key.endswith("_name") and re.fullmatch(r"[a-z_]+", t.key)
        assert all("{C}" in n for n in t.names), t.name
        for f in t.fields:
            assert all("{x}" in q for q in f.templates), (t.name, f.name)
        for r in t.relations:
            assert r.target in schema.TYPES_BY_NAME
            assert all("{x}" in p for p in r.phrases)


def test_numeric_ranges_stay_clear_of_document_constants():
    for t in schema.TYPES:
        for a in t.attributes:
            if a.kind in ("count", "measure"):
                assert 150 < a.lo < a.hi, (t.name, a.name)


def test_unknown_field_or_type_is_a_clear_error():
    city = schema.entity_type("city")
    try:
        city.get_field("altitude_of_moon")
    except KeyError as e:
        assert "city" in str(e) and "altitude_of_moon" in str(e)
    else:
        raise AssertionError("expected KeyError")
    try:
        schema.entity_type("spaceship")
    except KeyError as e:
        assert "spaceship" in str(e)
    else:
        raise AssertionError("expected KeyError")


def test_option_catalog_levels_types_and_small_constants():
    names = [o.name for o in options.OPTIONS]
    assert len(names) == len(set(names))
    for o in options.OPTIONS:
        assert o.level in (1, 2, 3)
        kind = o.schema["type"]
        assert (
            kind
            == {
                1: "string",
                2: kind if kind in ("boolean", "integer", "number") else None,
                3: kind if kind in ("array", "object") else None,
            }[o.level]
        ), o.name
        for bound in ("minimum", "maximum"):
            assert abs(o.schema.get(bound, 0)) <= 60
    assert {o.name for o in options.options_for("calculator")} >= {"precision", "rounding"}
    assert "precision" not in {o.name for o in options.options_for("lookup")}


def test_labels_nest_as_noun_phrases():
    """ "the <label> of {x}" must read well for any {x}: no pronoun pointing back at the subject."""
    for t in schema.TYPES:
        for f in t.fields:
            assert not re.search(r"\b(it|its)\b", f.label), (t.name, f.name, f.label)
