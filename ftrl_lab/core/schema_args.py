"""Example tool-call arguments synthesised from a tool's JSON Schema.

Used to exercise tool code without a model: the sandbox parity test and benchmark, and checks
of generated environments. Deterministic: the same schema always gives the same arguments.

Variants (``VARIANTS``):

* ``required``: only the required parameters, with valid values (enum first, else the default,
  else a typed placeholder that respects ``format``, ``pattern`` (common candidates tried),
  ``minimum``/``maximum``, ``minLength``, ``minItems``),
* ``all``: every declared parameter, valid values,
* ``alternative``: every parameter with a second valid value (enum last, a different placeholder),
* ``missing_required``: ``all`` without the first required parameter (needs one),
* ``wrong_types``: every parameter with a value of the wrong JSON type (needs a parameter),
* ``extra``: ``required`` plus an undeclared parameter ``unexpected_parameter``.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

VARIANTS = ("required", "all", "alternative", "missing_required", "wrong_types", "extra")

_FORMATS = {  # format -> (first, alternative)
    "date": ("2024-01-15", "2023-06-30"),
    "date-time": ("2024-01-15T10:00:00Z", "2023-06-30T18:30:00Z"),
    "time": ("10:00:00", "18:30:00"),
    "email": ("user@example.com", "alice@example.org"),
    "uri": ("https://example.com", "https://example.org/page"),
    "url": ("https://example.com", "https://example.org/page"),
}
# Tried in order when a string property has a `pattern`; the first that matches is used.
_PATTERN_CANDIDATES = (
    "2024-01-15",
    "2024-01",
    "2024",
    "10:30",
    "10:30:00",
    "2024-01-15T10:30:00Z",
    "1",
    "42",
    "12345",
    "1.5",
    "1 day",
    "2 years",
    "A",
    "AB",
    "ABC",
    "abc",
    "US",
    "en",
    "en-US",
    "A1",
    "AB123",
    "ABC-123",
    "user@example.com",
    "https://example.com",
    "+1-555-0100",
    "example",
    "test",
)
_WRONG = {
    "string": 12345,
    "integer": "not a number",
    "number": "not a number",
    "boolean": "yes",
    "array": "not a list",
    "object": "not an object",
    "null": "not null",
}


def _type_of(p: dict) -> str | None:
    t = p.get("type")
    if isinstance(t, list):
        t = next((x for x in t if x != "null"), t[0] if t else None)
    return t if isinstance(t, str) else None


@functools.lru_cache(maxsize=4096)
def _pattern_matches(pattern: str) -> tuple[str, ...]:
    try:
        rx = re.compile(pattern)
    except re.error:
        return ()
    return tuple(c for c in _PATTERN_CANDIDATES if rx.search(c))


def _clip(x: float, p: dict) -> float:
    lo, hi = p.get("minimum"), p.get("maximum")
    if isinstance(lo, (int, float)) and x < lo:
        x = lo
    if isinstance(hi, (int, float)) and x > hi:
        x = hi
    return x


def example_value(p: Any, alt: bool = False, depth: int = 0) -> Any:
    """A valid value for one property schema ``p`` (``alt`` picks a second, different one)."""
    if not isinstance(p, dict):
        return "example"
    if "const" in p:
        return p["const"]
    enum = p.get("enum")
    if isinstance(enum, list) and enum:
        return enum[-1] if alt else enum[0]
    if not alt and "default" in p:
        return p["default"]
    examples = p.get("examples")
    if isinstance(examples, list) and examples:
        return examples[-1] if alt else examples[0]
    t = _type_of(p)
    if t == "string":
        fmt = p.get("format")
        if fmt in _FORMATS:
            return _FORMATS[fmt][int(alt)]
        if isinstance(p.get("pattern"), str):
            hits = _pattern_matches(p["pattern"])
            if hits:
                return hits[-1] if alt else hits[0]
        s = "test" if alt else "example"
        n = p.get("minLength")
        return s * (int(n) // len(s) + 1) if isinstance(n, int) and n > len(s) else s
    if t == "integer":
        return int(_clip(10 if alt else 1, p))
    if t == "number":
        return float(_clip(10.0 if alt else 1.5, p))
    if t == "boolean":
        return not alt
    if t == "null":
        return None
    if t == "array":
        item = example_value(p.get("items"), alt, depth + 1) if depth < 4 else "example"
        n = p.get("minItems")
        return [item] * (int(n) if isinstance(n, int) and n > 1 else 1)
    if t == "object":
        props = p.get("properties") if isinstance(p.get("properties"), dict) else {}
        if depth >= 4:
            return {}
        return {k: example_value(v, alt, depth + 1) for k, v in props.items()}
    return "test" if alt else "example"


def _wrong_value(p: Any) -> Any:
    t = _type_of(p) if isinstance(p, dict) else None
    return _WRONG.get(t, 12345)


def example_arguments(schema: dict, variant: str = "required") -> dict[str, Any]:
    """Arguments for a tool whose ``parameters`` schema is ``schema`` (or a whole OpenAI tool
    dict), as the given ``variant`` (see ``VARIANTS``). Raises ValueError when the variant does
    not apply (``missing_required`` without required parameters, ``wrong_types`` without any)."""
    if "function" in schema and isinstance(schema["function"], dict):
        schema = schema["function"].get("parameters", {})
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; use one of {VARIANTS}")
    props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    required = [r for r in schema.get("required", []) if r in props]
    if variant == "required":
        return {k: example_value(props[k]) for k in required}
    if variant == "all":
        return {k: example_value(v) for k, v in props.items()}
    if variant == "alternative":
        return {k: example_value(v, alt=True) for k, v in props.items()}
    if variant == "missing_required":
        if not required:
            raise ValueError("schema has no required parameter to leave out")
        return {k: example_value(v) for k, v in props.items() if k != required[0]}
    if variant == "wrong_types":
        if not props:
            raise ValueError("schema declares no parameter to give a wrong type")
        return {k: _wrong_value(v) for k, v in props.items()}
    args = {k: example_value(props[k]) for k in required}
    args["unexpected_parameter"] = "value"
    return args


def example_argument_sets(schema: dict, variants: tuple[str, ...] = VARIANTS) -> dict[str, dict]:
    """``{variant: arguments}`` for every variant in ``variants`` that applies to ``schema``."""
    out = {}
    for v in variants:
        try:
            out[v] = example_arguments(schema, v)
        except ValueError:
            continue
    return out


def example_tool_calls(tool: dict, variants: tuple[str, ...] = VARIANTS, prefix: str = "call") -> list[dict]:
    """OpenAI-style tool calls (``arguments`` as a JSON string) for one tool, one per variant."""
    name = tool["function"]["name"]
    sets = example_argument_sets(tool, variants)
    return [
        {
            "id": f"{prefix}_{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args, ensure_ascii=False)},
        }
        for i, args in enumerate(sets.values())
    ]
