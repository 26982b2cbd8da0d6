"""Stage 5, localized deployment: each tool becomes Python source like FTRL's own codes.

A generated function validates its arguments (unknown names, required, types, enums,
ranges, array items, object keys) and returns an error dict or string instead of raising;
then it looks its answer up in a small table: the gold rows plus plausible decoy rows from
the same world, chosen so that no decoy row contains a gold answer. Output is deterministic
(a dict, or a sentence), the code uses no imports and no randomness, and it never echoes a
free-text argument back (so a call cannot "solve" an answer by repeating it).

`deploy` assembles the FTRL record: ``FTRL_INSTRUCTION + question``, tool documents, codes,
and ``unsolved_set`` (gold answers per tool, in gold-call order), with the generator's
knowledge (gold call plan, sub-questions, graph, levels) in the ``env_meta`` column.
"""

from __future__ import annotations

import json
import random
from typing import Any

from ftrl_lab.core.records import FTRL_INSTRUCTION, EnvRecord
from ftrl_lab.core.reward import normalise
from ftrl_lab.envgen.options import OPTIONS_BY_NAME
from ftrl_lab.envgen.schema import entity_type
from ftrl_lab.envgen.spec import EnvDraft, Param, Tool
from ftrl_lab.envgen.world import World

GENERATOR_VERSION = 1
_to_json = json.JSONEncoder(ensure_ascii=False).encode  # = json.dumps(x, ensure_ascii=False), built once
_TYPE_WORDS = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
}


# --- code rendering -------------------------------------------------------------------------
class _Code:
    """Indented source lines with the tool's error style."""

    def __init__(self, tool: Tool):
        self.lines: list[str] = []
        self.text_errors = tool.error_style == "text"

    def add(self, line: str, depth: int = 1) -> None:
        self.lines.append("    " * depth + line)

    def err(self, message: str, depth: int = 2) -> None:
        if self.text_errors:
            self.add(f"return {('Error: ' + message)!r}", depth)
        else:
            self.add(f"return {{'error': {message!r}}}", depth)


def _type_test(var: str, typ: str) -> str:
    """A Python expression that is True when `var` has the wrong JSON type."""
    return {
        "string": f"not isinstance({var}, str)",
        "integer": f"isinstance({var}, bool) or not isinstance({var}, int)",
        "number": f"isinstance({var}, bool) or not isinstance({var}, (int, float))",
        "boolean": f"not isinstance({var}, bool)",
        "array": f"not isinstance({var}, list)",
        "object": f"not isinstance({var}, dict)",
    }[typ]


def _expectation(p: Param) -> tuple[list[str], str]:
    """(conditions that make the value invalid, in short-circuit order; what a valid value is)."""
    v = p.name
    conds = [_type_test(v, p.type)]
    want = {
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "a boolean",
        "array": "a list",
        "object": "an object",
    }[p.type]
    if p.type == "string" and p.required:
        conds.append(f"not {v}.strip()")
        want = "a non-empty string"
    if "maxLength" in p.extra:
        conds.append(f"len({v}) > {p.extra['maxLength']}")
        want += f" of at most {p.extra['maxLength']} characters"
    if p.minimum is not None and p.maximum is not None:
        conds.append(f"not {p.minimum!r} <= {v} <= {p.maximum!r}")
        want += f" between {p.minimum} and {p.maximum}"
    elif p.minimum is not None:
        conds.append(f"{v} < {p.minimum!r}")
        want += f" of at least {p.minimum}"
    elif p.maximum is not None:
        conds.append(f"{v} > {p.maximum!r}")
        want += f" of at most {p.maximum}"
    if p.type == "array":
        lo = p.extra.get("minItems", 2 if p.role == "operands" else None)
        hi = p.extra.get("maxItems")
        if lo is not None:
            conds.append(f"len({v}) < {lo}")
        if hi is not None:
            conds.append(f"len({v}) > {hi}")
        if lo is not None or hi is not None:
            want += (
                f" of {lo} to {hi} items"
                if lo is not None and hi is not None
                else f" of at least {lo} items"
                if lo is not None
                else f" of at most {hi} items"
            )
        item = p.items or {}
        if "enum" in item:
            conds.append(f"any(x not in {item['enum']!r} for x in {v})")
            want += f" with items among {', '.join(item['enum'])}"
        elif "type" in item:
            conds.append(f"any({_type_test('x', item['type'])} for x in {v})")
            want += f" of {item['type']}s"
    if p.type == "object" and p.properties:
        keys = list(p.properties)
        conds.append(f"any(k not in {keys!r} for k in {v})")
        for k, sub in p.properties.items():
            conds.append(f"({v}.get({k!r}) is not None and ({_type_test(f'{v}[{k!r}]', sub['type'])}))")
        want += " with keys " + ", ".join(f"{k} ({sub['type']})" for k, sub in p.properties.items())
    return conds, want


def _check_param(code: _Code, p: Param, tool: Tool) -> None:
    """One validation test per parameter (after the missing-required checks)."""
    v = p.name
    allowed = list(tool.fields) if p.role in ("selector", "operation") else p.enum
    guard = "" if p.required else f"{v} is not None and "
    if allowed is not None:  # membership also rejects every wrong type; None: not given
        code.add(f"if {v} not in {tuple(allowed) if p.required else (None, *allowed)!r}:")
        code.err(f"Invalid '{v}'. Must be one of: {', '.join(map(str, allowed))}.")
        return
    conds, want = _expectation(p)
    test = " or ".join(conds)
    code.add(f"if {guard}({test}):" if guard and len(conds) > 1 else f"if {guard}{test}:")
    code.err(f"Invalid '{v}': expected {want}.")


def _flag(p: Param) -> str:
    """Expression: the option is switched on (boolean, or the string 'true' at type level 0)."""
    return f"{p.name} is True" if p.type == "boolean" else f"str({p.name}).lower() == 'true'"


def _docstring(tool: Tool) -> list[str]:
    lines = ['    """', f"    {tool.description}", "", "    Parameters:"]
    for p in tool.params:
        req = "required" if p.required else (f"optional, default {p.default!r}" if p.has_default else "optional")
        lines.append(f"    - {p.name} ({_TYPE_WORDS[p.type]}, {req}): {p.description}")
    lines += ["", "    Returns:", "    - dict or str: the result, or an error message.", '    """']
    return lines


def render_code(tool: Tool, rows: dict[str, dict] | None = None) -> str:
    """Python source defining `tool.name`, validating arguments and answering from `rows`.

    `rows` maps an entity name to its field values (lookups); calculators need none.
    """
    sig = [f"{p.name}={p.default!r}" if p.has_default else f"{p.name}=None" for p in tool.params]
    code = _Code(tool)
    allowed = ", ".join(p.name for p in tool.params)
    code.add("if kwargs:")
    code.err(f"Unexpected parameter(s). Allowed parameters are: {allowed}.")
    for p in tool.params:
        if p.required:
            code.add(f"if {p.name} is None:")
            code.err(f"Missing required parameter '{p.name}'.")
    for p in tool.params:
        _check_param(code, p, tool)
    if tool.kind == "calculator":
        _calculator_body(code, tool)
    else:
        _lookup_body(code, tool, rows or {})
    head = [f"def {tool.name}({', '.join(sig + ['**kwargs'])}):"]
    return "\n".join(head + _docstring(tool) + code.lines) + "\n"


def _lookup_body(code: _Code, tool: Tool, rows: dict[str, dict]) -> None:
    t = entity_type(tool.entity_type)
    key = tool.by_role("key").name
    sel = tool.by_role("selector")
    # Rows as tuples of constants: compact source, cheap to compile (the sandbox compiles every
    # generated source, the gate parses it too).
    code.add("# Simulated registry (fictional records)")
    code.add(f"columns = {('name', *tool.fields)!r}")
    code.add("records = {")
    for name, values in rows.items():
        code.add(f"{name.lower()!r}: {(name, *(values[f] for f in tool.fields))!r},", 2)
    code.add("}")
    code.add(f"found = records.get({key}.strip().lower())")
    code.add("if found is None:")
    code.err(f"No {t.noun} matching that name was found.")
    code.add("row = dict(zip(columns, found))")
    field_expr = sel.name if sel is not None else repr(tool.fields[0])
    code.add(f"value = row[{field_expr}]")
    labels = {f: t.get_field(f).label for f in tool.fields}
    flags = [
        (p, OPTIONS_BY_NAME[p.name].effect)
        for p in tool.params
        if p.role == "option" and OPTIONS_BY_NAME[p.name].effect
    ]
    if tool.output_style == "text":
        code.add(f"labels = {labels!r}")
        code.add(f"text = 'The ' + labels[{field_expr}] + ' of ' + row['name'] + ' is ' + str(value) + '.'")
        for p, effect in flags:
            code.add(f"if {_flag(p)}:")
            code.add(f"text += ' {_effect_text(effect, t.plural)}'", 2)
        code.add("return text")
        return
    code.add(f"result = {{{key!r}: row['name']}}")
    if sel is not None:
        code.add(f"result[{sel.name!r}] = {sel.name}")
    code.add(f"result[{field_expr}] = value")
    for p, effect in flags:
        code.add(f"if {_flag(p)}:")
        code.add(f"result[{effect.split(':')[1]!r}] = {_effect_text(effect, t.plural)!r}", 2)
    code.add("return result")


def _effect_text(effect: str, plural: str) -> str:
    if effect == "adds:source":
        return f"Source: the curated registry of {plural}."
    return "Note: values come from the latest registry snapshot."


def _calculator_body(code: _Code, tool: Tool) -> None:
    code.add("numbers = list(operands)")
    code.add("if operation == 'add':")
    code.add("result = sum(numbers)", 2)
    code.add("elif operation == 'subtract':")
    code.add("result = numbers[0] - sum(numbers[1:])", 2)
    code.add("elif operation == 'multiply':")
    code.add("result = 1", 2)
    code.add("for x in numbers:", 2)
    code.add("result *= x", 3)
    code.add("elif operation == 'divide':")
    code.add("if any(x == 0 for x in numbers[1:]):", 2)
    code.err("Division by zero.", 3)
    code.add("result = numbers[0]", 2)
    code.add("for x in numbers[1:]:", 2)
    code.add("result /= x", 3)
    code.add("elif operation == 'average':")
    code.add("result = sum(numbers) / len(numbers)", 2)
    code.add("elif operation == 'max':")
    code.add("result = max(numbers)", 2)
    code.add("else:")
    code.add("result = min(numbers)", 2)
    precision = next((p for p in tool.params if p.name == "precision"), None)
    if precision is None:
        code.add("digits = 2")
    elif precision.type == "integer":
        code.add("digits = precision if precision is not None else 2")
    else:
        code.add("digits = int(precision) if str(precision).isdigit() else 2")
    code.add("if isinstance(result, float):")
    code.add("result = round(result, digits)", 2)
    code.add("if result == int(result) and all(isinstance(x, int) for x in numbers):", 2)
    code.add("result = int(result)", 3)
    if tool.output_style == "text":
        code.add("return 'The result is ' + str(result) + '.'")
    else:
        code.add("return {'operation': operation, 'result': result}")


# --- tables ------------------------------------------------------------------------------------
def build_rows(
    tool: Tool, world: World, rng: random.Random, golds: list[str], n_decoys: tuple[int, int] = (3, 6)
) -> tuple[dict[str, dict], list[str]]:
    """The tool's table: its subjects' rows plus decoys whose values contain no gold answer."""
    names = list(dict.fromkeys(tool.subjects))
    pool = [e for e in world.by_type[tool.entity_type] if e.name not in names]
    rng.shuffle(pool)
    want = rng.randint(*n_decoys) + (0 if names else 2)
    gold_parts = [[normalise(part) for part in g.split(", ")] for g in golds]
    decoys: list[str] = []
    for e in pool:
        if len(decoys) >= want:
            break
        if gold_parts:  # FTRL's rule: every part of a gold answer occurs in the value
            values = [normalise(e.values[f]) for f in tool.fields] + [normalise(e.name)]
            if any(all(part in v for part in parts) for v in values for parts in gold_parts):
                continue
        decoys.append(e.name)
    order = names + decoys
    rng.shuffle(order)
    rows = {n: {f: world.value(n, f) for f in tool.fields} for n in order}
    return rows, decoys


def deploy(
    draft: EnvDraft, world: World, rng: random.Random, split: str = "train", meta: dict[str, Any] | None = None
) -> EnvRecord:
    """The FTRL record of a draft (gold plan and generator knowledge in `env_meta`)."""
    dec = draft.decomposition
    answers = {s.id: s.answer for s in dec.subs}
    unsolved: dict[str, list[str]] = {}
    for call in draft.calls:
        unsolved.setdefault(call.tool, []).append(answers[call.sub_id])
    codes: dict[str, str] = {}
    decoys: dict[str, list[str]] = {}
    for tool in draft.tools:
        if tool.kind == "calculator":
            codes[tool.name] = render_code(tool)
            continue
        rows, dec_names = build_rows(tool, world, rng, unsolved.get(tool.name, []))
        codes[tool.name] = render_code(tool, rows)
        if tool.name in unsolved:
            decoys[tool.name] = dec_names
    env_meta = {
        "generator": "procedural",
        "version": GENERATOR_VERSION,
        "world_seed": world.seed,
        **(meta or {}),
        "scenario": dec.scenario,
        "levels": dict(draft.levels),
        "composition": dec.composition,
        "sub_questions": [s.to_dict() for s in dec.subs],
        "edges": [list(e) for e in dec.edges],
        "gold_plan": [c.to_dict() for c in draft.calls],
        "integration": draft.notes.get("integration", {}),
        "tool_origin": {t.name: t.origin for t in draft.tools},
        "decoys": decoys,
    }
    return EnvRecord(
        messages=[{"role": "user", "content": FTRL_INSTRUCTION + dec.question}],
        tools=draft.documents(),
        codes=codes,
        unsolved_set=unsolved,
        solve_rate=0.0,
        data_source=f"self/{dec.scenario}",
        split=split,
        answer=dec.answer,
        extra={"env_meta": _to_json(env_meta)},
    )
