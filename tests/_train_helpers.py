"""Small shared helpers for the training tests (not a test module)."""

from __future__ import annotations

from functools import lru_cache

from ftrl_lab.core.records import FTRL_INSTRUCTION, EnvRecord

LOOKUP = """def get_capital(country: str):
    table = {"Norland": "Oslavik", "Sudmark": "Brenholt"}
    if country not in table:
        raise ValueError(f"unknown country {country}")
    return {"capital": table[country]}
"""
TOOL = {
    "type": "function",
    "function": {
        "name": "get_capital",
        "description": "Capital city of a country.",
        "parameters": {"type": "object", "properties": {"country": {"type": "string"}}, "required": ["country"]},
    },
}


def small_record(question: str = "What is the capital of Norland?", answer: str = "Oslavik") -> EnvRecord:
    """A one-tool environment with a short prompt (cheap with the tiny test model)."""
    return EnvRecord(
        messages=[{"role": "user", "content": FTRL_INSTRUCTION + question}],
        tools=[TOOL],
        codes={"get_capital": LOOKUP},
        unsolved_set={"get_capital": [answer]},
        solve_rate=0.0,
        data_source="self/single_hop",
        split="train",
        answer=answer,
    )


@lru_cache(maxsize=1)
def envgen_records(n: int = 8, seed: int = 3) -> tuple[EnvRecord, ...]:
    """A few low-complexity envgen environments (with gold plans in env_meta)."""
    from ftrl_lab.envgen.pipeline import generate_records

    records, _ = generate_records(n, seed=seed, complexity="0")
    return tuple(records)
