"""Stage 2, document generation: one OpenAI function schema per sub-question.

An attribute or relation sub-question becomes a narrow lookup tool (``city_population_lookup
(city_name)``), an arithmetic step becomes a calculator. The gold call plan starts here:
one call per sub-question, whose key argument is the sub-question's subject (for a later
hop, the previous hop's answer, recorded in ``uses``).
"""

from __future__ import annotations

import random

from ftrl_lab.envgen.schema import entity_type
from ftrl_lab.envgen.spec import Decomposition, EnvDraft, GoldCall, Param, SubQuestion, Tool
from ftrl_lab.envgen.world import parse_number

ATTRIBUTE_SUFFIXES = ("lookup", "finder", "retriever", "checker", "fetcher")
RELATION_SUFFIXES = ("finder", "locator", "identifier", "resolver", "lookup")
CALCULATOR_OPERATIONS = ["add", "subtract", "max", "min"]


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base_2`, `base_3`, ... whichever is free (at most 64 characters)."""
    base = base[:60]
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def key_param(type_name: str) -> Param:
    t = entity_type(type_name)
    return Param(t.key, "string", f"The name of the {t.noun}.", required=True, role="key")


def lookup_tool(type_name: str, field_name: str, rng: random.Random, taken: set[str]) -> Tool:
    """A narrow tool returning one field of an entity type."""
    t = entity_type(type_name)
    f = t.get_field(field_name)
    if f.is_relation:
        target = entity_type(f.target)
        suffix = rng.choice(RELATION_SUFFIXES)
        desc = f"Finds the {f.label} of a {t.noun} and returns the name of that {target.noun}."
    else:
        suffix = rng.choice(ATTRIBUTE_SUFFIXES)
        desc = f"Returns the {f.label} of a {t.noun}."
    return Tool(
        name=unique_name(f"{type_name}_{field_name}_{suffix}", taken),
        description=desc,
        params=[key_param(type_name)],
        kind="lookup",
        entity_type=type_name,
        fields=[field_name],
        output_style=rng.choice(["dict", "dict", "text"]),
        error_style=rng.choice(["dict", "text"]),
    )


def calculator_tool(rng: random.Random, taken: set[str]) -> Tool:
    name = unique_name(rng.choice(["arithmetic_calculator", "basic_calculator", "number_cruncher"]), taken)
    return Tool(
        name=name,
        description="Performs an arithmetic operation on a list of numbers.",
        params=[
            Param(
                "operation",
                "string",
                "The operation to perform: add, subtract, max or min.",
                required=True,
                role="operation",
                enum=None,
            ),
            Param(
                "operands",
                "array",
                "The numbers to operate on, in order.",
                required=True,
                role="operands",
                items={"type": "number"},
            ),
        ],
        kind="calculator",
        fields=list(CALCULATOR_OPERATIONS),
        output_style="dict",
        error_style=rng.choice(["dict", "text"]),
    )


def gold_call(sub: SubQuestion, tool: Tool, decomposition: Decomposition) -> GoldCall:
    """The call that answers `sub` with `tool` (before integration adds a selector)."""
    if sub.kind == "aggregate":
        values = [decomposition.sub(i).answer for i in sub.operands]
        numbers = [parse_number(v) for v in values]
        if sub.operation == "subtract":
            numbers = sorted(numbers, reverse=True)
        return GoldCall(
            sub.id, tool.name, {"operation": sub.operation, "operands": numbers}, {"operands": list(sub.operands)}
        )
    key = tool.by_role("key").name
    return GoldCall(sub.id, tool.name, {key: sub.subject}, {key: list(sub.depends_on)} if sub.depends_on else {})


def generate_documents(decomposition: Decomposition, rng: random.Random) -> EnvDraft:
    """One tool per sub-question (one-to-one) and the initial gold call plan."""
    tools: list[Tool] = []
    calls: list[GoldCall] = []
    taken: set[str] = set()
    for sub in decomposition.subs:
        if sub.kind == "aggregate":
            tool = calculator_tool(rng, taken)
        else:
            tool = lookup_tool(sub.entity_type, sub.field, rng, taken)
            tool.subjects = [sub.subject]
        taken.add(tool.name)
        tools.append(tool)
        calls.append(gold_call(sub, tool, decomposition))
    return EnvDraft(decomposition, tools, calls)
