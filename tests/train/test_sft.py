"""Gold trajectories from envgen's call plans, assistant-only tokenization, a tiny SFT run."""

import math

import pytest
from _train_helpers import envgen_records, small_record

from ftrl_lab.agent.models import tiny_model, tiny_tokenizer
from ftrl_lab.core.executor import inprocess_executor
from ftrl_lab.train.sft import build_sft_dataset, gold_plan, gold_trajectories, plan_turns, run_sft, tokenize_trajectory


def test_plan_turns_groups_calls_whose_inputs_are_known():
    plan = [
        {"sub_id": "a", "tool": "f", "arguments": {}, "uses": {}},
        {"sub_id": "b", "tool": "g", "arguments": {}, "uses": {"x": ["a"]}},
        {"sub_id": "c", "tool": "f", "arguments": {}, "uses": {}},
        {"sub_id": "d", "tool": "h", "arguments": {}, "uses": {"x": ["b"], "y": ["c"]}},
    ]
    assert [[c["sub_id"] for c in t] for t in plan_turns(plan)] == [["a", "c"], ["b"], ["d"]]
    with pytest.raises(ValueError, match="unknown or circular"):
        plan_turns([{"sub_id": "a", "tool": "f", "arguments": {}, "uses": {"x": ["zz"]}}])


def test_records_without_env_meta_are_refused():
    with pytest.raises(ValueError, match="no env_meta"):
        gold_plan(small_record())


def test_gold_trajectories_solve_every_answer_and_end_with_the_answer():
    records = list(envgen_records())
    trajs = gold_trajectories(records, executor=inprocess_executor())
    for rec, tr in zip(records, trajs):
        assert tr.complete and tr.total == rec.n_unsolved
        assert tr.messages[-1] == {"role": "assistant", "content": f"The answer is {rec.answer}."}
        turns = [m for m in tr.messages if m["role"] == "assistant" and m.get("tool_calls")]
        assert len(turns) == len(plan_turns(gold_plan(rec)))


def test_tokenized_labels_cover_assistant_turns_only():
    tok = tiny_tokenizer()
    tr = gold_trajectories([envgen_records()[2]], executor=inprocess_executor())[0]
    row = tokenize_trajectory(tok, tr.messages, tr.tools)
    learned = tok.decode([t for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100])
    assert "<tool_call>" in learned and "The answer is" in learned
    assert "Please call given tools" not in learned and "<tool_response>" not in learned


def test_tiny_sft_run_lowers_the_loss(tmp_path):
    model, tok = tiny_model()
    trajs = gold_trajectories(list(envgen_records())[:2], executor=inprocess_executor())
    ds, dropped = build_sft_dataset(trajs, tok, max_length=4096)
    assert len(ds) == 2 and dropped == {"incomplete": 0, "too_long": 0}
    out = run_sft(model, tok, ds, str(tmp_path), learning_rate=3e-3, epochs=3, gradient_accumulation_steps=1)
    losses = [r["loss"] for r in out["log_history"] if "loss" in r]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_plan_fit_compares_calls_and_turns_with_the_gold_plans():
    from ftrl_lab.agent.rollout import episode_key
    from ftrl_lab.train.sft import plan_fit

    records = list(envgen_records())
    gold = [plan_turns(gold_plan(r)) for r in records]
    gold_calls = sum(sum(len(t) for t in turns) for turns in gold) / len(records)
    gold_turns = sum(len(turns) + 1 for turns in gold) / len(records)
    as_gold = [
        {"key": episode_key(r), "calls": sum(len(t) for t in turns), "turns": len(turns) + 1}
        for r, turns in zip(records, gold)
    ]
    fit = plan_fit(records, as_gold)
    assert fit["episodes"] == len(records) and fit["healthy"]
    assert fit["calls_ratio"] == pytest.approx(1.0) and fit["gold_turns"] == pytest.approx(gold_turns)
    looping = [{**row, "calls": row["calls"] * 3, "turns": row["turns"] * 2} for row in as_gold]
    fit = plan_fit(records, looping)
    assert not fit["healthy"] and fit["calls"] == pytest.approx(3 * gold_calls)
    assert fit["turns_ratio"] == pytest.approx(2.0)
    # Records without a gold plan (FTRL's own) and episodes of other environments do not count.
    assert plan_fit([small_record()], as_gold) is None
    assert plan_fit(records[:1], as_gold)["episodes"] == 1
