"""Figures a reader can use at a glance: labelled axes, integer ticks on counts, legends that
cover no bar, titles without raw keys. Each figure function is drawn on small inputs."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.ticker import MaxNLocator

RAW_KEYS = ("rel_change", "mean_abs_change", "solve_f1 ", "diff_norm", "share_of_change")


def _labelled(ax):
    assert ax.get_xlabel().strip() and ax.get_ylabel().strip(), ax.get_title()


def _integer_x(ax):
    assert isinstance(ax.xaxis.get_major_locator(), MaxNLocator) and ax.xaxis.get_major_locator()._integer


def _legend_clear_of_bars(fig, ax):
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend() or (fig.legends[0] if fig.legends else None)
    assert legend is not None
    box = legend.get_window_extent(renderer)
    for bar in ax.patches:
        if bar.get_height() > 0:
            assert not box.overlaps(bar.get_window_extent(renderer)), bar


def test_training_curves_labelled_with_integer_steps():
    from ftrl_lab.train.report import plot_curves

    steps = np.arange(1, 6)
    metrics = pd.DataFrame(
        {"global_step": steps, "reward": steps / 10, "kl": steps / 1000, "ftrl/calls_per_response": 1.0}
    )
    fig = plot_curves(metrics, pd.DataFrame({"iteration": [1, 2], "solve_f1": [0.1, 0.2]}), close=False)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert len(shown) == 4 and fig.get_size_inches()[0] <= 14  # readable at notebook width
    for ax in shown:
        _labelled(ax)
        _integer_x(ax)
    plt.close(fig)


def test_eval_bars_legend_covers_no_bar(tmp_path):
    from matplotlib.image import imread

    from ftrl_lab.benchmarks import report

    table = pd.DataFrame(
        {
            "scenario": ["single_hop", "multi_hop", "overall"],
            "n": [2, 2, 4],
            "solve_precision": [1.0, 0.9, 0.95],
            "solve_rate": [1.0, 0.5, 0.75],
            "solve_f1": [1.0, 0.6, 0.8],
        }
    )
    captured = {}
    real_save = report._save

    def keep(fig, out, rect=None):
        captured["fig"] = fig
        _legend_clear_of_bars(fig, fig.axes[0])
        _labelled(fig.axes[0])
        return real_save(fig, out, rect)

    report._save = keep
    try:
        path = report.plot_eval(table, tmp_path / "eval.png", title="x")
    finally:
        report._save = real_save
    assert imread(path).shape[0] > 100


def test_table2_reads_like_the_paper(tmp_path):
    from ftrl_lab.benchmarks import report

    df = report.table2([{"row": "ours", "Solve-P": 10.0, "Solve-R": 5.0, "Solve-F1": 6.0, "origin": "measured"}])
    captured = {}
    real_save = report._save
    report._save = lambda fig, out, rect=None: captured.setdefault("fig", fig) and real_save(fig, out, rect)
    try:
        report.plot_table2(df, tmp_path / "t2.png")
    finally:
        report._save = real_save
    texts = [t.get_text() for t in captured["fig"].axes[0].texts]
    for header in ("Solve-P", "Solve-F1", "AC", "Pass^1", "TS", "PI", "CF", "Avg", "ToolHop", "RoTBench"):
        assert header in texts
    assert "ours" in texts and "10.00" in texts and "–" in texts  # values, and gaps marked as gaps
    legend = [t.get_text() for t in captured["fig"].axes[0].get_legend().get_texts()]
    assert any("paper" in t for t in legend) and any("measured" in t for t in legend)


def test_levels_plot_has_integer_levels_and_a_ylabel():
    from ftrl_lab.envgen.explore import plot_levels

    levels = pd.DataFrame(
        {"tools per env": [3.0, 4.1], "params per tool": [1.2, 2.5]}, index=pd.Index([0, 1], name="level")
    )
    ax = plot_levels(levels)
    _labelled(ax)
    ticks = ax.get_xticks()
    assert all(float(t).is_integer() for t in ticks if 0 <= t <= 1)
    plt.close(ax.figure)


def test_reward_examples_labels_do_not_overlap():
    from ftrl_lab.views.reward_explorer import plot_examples

    table = pd.DataFrame({"reward (solve_f1)": [1.0, 0.0, -0.3, -0.5]}, index=["solve", "miss", "bad", "empty"])
    ax = plot_examples(table, title="t")
    fig = ax.figure
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    _labelled(ax)
    axis_box = ax.get_window_extent(r)
    labels = [t for t in ax.texts]
    assert [t.get_text() for t in labels] == ["+1.00", "0.00", "-0.30", "-0.50"]
    ylabels = [t.get_window_extent(r) for t in ax.get_yticklabels()]
    for t in labels:
        box = t.get_window_extent(r)
        assert axis_box.x0 <= box.x0 and box.x1 <= axis_box.x1  # inside the axes, clear of the tick labels
        assert not any(box.overlaps(y) for y in ylabels)
    plt.close(fig)


@pytest.fixture(scope="module")
def change_df():
    rows = []
    for layer in range(6):
        for module, group in (("q_proj", "attention"), ("up_proj", "mlp")):
            rel = 0.05 if (group == "mlp" and layer < 2) else 0.005
            rows.append(
                {
                    "layer": layer,
                    "module": module,
                    "group": group,
                    "third": ["lower", "middle", "upper"][layer // 2],
                    "n_layers": 6,
                    "numel": 8192,
                    "before_sq": 1.0,
                    "diff_sq": rel**2,
                    "abs_sum": rel * 8192 / 100,
                    "max_abs_change": rel,
                }
            )
    from ftrl_lab.analysis.change_map import finish

    return finish(pd.DataFrame(rows))


def test_change_heatmap_draws_thirds_and_labels(change_df):
    from ftrl_lab.analysis.change_map import METRICS, module_table, plot_heatmap, thirds_table

    ax = plot_heatmap(change_df, "rel_change")
    assert ax.get_title() == METRICS["rel_change"] and not any(k in ax.get_title() for k in RAW_KEYS)
    assert ax.get_ylabel() == "decoder layer" and "thirds" in ax.get_xlabel()
    horizontal = [line for line in ax.lines if len(set(line.get_ydata())) == 1]
    assert len(horizontal) == 2  # the two boundaries between thirds
    plt.close(ax.figure)
    assert module_table(change_df)["numel"].dtype.kind == "i" and thirds_table(change_df)["numel"].dtype.kind == "i"


def test_grid_style_paints_no_rounding_noise():
    from ftrl_lab.analysis.change_map import grid_style

    flat = pd.DataFrame([[0.005, 0.0050001], [0.0049999, 0.005]])
    assert "background-color" not in grid_style(flat).to_html()
    varied = pd.DataFrame([[0.005, 0.05], [0.005, 0.005]])
    assert "background-color" in grid_style(varied).to_html()


def test_transplant_without_gain_says_so_and_formats_no_nan():
    from ftrl_lab.analysis.transplant import plot_recovery, style_recovery

    table = pd.DataFrame(
        [
            {
                "subset": s,
                "spec": "",
                "tensors": 1,
                "param_share": 0.5,
                "n": 2,
                "solve_f1": 0.0,
                "gain": 0.0,
                "recovery": np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
            }
            for s in ("base", "trained", "lower_third_mlp")
        ]
    )
    ax = plot_recovery(table)
    assert not ax.patches and any("No Solve-F1 gain" in t.get_text() for t in ax.texts)
    plt.close(ax.figure)
    assert "nan" not in style_recovery(table).to_html()


def test_decomposition_graph_shows_combining_step_and_legend():
    from ftrl_lab.envgen.explore import build_example, draw_graph

    ex = build_example("parallel_single_hop", 0, None, 0)
    fig = draw_graph(ex)
    ax = fig.axes[0]
    assert any(t.get_text().startswith("combine:") for t in ax.texts)
    assert ax.get_legend() is not None and ax.get_legend().get_texts()
    assert all(t.get_fontsize() >= 8 for t in ax.texts)
    plt.close(fig)
