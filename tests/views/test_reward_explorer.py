import math

import pytest

from ftrl_lab.core.executor import inprocess_executor
from ftrl_lab.views.reward_explorer import (
    ResponseInspector,
    RewardExplorer,
    example_responses,
    no_call_table,
    plot_reward_surfaces,
    reward_grid,
)


def test_reward_grid_values_and_impossible_cells():
    g = reward_grid("solve_f1", p_max=4)
    assert g.loc[1, 3] == pytest.approx(2 * 1 / 4) and g.loc[2, 2] == pytest.approx(4 / 3)
    assert math.isnan(g.loc[3, 2])  # q > p
    g = reward_grid("solve_rate", p_max=4, t=2)
    assert list(g.index) == [0, 1, 2] and g.loc[2, 4] == 2.0


def test_no_call_table():
    assert no_call_table(t=3)["reward"].tolist() == [-0.5, -0.3, 0.25, 0.5, 0.0]


def test_plot_reward_surfaces_draws_one_axis_per_variant():
    fig = plot_reward_surfaces(["solve_f1", "solve_pr"], p_max=3, mark=(2, 1))
    assert len(fig.axes) == 2


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
    examples = example_responses(rec)
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
