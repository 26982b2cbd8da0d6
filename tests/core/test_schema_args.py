"""Example arguments synthesised from JSON Schemas."""

import json

import jsonschema
import pytest

from ftrl_lab.core.records import default_test_set, load_records
from ftrl_lab.core.schema_args import VARIANTS, example_argument_sets, example_arguments, example_tool_calls

TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit", "kelvin"]},
                "date": {"type": "string", "format": "date"},
                "days": {"type": "integer", "minimum": 3, "maximum": 7},
                "detailed": {"type": "boolean", "default": False},
                "period": {"type": "string", "pattern": r"^\d{4}-\d{2}$"},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["rain", "sun"]}, "minItems": 2},
                "where": {"type": "object", "properties": {"lat": {"type": "number"}}},
            },
            "required": ["city", "unit"],
        },
    },
}


def test_required_variant_uses_enum_first_and_placeholders():
    assert example_arguments(TOOL, "required") == {"city": "example", "unit": "celsius"}


def test_all_and_alternative_are_valid_and_differ():
    schema = TOOL["function"]["parameters"]
    full, alt = example_arguments(schema, "all"), example_arguments(schema, "alternative")
    assert full == {
        "city": "example",
        "unit": "celsius",
        "date": "2024-01-15",
        "days": 3,
        "detailed": False,
        "period": "2024-01",
        "tags": ["rain", "rain"],
        "where": {"lat": 1.5},
    }
    assert alt["unit"] == "kelvin" and alt["days"] == 7 and alt["detailed"] is False and alt["city"] == "test"
    for args in (full, alt):
        jsonschema.validate(args, schema)


def test_invalid_variants_are_invalid():
    schema = TOOL["function"]["parameters"]
    validator = jsonschema.Draft7Validator(schema)
    missing = example_arguments(schema, "missing_required")
    assert "city" not in missing and "unit" in missing
    wrong = example_arguments(schema, "wrong_types")
    assert wrong["city"] == 12345 and wrong["days"] == "not a number" and wrong["tags"] == "not a list"
    assert not validator.is_valid(missing) and not validator.is_valid(wrong)
    assert example_arguments(schema, "extra") == {"city": "example", "unit": "celsius", "unexpected_parameter": "value"}


def test_inapplicable_and_unknown_variants():
    empty = {"type": "object", "properties": {}}
    with pytest.raises(ValueError, match="no required parameter"):
        example_arguments(empty, "missing_required")
    with pytest.raises(ValueError, match="unknown variant"):
        example_arguments(empty, "nonsense")
    assert list(example_argument_sets(empty)) == ["required", "all", "alternative", "extra"]


def test_tool_calls_are_openai_style():
    calls = example_tool_calls(TOOL)
    assert len(calls) == len(VARIANTS)
    assert calls[0] == {
        "id": "call_0",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "example", "unit": "celsius"}'},
    }
    assert all(isinstance(json.loads(c["function"]["arguments"]), dict) for c in calls)


@pytest.mark.shared
def test_valid_variants_validate_on_the_ftrl_test_set():
    path = default_test_set()
    if not path.exists():
        pytest.skip(f"FTRL test set not found at {path}")
    valid = invalid = 0
    for rec in load_records(path):
        for tool in rec.tools:
            validator = jsonschema.Draft7Validator(tool["function"]["parameters"])
            for variant, args in example_argument_sets(tool).items():
                ok = validator.is_valid(args)
                if variant in ("required", "all", "alternative"):
                    valid += ok
                    invalid += not ok
                elif variant in ("missing_required", "wrong_types"):
                    assert not ok, (tool["function"]["name"], variant, args)
    # the few misses are schemas that contradict themselves (e.g. a null default for an integer)
    assert valid / (valid + invalid) > 0.99
