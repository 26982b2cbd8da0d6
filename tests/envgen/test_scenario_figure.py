import pytest

from ftrl_lab.envgen.decompose import SCENARIOS
from ftrl_lab.envgen.explore import sub_depths
from ftrl_lab.envgen.scenario_figure import draw_scenario_examples, scenario_examples, tool_lines


@pytest.fixture(scope="module")
def examples():
    return scenario_examples(level=3, seed=0)


def test_one_example_per_scenario_within_the_depth_bounds(examples):
    assert list(examples) == list(SCENARIOS)
    for scenario, ex in examples.items():
        assert ex.scenario == scenario
        depth = max(sub_depths(ex.decomposition.subs).values()) + 1
        assert (3 <= depth <= 4) if "multi_hop" in scenario else depth == 1
    assert len(examples["parallel_multi_hop"].record.unsolved_set) >= 2


def test_tool_lines_put_gold_tools_first(examples):
    ex = examples["multi_hop"]
    lines = tool_lines(ex)
    gold = [g for _, g in lines]
    assert len(lines) == len(ex.record.tools) and sum(gold) == len(ex.record.unsolved_set)
    assert gold == sorted(gold, reverse=True)


def test_draw_scenario_examples_has_a_graph_and_a_tool_panel_per_scenario(examples):
    import matplotlib

    matplotlib.use("Agg")
    fig = draw_scenario_examples(examples)
    assert len(fig.axes) == 2 * len(SCENARIOS)
    titles = [ax.get_title(loc="left") for ax in fig.axes[0::2]]
    assert all(t.startswith(s) for t, s in zip(titles, SCENARIOS))


def test_impossible_depth_bounds_are_refused():
    with pytest.raises(ValueError, match="min_hops"):
        scenario_examples(min_hops=5, max_hops=4)
    with pytest.raises(ValueError, match="multi_hop environment 9-9 steps deep"):
        scenario_examples(min_hops=9, max_hops=9, tries=2)
