"""The paper's Fig. 1 from our own generator: one environment per scenario.

`scenario_examples` builds one environment of each scenario (single-hop, parallel single-hop,
multi-hop, parallel multi-hop) with the five-stage pipeline; `draw_scenario_examples` draws, per
scenario, the question with its sub-question dependency graph (gold answers in the boxes) and
the environment's tools (the gold tools that answer a sub-question first, then the distractors
added by toolset extension).
"""

from __future__ import annotations

from ftrl_lab.envgen.decompose import SCENARIOS
from ftrl_lab.envgen.explore import Example, build_example, draw_graph, graph_legend_handles, sub_depths


def scenario_examples(
    level: int = 3, seed: int = 0, min_hops: int = 3, max_hops: int = 4, tries: int = 50
) -> dict[str, Example]:
    """One environment per scenario: the first seed from `seed` on whose multi-hop chains are
    `min_hops` to `max_hops` steps deep (long enough to show the chain, short enough for one row
    of a figure; single-hop scenarios have depth 1)."""
    if not 1 <= min_hops <= max_hops:
        raise ValueError(f"need 1 <= min_hops <= max_hops, got {min_hops}, {max_hops}")
    out = {}
    for scenario in SCENARIOS:
        lo, hi = (min_hops, max_hops) if "multi_hop" in scenario else (1, 1)
        for s in range(seed, seed + tries):
            ex = build_example(scenario, level, None, s)
            if lo <= max(sub_depths(ex.decomposition.subs).values()) + 1 <= hi:
                out[scenario] = ex
                break
        else:
            raise ValueError(f"no {scenario} environment {lo}-{hi} steps deep among seeds {seed}..{seed + tries - 1}")
    return out


def tool_lines(example: Example) -> list[tuple[str, bool]]:
    """(label, is_gold) per tool: gold tools first, each with its parameter count."""
    gold = set(example.record.unsolved_set)
    tools = sorted(example.record.tools, key=lambda t: (t["function"]["name"] not in gold, t["function"]["name"]))
    return [
        (
            f"{t['function']['name']} ({len(t['function']['parameters'].get('properties', {}))} params)",
            t["function"]["name"] in gold,
        )
        for t in tools
    ]


def _draw_tools(ax, example: Example) -> None:
    lines = tool_lines(example)
    per_col = max(7, (len(lines) + 1) // 2)
    ax.axis("off")
    ax.set_title(f"{len(lines)} tools ({sum(g for _, g in lines)} answer a sub-question)", fontsize=11, loc="left")
    for i, (label, gold) in enumerate(lines):
        col, row = divmod(i, per_col)
        ax.text(
            0.02 + 0.53 * col,
            1 - (row + 0.5) / per_col,
            ("● " if gold else "○ ") + label,
            fontsize=8.5,
            transform=ax.transAxes,
            va="center",
            color="#1f4e9c" if gold else "0.45",
            fontweight="bold" if gold else "normal",
        )


def draw_scenario_examples(examples: dict[str, Example] | None = None, level: int = 3, seed: int = 0):
    """One row per scenario: dependency graph with the question (left), the tools (right)."""
    import matplotlib.pyplot as plt

    examples = examples or scenario_examples(level, seed)
    heights = [1.6 + 1.3 * len({s.chain for s in ex.decomposition.subs if s.chain >= 0}) for ex in examples.values()]
    fig, axes = plt.subplots(
        len(examples),
        2,
        figsize=(22, sum(heights) + 1.4),
        squeeze=False,
        gridspec_kw={"width_ratios": [3, 2], "height_ratios": heights},
    )
    for (graph_ax, tools_ax), ex in zip(axes, examples.values()):
        draw_graph(ex, graph_ax, fontsize=9, legend=False)
        _draw_tools(tools_ax, ex)
    fig.suptitle(
        "Four scenarios of generated environments (cf. FTRL Fig. 1): the question, its sub-question graph "
        "with gold answers, and the tools",
        fontsize=14,
    )
    from matplotlib.lines import Line2D

    tool_handles = [
        Line2D([], [], ls="", marker="o", color="#1f4e9c", label="gold tool (answers a sub-question)"),
        Line2D([], [], ls="", marker="o", mfc="white", color="0.45", label="distractor tool"),
    ]
    fig.legend(handles=graph_legend_handles() + tool_handles, loc="lower center", ncol=3, fontsize=11, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return fig
