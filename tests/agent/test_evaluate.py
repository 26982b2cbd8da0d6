"""Evaluation: metric tables, saved transcripts, interrupted runs that resume, the CLI."""

import json

import pandas as pd
import pytest
from helpers import TOY, call

from ftrl_lab.agent.evaluate import (
    RESULTS_CSV,
    RESULTS_JSON,
    TRANSCRIPTS,
    evaluate,
    load_transcripts,
    main,
    summarize,
)
from ftrl_lab.agent.policies import ScriptedPolicy
from ftrl_lab.agent.rollout import episode_key
from ftrl_lab.core.executor import inprocess_executor
from ftrl_lab.core.records import per_scenario


def script(toy):
    return {
        toy[0].question: [call("capital_lookup", country="France"), "Paris."],  # P=1 R=1 F1=1
        toy[1].question: [
            call("capital_lookup", country="Japan") + call("city_population", city="Paris"),
            "done",
        ],  # P=.5 R=.5 F1=.5
        toy[2].question: [call("capital_lookup", country="Italy"), "Rome."],  # P=1 R=.5 F1=2/3
    }


def test_summarize_means_per_scenario_and_overall():
    rows = [
        {"scenario": "multi_hop", "solve_precision": 1.0, "solve_rate": 0.5, "solve_f1": 0.6, "turns": 2},
        {"scenario": "single_hop", "solve_precision": 0.0, "solve_rate": 0.0, "solve_f1": 0.0, "turns": 1},
        {"scenario": "multi_hop", "solve_precision": 0.5, "solve_rate": 1.0, "solve_f1": 0.8, "turns": 4},
    ]
    table = summarize(rows).set_index("scenario")
    assert list(table.index) == ["single_hop", "multi_hop", "overall"]  # paper order, overall last
    assert table.loc["multi_hop", "n"] == 2 and table.loc["multi_hop", "solve_f1"] == pytest.approx(0.7)
    assert table.loc["overall", "solve_precision"] == pytest.approx(0.5)
    assert table.loc["overall", "turns"] == pytest.approx(7 / 3)
    assert summarize([]).empty


def test_per_scenario_keeps_file_order(toy):
    recs = list(toy) + [toy[0]]
    assert per_scenario(recs, 1) == list(toy)
    assert per_scenario(recs, None) == recs and per_scenario(recs, 0) == []


def test_evaluate_writes_table_transcripts_and_results(toy, tmp_path):
    res = evaluate(
        toy,
        ScriptedPolicy(script(toy)),
        tmp_path,
        executor=inprocess_executor(),
        progress=False,
        meta={"model": "scripted"},
    )
    t = res.table.set_index("scenario")
    assert t.loc["single_hop", "solve_f1"] == 1.0
    assert t.loc["multi_hop", "solve_precision"] == 0.5 and t.loc["multi_hop", "solve_rate"] == 0.5
    assert t.loc["parallel_single_hop", "solve_f1"] == pytest.approx(2 / 3)
    assert t.loc["overall", "n"] == 3 and t.loc["overall", "solve_f1"] == pytest.approx((1 + 0.5 + 2 / 3) / 3)
    lines = load_transcripts(tmp_path)
    assert len(lines) == 3 and {r["key"] for r in lines} == {episode_key(r) for r in toy}
    first = next(r for r in lines if r["index"] == 0)
    assert first["messages"][2]["role"] == "tool" and first["steps"][0]["solved"] == ["Paris"]
    assert first["question"] == "What is the capital of France?" and first["answer"] == "Paris"
    saved = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert saved["model"] == "scripted" and saved["complete"] and saved["n_done"] == 3
    assert saved["machine"]["cpu_count"] >= 1 and saved["runs"][0]["new_episodes"] == 3
    assert pd.read_csv(tmp_path / RESULTS_CSV).set_index("scenario").loc["overall", "n"] == 3


def test_interrupted_evaluation_keeps_finished_records_and_resumes(toy, tmp_path):
    with pytest.raises(RuntimeError, match="simulated failure after 2"):
        evaluate(
            toy,
            ScriptedPolicy(script(toy), fail_after=2),
            tmp_path,
            max_active=1,
            executor=inprocess_executor(),
            progress=False,
        )
    kept = (tmp_path / TRANSCRIPTS).read_text().splitlines()
    assert len(kept) == 2
    partial = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert partial["n_done"] == 2 and not partial["complete"]

    played = []

    class Counting(ScriptedPolicy):
        def act(self, episodes):
            played.extend(e.index for e in episodes)
            return super().act(episodes)

    with open(tmp_path / TRANSCRIPTS, "a") as f:  # a write cut off by the crash
        f.write('{"key": "cut')
    res = evaluate(toy, Counting(script(toy)), tmp_path, executor=inprocess_executor(), progress=False)
    assert set(played) == {2} and res.new_episodes == 1 and res.skipped == 2
    lines = (tmp_path / TRANSCRIPTS).read_text().splitlines()
    assert lines[:2] == kept and len(lines) == 3  # the first two untouched, not redone
    assert res.table.set_index("scenario").loc["overall", "n"] == 3
    assert len(json.loads((tmp_path / RESULTS_JSON).read_text())["runs"]) == 2
    again = evaluate(toy, ScriptedPolicy([], fail_after=0), tmp_path, executor=inprocess_executor(), progress=False)
    assert again.new_episodes == 0 and again.skipped == 3


def test_cli_with_the_default_model(tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        rc = main(
            [
                "ftrl",
                "--model",
                "default",
                "--data",
                str(TOY),
                "--out",
                str(tmp_path),
                "--limit",
                "2",
                "--max-turns",
                "1",
                "--max-new-tokens",
                "8",
                "--executor",
                "inprocess",
                "--threads",
                "1",
                "--no-progress",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    out = capsys.readouterr().out
    assert "overall" in out and "solve_f1" in out
    saved = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert saved["n_records"] == 2 and saved["complete"] and saved["backend"] == "local"
    assert saved["settings"]["max_new_tokens"] == 8 and saved["model_info"]["params"] > 1e8
    rows = load_transcripts(tmp_path)
    assert all(r["turns"] == 1 and r["completion_tokens"] <= 8 for r in rows)


@pytest.mark.parametrize("mode", ["ftrl", "fresh"])
def test_cli_exec_mode_reaches_the_sandbox(tmp_path, monkeypatch, mode):
    import ftrl_lab.agent.evaluate as evaluate_module
    import ftrl_lab.core.executor as executor_module
    from ftrl_lab.core.records import load_records

    toy = load_records(TOY)
    made = []
    real = executor_module.sandbox_executor

    def recording_sandbox_executor(**kwargs):
        made.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(executor_module, "sandbox_executor", recording_sandbox_executor)
    monkeypatch.setattr(evaluate_module, "policy_from_args", lambda args: (ScriptedPolicy(script(toy)), {}))
    rc = main(
        ["ftrl", "--data", str(TOY), "--out", str(tmp_path), "--limit", "1", "--exec-mode", mode, "--no-progress"]
    )
    assert rc == 0 and made == [{"exec_mode": mode}]
    saved = json.loads((tmp_path / RESULTS_JSON).read_text())
    assert saved["settings"]["executor"] == "sandbox" and saved["settings"]["exec_mode"] == mode


def test_lone_surrogate_does_not_stop_evaluate(toy, tmp_path):
    """A lone surrogate in a call's arguments is a bad call, and in text it is written escaped."""
    qwen_turn = '<tool_call>{"name": "capital_lookup", "arguments": {"country": "\\ud800"}}</tool_call>'
    openai_turn = {
        "role": "assistant",
        "content": "so \ud800",
        "tool_calls": [{"function": {"name": "capital_lookup", "arguments": '{"country": "\\udfff"}'}}],
    }
    script = {toy[0].question: [qwen_turn, "Paris"], toy[1].question: [openai_turn, "Tokyo"]}
    for rules, calls in (("lenient", [0, 0]), ("official", [1, 0])):
        out = tmp_path / rules
        res = evaluate(toy[:2], ScriptedPolicy(script), out, executor=inprocess_executor(), progress=False, rules=rules)
        assert res.new_episodes == 2
        rows = sorted(load_transcripts(out), key=lambda r: r["index"])
        # lenient: both bad calls never run; official: FTRL's parse_qwen keeps the Qwen call (its
        # JSON decodes), so it runs and fails in the tool, as in FTRL; the OpenAI call is bad in both
        assert [r["calls"] for r in rows] == calls
        assert "so \ud800" in json.dumps(rows[1], ensure_ascii=False)  # the text itself is kept


def test_interleaved_order_plays_round_robin_over_scenarios_and_keeps_file_indices(toy, tmp_path):
    import copy

    from ftrl_lab.core.records import interleaved_order, stratified_subset

    again = copy.deepcopy(toy[0])
    again.messages[-1]["content"] += " (again)"
    recs = [toy[0], again, toy[1], toy[2]]  # two single-hop records first in the file, then the others
    assert len({episode_key(r) for r in recs}) == 4
    order = interleaved_order(recs)
    assert sorted(order) == [0, 1, 2, 3] and len({recs[i].scenario for i in order[:3]}) == 3
    played = []

    class Counting(ScriptedPolicy):
        def act(self, episodes):
            played.extend(e.index for e in episodes if e.index not in played)
            return super().act(episodes)

    with pytest.raises(RuntimeError, match="simulated failure after 3"):
        evaluate(
            recs,
            Counting([], fail_after=3),
            tmp_path,
            max_active=1,
            executor=inprocess_executor(),
            progress=False,
            order="interleaved",
        )
    assert played == order  # the fourth was started when the failure came
    done = {r["index"]: r["question"] for r in load_transcripts(tmp_path)}
    assert done == {i: recs[i].question for i in order[:3]}  # file indices, not play positions
    assert sorted(done) == [recs.index(r) for r in stratified_subset(recs, 3)]
    with pytest.raises(ValueError, match="unknown order 'random'"):
        evaluate(recs, ScriptedPolicy([]), tmp_path, order="random")
