"""The data passed between pipeline stages: sub-questions, tool documents, gold calls.

A stage reads an `EnvDraft` and returns a new or updated one; `deploy.py` turns the final
draft into an FTRL `EnvRecord`. Everything here is plain data with `to_dict` for the
`env_meta` column.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dfield  # `field` is also a SubQuestion attribute
from typing import Any

STRATEGIES = ("functional", "parameters", "types", "toolset")
"""The four complexity-scaling strategies, in the paper's order."""

TOOL_ORIGINS = ("gold", "distractor", "near_duplicate")


@dataclass
class SubQuestion:
    """One step of a decomposed question, with its gold answer."""

    id: str
    text: str
    answer: str
    kind: str  # "attribute" | "relation" | "aggregate"
    entity_type: str = ""
    field: str = ""
    subject: str = ""  # the entity looked up (the tool's key argument)
    depends_on: list[str] = dfield(default_factory=list)
    chain: int = 0
    operation: str = ""  # aggregate only: add | subtract | max | min
    operands: list[str] = dfield(default_factory=list)  # aggregate only: sub-question ids

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_dict(cls, d: dict) -> SubQuestion:
        return cls(**d)


@dataclass
class Decomposition:
    """A question, its final answer, and its sub-questions (a dependency DAG)."""

    scenario: str
    question: str
    answer: str
    subs: list[SubQuestion]
    composition: str = "single"  # single | chain | sum | difference | max | min | earliest | list

    @property
    def edges(self) -> list[tuple[str, str]]:
        """Dependency edges (earlier sub-question id, later sub-question id)."""
        return [(d, s.id) for s in self.subs for d in s.depends_on]

    def sub(self, sub_id: str) -> SubQuestion:
        for s in self.subs:
            if s.id == sub_id:
                return s
        raise KeyError(f"no sub-question '{sub_id}' (have {[s.id for s in self.subs]})")

    def to_dict(self) -> dict:
        return {
            "scenario": self.scenario,
            "question": self.question,
            "answer": self.answer,
            "composition": self.composition,
            "sub_questions": [s.to_dict() for s in self.subs],
            "edges": [list(e) for e in self.edges],
        }


def _plain(obj: Any) -> dict:
    """`dataclasses.asdict` for a dataclass of plain values, lists and flat dicts (much faster)."""
    return {
        k: (
            list(v)
            if isinstance(v, list)
            else {a: (list(b) if isinstance(b, list) else b) for a, b in v.items()}
            if isinstance(v, dict)
            else v
        )
        for k, v in vars(obj).items()
    }


def _shallow(obj: Any) -> Any:
    """`copy.copy` of a plain dataclass instance, without the reduce protocol."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


def _copy2(d: dict) -> dict:
    """Copy a small JSON-Schema dict two levels deep (lists and dicts inside are copied)."""
    return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in d.items()}


@dataclass
class Param:
    """One parameter of a tool document (rendered as a JSON-Schema property)."""

    name: str
    type: str = "string"
    description: str = ""
    required: bool = False
    role: str = "option"  # key | selector | operation | operands | option
    enum: list | None = None
    default: Any = None
    has_default: bool = False
    minimum: float | None = None
    maximum: float | None = None
    items: dict | None = None  # array item schema
    properties: dict | None = None  # object property schemas
    extra: dict = dfield(default_factory=dict)  # minLength, format, minItems, maxItems, ...

    def copy(self) -> Param:
        """A copy whose lists / dicts can be changed (items and properties are replaced, never edited)."""
        new = _shallow(self)
        new.enum = None if self.enum is None else list(self.enum)
        new.extra = dict(self.extra)
        return new

    def schema(self) -> dict:
        """The JSON-Schema property of this parameter."""
        s: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.enum is not None:
            s["enum"] = list(self.enum)
        if self.minimum is not None:
            s["minimum"] = self.minimum
        if self.maximum is not None:
            s["maximum"] = self.maximum
        if self.items is not None:
            s["items"] = _copy2(self.items)
        if self.properties is not None:
            s["properties"] = {k: _copy2(v) for k, v in self.properties.items()}
        s.update(_copy2(self.extra))
        if self.has_default:
            s["default"] = self.default
        return s


@dataclass
class Tool:
    """A tool document plus what the generator knows about the function behind it."""

    name: str
    description: str
    params: list[Param]
    kind: str = "lookup"  # lookup | calculator
    entity_type: str = ""
    fields: list[str] = dfield(default_factory=list)  # entity fields the tool can return
    origin: str = "gold"  # gold | distractor | near_duplicate
    output_style: str = "dict"  # dict | text
    error_style: str = "dict"  # dict | text
    subjects: list[str] = dfield(default_factory=list)  # entities whose rows it must hold

    def copy(self) -> Tool:
        new = _shallow(self)
        new.params = [p.copy() for p in self.params]
        new.fields, new.subjects = list(self.fields), list(self.subjects)
        return new

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"tool '{self.name}' has no parameter '{name}' (has {[p.name for p in self.params]})")

    def by_role(self, role: str) -> Param | None:
        return next((p for p in self.params if p.role == role), None)

    def to_openai(self) -> dict:
        """The OpenAI function-calling document FTRL stores in `tools`."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": {
                    "type": "object",
                    "properties": {p.name: p.schema() for p in self.params},
                    "required": [p.name for p in self.params if p.required],
                },
            },
        }


@dataclass
class GoldCall:
    """One call of the gold plan; `uses` names the sub-question whose answer feeds an argument."""

    sub_id: str
    tool: str
    arguments: dict
    uses: dict[str, list[str]] = dfield(default_factory=dict)

    def to_dict(self) -> dict:
        return _plain(self)

    def copy(self) -> GoldCall:
        return GoldCall(self.sub_id, self.tool, dict(self.arguments), {k: list(v) for k, v in self.uses.items()})


@dataclass
class EnvDraft:
    """An environment under construction: decomposition, tools and the gold call plan."""

    decomposition: Decomposition
    tools: list[Tool]
    calls: list[GoldCall]
    levels: dict[str, int] = dfield(default_factory=lambda: {s: 0 for s in STRATEGIES})
    notes: dict[str, Any] = dfield(default_factory=dict)  # per-stage reports (integration n->m, ...)

    def tool(self, name: str) -> Tool:
        for t in self.tools:
            if t.name == name:
                return t
        raise KeyError(f"no tool '{name}' in draft (have {[t.name for t in self.tools]})")

    def rename_tool(self, old: str, new: str) -> None:
        """Rename a tool and every gold call that uses it."""
        self.tool(old).name = new
        for c in self.calls:
            if c.tool == old:
                c.tool = new

    def copy(self) -> EnvDraft:
        """A copy a stage may edit; the decomposition is shared (stages never change it)."""
        return EnvDraft(
            self.decomposition,
            [t.copy() for t in self.tools],
            [c.copy() for c in self.calls],
            dict(self.levels),
            dict(self.notes),
        )

    def documents(self) -> list[dict]:
        return [t.to_openai() for t in self.tools]
