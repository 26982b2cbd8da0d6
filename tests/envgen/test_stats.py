"""Statistics of generated sets beside FTRL's test set; the top level lands within FTRL's ranges."""

import random

import pandas as pd

from ftrl_lab.envgen.backend import ProceduralBackend
from ftrl_lab.envgen.decompose import SCENARIOS
from ftrl_lab.envgen.stats import (
    FTRL_PUBLISHED,
    compare_to_ftrl,
    ftrl_stats,
    param_type_shares,
    plot_comparison,
    record_stats,
    within_ranges,
)

TOP = {"functional": 3, "parameters": 3, "types": 3, "toolset": 3}


def _generated(n=200, seed=0):
    b = ProceduralBackend(seed)
    return [b.generate(SCENARIOS[i % 4], TOP, random.Random(f"stats:{seed}:{i}")) for i in range(n)]


def test_top_complexity_lands_within_ftrl_ranges(tmp_path):
    recs = _generated()
    ours, ftrl = record_stats(recs), ftrl_stats()
    assert list(ours.index) == list(SCENARIOS) + ["all"]
    assert within_ranges(ours, ftrl) == []
    for s in SCENARIOS:
        mean = FTRL_PUBLISHED[s]["tools"][0]
        assert abs(ours.loc[s, "tools_mean"] - mean) < 1.5, (s, ours.loc[s, "tools_mean"])
        assert abs(ours.loc[s, "gold_mean"] - FTRL_PUBLISHED[s]["gold"][0]) < 1.0
    assert 6.5 <= ours.loc["all", "params_mean"] <= 7.8
    table = compare_to_ftrl(recs, ftrl)
    assert {"tools (ours)", "tools (FTRL)", "gold (ours)", "params (FTRL)"} <= set(table.columns)
    fig = plot_comparison(ours, ftrl, tmp_path / "cmp.png")
    assert (tmp_path / "cmp.png").stat().st_size > 5_000 and len(fig.axes) == 3


def test_low_complexity_is_outside_and_detected():
    b = ProceduralBackend(0)
    low = [b.generate(SCENARIOS[i % 4], {k: 0 for k in TOP}, random.Random(i)) for i in range(40)]
    problems = within_ranges(record_stats(low), ftrl_stats())
    assert any("tools" in p for p in problems) and any("params" in p for p in problems)


def test_published_fallback_and_type_shares(tmp_path):
    published = ftrl_stats(tmp_path / "missing.parquet")
    assert published.loc["multi_hop", "tools_mean"] == 10.34 and published.loc["single_hop", "n"] == 50
    shares = param_type_shares(_generated(20))
    assert isinstance(shares, pd.Series) and 0 < shares["string"] < 1 and "with default" in shares
