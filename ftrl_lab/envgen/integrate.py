"""Stage 3, function integration: merge tools whose functions overlap.

Tools that look up the same field of the same entity type become one tool; lookups of
different fields of one entity type become one tool with an ``info_type`` enum; calculators
merge into one. The gold calls follow their tools, and ``notes["integration"]`` records
n -> m and which tools were merged.
"""

from __future__ import annotations

import random

from ftrl_lab.envgen.documents import unique_name
from ftrl_lab.envgen.schema import entity_type
from ftrl_lab.envgen.spec import EnvDraft, Param, Tool

MERGED_SUFFIXES = ("info_retriever", "data_lookup", "fact_finder", "profile_service")
SELECTOR_NAMES = ("info_type", "attribute", "fact", "detail", "query_type")


def selector_param(name: str, fields: list[str], type_name: str, as_enum: bool) -> Param:
    """The parameter choosing which field a multi-field tool returns."""
    t = entity_type(type_name)
    labels = ", ".join(fields)
    if as_enum:
        return Param(
            name,
            "string",
            f"Which information about the {t.noun} to return.",
            required=True,
            role="selector",
            enum=list(fields),
        )
    return Param(
        name,
        "string",
        f"Which information about the {t.noun} to return; one of: {labels}.",
        required=True,
        role="selector",
    )


def integrate(draft: EnvDraft, rng: random.Random) -> EnvDraft:
    """Merge overlapping tools (returns a new draft)."""
    draft = draft.copy()
    n = len(draft.tools)
    groups: dict[tuple[str, str], list[Tool]] = {}
    for t in draft.tools:
        groups.setdefault((t.kind, t.entity_type), []).append(t)
    merged_log: dict[str, list[str]] = {}
    new_tools: list[Tool] = []
    rename: dict[str, str] = {}
    taken = {t.name for t in draft.tools}
    for (kind, type_name), members in groups.items():
        if len(members) == 1:
            new_tools.append(members[0])
            continue
        fields = list(dict.fromkeys(f for t in members for f in t.fields))
        subjects = list(dict.fromkeys(s for t in members for s in t.subjects))
        if kind == "calculator" or len(fields) == 1:
            keep = members[0]
            keep.subjects = subjects
        else:
            taken -= {t.name for t in members}
            selector = selector_param(rng.choice(SELECTOR_NAMES), fields, type_name, as_enum=True)
            labels = [entity_type(type_name).get_field(f).label for f in fields]
            keep = Tool(
                name=unique_name(f"{type_name}_{rng.choice(MERGED_SUFFIXES)}", taken),
                description=(
                    f"Retrieves information about a {entity_type(type_name).noun}: " + ", ".join(labels) + "."
                ),
                params=[members[0].by_role("key"), selector],
                kind="lookup",
                entity_type=type_name,
                fields=fields,
                origin="gold",
                output_style=members[0].output_style,
                error_style=members[0].error_style,
                subjects=subjects,
            )
            taken.add(keep.name)
        for t in members:
            rename[t.name] = keep.name
        merged_log[keep.name] = [t.name for t in members]
        new_tools.append(keep)
    for call in draft.calls:
        call.tool = rename.get(call.tool, call.tool)
        tool = next(t for t in new_tools if t.name == call.tool)
        sel = tool.by_role("selector")
        if sel is not None:
            call.arguments[sel.name] = draft.decomposition.sub(call.sub_id).field
    draft.tools = new_tools
    draft.notes["integration"] = {"n": n, "m": len(new_tools), "merged": merged_log}
    return draft
