"""How a policy picks tokens: the sampling settings shared by every policy (torch-free).

"Tokens per turn" has one name, ``max_new_tokens``, and one default,
:data:`DEFAULT_MAX_NEW_TOKENS`, everywhere: the engine, every policy, the evaluation CLIs, the
benchmark suite and the training config (``rl.max_new_tokens``, ``eval.max_new_tokens``). An
OpenAI-compatible endpoint receives it as its wire field ``max_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_NEW_TOKENS = 512
"""Tokens a policy may generate in one turn, unless a preset or a flag says otherwise (FTRL: 1024)."""


@dataclass
class SamplingParams:
    """How to pick tokens. ``temperature == 0`` is greedy decoding (FTRL's evaluation)."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0
