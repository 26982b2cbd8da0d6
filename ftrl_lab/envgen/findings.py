"""Notebook 01's closing bullets, computed from the world summary, the gate reports and the statistics.

Every number comes from the inputs; a comparison with FTRL's test set is stated only in the
direction the numbers show.
"""

from __future__ import annotations

import pandas as pd

from ftrl_lab.envgen.stats import within_ranges


def _gate(report: dict) -> str:
    gate = report["gate"]
    return f"{gate['passed']} of {gate['checked']}"


def findings(
    summary: pd.DataFrame,
    train_report: dict,
    test_report: dict,
    ours: pd.DataFrame,
    ftrl: pd.DataFrame,
    our_types: pd.Series | None = None,
    ftrl_types: pd.Series | None = None,
) -> str:
    """Markdown bullets: the world's size, the gate's pass counts, our test split beside FTRL's
    (tools, gold sub-answers, parameters per tool, ranges) and, with both type shares, whether
    our parameters are more or less often plain strings."""
    total = summary.loc["total"]
    problems = within_ranges(ours, ftrl)
    lines = [
        f"- The world holds {int(total['entities'])} entities in {len(summary) - 1} domains with "
        f"{int(total['attributes'])} attributes and {int(total['relations'])} relations.",
        f"- The gate passed {_gate(test_report)} candidate test environments (rejections: "
        f"{test_report['gate']['rejections'] or 'none'}); train: {_gate(train_report)}.",
        f"- The test split has {ours.loc['all', 'tools_mean']:.2f} tools per environment (FTRL "
        f"{ftrl.loc['all', 'tools_mean']:.2f}), {ours.loc['all', 'gold_mean']:.2f} gold sub-answers (FTRL "
        f"{ftrl.loc['all', 'gold_mean']:.2f}) and {ours.loc['all', 'params_mean']:.2f} parameters per tool (FTRL "
        f"{ftrl.loc['all', 'params_mean']:.2f}); "
        + (
            "every per-scenario range lies inside FTRL's."
            if not problems
            else "outside FTRL's ranges: " + "; ".join(problems)
        ),
    ]
    if our_types is not None and ftrl_types is not None and "string" in our_types and "string" in ftrl_types:
        ours_s, theirs_s = float(our_types["string"]), float(ftrl_types["string"])
        if ours_s == theirs_s:
            lines.append(f"- Plain strings are {ours_s:.0%} of the parameters in both sets.")
        else:
            more = "more" if ours_s < theirs_s else "fewer"
            lines.append(
                f"- {1 - ours_s:.0%} of our parameters are not plain strings (FTRL: {1 - theirs_s:.0%}): {more} "
                "non-string types than FTRL's set."
            )
    lines.append("- The questions are about an invented world, so no answer can come from a model's memory.")
    return "\n".join(lines)
