"""Stage 4, complexity scaling: four separate strategies, each with a level 0-3.

* functional generalization: broader descriptions (1), a generic name and an ``info_type``
  selector covering more fields of the entity type (2), a comprehensive tool (3);
* parameter expansion: optional parameters with defaults, +1-2 (1), +2-4 (2), up to about
  seven parameters per tool (3, FTRL's test set averages 7.1);
* parameter-type generalization: plain strings become enums (1), numbers / integers /
  booleans with ranges (2), arrays and objects (3);
* toolset extension: distractor tools from other domains and near-duplicates over the same
  entities, +1-2 (1), half-way (2), the per-scenario FTRL tool counts (3).

Each step takes a draft and returns a new one (``copy=False``: it edits the draft it is given
and returns it); `scale` applies the four in the paper's order to one copy.
"""

from __future__ import annotations

import json
import math
import random
from functools import cache

from ftrl_lab.envgen.documents import lookup_tool, unique_name
from ftrl_lab.envgen.integrate import SELECTOR_NAMES, selector_param
from ftrl_lab.envgen.options import OPTIONS_BY_NAME, default_of, options_for
from ftrl_lab.envgen.schema import TYPES, entity_type
from ftrl_lab.envgen.spec import STRATEGIES, EnvDraft, Param, Tool

MAX_LEVEL = 3
TOOLSET_TARGETS: dict[str, tuple[int, int]] = {
    "single_hop": (5, 11),
    "parallel_single_hop": (3, 12),
    "multi_hop": (7, 14),
    "parallel_multi_hop": (8, 15),
}
"""Tools per environment at toolset level 3 (FTRL test set: 5-11, 1-12, 2-14, 8-15)."""
PARAMS_PER_TOOL: dict[int, float] = {4: 6, 5: 12, 6: 16, 7: 20, 8: 18, 9: 13, 10: 9, 11: 6}
"""Parameters per tool at expansion level 3 (weights; mean about 7.3, FTRL 7.1)."""
NEAR_DUPLICATE_SHARE = 0.4

GENERIC_SUFFIXES = ("data_retriever", "info_service", "explorer", "database_query", "records_api")
BROAD_PREFIXES = ("comprehensive", "advanced", "unified", "global")


def _check_level(level: int, strategy: str) -> None:
    if not 0 <= level <= MAX_LEVEL:
        raise ValueError(f"{strategy} level must be 0..{MAX_LEVEL}, got {level}")


# --- functional generalization ---------------------------------------------------------------
def _describe(tool: Tool, level: int) -> str:
    if tool.kind == "calculator":
        ops = ", ".join(_ops(tool))
        return [
            tool.description,
            f"A calculator tool that applies an arithmetic operation ({ops}) to a list of numbers.",
            f"A general-purpose calculator for numerical questions: supports {ops} over any number of operands.",
            f"An advanced arithmetic engine designed to combine and compare numerical values; "
            f"supported operations are {ops}, with configurable output.",
        ][level]
    t = entity_type(tool.entity_type)
    labels = ", ".join(t.get_field(f).label for f in tool.fields)
    return [
        tool.description,
        f"A tool for looking up {t.plural}. Given a {t.noun}'s name it returns its {labels}.",
        f"Retrieves structured information about {t.plural} in the {t.domain} domain, such as the {labels}, "
        f"from a curated registry.",
        f"An advanced, comprehensive tool designed to retrieve and cross-check detailed information about "
        f"{t.plural} ({t.domain} domain), including the {labels}, with options for filtering, sources and "
        f"output control.",
    ][level]


def _ops(tool: Tool) -> list[str]:
    p = tool.by_role("operation")
    return list(p.enum) if p.enum else list(tool.fields)


def functional_generalization(
    draft: EnvDraft, level: int, rng: random.Random, reserved: set[tuple[str, str]] = frozenset(), copy: bool = True
) -> EnvDraft:
    """Broaden what each tool does and says it does.

    `reserved` (entity type, field) pairs are never added to a tool: distractors must not
    answer what the gold tools answer, or a correct call to them would go unrewarded.
    """
    _check_level(level, "functional generalization")
    draft = draft.copy() if copy else draft
    draft.levels["functional"] = level
    if level == 0:
        return draft
    taken = {t.name for t in draft.tools}
    for tool in draft.tools:
        if tool.kind == "calculator" and level >= 2:
            extra = ["multiply", "divide"] if level == 2 else ["multiply", "divide", "average"]
            tool.fields = list(dict.fromkeys(tool.fields + extra))
            op = tool.by_role("operation")
            if op.enum:
                op.enum = list(tool.fields)
            op.description = f"The operation to perform: {', '.join(tool.fields)}."
        if tool.kind == "lookup" and level >= 2:
            t = entity_type(tool.entity_type)
            spare = [f.name for f in t.fields if f.name not in tool.fields and (t.name, f.name) not in reserved]
            rng.shuffle(spare)
            k = rng.randint(1, 2) if level == 2 else rng.randint(2, 4)
            tool.fields = tool.fields + spare[:k]
            sel = tool.by_role("selector")
            if sel is None:
                sel = selector_param(rng.choice(SELECTOR_NAMES), tool.fields, t.name, as_enum=False)
                tool.params.insert(1, sel)
                for call in draft.calls:
                    if call.tool == tool.name:
                        call.arguments[sel.name] = draft.decomposition.sub(call.sub_id).field
            elif sel.enum is not None:
                sel.enum = list(tool.fields)
            else:
                sel.description = f"Which information about the {t.noun} to return; one of: {', '.join(tool.fields)}."
            base = (
                f"{rng.choice(BROAD_PREFIXES)}_{t.name}_{rng.choice(GENERIC_SUFFIXES)}"
                if level == 3
                else f"{t.name}_{rng.choice(GENERIC_SUFFIXES)}"
            )
            taken.discard(tool.name)
            new = unique_name(base, taken)
            draft.rename_tool(tool.name, new)
            taken.add(new)
        tool.description = _describe(tool, level)
        for p in tool.params:
            if p.role == "key" and level >= 1:
                noun = entity_type(tool.entity_type).noun
                p.description = f"The name of the {noun} to look up (as commonly written)."
    return draft


# --- parameter expansion -----------------------------------------------------------------------
def _target_params(level: int, current: int, rng: random.Random) -> int:
    if level == 0:
        return current
    if level == 1:
        return current + rng.randint(1, 2)
    if level == 2:
        return current + rng.randint(2, 4)
    keys = sorted(PARAMS_PER_TOOL)
    return max(current + 1, rng.choices(keys, weights=[PARAMS_PER_TOOL[k] for k in keys])[0])


def parameter_expansion(draft: EnvDraft, level: int, rng: random.Random, copy: bool = True) -> EnvDraft:
    """Add optional parameters (plain strings, most with defaults) to every tool."""
    _check_level(level, "parameter expansion")
    draft = draft.copy() if copy else draft
    draft.levels["parameters"] = level
    for tool in draft.tools:
        target = _target_params(level, len(tool.params), rng)
        have = {p.name for p in tool.params}
        pool = [o for o in options_for(tool.kind) if o.name not in have]
        rng.shuffle(pool)
        for opt in pool[: max(0, target - len(tool.params))]:
            has_default, default = default_of(opt, generalized=False)
            desc = opt.description + opt.hint + (f" Default is '{default}'." if has_default else "")
            tool.params.append(
                Param(opt.name, "string", desc, required=False, role="option", default=default, has_default=has_default)
            )
    return draft


# --- parameter-type generalization -------------------------------------------------------------
def type_generalization(draft: EnvDraft, level: int, rng: random.Random, copy: bool = True) -> EnvDraft:
    """Turn plain-string parameters into enums, numbers, booleans, arrays and objects."""
    _check_level(level, "type generalization")
    draft = draft.copy() if copy else draft
    draft.levels["types"] = level
    if level == 0:
        return draft
    for tool in draft.tools:
        for i, p in enumerate(tool.params):
            if p.role == "selector" and p.enum is None:
                p.enum = list(tool.fields)
                p.description = f"Which information about the {entity_type(tool.entity_type).noun} to return."
            elif p.role == "operation" and p.enum is None:
                p.enum = list(tool.fields)
            elif p.role == "key" and level >= 2:
                p.extra = {"minLength": 1, "maxLength": 60}
            elif p.role == "operands" and level >= 2:
                p.extra = {"minItems": 2}
            elif p.role == "option":
                opt = OPTIONS_BY_NAME[p.name]
                if opt.level > level or p.type != "string" or p.enum is not None:
                    continue
                tool.params[i] = _generalized(p.name).copy()
    return draft


@cache
def _generalized(name: str) -> Param:
    """An option's generalized parameter (a shared template: use a copy)."""
    opt = OPTIONS_BY_NAME[name]
    s = dict(opt.schema)
    has_default, default = default_of(opt, generalized=True)
    return Param(
        name,
        s.pop("type"),
        opt.description + (f" Default is {json.dumps(default)}." if has_default else ""),
        required=False,
        role="option",
        enum=s.pop("enum", None),
        default=s.pop("default", None),
        has_default=has_default,
        minimum=s.pop("minimum", None),
        maximum=s.pop("maximum", None),
        items=s.pop("items", None),
        properties=s.pop("properties", None),
        extra=s,
    )


# --- toolset extension ---------------------------------------------------------------------------
def toolset_target(scenario: str, n_gold: int, level: int, rng: random.Random) -> int:
    """How many tools the environment should offer in total."""
    if level == 0:
        return n_gold
    lo, hi = TOOLSET_TARGETS[scenario]
    top = min(hi, max(rng.randint(lo, hi), n_gold + 1))
    if level == 1:
        return min(top, n_gold + rng.randint(1, 2))
    if level == 2:
        return n_gold + math.ceil((top - n_gold) / 2)
    return top


def toolset_extension(draft: EnvDraft, level: int, rng: random.Random, copy: bool = True) -> EnvDraft:
    """Add distractor tools (other domains) and near-duplicates (same entities, other fields).

    New tools go through the same functional / parameter / type levels as the gold tools,
    so that they look alike; their position among the tools is random.
    """
    _check_level(level, "toolset extension")
    draft = draft.copy() if copy else draft
    draft.levels["toolset"] = level
    gold = [t for t in draft.tools]
    target = toolset_target(draft.decomposition.scenario, len(gold), level, rng)
    if target <= len(gold):
        return draft
    taken = {t.name for t in draft.tools}
    used = {(t.entity_type, f) for t in gold for f in t.fields}  # grows with each new tool
    gold_types = [t for t in gold if t.kind == "lookup"]
    gold_domains = {entity_type(t.entity_type).domain for t in gold_types}
    extra: list[Tool] = []
    for _ in range((target - len(gold)) * 4):
        if len(extra) >= target - len(gold):
            break
        if gold_types and rng.random() < NEAR_DUPLICATE_SHARE:
            base = rng.choice(gold_types)
            t = entity_type(base.entity_type)
            free = [f.name for f in t.fields if (t.name, f.name) not in used]
            if not free:
                continue
            tool = lookup_tool(t.name, rng.choice(free), rng, taken)
            tool.origin, tool.subjects = "near_duplicate", list(base.subjects)
        else:
            others = [t for t in TYPES if t.domain not in gold_domains] or list(TYPES)
            t = rng.choice(others)
            free = [f.name for f in t.fields if (t.name, f.name) not in used]
            if not free:
                continue
            tool = lookup_tool(t.name, rng.choice(free), rng, taken)
            tool.origin = "distractor"
        used.add((tool.entity_type, tool.fields[0]))
        taken.add(tool.name)
        extra.append(tool)
    side = EnvDraft(draft.decomposition, extra, [], dict(draft.levels))
    gold_fields = {(t.entity_type, f) for t in gold for f in t.fields}
    side = functional_generalization(side, draft.levels.get("functional", 0), rng, reserved=gold_fields, copy=False)
    side = parameter_expansion(side, draft.levels.get("parameters", 0), rng, copy=False)
    side = type_generalization(side, draft.levels.get("types", 0), rng, copy=False)
    for t in side.tools:
        if t.name in {g.name for g in gold}:  # a generic rename may collide with a gold name
            t.name = unique_name(t.name, {x.name for x in draft.tools} | {x.name for x in side.tools})
    tools = gold + side.tools
    rng.shuffle(tools)
    draft.tools = tools
    return draft


def scale(draft: EnvDraft, levels: dict[str, int], rng: random.Random) -> EnvDraft:
    """Apply the four strategies in order, each at its level ({strategy: 0..3})."""
    unknown = set(levels) - set(STRATEGIES)
    if unknown:
        raise ValueError(f"unknown strategy name(s) {sorted(unknown)} (use {STRATEGIES})")
    trace = [("integrated", 0, summarize(draft))]
    for i, (strategy, step) in enumerate(
        (
            ("functional", functional_generalization),
            ("parameters", parameter_expansion),
            ("types", type_generalization),
            ("toolset", toolset_extension),
        )
    ):
        draft = step(draft, levels.get(strategy, 0), rng, copy=i == 0)  # one copy; the later steps edit it
        trace.append((strategy, levels.get(strategy, 0), summarize(draft)))
    draft.notes["scaling_trace"] = trace
    return draft


def summarize(draft: EnvDraft) -> dict:
    """Tools, parameters per tool and parameter types of a draft (for the scaling trace)."""
    params = [p for t in draft.tools for p in t.params]
    types: dict[str, int] = {}
    for p in params:
        types[p.type] = types.get(p.type, 0) + 1
    return {
        "tools": len(draft.tools),
        "params_per_tool": round(len(params) / max(len(draft.tools), 1), 2),
        "enums": sum(p.enum is not None for p in params),
        "with_default": sum(p.has_default for p in params),
        "types": types,
    }
