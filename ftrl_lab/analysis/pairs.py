"""Which checkpoint pairs notebook 05 reads, and the environments its transplant plays.

:func:`choose_pairs` takes an explicit pair, else the finished training runs
(:func:`ftrl_lab.analysis.change_map.finished_pairs`), else builds the tiny synthetic pair (a
random 6-layer model and a copy with known noise) so the plumbing runs without a trained model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ftrl_lab.analysis.change_map import finished_pairs, synthetic_pair

SYNTHETIC_LABEL = "SYNTHETIC pair (lower-third MLP moved 10x)"


def slug(label: str) -> str:
    """A pair label as a folder name: runs of other characters become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")


@dataclass
class PairChoice:
    """The pairs to read (label -> (base, trained) folders), the main one, and whether it is synthetic."""

    pairs: dict[str, tuple[str, str]]
    main_label: str
    synthetic: bool


def choose_pairs(
    runs_dir: str | Path,
    root: str | Path,
    out: str | Path,
    *,
    run: str = "",
    base: str | None = None,
    trained: str | None = None,
    synthetic: bool | None = None,
) -> PairChoice:
    """``base``/``trained`` when both are given, else every finished run's pairs; the synthetic pair
    when none exists or ``synthetic`` is True. The main pair is ``run``'s RL pair when present."""
    pairs: dict[str, tuple[str, str]] = {}
    if not synthetic:
        pairs = {"explicit pair": (base, trained)} if base and trained else finished_pairs(runs_dir, root)
    if not pairs:
        base_dir, trained_dir = synthetic_pair(Path(out) / "synthetic_pair")
        return PairChoice({SYNTHETIC_LABEL: (str(base_dir), str(trained_dir))}, SYNTHETIC_LABEL, True)
    main = next((k for k in pairs if k.startswith(f"{run}: RL")), next(iter(pairs)))
    return PairChoice(pairs, main, False)


def transplant_records(test: str | Path, limit: int, synthetic: bool) -> tuple[list, str]:
    """The first ``limit`` environments of ``test``, or (synthetic pair, or no such file) ``limit``
    freshly generated complexity-0 test environments; with a line saying which."""
    path = Path(test)
    if synthetic or not path.exists():
        from ftrl_lab.envgen.pipeline import generate_records

        records = generate_records(limit, seed=0, complexity="0", split="test")[0]
        return records, f"{limit} freshly generated test environments (complexity 0)"
    from ftrl_lab.core.records import load_records

    records = list(load_records(path))[:limit]
    return records, f"first {len(records)} environments of {path}"
