import json
import math

import pandas as pd
import pytest

from ftrl_lab.analysis.failure_modes import (
    MODES,
    by_scenario,
    compare,
    episode_modes,
    failure_table,
    findings,
    is_error_output,
    main,
    summary,
)


def call(tool: str, **args) -> dict:
    return {"type": "function", "function": {"name": tool, "arguments": json.dumps(args)}}


def step(*calls: dict, outputs=(), malformed: bool = False, text: str = "") -> dict:
    message = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = list(calls)
    return {"message": message, "tool_outputs": list(outputs), "malformed": malformed}


def episode(key: str, steps: list[dict], f1: float = 0.0, gold=("find_city",)) -> dict:
    return {
        "key": key,
        "scenario": "single_hop",
        "unsolved_set": {name: ["x"] for name in gold},
        "solve_f1": f1,
        "steps": steps,
    }


def test_error_outputs_in_the_three_forms_and_not_otherwise():
    assert is_error_output("Error: Missing required parameter 'attribute'.")
    assert is_error_output('{"error": "No city matching that name was found."}')
    assert is_error_output("an error occured when call unified_city_explorer: KeyError")
    assert not is_error_output('{"city": "Errorville", "error_margin": 2}')
    assert not is_error_output("The terror of the seas was launched in 1790.")


def test_one_episode_measures():
    row = episode(
        "a",
        [
            step(call("ship_api", name="B"), outputs=["Error: No ship matching that name was found."]),
            step(call("ship_api", name="B"), outputs=['{"error": "No ship"}']),  # identical retry
            step(call("find_city", name="B"), call("find_city", name="C"), outputs=["Paris", "Rome"]),
            step(text="The answer is Paris."),
        ],
        f1=0.5,
    )
    m = episode_modes(row)
    assert m["calls"] == 4
    assert m["gold_tool_share"] == pytest.approx(0.5)
    assert m["first_call_gold"] == 0.0
    assert m["error_share"] == pytest.approx(0.5)
    assert m["repeat_share"] == pytest.approx(0.25)
    assert m["malformed_share"] == 0.0
    assert m["answered"] == 1.0
    assert m["solve_f1"] == 0.5


def test_argument_order_does_not_hide_a_repeat_and_other_values_are_new_calls():
    same = {"type": "function", "function": {"name": "t", "arguments": '{"b": 2, "a": 1}'}}
    row = episode("a", [step(call("t", a=1, b=2), same, call("t", a=1, b=3), outputs=["ok"] * 3)], gold=("t",))
    assert episode_modes(row)["repeat_share"] == pytest.approx(1 / 3)


def test_no_calls_gives_nan_shares_and_a_turn_limit_is_not_an_answer():
    silent = episode_modes(episode("a", [step(text="I think it is 4.")]))
    assert silent["calls"] == 0 and silent["answered"] == 1.0
    assert all(math.isnan(silent[k]) for k in ("gold_tool_share", "first_call_gold", "error_share", "repeat_share"))
    looping = episode_modes(episode("b", [step(call("find_city", q="x"), outputs=["Error: no"])] * 3))
    assert looping["answered"] == 0.0 and looping["repeat_share"] == pytest.approx(2 / 3)
    broken = episode_modes(episode("c", [step(text="<tool_call>{", malformed=True)]))
    assert broken["answered"] == 0.0 and broken["malformed_share"] == 1.0


def test_compare_pairs_by_key_and_skips_missing_measures():
    before = failure_table(
        [
            episode("a", [step(call("other", q=1), outputs=["Error: x"])]),
            episode("b", [step(text="no calls")]),
            episode("c", [step(call("find_city", q=1), outputs=["Paris"])]),
        ]
    )
    after = failure_table(
        [
            episode("c", [step(call("find_city", q=1), outputs=["Paris"])], f1=1.0),
            episode("a", [step(call("find_city", q=1), outputs=["Paris"])], f1=1.0),
            episode("b", [step(call("find_city", q=2), outputs=["Rome"])]),
        ]
    )
    table = compare(before, after, n_boot=200).set_index("measure")
    assert list(table.index) == list(MODES)
    assert table.loc["first_call_gold", "n"] == 2  # b had no call before
    assert table.loc["first_call_gold", "delta"] == pytest.approx(0.5)
    assert table.loc["calls", "n"] == 3 and table.loc["calls", "delta"] == pytest.approx(1 / 3)
    assert table.loc["solve_f1", "delta"] == pytest.approx(2 / 3)
    for m in MODES:
        assert table.loc[m, "delta_ci_low"] <= table.loc[m, "delta"] <= table.loc[m, "delta_ci_high"]


def test_a_row_without_steps_is_refused_by_key():
    with pytest.raises(ValueError, match="'k1'"):
        episode_modes({"key": "k1", "messages": []})


def test_cli_reads_folders_and_writes_csv_and_markdown(tmp_path, capsys):
    for name, f1 in (("start", 0.0), ("final", 1.0)):
        folder = tmp_path / name
        folder.mkdir()
        rows = [episode("a", [step(call("find_city", q=1), outputs=["Paris"])], f1=f1)]
        (folder / "transcripts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "modes" / "heldout.csv"
    assert main([str(tmp_path / "start"), str(tmp_path / "final"), "--out", str(out), "--bootstrap", "50"]) == 0
    table = pd.read_csv(out).set_index("measure")
    assert table.loc["solve_f1", "delta"] == pytest.approx(1.0)
    assert out.with_suffix(".md").read_text().startswith("| measure")
    assert "solve_f1" in capsys.readouterr().out
    assert summary(failure_table(tmp_path / "start"))["n"] == 1
    with pytest.raises(FileNotFoundError, match="no evaluation transcripts"):
        failure_table(tmp_path / "missing")


def test_by_scenario_and_findings_read_the_table():
    rows = [
        episode("a", [step(call("find_city", q=1), outputs=["Paris"]), step(text="Paris")], f1=1.0),
        {**episode("b", [step(call("other", q=1), outputs=["Error: x"])] * 2), "scenario": "multi_hop"},
        episode("c", [step(text="no call")]),
    ]
    table = failure_table(rows)
    grid = by_scenario(table)
    assert list(grid.index) == ["single_hop", "multi_hop", "overall"]  # the paper's order
    assert grid.loc["overall", "n"] == 3 and grid.loc["multi_hop", "repeat_share"] == pytest.approx(0.5)
    text = findings(table)
    assert "2 of 3 episodes made at least one tool call" in text
    assert "50% of an episode's calls name a tool of the gold plan" in text
    assert "67% of the episodes end with an answer" in text
    assert findings(failure_table([])) == "- No episodes."
