"""Stage 1, scenario decomposition: a question, its sub-questions and their dependency graph.

Four scenarios (the paper's): ``single_hop`` (one sub-question), ``parallel_single_hop``
(2-3 independent ones whose answers are combined), ``multi_hop`` (a chain of 2-10, each
needing the previous answer: a walk along relations of the world graph) and
``parallel_multi_hop`` (independent chains, 5-11 sub-answers in all, combined at the end,
with an arithmetic step when the combination is numeric). Every sub-question carries its
gold answer; the final question nests the chain's noun phrases ("the population of the
city where the founder of X was born").
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ftrl_lab.envgen.schema import NUMERIC_KINDS, TYPES, entity_type
from ftrl_lab.envgen.spec import Decomposition, SubQuestion
from ftrl_lab.envgen.world import World, format_value, parse_number

SCENARIOS = ("single_hop", "parallel_single_hop", "multi_hop", "parallel_multi_hop")


@dataclass
class DecomposeConfig:
    """Shape of the generated questions; defaults mirror FTRL's test-set statistics."""

    multi_hop_lengths: dict[int, float] = field(
        default_factory=lambda: {2: 10, 3: 12, 4: 13, 5: 13, 6: 12, 7: 11, 8: 10, 9: 10, 10: 9}
    )
    parallel_single_k: dict[int, float] = field(default_factory=lambda: {2: 0.92, 3: 0.08})
    parallel_chains: dict[int, float] = field(default_factory=lambda: {2: 0.75, 3: 0.25})
    parallel_chain_length: tuple[int, int] = (2, 4)
    parallel_total: tuple[int, int] = (5, 11)  # sub-answers, including the arithmetic step
    final_attribute_prob: float = 0.8  # a chain ends on an attribute (else on a relation)
    same_field_prob: float = 0.5  # parallel single-hop asks one field of several entities
    domains: tuple[str, ...] | None = None  # restrict anchors to these domains

    def __post_init__(self) -> None:
        lo, hi = self.parallel_chain_length
        if not 2 <= lo <= hi:
            raise ValueError(f"parallel_chain_length must satisfy 2 <= lo <= hi, got {self.parallel_chain_length}")
        if min(self.multi_hop_lengths) < 2 or max(self.multi_hop_lengths) > 10:
            raise ValueError("multi_hop_lengths must lie within 2..10")


def _weighted(rng: random.Random, weights: dict) -> int:
    keys = sorted(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


# --- templates ---------------------------------------------------------------------------
def fill(template: str, x: str) -> str:
    """Put a name or noun phrase into a template ("the {x}" absorbs a phrase's own "the")."""
    if x.startswith("the ") and "the {x}" in template:
        template = template.replace("the {x}", "{x}")
    out = template.replace("{x}", x)
    return out[:1].upper() + out[1:]


def question_templates(type_name: str, field_name: str) -> list[str]:
    """Natural-language questions asking one field of `{x}`."""
    f = entity_type(type_name).get_field(field_name)
    own = list(f.templates)
    if f.is_relation:
        target = entity_type(f.target)
        if target.wh == "Who":
            own += [f"Who is the {f.label} of {{x}}?", f"Can you find out who the {f.label} of {{x}} is?"]
        else:
            own.append(f"What is the {f.label} of {{x}}?")
            if target.noun not in f.label:
                own.append(f"Which {target.noun} is the {f.label} of {{x}}?")
    else:
        own += [f"What is the {f.label} of {{x}}?", f"Can you tell me the {f.label} of {{x}}?"]
    return own


def noun_phrases(type_name: str, field_name: str) -> list[str]:
    """Noun phrases naming a field of `{x}`, for nesting ("the founder of {x}")."""
    f = entity_type(type_name).get_field(field_name)
    phrases = list(f.phrases) if f.is_relation else []
    return phrases + [f"the {f.label} of {{x}}"]


def _np(rng: random.Random, type_name: str, field_name: str, x: str) -> str:
    text = rng.choice(noun_phrases(type_name, field_name))
    if x.startswith("the ") and "the {x}" in text:
        text = text.replace("the {x}", "{x}")
    return text.replace("{x}", x)


# --- chains through the world graph ------------------------------------------------------
def _anchor_types(config: DecomposeConfig) -> list:
    types = [t for t in TYPES if config.domains is None or t.domain in config.domains]
    if not types:
        raise ValueError(f"no entity type in domains {config.domains}")
    return types


def walk(
    world: World,
    rng: random.Random,
    length: int,
    banned: set[str],
    config: DecomposeConfig,
    end_filter=None,
    tries: int = 50,
) -> list[tuple[str, str, str]]:
    """A chain of `length` steps (entity type, field, subject name), visiting distinct entities.

    All steps but the last follow relations; the last asks an attribute (or a relation).
    `end_filter(type_name, field_name)` restricts the final step.
    """
    for _ in range(tries):
        t = rng.choice(_anchor_types(config))
        e = world.sample(t.name, rng, banned)
        steps, seen, ok = [], {e.name}, True
        for _ in range(length - 1):
            rels = [r for r in entity_type(e.type).relations if world.value(e.name, r.name) not in seen | banned]
            if not rels:
                ok = False
                break
            r = rng.choice(rels)
            steps.append((e.type, r.name, e.name))
            e = world.entity(world.value(e.name, r.name))
            seen.add(e.name)
        if not ok:
            continue
        et = entity_type(e.type)
        attrs = [a for a in et.attributes if end_filter is None or end_filter(et.name, a.name)]
        rels = [
            r
            for r in et.relations
            if world.value(e.name, r.name) not in seen | banned and (end_filter is None or end_filter(et.name, r.name))
        ]
        if attrs and (not rels or rng.random() < config.final_attribute_prob):
            steps.append((et.name, rng.choice(attrs).name, e.name))
        elif rels:
            steps.append((et.name, rng.choice(rels).name, e.name))
        else:
            continue
        return steps
    raise ValueError(f"could not walk a chain of {length} steps in {tries} tries")


def _chain_subs(world: World, rng: random.Random, steps, chain: int, start: int) -> tuple[list[SubQuestion], str]:
    """Sub-questions of one chain and the nested noun phrase of its final step."""
    subs: list[SubQuestion] = []
    np = steps[0][2]
    for i, (tname, fname, subject) in enumerate(steps):
        f = entity_type(tname).get_field(fname)
        sid = f"q{start + i + 1}"
        subs.append(
            SubQuestion(
                id=sid,
                text=fill(rng.choice(question_templates(tname, fname)), subject),
                answer=world.answer(subject, fname),
                kind="relation" if f.is_relation else "attribute",
                entity_type=tname,
                field=fname,
                subject=subject,
                depends_on=[subs[-1].id] if subs else [],
                chain=chain,
            )
        )
        if i < len(steps) - 1:
            np = _np(rng, tname, fname, np)
    return subs, np


# --- combining parallel answers -----------------------------------------------------------
_JOIN = {2: "{0} and {1}", 3: "{0}, {1} and {2}"}
COMBINE_TEMPLATES = {
    "sum": ("What is the sum of {items}?", "What is the combined total of {items}?", "What do {items} add up to?"),
    "difference": (
        "What is the difference between {items}?",
        "By how much does the larger of {items} exceed the smaller?",
    ),
    "year_gap": ("How many years apart are {items}?", "How many years separate {items}?"),
    "max": ("Which is larger, {either}? Give the larger value.", "What is the largest value among {items}?"),
    "min": ("Which year comes first, {either}?", "What is the earliest year among {items}?"),
    "earliest": ("Which date is earlier, {either}?", "What is the earliest date among {items}?"),
    "list": ("What are {items}?", "Find {items}.", "I need two facts: {items}."),
}
MIN_GAP = 100  # smallest difference used as a gold answer (FTRL's substring rule needs >= 3 digits)
OPERATION = {"sum": "add", "difference": "subtract", "year_gap": "subtract", "max": "max", "min": "min"}


def _kind(sub: SubQuestion) -> tuple[str, str]:
    f = entity_type(sub.entity_type).get_field(sub.field)
    return f.kind, f.unit


def choose_composition(ends: list[SubQuestion], rng: random.Random) -> str:
    """How the final answers of parallel branches combine, from their value kinds."""
    kinds = {_kind(s) for s in ends}
    if len(kinds) == 1:
        kind, _unit = next(iter(kinds))
        if kind in ("count", "measure"):
            return rng.choice(["sum", "sum", "difference", "max"] if len(ends) == 2 else ["sum", "max"])
        if kind == "year":
            return rng.choice(["year_gap", "min"] if len(ends) == 2 else ["min"])
        if kind == "date":
            return "earliest"
    return "list"


def combine(composition: str, ends: list[SubQuestion]) -> str:
    """The final gold answer from the branches' gold answers."""
    if composition == "list":
        return ", ".join(s.answer for s in ends)
    if composition == "earliest":
        return min(s.answer for s in ends)
    kind, _ = _kind(ends[0])
    vals = [parse_number(s.answer) for s in ends]
    if composition == "sum":
        out = sum(vals)
    elif composition in ("difference", "year_gap"):
        out = max(vals) - min(vals)
    elif composition == "max":
        out = max(vals)
    elif composition == "min":
        out = min(vals)
    else:
        raise ValueError(f"unknown composition '{composition}'")
    if kind == "measure":
        return format_value("measure", round(out, 1))
    return str(out) if composition == "min" or (kind == "year" and composition != "year_gap") else f"{int(out):,}"


def compose_question(composition: str, phrases: list[str], rng: random.Random) -> str:
    items = _JOIN[len(phrases)].format(*phrases)
    either = " or ".join(phrases)
    templates = COMBINE_TEMPLATES[composition]
    if composition == "list" and len(phrases) != 2:
        templates = templates[:2]
    text = rng.choice(templates).replace("{items}", items).replace("{either}", either)
    return text[:1].upper() + text[1:]


def _aggregate_sub(composition: str, ends: list[SubQuestion], answer: str, sid: str) -> SubQuestion:
    op = OPERATION[composition]
    values = [s.answer for s in ends]
    if op == "subtract":
        values = sorted(values, key=parse_number, reverse=True)
    symbol = {"add": " + ", "subtract": " - "}.get(op)
    text = f"What is {symbol.join(values)}?" if symbol else f"What is the {op}imum of {', '.join(values)}?"
    return SubQuestion(
        id=sid,
        text=text,
        answer=answer,
        kind="aggregate",
        depends_on=[s.id for s in ends],
        chain=-1,
        operation=op,
        operands=[s.id for s in ends],
    )


# --- the four scenarios ---------------------------------------------------------------------
def decompose(world: World, scenario: str, rng: random.Random, config: DecomposeConfig | None = None) -> Decomposition:
    """Build one question of a scenario, with gold sub-answers and the dependency graph."""
    config = config or DecomposeConfig()
    if scenario == "single_hop":
        subs, np = _chain_subs(world, rng, walk(world, rng, 1, set(), config), 0, 0)
        return Decomposition(scenario, subs[0].text, subs[0].answer, subs, "single")
    if scenario == "multi_hop":
        steps = walk(world, rng, _weighted(rng, config.multi_hop_lengths), set(), config)
        subs, np = _chain_subs(world, rng, steps, 0, 0)
        question = fill(rng.choice(question_templates(steps[-1][0], steps[-1][1])), np)
        return Decomposition(scenario, question, subs[-1].answer, subs, "chain")
    if scenario == "parallel_single_hop":
        return _parallel(world, rng, config, [1] * _weighted(rng, config.parallel_single_k), scenario)
    if scenario == "parallel_multi_hop":
        lo, hi = config.parallel_chain_length
        total_lo, total_hi = config.parallel_total
        while True:
            lengths = [rng.randint(lo, hi) for _ in range(_weighted(rng, config.parallel_chains))]
            if total_lo <= sum(lengths) <= total_hi - 1:
                return _parallel(world, rng, config, lengths, scenario)
    raise ValueError(f"unknown scenario '{scenario}' (choose from {SCENARIOS})")


def _parallel(
    world: World, rng: random.Random, config: DecomposeConfig, lengths: list[int], scenario: str
) -> Decomposition:
    banned: set[str] = set()
    chains, phrases, subs = [], [], []
    same_field = len(set(lengths)) == 1 and lengths[0] == 1 and rng.random() < config.same_field_prob
    numeric = lambda t, f: entity_type(t).get_field(f).kind in NUMERIC_KINDS + ("date",)  # noqa: E731
    end_filter = numeric if scenario == "parallel_multi_hop" or rng.random() < 0.7 else None
    for c, length in enumerate(lengths):
        if c > 0 and (same_field or end_filter is not None):
            first_kind = _kind(chains[0][-1])
            if same_field:
                t0, f0 = chains[0][-1].entity_type, chains[0][-1].field
                match = lambda t, f, t0=t0, f0=f0: (t, f) == (t0, f0)  # noqa: E731
            else:

                def match(t, f, k=first_kind):
                    return (entity_type(t).get_field(f).kind, entity_type(t).get_field(f).unit) == k

            steps = None
            for _ in range(12):  # prefer a branch whose end combines arithmetically with the first
                try:
                    steps = walk(world, rng, length, banned, config, end_filter=match, tries=5)
                    break
                except ValueError:
                    continue
            steps = steps or walk(world, rng, length, banned, config, end_filter=end_filter)
        else:
            steps = walk(world, rng, length, banned, config, end_filter=end_filter)
        chain_subs, np = _chain_subs(world, rng, steps, c, len(subs))
        last = chain_subs[-1]
        phrases.append(
            _np(rng, last.entity_type, last.field, np)
            if length > 1
            else _np(rng, last.entity_type, last.field, last.subject)
        )
        banned |= {s.subject for s in chain_subs} | {s.answer for s in chain_subs}
        chains.append(chain_subs)
        subs.extend(chain_subs)
    ends = [ch[-1] for ch in chains]
    composition = choose_composition(ends, rng)
    answer = combine(composition, ends)
    if composition in ("difference", "year_gap") and parse_number(answer) < MIN_GAP:
        # a tiny difference ("0", "7") would be "found" in almost any output: combine otherwise
        composition = "min" if composition == "year_gap" else "sum"
        answer = combine(composition, ends)
    question = compose_question(composition, phrases, rng)
    if scenario == "parallel_multi_hop" and composition in OPERATION:
        subs.append(_aggregate_sub(composition, ends, answer, f"q{len(subs) + 1}"))
    return Decomposition(scenario, question, answer, subs, composition)
