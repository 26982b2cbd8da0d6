import html
import itertools
import math
import re
import struct

import pytest

from ftrl_lab.core.executor import inprocess_executor
from ftrl_lab.core.parsing import render_qwen_calls
from ftrl_lab.core.reward import spray_response
from ftrl_lab.views.reward_explorer import (
    ResponseInspector,
    RewardExplorer,
    example_responses,
    examples_table,
    no_call_table,
    plot_reward_surfaces,
    reward_grid,
)


def test_reward_grid_values_and_impossible_cells():
    g = reward_grid("solve_f1", p_max=4)
    assert g.loc[1, 3] == pytest.approx(2 * 1 / 4) and g.loc[2, 2] == pytest.approx(4 / 3)
    assert math.isnan(g.loc[3, 2])  # q > p
    g = reward_grid("solve_rate", p_max=4, t=2)
    assert math.isnan(g.loc[2, 1])
    assert list(g.index) == [0, 1, 2] and g.loc[2, 4] == 2.0


def test_no_call_table():
    assert no_call_table(t=3)["reward"].tolist() == [-0.5, -0.3, 0.25, 0.5, 0.0]


def test_plot_reward_surfaces_draws_one_axis_per_variant():
    fig = plot_reward_surfaces(["solve_f1", "solve_pr"], p_max=3, mark=(2, 1))
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["solve_f1", "solve_pr"]
    for ax in fig.axes[:1]:
        assert ax.get_xlabel().startswith("p (") and ax.get_ylabel().startswith("q (")


def test_explorer_responds_to_sliders():
    e = RewardExplorer(p_max=4)
    e.variant.value, e.p.value, e.q.value, e.t.value = "solve_f1", 3, 1, 4
    assert e.current()[0] == pytest.approx(0.5) and "0.5000" in e.value.value
    e.q.value = 3
    assert e.current()[0] == pytest.approx(1.5) and "1.5000" in e.value.value
    e.p.value, e.no_call.value = 0, "empty"
    assert e.current()[0] == -0.5
    e.empty.value = -1.0
    assert e.current()[0] == -1.0


def test_inspector_scores_real_environment(ftrl_test_records):
    rec = ftrl_test_records[0]
    examples = example_responses(rec, inprocess_executor())
    assert "final answer only" in examples and "empty turn" in examples
    ins = ResponseInspector(ftrl_test_records[:3], executor=inprocess_executor())
    ins.example.value = "final answer only"
    parsed, b, _ = ins.score()
    assert b.branch == "answer" and b.reward == pytest.approx(1 / (1 + rec.n_unsolved))
    ins.example.value = "empty turn"
    assert ins.score()[1].reward == -0.5
    ins.text.value = f'<tool_call>{{"name": "{rec.tool_names[0]}", "arguments": {{}}}}</tool_call>'
    parsed, b, _ = ins.score()
    assert b.branch == "calls" and b.p == 1 and b.calls[0].output


def _readout(explorer) -> float:
    return float(re.search(r"id='reward-value'>(-?[0-9.]+)<", explorer.value.value).group(1))


def _marked_cell_text(fig) -> tuple[tuple[int, int], str]:
    """(p, q) of the red rectangle in the heatmap and the annotation printed in that cell."""
    ax = fig.axes[0]
    rect = next(p for p in ax.patches if p.get_label() == "current")
    x, y = rect.get_xy()
    centre = (x + 0.5, y + 0.5)
    text = next(t.get_text() for t in ax.texts if tuple(round(v, 3) for v in t.get_position()) == centre)
    return (int(x) + 1, int(y)), text


def _png_size(data: bytes) -> tuple[int, int]:
    return struct.unpack(">II", data[16:24])


def test_explorer_readout_matches_marked_cell_on_a_grid():
    import matplotlib.pyplot as plt

    e = RewardExplorer(p_max=4, t_max=4)
    sizes = set()
    for variant, t, p, q in itertools.product(("solve_f1", "solve_pr"), (0, 1, 4), (1, 2, 4), (0, 1, 4)):
        if variant == "solve_pr" and (p + q + t) % 3:  # the second variant on a third of the grid
            continue
        s = e.set(variant=variant, t=t, p=p, q=q)
        assert e.q.max == min(p, t) and e.q.value == min(q, p, t) == s.q  # the slider holds the cap
        fig = e.figure()
        (mp, mq), text = _marked_cell_text(fig)
        plt.close(fig)
        assert (mp, mq) == (p, s.q) == s.cell
        assert f"{_readout(e):.2f}" == text, (variant, p, q, t)
        sizes.add(_png_size(e.plot.value))
    assert len(sizes) == 1  # the figure never changes size


def test_explorer_issue_cases():
    e = RewardExplorer(p_max=8)
    e.set(t=0, p=4, q=2)  # t = 0: nothing left to solve
    assert e.q.value == 0 and _readout(e) == 0.0 and e.state().cell == (4, 0)
    e.set(t=1, q=2)  # q asked for 2, capped at 1 by t
    assert e.q.value == 1 and _readout(e) == pytest.approx(0.4) and e.state().cell == (4, 1)
    assert "min(p, t) = 1" in e.cap.value
    e.p.value = 0
    assert e.q.disabled and e.state().cell is None and not e.no_call.disabled


def test_examples_include_a_solving_call_and_the_spray(ftrl_test_records):
    rec = ftrl_test_records[0]
    table = examples_table(rec, executor=inprocess_executor())
    solving = table.loc["calls that solve (arguments found by search)"]
    assert solving["q"] >= 1 and solving["reward (solve_f1)"] > 0
    spray = spray_response(rec)
    assert spray.count("<tool_call>") == len(rec.tools) and " 2100 " in spray and "December" in spray
    assert "echo spray (one unknown argument per tool)" in table.index


def test_inspector_opens_filled_and_rescores_on_environment_change(ftrl_test_records):
    ins = ResponseInspector(ftrl_test_records[:3], executor=inprocess_executor())
    first = next(iter(example_responses(ftrl_test_records[0], inprocess_executor()).values()))
    assert ins.text.value == first and ins.text.value != ""
    assert "-0.5000" not in ins.summary.value and "Reward:" in ins.summary.value
    ins.example.value = "empty turn"
    assert "-0.5000" in ins.summary.value
    ins.env.value = 1  # a new environment: examples refilled, first one shown and scored
    rec1 = ftrl_test_records[1]
    assert ins.example.value == next(iter(example_responses(rec1, inprocess_executor())))
    assert ins.text.value == example_responses(rec1, inprocess_executor())[ins.example.value]
    assert html.escape(rec1.question) in ins.summary.value


HOSTILE = "<img src=x onerror=alert(2)>"


def _no_raw_tag(value: str) -> None:
    assert "<img" not in value and "<script" not in value, value


def test_inspector_escapes_model_text(ftrl_test_records):
    ins = ResponseInspector(ftrl_test_records[:1], executor=inprocess_executor())
    for text in (
        HOSTILE,
        f"The answer is {HOSTILE}",
        render_qwen_calls([{"function": {"name": ftrl_test_records[0].tool_names[0], "arguments": {"x": HOSTILE}}}]),
        f"<tool_call>{HOSTILE}</tool_call>",
    ):
        ins.text.value = text
        ins.show()
        for widget in (ins.summary, ins.calls):
            _no_raw_tag(widget.value)
        assert "&lt;img" in ins.summary.value + ins.calls.value


def test_explorer_sliders_one_at_a_time_keep_readout_and_cell_together():
    e = RewardExplorer(p_max=8)
    e.p.value, e.t.value, e.q.value = 4, 1, 2  # moved by hand, in the order of the issue
    assert e.state().cell == (4, 1) and _readout(e) == pytest.approx(0.4)
    e.t.value = 0
    assert e.state().cell == (4, 0) and _readout(e) == 0.0
    with pytest.raises(ValueError, match="unknown control"):
        e.set(r=1)
