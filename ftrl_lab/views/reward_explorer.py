"""Interactive views of the reward, used by ``notebooks/02_reward_explorer.ipynb``.

* :func:`reward_grid` / :func:`plot_reward_surfaces`: the reward of every (p calls, q solved)
  pair for each variant, as a table and seaborn heatmaps.
* :class:`RewardExplorer`: sliders for p, q, t, the variant and the penalties; shows the value
  and the surface.
* :class:`ResponseInspector`: pick a real environment, paste or pick a model response, and see
  the parse, each call's sandboxed output and the reward breakdown.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ftrl_lab.core.parsing import ParsedResponse, parse_response, render_qwen_calls
from ftrl_lab.core.records import EnvRecord
from ftrl_lab.core.reward import VARIANTS, RewardBreakdown, RewardConfig, score_response, variant_value


def reward_grid(variant: str = "solve_f1", p_max: int = 8, t: int | None = None) -> pd.DataFrame:
    """Reward for p = 1..p_max calls (columns) and q = 0..p_max solved (rows); NaN where q > p
    or q > t (a response cannot solve more answers than it makes calls or than remain)."""
    q_max = p_max if t is None else min(p_max, t)
    grid = np.full((q_max + 1, p_max), np.nan)
    for p in range(1, p_max + 1):
        for q in range(0, min(p, q_max) + 1):
            grid[q, p - 1] = variant_value(variant, q, p)
    return pd.DataFrame(
        grid,
        index=pd.RangeIndex(0, q_max + 1, name="q (calls that solved)"),
        columns=pd.RangeIndex(1, p_max + 1, name="p (calls made)"),
    )


def no_call_table(t: int, config: RewardConfig | None = None) -> pd.DataFrame:
    """The reward of each no-call branch for a prompt with t unsolved answers."""
    c = config or RewardConfig()
    return pd.DataFrame(
        {
            "branch": [
                "empty content",
                "tool-call tags, nothing parsed",
                "final answer contains gold",
                "prefix already fully solved",
                "otherwise",
            ],
            "reward": [c.empty_penalty, c.malformed_penalty, c.answer_reward / (1 + t), c.solved_bonus, 0.0],
        }
    )


def plot_reward_surfaces(
    variants: Sequence[str] = VARIANTS, p_max: int = 8, t: int | None = None, mark: tuple[int, int] | None = None
):
    """One heatmap per variant (rows q, columns p); `mark` = (p, q) outlines one cell."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, len(variants), figsize=(4.2 * len(variants), 3.8), squeeze=False)
    for ax, variant in zip(axes[0], variants):
        df = reward_grid(variant, p_max, t)
        sns.heatmap(df, ax=ax, annot=p_max <= 8, fmt=".2f", cmap="viridis", cbar=False, annot_kws={"fontsize": 7})
        ax.invert_yaxis()
        ax.set_title(variant)
        if mark is not None:
            p, q = mark
            if 1 <= p <= p_max and 0 <= q < len(df.index):
                ax.add_patch(plt.Rectangle((p - 1, q), 1, 1, fill=False, edgecolor="red", lw=2.5))
    limit = "q unbounded by t" if t is None else f"t = {t} unsolved answers"
    fig.suptitle(f"Reward of a response with p tool calls, q of which solved a gold answer ({limit})")
    fig.tight_layout()
    return fig


# --- example responses for a real environment --------------------------------------------------
def example_responses(record: EnvRecord) -> dict[str, str]:
    """A few labelled responses to try on a record: schema-valid calls to the gold tools, a call
    to a distractor, the final answer, a malformed call and an empty turn."""
    from ftrl_lab.core.schema_args import example_arguments

    by_name = {t["function"]["name"]: t["function"] for t in record.tools}
    gold = [n for n in record.unsolved_set if n in by_name]
    other = [n for n in by_name if n not in record.unsolved_set]

    def calls(names: list[str]) -> str:
        return render_qwen_calls(
            [{"function": {"name": n, "arguments": example_arguments(by_name[n]["parameters"])}} for n in names]
        )

    out = {}
    if gold:
        out["call every gold tool (schema example arguments)"] = calls(gold)
    if other:
        out["call a distractor tool"] = calls(other[:1])
    out["final answer only"] = f"The answer is {record.answer}."
    out["malformed tool call"] = (
        '<tool_call>{"name": "' + (gold or other or ["f"])[0] + '", "arguments": {oops}</tool_call>'
    )
    out["empty turn"] = ""
    return out


def breakdown_frame(breakdown: RewardBreakdown) -> pd.DataFrame:
    """One row per tool call: name, arguments, sandboxed output (shortened), gold answer solved."""
    rows = [
        {
            "tool": c.name,
            "arguments": c.arguments,
            "output": c.output if len(c.output) <= 300 else c.output[:300] + " ...",
            "solved": c.solved or "",
        }
        for c in breakdown.calls
    ]
    return pd.DataFrame(rows, columns=["tool", "arguments", "output", "solved"])


def explain(breakdown: RewardBreakdown, parsed: ParsedResponse, config: RewardConfig) -> str:
    """A one-line account of how the reward came out."""
    if breakdown.branch == "calls":
        formula = {"solve_f1": "2q/(p+1)", "solve_precision": "q/p", "solve_rate": "q", "solve_pr": "q*q/p"}[
            config.variant
        ]
        return (
            f"{config.variant} = {formula} with p={breakdown.p}, q={breakdown.q} "
            f"(t={breakdown.t} unsolved before this turn) -> {breakdown.reward:.4f}"
        )
    why = {
        "empty": "empty content",
        "malformed": "tool-call tags present but no call parsed"
        + (f" ({'; '.join(parsed.errors)})" if parsed.errors else ""),
        "answer": f"no call; the content holds the final answer: 1/(1+t) with t={breakdown.t}",
        "solved": "no call; the prefix was already fully solved",
        "none": "no call, no answer",
    }[breakdown.branch]
    return f"{why} -> {breakdown.reward:.4f}"


# --- widgets ----------------------------------------------------------------------------------
class RewardExplorer:
    """Sliders for p, q, t, the variant and penalties; a live value and reward surface."""

    def __init__(self, p_max: int = 8):
        import ipywidgets as w

        self.p_max = p_max
        self.variant = w.Dropdown(options=list(VARIANTS), value="solve_f1", description="variant")
        self.p = w.IntSlider(value=3, min=0, max=p_max, description="p calls")
        self.q = w.IntSlider(value=1, min=0, max=p_max, description="q solved")
        self.t = w.IntSlider(value=4, min=0, max=12, description="t unsolved")
        self.no_call = w.Dropdown(
            options=["empty", "malformed", "answer", "solved", "none"], value="answer", description="if p = 0"
        )
        self.empty = w.FloatSlider(value=-0.5, min=-2, max=0, step=0.05, description="empty pen.")
        self.malformed = w.FloatSlider(value=-0.3, min=-2, max=0, step=0.05, description="malformed pen.")
        self.value = w.HTML()
        self.value.add_class("ftrl-reward-value")
        self.plot = w.Output()
        for ctl in (self.variant, self.p, self.q, self.t, self.no_call, self.empty, self.malformed):
            ctl.observe(lambda _change: self.update(), names="value")
        controls = w.VBox([self.variant, self.p, self.q, self.t, self.no_call, self.empty, self.malformed])
        self.widget = w.VBox([w.HBox([controls, self.value]), self.plot])
        self.update()

    def config(self) -> RewardConfig:
        return RewardConfig(
            variant=self.variant.value, empty_penalty=self.empty.value, malformed_penalty=self.malformed.value
        )

    def current(self) -> tuple[float, str]:
        """The reward for the slider settings and a short explanation."""
        c, p, q, t = self.config(), self.p.value, self.q.value, self.t.value
        if p == 0:
            value = {
                "empty": c.empty_penalty,
                "malformed": c.malformed_penalty,
                "answer": c.answer_reward / (1 + t),
                "solved": c.solved_bonus,
                "none": 0.0,
            }[self.no_call.value]
            return value, f"no tool call, branch '{self.no_call.value}'"
        q = min(q, p, t)
        return variant_value(c.variant, q, p), f"{c.variant} with p={p}, q={q} (q is capped by p and t)"

    def update(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        value, how = self.current()
        self.value.value = (
            f"<div style='font-size:1.6em;padding:1em'>reward = <b id='reward-value'>{value:.4f}</b>"
            f"</div><div style='padding-left:1em'>{html.escape(how)}</div>"
        )
        with self.plot:
            self.plot.clear_output(wait=True)
            fig = plot_reward_surfaces(
                [self.variant.value],
                self.p_max,
                self.t.value or None,
                mark=(self.p.value, min(self.q.value, self.p.value)),
            )
            display(fig)
            plt.close(fig)


class ResponseInspector:
    """Pick an environment and a response; see the parse, sandboxed call outputs and reward."""

    def __init__(self, records: Sequence[EnvRecord], executor=None):
        import ipywidgets as w

        self.records, self.executor = list(records), executor
        labels = [(f"{i}: [{r.scenario}] {r.question[:70]}", i) for i, r in enumerate(self.records)]
        self.env = w.Dropdown(options=labels, value=0, description="environment", layout=w.Layout(width="95%"))
        self.example = w.Dropdown(description="example", layout=w.Layout(width="60%"))
        self.variant = w.Dropdown(options=list(VARIANTS), value="solve_f1", description="variant")
        self.text = w.Textarea(layout=w.Layout(width="95%", height="140px"), description="response")
        self.button = w.Button(description="Score", button_style="primary")
        self.out = w.Output()
        self.env.observe(lambda _c: self._load_examples(), names="value")
        self.example.observe(lambda _c: self._pick_example(), names="value")
        self.button.on_click(lambda _b: self.show())
        self.variant.observe(lambda _c: self.show(), names="value")
        self.widget = w.VBox([self.env, w.HBox([self.example, self.variant]), self.text, self.button, self.out])
        self._load_examples()

    @property
    def record(self) -> EnvRecord:
        return self.records[self.env.value]

    def _load_examples(self) -> None:
        self._examples = example_responses(self.record)
        self.example.options = list(self._examples)
        self._pick_example()

    def _pick_example(self) -> None:
        if self.example.value is not None:
            self.text.value = self._examples[self.example.value]

    def score(self) -> tuple[ParsedResponse, RewardBreakdown, RewardConfig]:
        """Parse and score the current response against the current environment."""
        config = RewardConfig(variant=self.variant.value)
        rec = self.record
        parsed = parse_response(self.text.value)
        breakdown = score_response(
            self.text.value, rec.codes, rec.unsolved_set, rec.solve_rate, rec.answer, config, self.executor
        )
        return parsed, breakdown, config

    def show(self) -> None:
        from IPython.display import HTML, display

        parsed, breakdown, config = self.score()
        rec = self.record
        with self.out:
            self.out.clear_output(wait=True)
            display(
                HTML(
                    f"<b>Question:</b> {html.escape(rec.question)}<br><b>Gold sub-answers:</b> "
                    f"{html.escape(json.dumps(rec.unsolved_set, ensure_ascii=False))}<br>"
                    f"<b>Parsed:</b> content={parsed.content[:200]!r}, {len(parsed.tool_calls)} call(s), "
                    f"malformed={parsed.malformed}<br><b>Reward:</b> {html.escape(explain(breakdown, parsed, config))}"
                )
            )
            if breakdown.calls:
                display(breakdown_frame(breakdown))
