"""Notebook helpers: stage-by-stage views, the DAG figure, calling tools by hand, level statistics."""

import matplotlib

matplotlib.use("Agg")

from ftrl_lab.envgen.explore import (  # noqa: E402
    EnvExplorer,
    ToolCaller,
    build_example,
    documents_frame,
    draw_graph,
    gate_checks,
    gold_plan_trace,
    level_table,
    sample_entities,
    scaling_trace,
    subquestion_table,
    world_summary,
)


def test_example_stage_by_stage_views():
    ex = build_example("parallel_multi_hop", 3, domain="art", seed=2)
    subs = subquestion_table(ex)
    assert len(subs) == len(ex.decomposition.subs) and subs["tool"].str.len().min() > 0
    assert ex.decomposition.subs[0].entity_type in ("painting", "novel", "film", "album")
    docs = documents_frame(ex.stages["documents"].documents())
    assert len(docs) == len(subs)
    trace = scaling_trace(ex)
    assert list(trace.index) == [
        "documents (1 per sub-question)",
        "integrated",
        "+ functional",
        "+ parameters",
        "+ types",
        "+ toolset",
    ]
    assert trace.loc["+ toolset", "tools"] == len(ex.record.tools)
    assert trace.loc["+ parameters", "params_per_tool"] > trace.loc["integrated", "params_per_tool"]
    fig = draw_graph(ex)
    assert sum(t.get_bbox_patch() is not None for t in fig.axes[0].texts) == len(ex.decomposition.subs)
    assert gate_checks(ex.record).ok


def test_gold_plan_trace_and_tool_caller_solve_everything():
    ex = build_example("multi_hop", 2, seed=5)
    trace = gold_plan_trace(ex.record)
    assert trace["solved"].notna().all() and trace["still unsolved"].iloc[-1] == 0
    caller = ToolCaller(ex.record)
    first = ex.stages["scaled"].calls[0]
    wrong = caller.call(first.tool, {"nope": 1})
    assert wrong["solved"] is None and "error" in wrong["output"].lower()
    right = caller.call(first.tool, first.arguments)
    assert right["solved"] == ex.decomposition.sub(first.sub_id).answer
    assert caller.widget().children  # builds the ipywidgets UI
    assert EnvExplorer("single_hop", 1, "food", 3).example().decomposition.subs[0].entity_type in ("dish", "beverage")


def test_world_and_level_tables():
    summary = world_summary()
    assert len(summary) >= 16 and summary.loc["total", "attributes"] + summary.loc["total", "relations"] >= 200
    assert len(sample_entities("city", 2)) == 2
    levels = level_table(n_per_level=8)
    assert list(levels.index) == [0, 1, 2, 3]
    assert (
        levels["params per tool"].is_monotonic_increasing
        and levels["tools per env"].iloc[3] > levels["tools per env"].iloc[0]
    )
    assert levels.loc[0, "non-string params"] < levels.loc[3, "non-string params"]
