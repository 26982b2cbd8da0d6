"""Interactive views of the reward, used by ``notebooks/02_reward_explorer.ipynb``.

* :func:`reward_grid` / :func:`plot_reward_surfaces`: the reward of every (p calls, q solved)
  pair for each variant, as a table and seaborn heatmaps.
* :class:`RewardExplorer`: sliders for p, q, t, the variant and the penalties; shows the value
  and the surface. One state (:meth:`RewardExplorer.state`) feeds both the readout and the marked
  cell, and the q slider is held to q <= min(p, t), the cap the reward applies.
* :func:`example_responses` / :func:`examples_table` / :func:`plot_examples`: typical responses
  on one real environment (including a call that solves and an echo spray) and their rewards.
* :class:`ResponseInspector`: pick a real environment, paste or pick a model response, and see
  the parse, each call's sandboxed output and the reward breakdown.

Every piece of model or environment text shown as HTML goes through :func:`html.escape`.
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ftrl_lab.core.executor import ToolExecutor
from ftrl_lab.core.parsing import ParsedResponse, parse_response, render_qwen_calls
from ftrl_lab.core.records import EnvRecord
from ftrl_lab.core.reward import VARIANTS, RewardBreakdown, RewardConfig, score_response, spray_response, variant_value
from ftrl_lab.views.solving_calls import find_solving_calls

NO_CALL_BRANCHES = ("empty", "malformed", "answer", "solved", "none")
FIGSIZE_PER_VARIANT = (4.4, 4.0)  # inches; the explorer's figure never changes size


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


def no_call_value(branch: str, t: int, config: RewardConfig) -> float:
    """The reward of a turn without a parsed call, by branch (see :func:`no_call_table`)."""
    values = dict(zip(NO_CALL_BRANCHES, no_call_table(t, config)["reward"]))
    if branch not in values:
        raise ValueError(f"unknown no-call branch '{branch}' (choose from {NO_CALL_BRANCHES})")
    return float(values[branch])


def plot_reward_surfaces(
    variants: Sequence[str] = VARIANTS, p_max: int = 8, t: int | None = None, mark: tuple[int, int] | None = None
):
    """One heatmap per variant (rows q = 0..p_max, columns p = 1..p_max, always the full grid so
    the figure keeps its size); impossible cells (q > p, or q > t when t is given) are grey.
    ``mark`` = (p, q) outlines one cell; it must be a possible cell."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.patches import Patch

    full = pd.RangeIndex(0, p_max + 1, name="q (calls that solved)")
    w, h = FIGSIZE_PER_VARIANT
    fig, axes = plt.subplots(1, len(variants), figsize=(w * len(variants), h), squeeze=False)
    for ax, variant in zip(axes[0], variants):
        df = reward_grid(variant, p_max, t).reindex(full)
        whole = reward_grid(variant, p_max).to_numpy()  # one colour scale whatever t is
        ax.set_facecolor("0.88")
        sns.heatmap(
            df,
            ax=ax,
            vmin=float(np.nanmin(whole)),
            vmax=float(np.nanmax(whole)),
            annot=p_max <= 8,
            fmt=".2f",
            cmap="viridis",
            cbar=True,
            cbar_kws={"label": "reward"},
            annot_kws={"fontsize": 8},
            square=False,
        )
        ax.invert_yaxis()
        ax.set_title(variant, fontsize=11)
        ax.set_xlabel("p (tool calls made)")
        ax.set_ylabel("q (calls that solved a gold answer)")
        ax.tick_params(axis="y", rotation=0)
        if mark is not None:
            p, q = mark
            if not (1 <= p <= p_max and 0 <= q <= p_max) or np.isnan(df.loc[q, p]):
                raise ValueError(f"mark {mark} is not a possible cell (1 <= p <= {p_max}, q <= min(p, t={t}))")
            ax.add_patch(plt.Rectangle((p - 1, q), 1, 1, fill=False, edgecolor="red", lw=3, label="current"))
    limit = "any number of unsolved answers" if t is None else f"t = {t} unsolved answer(s), so q ≤ {t}"
    sep = "\n" if len(variants) < 3 else " "
    fig.suptitle(f"Reward of a turn with p calls, q of which solved a gold answer{sep}({limit})", fontsize=11)
    handles = [Patch(fc="0.88", ec="0.6", label="impossible (q > p or q > t)")]
    if mark is not None:
        handles.append(Patch(fill=False, ec="red", lw=2, label="current setting"))
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.subplots_adjust(
        left=0.12 / len(variants) + 0.04, right=0.97, bottom=0.2, top=0.8 if sep == "\n" else 0.84, wspace=0.35
    )
    return fig


# --- example responses for a real environment --------------------------------------------------
def example_responses(record: EnvRecord, executor: ToolExecutor | None = None) -> dict[str, str]:
    """Labelled responses to try on a record: calls that solve (found by :func:`find_solving_calls`,
    when any), schema-valid calls to the gold tools, a call to a distractor, the echo spray, the
    final answer, a malformed call and an empty turn."""
    from ftrl_lab.core.schema_args import example_arguments

    by_name = {t["function"]["name"]: t["function"] for t in record.tools}
    gold = [n for n in record.unsolved_set if n in by_name]
    other = [n for n in by_name if n not in record.unsolved_set]

    def calls(names: list[str]) -> str:
        return render_qwen_calls(
            [{"function": {"name": n, "arguments": example_arguments(by_name[n]["parameters"])}} for n in names]
        )

    out = {}
    solving = _solving_calls(record, executor)
    if solving:
        out["calls that solve (arguments found by search)"] = render_qwen_calls(solving)
    if gold:
        out["call every gold tool (schema example arguments)"] = calls(gold)
    if other:
        out["call a distractor tool"] = calls(other[:1])
    if by_name:
        out["echo spray (one unknown argument per tool)"] = spray_response(record)
    out["final answer only"] = f"The answer is {record.answer}."
    out["malformed tool call"] = (
        '<tool_call>{"name": "' + (gold or other or ["f"])[0] + '", "arguments": {oops}</tool_call>'
    )
    out["empty turn"] = ""
    return out


_SOLVING_CACHE: dict[str, list[dict]] = {}


def _solving_calls(record: EnvRecord, executor: ToolExecutor | None) -> list[dict]:
    key = json.dumps([record.codes, record.unsolved_set, record.question], sort_keys=True)
    if key not in _SOLVING_CACHE:
        _SOLVING_CACHE[key] = find_solving_calls(record, executor)
    return _SOLVING_CACHE[key]


def examples_table(
    record: EnvRecord, config: RewardConfig | None = None, executor: ToolExecutor | None = None
) -> pd.DataFrame:
    """One row per example response: its reward branch, p, q and reward."""
    config = config or RewardConfig()
    rows = []
    for label, response in example_responses(record, executor).items():
        b = score_response(
            response, record.codes, record.unsolved_set, record.solve_rate, record.answer, config, executor
        )
        rows.append({"response": label, "branch": b.branch, "p": b.p, "q": b.q, f"reward ({config.variant})": b.reward})
    return pd.DataFrame(rows).set_index("response")


def plot_examples(table: pd.DataFrame, title: str = "", ax=None):
    """Horizontal bars of :func:`examples_table`'s reward column, each labelled with its value
    outside the bar end (left of negative bars, right of positive ones)."""
    import matplotlib.pyplot as plt

    column = next(c for c in table.columns if str(c).startswith("reward"))
    values = table[column].astype(float)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.45 * len(values) + 1.4))
    colours = ["#2a9d8f" if v > 0 else "#c0504d" if v < 0 else "0.6" for v in values]
    y = np.arange(len(values))[::-1]
    ax.barh(y, values, color=colours)
    ax.set_yticks(y, [_short(label) for label in values.index], fontsize=9)
    span = max(float(values.abs().max()), 0.5)
    ax.set_xlim(-span * 1.35 if (values < 0).any() else -0.05 * span, span * 1.35)
    for yi, v in zip(y, values):
        ax.annotate(
            f"{v:+.2f}" if v else "0.00",
            (v, yi),
            xytext=(-4 if v < 0 else 4, 0),
            textcoords="offset points",
            ha="right" if v < 0 else "left",
            va="center",
            fontsize=9,
        )
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(f"{column} of the turn (green: positive, red: penalty, grey: 0)")
    ax.set_ylabel("example response")
    ax.set_title(title or f"{column} per example response", fontsize=11)
    ax.get_figure().tight_layout()
    return ax


def _short(label: str, width: int = 46) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def breakdown_frame(breakdown: RewardBreakdown) -> pd.DataFrame:
    """One row per tool call: name, arguments, sandboxed output (shortened), gold answer solved."""
    rows = [
        {
            "tool": c.name,
            "arguments": c.arguments if len(c.arguments) <= 300 else c.arguments[:300] + " ...",
            "output": c.output if len(c.output) <= 300 else c.output[:300] + " ...",
            "solved": c.solved or "",
        }
        for c in breakdown.calls
    ]
    return pd.DataFrame(rows, columns=["tool", "arguments", "output", "solved"])


FORMULAS = {"solve_f1": "2q/(p+1)", "solve_precision": "q/p", "solve_rate": "q", "solve_pr": "q*q/p"}


def explain(breakdown: RewardBreakdown, parsed: ParsedResponse, config: RewardConfig) -> str:
    """A one-line account of how the reward came out (plain text; escape it for HTML)."""
    if breakdown.branch == "calls":
        return (
            f"{config.variant} = {FORMULAS[config.variant]} with p={breakdown.p}, q={breakdown.q} "
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
@dataclass(frozen=True)
class ExplorerState:
    """What the explorer shows: the effective p, q, t (q capped by the reward at min(p, t)),
    the value and how it came out. The readout and the marked cell both read this."""

    variant: str
    p: int
    q: int
    t: int
    value: float
    how: str

    @property
    def cell(self) -> tuple[int, int] | None:
        """The (p, q) heatmap cell of this state; None for a turn without calls."""
        return (self.p, self.q) if self.p > 0 else None


def figure_png(fig, dpi: int = 90) -> bytes:
    """A figure as PNG bytes at its own size (no tight bounding box, so the size is fixed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


class RewardExplorer:
    """Sliders for p, q, t, the variant and penalties; a live value and reward surface."""

    def __init__(self, p_max: int = 8, t_max: int = 12):
        import ipywidgets as w

        self.p_max = p_max
        self.variant = w.Dropdown(options=list(VARIANTS), value="solve_f1", description="variant")
        self.p = w.IntSlider(value=3, min=0, max=p_max, description="p calls")
        self.t = w.IntSlider(value=4, min=0, max=t_max, description="t unsolved")
        self.q = w.IntSlider(value=1, min=0, max=min(3, 4), description="q solved")
        self.no_call = w.Dropdown(options=list(NO_CALL_BRANCHES), value="answer", description="if p = 0")
        self.empty = w.FloatSlider(value=-0.5, min=-2, max=0, step=0.05, description="empty pen.")
        self.malformed = w.FloatSlider(value=-0.3, min=-2, max=0, step=0.05, description="malformed pen.")
        self.cap = w.HTML()
        self.value = w.HTML()
        self.value.add_class("ftrl-reward-value")
        width_px = int(FIGSIZE_PER_VARIANT[0] * 90)
        self.plot = w.Image(format="png", layout=w.Layout(width=f"{width_px}px", height="auto"))
        self._busy = False
        for ctl in (self.variant, self.p, self.q, self.t, self.no_call, self.empty, self.malformed):
            ctl.observe(lambda _change: self.update(), names="value")
        controls = w.VBox([self.variant, self.p, self.t, self.q, self.cap, self.no_call, self.empty, self.malformed])
        self.widget = w.VBox([w.HBox([controls, self.value]), self.plot])
        self.update()

    def set(self, **values) -> ExplorerState:
        """Set several controls (``p=4, q=2, t=1, variant=...``) and redraw once; the new state."""
        controls = {
            "variant": self.variant,
            "p": self.p,
            "q": self.q,
            "t": self.t,
            "no_call": self.no_call,
            "empty": self.empty,
            "malformed": self.malformed,
        }
        unknown = set(values) - set(controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)} (choose from {sorted(controls)})")
        self._busy = True
        try:
            for name in ("variant", "p", "t", "q", "no_call", "empty", "malformed"):  # q after its caps
                if name in values:
                    if name == "q":
                        self.q.max = max(min(self.p.value, self.t.value), 0)
                    controls[name].value = values[name]
        finally:
            self._busy = False
        self.update()
        return self.state()

    def config(self) -> RewardConfig:
        return RewardConfig(
            variant=self.variant.value, empty_penalty=self.empty.value, malformed_penalty=self.malformed.value
        )

    def state(self) -> ExplorerState:
        """The one source of truth: effective p, q, t, the value and its explanation."""
        c, p, t = self.config(), self.p.value, self.t.value
        if p == 0:
            value = no_call_value(self.no_call.value, t, c)
            return ExplorerState(c.variant, 0, 0, t, value, f"no tool call: branch '{self.no_call.value}'")
        q = min(self.q.value, p, t)
        how = f"{c.variant} = {FORMULAS[c.variant]} with p={p}, q={q}; q ≤ min(p, t) = {min(p, t)}"
        return ExplorerState(c.variant, p, q, t, variant_value(c.variant, q, p), how)

    def current(self) -> tuple[float, str]:
        """The reward for the slider settings and a short explanation."""
        s = self.state()
        return s.value, s.how

    def figure(self, state: ExplorerState | None = None):
        """The heatmap of the current variant and t with the current cell marked."""
        s = state or self.state()
        return plot_reward_surfaces([s.variant], self.p_max, s.t, mark=s.cell)

    def _constrain(self) -> None:
        """Hold q to 0..min(p, t) (the reward's cap); with p = 0 the q slider is off."""
        cap = min(self.p.value, self.t.value)
        self.q.max = max(cap, 0)  # ipywidgets clamps the value to the new max
        self.q.disabled = self.p.value == 0
        self.no_call.disabled = self.p.value > 0
        self.cap.value = (
            "<small>no calls: the no-call branch below decides</small>"
            if self.p.value == 0
            else f"<small>q ≤ min(p, t) = {cap}</small>"
        )

    def update(self) -> None:
        """Re-derive the state once and redraw the readout and the figure from it."""
        import matplotlib.pyplot as plt

        if self._busy:
            return
        self._busy = True
        try:
            self._constrain()
            s = self.state()
            self.value.value = (
                f"<div style='font-size:1.6em;padding:1em'>reward = <b id='reward-value'>{s.value:.4f}</b>"
                f"</div><div style='padding-left:1em'>{html.escape(s.how)}</div>"
            )
            fig = self.figure(s)
            self.plot.value = figure_png(fig)
            plt.close(fig)
        finally:
            self._busy = False

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


class ResponseInspector:
    """Pick an environment and a response; see the parse, sandboxed call outputs and reward.

    It opens with the first example of the first environment filled in and scored; picking
    another environment refills the examples and re-scores, and so does picking an example or a
    variant. Typed text is scored when **Score** is pressed.
    """

    def __init__(self, records: Sequence[EnvRecord], executor: ToolExecutor | None = None):
        import ipywidgets as w

        if not records:
            raise ValueError("ResponseInspector needs at least one environment")
        self.records, self.executor = list(records), executor
        labels = [(f"{i}: [{r.scenario}] {r.question[:70]}", i) for i, r in enumerate(self.records)]
        self.env = w.Dropdown(options=labels, value=0, description="environment", layout=w.Layout(width="95%"))
        self.example = w.Dropdown(description="example", layout=w.Layout(width="60%"))
        self.variant = w.Dropdown(options=list(VARIANTS), value="solve_f1", description="variant")
        self.text = w.Textarea(layout=w.Layout(width="95%", height="140px"), description="response")
        self.button = w.Button(description="Score", button_style="primary")
        self.summary = w.HTML()
        self.calls = w.HTML()
        self.env.observe(lambda _c: self._load_examples(), names="value")
        self.example.observe(lambda _c: self._pick_example(), names="value")
        self.button.on_click(lambda _b: self.show())
        self.variant.observe(lambda _c: self.show(), names="value")
        self.widget = w.VBox(
            [self.env, w.HBox([self.example, self.variant]), self.text, self.button, self.summary, self.calls]
        )
        self._load_examples()

    @property
    def record(self) -> EnvRecord:
        return self.records[self.env.value]

    def _load_examples(self) -> None:
        self._examples = example_responses(self.record, self.executor)
        labels = list(self._examples)
        if list(self.example.options) != labels:
            self.example.options = labels  # keeps value None when it was None: set it below
        if self.example.value == labels[0]:  # no change event: refill and re-score here
            self._pick_example()
        else:
            self.example.value = labels[0]  # fires _pick_example

    def _pick_example(self) -> None:
        if self.example.value is not None:
            self.text.value = self._examples[self.example.value]
            self.show()

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
        """Score the text box and show the result (every text escaped)."""
        parsed, breakdown, config = self.score()
        rec, esc = self.record, html.escape
        self.summary.value = (
            f"<b>Question:</b> {esc(rec.question)}<br><b>Gold sub-answers:</b> "
            f"{esc(json.dumps(rec.unsolved_set, ensure_ascii=False))}<br>"
            f"<b>Parsed:</b> content={esc(repr(parsed.content[:200]))}, {len(parsed.tool_calls)} call(s), "
            f"malformed={parsed.malformed}<br><b>Reward:</b> {esc(explain(breakdown, parsed, config))}"
        )
        self.calls.value = breakdown_frame(breakdown).to_html(index=False, escape=True) if breakdown.calls else ""

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
