"""A seeded, fictional knowledge world: invented entities filling `schema.TYPES`.

Every name is built from a syllable generator, every value drawn from the schema's
ranges, so no answer can come from a language model's memory and every fact is known.
Each entity name holds a *core* word unique in the world, so no name contains another.
The same seed always gives the same world.

>>> w = build_world(0)
>>> e = w.sample("city", random.Random(1))
>>> w.answer(e.name, "population")   # gold answer string, e.g. '1,234,567'
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ftrl_lab.envgen.schema import TYPES, TYPES_BY_NAME, EntityType, entity_type

_ONSETS = (
    "b",
    "d",
    "f",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "kr",
    "st",
    "tr",
    "th",
    "sh",
    "gl",
    "",
)
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ai", "ei", "ou", "y")
_CODAS = ("n", "r", "l", "s", "th", "k", "m", "x", "nd", "rn", "v", "sk")

ENTITIES_PER_TYPE = 60


def invent_word(rng: random.Random, syllables: tuple[int, int] = (2, 3)) -> str:
    """A pronounceable invented word, capitalised (e.g. 'Tarvolen'): open syllables, one final coda."""
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.randint(*syllables))]
    if rng.random() < 0.7:
        parts[-1] += rng.choice(_CODAS)
    word = "".join(parts)
    return word[:1].upper() + word[1:]


@dataclass
class Entity:
    """One entity: its type, its name, and its field values (relations hold target names)."""

    type: str
    name: str
    values: dict[str, Any]


def format_value(kind: str, value: Any) -> str:
    """The gold-answer string of a raw value (counts get thousands separators, like FTRL's)."""
    if kind == "count":
        return f"{int(value):,}"
    if kind == "measure":
        return f"{float(value):,.1f}"
    return str(value)


def parse_number(text: str) -> float | int:
    """Inverse of `format_value` for numeric gold answers ('2,432' -> 2432, '1,234.5' -> 1234.5)."""
    clean = str(text).replace(",", "").strip()
    try:
        return int(clean)
    except ValueError:
        return float(clean)


class World:
    """The entities of one seeded world, indexed by type and by name."""

    def __init__(self, seed: int, per_type: int = ENTITIES_PER_TYPE):
        self.seed, self.per_type = seed, per_type
        rng = random.Random(f"world:{seed}")
        self._used: set[str] = set()
        self._codes: set[str] = set()
        self.first_names = sorted({invent_word(rng, (1, 2)) for _ in range(120)})
        self._used.update(self.first_names)  # no core word doubles as a first name
        self.by_type: dict[str, list[Entity]] = {}
        self.by_name: dict[str, Entity] = {}
        for t in TYPES:  # names and attributes first, relations once every type exists
            ents = []
            for _ in range(per_type):
                name = self._name(t, rng)
                values = {a.name: self._value(a, rng) for a in t.attributes}
                ents.append(Entity(t.name, name, values))
            self.by_type[t.name] = ents
            self.by_name.update({e.name: e for e in ents})
        for t in TYPES:
            for e in self.by_type[t.name]:
                for r in t.relations:
                    pool = [x for x in self.by_type[r.target] if x is not e]
                    e.values[r.name] = rng.choice(pool).name

    # --- construction ----------------------------------------------------------------
    def _core(self, rng: random.Random) -> str:
        while True:
            word = invent_word(rng)
            if word not in self._used:
                self._used.add(word)
                return word

    def _name(self, t: EntityType, rng: random.Random) -> str:
        pattern = rng.choice(t.names)
        return (
            pattern.replace("{C}", self._core(rng))
            .replace("{c}", self._core(rng).lower())
            .replace("{F}", rng.choice(self.first_names))
        )

    def _value(self, attr, rng: random.Random) -> Any:
        if attr.kind == "count":
            lo, hi = max(attr.lo, 1), attr.hi
            return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))
        if attr.kind == "measure":
            return round(rng.uniform(attr.lo, attr.hi), 1)
        if attr.kind == "year":
            return rng.randint(int(attr.lo), int(attr.hi))
        if attr.kind == "date":
            return f"{rng.randint(int(attr.lo), int(attr.hi)):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        if attr.kind == "word":
            return self._core(rng)
        while True:  # code
            letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTVWXZ") for _ in range(2))
            code = f"{letters}-{rng.randint(1000, 9999)}"
            if code not in self._codes:
                self._codes.add(code)
                return code

    # --- queries ---------------------------------------------------------------------
    def entity(self, name: str) -> Entity:
        try:
            return self.by_name[name]
        except KeyError:
            raise KeyError(f"world {self.seed} has no entity named '{name}'") from None

    def value(self, name: str, field: str) -> Any:
        """Raw value of a field (a relation gives the target's name)."""
        e = self.entity(name)
        if field not in e.values:
            entity_type(e.type).get_field(field)  # raises a clear KeyError
        return e.values[field]

    def answer(self, name: str, field: str) -> str:
        """Gold-answer string of a field."""
        e = self.entity(name)
        return format_value(entity_type(e.type).get_field(field).kind, e.values[field])

    def sample(self, type_name: str, rng: random.Random, exclude: Iterable[str] = ()) -> Entity:
        """A random entity of a type, avoiding names in `exclude`."""
        banned = set(exclude)
        pool = [e for e in self.by_type[entity_type(type_name).name] if e.name not in banned]
        if not pool:
            raise ValueError(f"no {type_name} left outside the {len(banned)} excluded names")
        return rng.choice(pool)

    def types(self) -> list[EntityType]:
        return [TYPES_BY_NAME[t] for t in self.by_type]

    def __len__(self) -> int:
        return len(self.by_name)


@lru_cache(maxsize=8)
def build_world(seed: int, per_type: int = ENTITIES_PER_TYPE) -> World:
    """The world of a seed (cached: the same seed gives the same object)."""
    return World(seed, per_type)
