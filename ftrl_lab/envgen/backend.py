"""Environment generators: one interface, `EnvGenerator`, and the offline `ProceduralBackend`.

A generator turns (scenario, complexity levels, random stream) into one FTRL record whose
``env_meta`` column holds the gold call plan; it raises `GenerationError` (with a short
reason) when it cannot. The validation gate (`validate.py`) then decides whether the
record is kept. `LLMBackend` (`llm.py`) implements the same interface with prompts.
"""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from typing import Any

from ftrl_lab.core.records import EnvRecord
from ftrl_lab.envgen.decompose import SCENARIOS, DecomposeConfig, decompose
from ftrl_lab.envgen.deploy import deploy
from ftrl_lab.envgen.documents import generate_documents
from ftrl_lab.envgen.integrate import integrate
from ftrl_lab.envgen.scaling import MAX_LEVEL, scale
from ftrl_lab.envgen.spec import STRATEGIES, EnvDraft
from ftrl_lab.envgen.world import World, build_world

STRATEGY_ALIASES = {
    "fg": "functional",
    "pe": "parameters",
    "pt": "types",
    "te": "toolset",
    **{s: s for s in STRATEGIES},
}


class GenerationError(Exception):
    """A generator could not produce a record; `reason` is a short key for reports."""

    def __init__(self, reason: str, detail: str):
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


class EnvGenerator(ABC):
    """Builds one environment per call; implementations must be safe to call many times."""

    name: str = "generator"

    @abstractmethod
    def generate(
        self,
        scenario: str,
        levels: dict[str, int],
        rng: random.Random,
        split: str = "train",
        meta: dict[str, Any] | None = None,
    ) -> EnvRecord:
        """One FTRL record with ``env_meta`` (raises GenerationError)."""

    def describe(self) -> dict[str, Any]:
        """Settings recorded in reports."""
        return {"backend": self.name}


class ProceduralBackend(EnvGenerator):
    """The offline, seeded five-stage pipeline over a fictional world."""

    name = "procedural"

    def __init__(self, world_seed: int = 0, config: DecomposeConfig | None = None, world: World | None = None):
        self.world = world or build_world(world_seed)
        self.config = config or DecomposeConfig()

    def stages(self, scenario: str, levels: dict[str, int], rng: random.Random) -> dict[str, EnvDraft]:
        """The draft after each stage: documents, integrated, scaled (for inspection)."""
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario '{scenario}' (choose from {SCENARIOS})")
        decomposition = decompose(self.world, scenario, rng, self.config)
        documents = generate_documents(decomposition, rng)
        integrated = integrate(documents, rng)
        scaled = scale(integrated, levels, rng)
        return {"documents": documents, "integrated": integrated, "scaled": scaled}

    def generate(
        self,
        scenario: str,
        levels: dict[str, int],
        rng: random.Random,
        split: str = "train",
        meta: dict[str, Any] | None = None,
    ) -> EnvRecord:
        try:
            draft = self.stages(scenario, levels, rng)["scaled"]
            return deploy(draft, self.world, rng, split, meta)
        except (ValueError, KeyError) as e:
            raise GenerationError("generation_error", f"{type(e).__name__}: {e}") from e

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "world_seed": self.world.seed, "entities": len(self.world)}


# --- complexity specs -------------------------------------------------------------------------
def parse_complexity(spec: str) -> dict[str, tuple[int, int]]:
    """Parse a complexity spec into a level range per strategy.

    ``"3"`` all four at 3; ``"0-3"`` one level per environment drawn from 0..3 for all four;
    ``"fg=3,pe=2,pt=0-3,te=1"`` per strategy (names: fg/functional, pe/parameters,
    pt/types, te/toolset; missing ones are 0).
    """
    spec = str(spec).strip()

    def rng_of(text: str) -> tuple[int, int]:
        m = re.fullmatch(r"(\d)(?:-(\d))?", text.strip())
        if not m:
            raise ValueError(f"complexity '{spec}': '{text}' is not a level 0-{MAX_LEVEL} or a range like 0-3")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 0 <= lo <= hi <= MAX_LEVEL:
            raise ValueError(f"complexity '{spec}': levels must satisfy 0 <= lo <= hi <= {MAX_LEVEL}")
        return lo, hi

    if "=" not in spec:
        r = rng_of(spec)
        return {"*": r}
    out = {s: (0, 0) for s in STRATEGIES}
    for part in spec.split(","):
        if "=" not in part:
            raise ValueError(f"complexity '{spec}': expected name=level in '{part}'")
        name, level = part.split("=", 1)
        key = STRATEGY_ALIASES.get(name.strip().lower())
        if key is None:
            raise ValueError(f"complexity '{spec}': unknown strategy '{name}' (use {sorted(STRATEGY_ALIASES)})")
        out[key] = rng_of(level)
    return out


def draw_levels(spec: dict[str, tuple[int, int]], rng: random.Random) -> dict[str, int]:
    """Levels for one environment: one shared draw for a global range, else one per strategy."""
    if "*" in spec:
        level = rng.randint(*spec["*"])
        return {s: level for s in STRATEGIES}
    return {s: rng.randint(*spec[s]) for s in STRATEGIES}
