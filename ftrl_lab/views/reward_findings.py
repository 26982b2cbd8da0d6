"""Notebook 02's closing bullets, computed from the reward surfaces and the scored example responses.

:func:`surface_summary` reads each variant at three points (one solve with one call, one solve
among ``p_max`` calls, ``p_max`` solves with ``p_max`` calls); :func:`findings` states what those
numbers and the examples table show, and nothing they do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ftrl_lab.views.reward_explorer import reward_grid


def surface_summary(variants: Sequence[str], p_max: int) -> pd.DataFrame:
    """One row per variant: the reward of 1 solve in 1 call, 1 solve in ``p_max`` calls, and
    ``p_max`` solves in ``p_max`` calls."""
    rows = []
    for v in variants:
        g = reward_grid(v, p_max)
        rows.append({"variant": v, "1 call, 1 solved": g.loc[1, 1], f"{p_max} calls, 1 solved": g.loc[1, p_max],
                     f"{p_max} calls, {p_max} solved": g.loc[p_max, p_max]})  # fmt: skip
    return pd.DataFrame(rows).set_index("variant")


def _surface_line(variant: str, row: pd.Series, p_max: int) -> str:
    one, spread, full = row["1 call, 1 solved"], row[f"{p_max} calls, 1 solved"], row[f"{p_max} calls, {p_max} solved"]
    waste = "the same" if spread == one else ("less" if spread < one else "more")
    more = "more" if full > one else ("the same" if full == one else "less")
    return (
        f"- **{variant}** pays {one:.2f} for 1 solve in 1 call, {waste} ({spread:.2f}) for 1 solve among {p_max} calls, "
        f"and {more} ({full:.2f}) for {p_max} solves in {p_max} calls: "
        + ("it charges wasted calls" if spread < one else "it does not charge wasted calls")
        + (" and rewards solving more per turn." if full > one else " and does not reward solving more per turn.")
    )


def findings(
    summary: pd.DataFrame, examples: pd.DataFrame, p_max: int, reward_column: str = "reward (solve_f1)"
) -> str:
    """Markdown bullets: each variant's reading of the surfaces, then the example responses on the
    real environment (best and worst, and whether any call solved a gold answer)."""
    lines = [_surface_line(v, row, p_max) for v, row in summary.iterrows()]
    both = [v for v, r in summary.iterrows() if r[f"{p_max} calls, 1 solved"] < r["1 call, 1 solved"]
            and r[f"{p_max} calls, {p_max} solved"] > r["1 call, 1 solved"]]  # fmt: skip
    lines.append(
        "- Charging waste and rewarding progress at once: "
        + (", ".join(f"**{v}**" for v in both) or "no variant")
        + "."
    )
    if len(examples):
        r = examples[reward_column]
        solved = examples[examples["q"] > 0]
        lines.append(
            f"- On the real environment the best example response is *{r.idxmax()}* ({r.max():+.2f}) and the worst "
            f"*{r.idxmin()}* ({r.min():+.2f}); "
            + (
                f"{len(solved)} of {len(examples)} solved a gold answer ({', '.join(map(str, solved.index))})."
                if len(solved)
                else f"none of the {len(examples)} solved a gold answer, so none earned a positive call reward."
            )
        )
    return "\n".join(lines)
