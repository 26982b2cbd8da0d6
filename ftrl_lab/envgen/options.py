"""Optional tool parameters, as data, for parameter expansion and type generalization.

Each option has a plain-string form (what parameter expansion adds, type level 0) and a
generalized form reached at type-generalization level `level`: 1 enums, 2 numbers /
integers / booleans with ranges, 3 arrays and objects. Numeric constants stay small (<= 60)
so that they never collide with gold answers (see `schema.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Option:
    name: str
    description: str
    base_default: str | None  # the level-0 string default (None: no default)
    level: int  # type-generalization level at which it takes `schema`
    schema: dict  # generalized JSON-Schema (type, enum, minimum, items, properties, default...)
    effect: str = ""  # what the deployed code does with it: "" (validated only) or "adds:<field>"
    applies_to: tuple[str, ...] = ("lookup",)
    hint: str = ""  # appended to the description in the plain-string form (how to write the value)

    @property
    def has_default(self) -> bool:
        return "default" in self.schema


def _o(name, desc, base, level, schema, effect="", applies=("lookup",), hint="") -> Option:
    return Option(name, desc, base, level, schema, effect, applies, hint)


_TF = " Use 'true' or 'false'."
_LIST = " Give a comma-separated list."

OPTIONS: tuple[Option, ...] = (
    # level 1: string -> enum
    _o(
        "language",
        "Language of the returned text.",
        "en",
        1,
        {"type": "string", "enum": ["en", "fr", "de", "es", "pt"], "default": "en"},
    ),
    _o(
        "detail_level",
        "How much detail to return.",
        "standard",
        1,
        {"type": "string", "enum": ["basic", "standard", "full"], "default": "standard"},
    ),
    _o(
        "data_source",
        "Which registry to consult.",
        "registry",
        1,
        {"type": "string", "enum": ["registry", "archive", "survey", "press"], "default": "registry"},
    ),
    _o(
        "region",
        "Geographic region used to disambiguate names.",
        None,
        1,
        {"type": "string", "enum": ["north", "south", "east", "west", "central"]},
    ),
    _o(
        "sort_by",
        "Order of candidate matches.",
        "relevance",
        1,
        {"type": "string", "enum": ["relevance", "name", "date"], "default": "relevance"},
    ),
    _o(
        "units",
        "Unit system for measurements.",
        "metric",
        1,
        {"type": "string", "enum": ["metric", "imperial"], "default": "metric"},
    ),
    _o(
        "output_format",
        "Format of the response.",
        "json",
        1,
        {"type": "string", "enum": ["json", "summary"], "default": "json"},
        applies=("lookup", "calculator"),
    ),
    _o(
        "search_mode",
        "How names are matched.",
        "exact",
        1,
        {"type": "string", "enum": ["exact", "prefix", "fuzzy"], "default": "exact"},
    ),
    _o(
        "rounding",
        "Rounding mode for the result.",
        "half_even",
        1,
        {"type": "string", "enum": ["half_even", "half_up", "none"], "default": "half_even"},
        applies=("calculator",),
    ),
    # level 2: string -> number / integer / boolean with constraints
    _o(
        "include_sources",
        "Whether to include the source of the information.",
        "false",
        2,
        {"type": "boolean", "default": False},
        hint=_TF,
        effect="adds:source",
    ),
    _o(
        "include_history",
        "Whether to include historical notes.",
        "false",
        2,
        {"type": "boolean", "default": False},
        hint=_TF,
    ),
    _o(
        "verbose",
        "Whether to add an explanatory note to the result.",
        "false",
        2,
        {"type": "boolean", "default": False},
        hint=_TF,
        effect="adds:note",
        applies=("lookup", "calculator"),
    ),
    _o(
        "max_results",
        "Maximum number of matches to consider.",
        "10",
        2,
        {"type": "integer", "minimum": 1, "maximum": 50, "default": 10},
    ),
    _o(
        "confidence_threshold",
        "Minimum match confidence between 0 and 1.",
        "0.5",
        2,
        {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
    ),
    _o("page", "Result page to return.", "1", 2, {"type": "integer", "minimum": 1, "maximum": 20, "default": 1}),
    _o(
        "fuzzy_match",
        "Whether to tolerate small spelling differences.",
        "true",
        2,
        {"type": "boolean", "default": True},
        hint=_TF,
    ),
    _o(
        "timeout_seconds",
        "Maximum time to spend on the query, in seconds.",
        "30",
        2,
        {"type": "integer", "minimum": 1, "maximum": 60, "default": 30},
        applies=("lookup", "calculator"),
    ),
    _o(
        "precision",
        "Number of decimal places in the result.",
        "2",
        2,
        {"type": "integer", "minimum": 0, "maximum": 10, "default": 2},
        applies=("calculator",),
    ),
    _o(
        "strict_mode",
        "Whether to reject non-numeric operands instead of skipping them ('true' or 'false').",
        "true",
        2,
        {"type": "boolean", "default": True},
        applies=("calculator",),
        hint=_TF,
    ),
    # level 3: string -> array / object
    _o(
        "fields",
        "Extra fields to include.",
        None,
        3,
        {
            "type": "array",
            "items": {"type": "string", "enum": ["summary", "aliases", "related", "identifiers"]},
            "maxItems": 4,
        },
        hint=_LIST,
    ),
    _o(
        "tags",
        "Tags to filter candidate records.",
        None,
        3,
        {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        hint=_LIST,
    ),
    _o(
        "date_range",
        "Only consider records valid in this period.",
        None,
        3,
        {
            "type": "object",
            "properties": {
                "start_date": {"type": "string", "description": "Start date, YYYY-MM-DD."},
                "end_date": {"type": "string", "description": "End date, YYYY-MM-DD."},
            },
        },
        hint=" Write it as 'YYYY-MM-DD/YYYY-MM-DD'.",
    ),
    _o(
        "filters",
        "Record filters.",
        None,
        3,
        {
            "type": "object",
            "properties": {
                "verified_only": {"type": "boolean", "description": "Only verified records."},
                "min_confidence": {"type": "number", "description": "Minimum confidence, 0 to 1."},
            },
        },
        hint=" Write 'key=value' pairs separated by semicolons.",
    ),
    _o(
        "request_context",
        "Context of the request.",
        None,
        3,
        {
            "type": "object",
            "properties": {
                "purpose": {"type": "string", "description": "Why the data is needed."},
                "locale": {"type": "string", "description": "Caller locale, e.g. en-GB."},
            },
        },
        applies=("lookup", "calculator"),
        hint=" Free text.",
    ),
    _o(
        "labels",
        "Labels for the operands.",
        None,
        3,
        {"type": "array", "items": {"type": "string"}, "maxItems": 10},
        applies=("calculator",),
        hint=_LIST,
    ),
)

OPTIONS_BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}


def options_for(kind: str) -> list[Option]:
    """Options that make sense for a tool kind ('lookup' or 'calculator')."""
    return [o for o in OPTIONS if kind in o.applies_to]


def default_of(option: Option, generalized: bool) -> tuple[bool, Any]:
    """(has_default, default) of an option in its base or generalized form."""
    if generalized:
        return ("default" in option.schema, option.schema.get("default"))
    return (option.base_default is not None, option.base_default)
