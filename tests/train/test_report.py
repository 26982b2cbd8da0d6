"""Bootstrap CIs, paired comparison tables, curves and ablation figures."""

import json

import numpy as np
import pandas as pd
import pytest

from ftrl_lab.train.report import (
    ablation_table,
    bootstrap_ci,
    compare,
    findings,
    general_ability_markdown,
    pass_at_1_change,
    perplexity_change,
    plot_ablation,
    plot_curves,
    table_markdown,
)


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(1, 1, 20), rng.normal(1, 1, 2000)
    lo, hi = bootstrap_ci(small)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(large)
    assert hi2 - lo2 < hi - lo
    assert bootstrap_ci(np.array([0.5] * 10)) == (0.5, 0.5)


def test_compare_pairs_by_key_and_reports_points():
    start = pd.DataFrame(
        {"key": ["a", "b", "c"], "solve_precision": [1, 0.5, 0], "solve_rate": [0, 0, 0], "solve_f1": [0, 0.2, 0]}
    )
    final = pd.DataFrame(
        {
            "key": ["c", "b", "a", "z"],
            "solve_precision": [1, 1, 1, 1],
            "solve_rate": [1, 0.5, 0, 1],
            "solve_f1": [0.5, 0.4, 0.3, 1],
        }
    )
    table = compare(start, final, n_boot=200)
    f1 = table.set_index("metric").loc["Solve-F1"]
    assert f1["n"] == 3 and np.isclose(f1["start"], 20 / 3) and np.isclose(f1["final"], 40)
    assert f1["delta_ci_low"] <= f1["delta"] <= f1["delta_ci_high"]
    assert "| Solve-F1 |" in table_markdown(table, "t")


def test_curves_and_ablation_figures(tmp_path):
    metrics = pd.DataFrame({"global_step": [1, 2, 3], "reward": [0.1, 0.2, 0.4], "frac_reward_zero_std": [1, 0.5, 0.5]})
    iters = pd.DataFrame({"iteration": [1, 2], "solve_f1": [0.2, 0.3]})
    plot_curves(metrics, iters, tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000
    runs = []
    for reward, delta in (("solve_f1", 5.0), ("solve_rate", -1.0)):
        d = tmp_path / reward
        d.mkdir()
        rows = [
            {
                "metric": m,
                "start": 10.0,
                "final": 10 + delta,
                "delta": delta,
                "delta_ci_low": delta - 1,
                "delta_ci_high": delta + 1,
            }
            for m in ("Solve-P", "Solve-R", "Solve-F1")
        ]
        (d / "results.json").write_text(
            json.dumps({"config": {"rl": {"reward": reward, "algorithm": "grpo"}}, "comparisons": {"test": rows}})
        )
        runs.append(d)
    table = ablation_table(runs)
    assert list(table["reward"]) == ["solve_f1", "solve_rate"] and table["Solve-F1 delta"].tolist() == [5.0, -1.0]
    plot_ablation(table, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_frame_markdown_formats_floats_and_keeps_every_row():
    import pandas as pd

    from ftrl_lab.train.report import frame_markdown

    md = frame_markdown(pd.DataFrame({"variant": ["solve_f1", "solve_rate"], "f1": [12.345, 7.0]}))
    assert md.splitlines() == ["| variant | f1 |", "|---|---|", "| solve_f1 | 12.3 |", "| solve_rate | 7.0 |"]


def _comparison(start, final, lo, hi, n=200):
    return {"start": start, "final": final, "delta": final - start, "delta_ci_low": lo, "delta_ci_high": hi, "n": n}


def test_findings_read_the_numbers_and_the_ablation():
    from ftrl_lab.train.report import findings

    results = {
        "comparisons": {
            "test": [
                {"metric": "Solve-P", **_comparison(20, 80, 50, 70)},
                {"metric": "Solve-R", **_comparison(50, 40, -15, -5)},
                {"metric": "Solve-F1", **_comparison(20, 48, 23, 33)},
            ],
            "ftrl": [{"metric": "Solve-F1", **_comparison(1, 0, -2.6, 0.0, n=12)}],
        },
        "perplexity": {"start": 18.9, "final": 19.0},
    }
    text = findings(results)
    assert "20.0 → 48.0 (+28.0 [+23.0, +33.0], n = 200; the interval excludes 0)" in text
    assert "precision up, recall down" in text
    assert "FTRL's own test set**: 1.0 → 0.0 (-1.0 [-2.6, +0.0], n = 12; the interval includes 0)" in text
    assert "18.90 → 19.00 (+0.5%)" in text
    ablation = pd.DataFrame(
        [
            {"reward": "solve_f1", "eval_set": "test", "Solve-F1 delta": 28.2, "Solve-F1 CI": "[+23.5, +33.1]"},
            {"reward": "solve_rate", "eval_set": "test", "Solve-F1 delta": 22.4, "Solve-F1 CI": "[+17.5, +27.4]"},
            {"reward": "solve_rate", "eval_set": "ftrl", "Solve-F1 delta": 99.0, "Solve-F1 CI": "[+90.0, +99.0]"},
        ]
    )
    text = findings(results, ablation)
    assert "solve_f1 +28.2 [+23.5, +33.1], solve_rate +22.4" in text
    assert "a tie: solve_f1 leads, but its interval overlaps that of solve_rate" in text
    assert "solve-F1 is best" not in text
    ablation.loc[1, "Solve-F1 CI"] = "[+17.5, +23.4]"  # now below solve_f1's interval
    assert "solve-F1 is best, as the paper reports; its interval lies above" in findings(results, ablation)
    ablation.loc[0, "Solve-F1 delta"] = 10.0
    ablation.loc[0, "Solve-F1 CI"] = "[+5.0, +12.0]"
    assert "solve_rate is best, not solve-F1 as the paper reports" in findings(results, ablation)
    assert findings({}) == "- No finished comparison to read yet."


def test_an_all_zero_ablation_is_a_tie_whatever_the_row_order():
    from ftrl_lab.train.report import ablation_verdict

    rows = [
        {"reward": r, "eval_set": "test", "Solve-F1 delta": 0.0, "Solve-F1 CI": "[+0.0, +0.0]"}
        for r in ("solve_f1", "solve_precision", "solve_rate")
    ]
    for order in (rows, rows[::-1]):
        text = ablation_verdict(pd.DataFrame(order))
        assert "a tie: every variant moves Solve-F1 by +0.0" in text and "is best" not in text
        assert text.index("solve_f1") < text.index("solve_precision") < text.index("solve_rate")
    assert ablation_verdict(pd.DataFrame(rows[:1])) == ""


def _ppl(nll, tokens):
    return {"window_nll": list(nll), "window_tokens": list(tokens)}


def test_perplexity_change_is_paired_over_windows():
    rng = np.random.default_rng(1)
    nll = rng.uniform(2.0, 4.0, 32)  # windows differ a lot; the change is small and the same in each
    tokens = rng.integers(50, 256, 32)
    same = perplexity_change(_ppl(nll, tokens), _ppl(nll, tokens))
    assert same["delta"] == 0 and same["delta_ci_low"] == same["delta_ci_high"] == 0 and same["n"] == 32
    worse = perplexity_change(_ppl(nll, tokens), _ppl(nll + 0.01, tokens), n_boot=500)
    expected = np.exp((nll * tokens).sum() / tokens.sum())
    assert np.isclose(worse["start"], expected) and np.isclose(worse["final"], expected * np.exp(0.01))
    assert 0 < worse["delta_ci_low"] <= worse["delta"] <= worse["delta_ci_high"]  # pairing: excludes 0
    unpaired = perplexity_change(_ppl(nll, tokens), _ppl(rng.permutation(nll) + 0.01, tokens), n_boot=500)
    assert unpaired["delta_ci_low"] < 0 < unpaired["delta_ci_high"]  # different windows: no pairing benefit
    with pytest.raises(ValueError, match="perplexity windows differ"):
        perplexity_change(_ppl(nll, tokens), _ppl(nll[:-1], tokens[:-1]))


def test_pass_at_1_change_pairs_problems_by_task_id():
    start = [{"task_id": f"t{i}", "passed": i < 4} for i in range(10)]
    final = [{"task_id": f"t{i}", "passed": i < 6} for i in reversed(range(12))]
    row = pass_at_1_change(start, final, n_boot=500)
    assert row["n"] == 10 and row["start"] == 40.0 and row["final"] == 60.0 and row["delta"] == 20.0
    assert 0 <= row["delta_ci_low"] < 20.0 < row["delta_ci_high"] <= 60.0  # only gains: never below 0
    same = pass_at_1_change(start, start)
    assert same["delta"] == 0 and (same["delta_ci_low"], same["delta_ci_high"]) == (0.0, 0.0)
    md = general_ability_markdown([row, perplexity_change(_ppl([2.0], [10]), _ppl([2.1], [10]))])
    assert (
        "| HumanEval pass@1 | 10 problems | 40.0 | 60.0 | +20.0 |" in md and "| perplexity | 1 windows | 7.39 |" in md
    )
    text = findings({"general_ability": [row]})
    assert "HumanEval pass@1: 40.0 → 60.0 (+20.0 [" in text and "n = 10" in text
