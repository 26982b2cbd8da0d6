"""Prefix records -> TRL dataset: columns, Arrow null keys, prompt budget, duplicates."""

import json

from _train_helpers import small_record

from ftrl_lab.agent.models import tiny_tokenizer
from ftrl_lab.core.reward import make_reward_func
from ftrl_lab.train.data import build_prefix_dataset, clean_messages, prompt_length_fn, rows_dataset


def _prefix():
    rec = small_record()
    call = {
        "id": "call_0",
        "type": "function",
        "function": {"name": "get_capital", "arguments": '{"country": "Norland"}'},
    }
    rec.messages = rec.messages + [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": '{"capital": "Oslavik"}', "tool_call_id": "call_0"},
    ]
    rec.unsolved_set, rec.solve_rate = {"get_capital": []}, 1.0
    return rec


def test_clean_messages_drops_arrow_nulls_but_keeps_content():
    raw = [
        {"role": "user", "content": "q", "tool_calls": None, "tool_call_id": None},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            "tool_call_id": None,
        },
    ]
    assert clean_messages(raw) == [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": None, "tool_calls": raw[1]["tool_calls"]},
    ]


def test_dataset_columns_roundtrip_through_arrow_and_feed_the_reward():
    tok = tiny_tokenizer()
    ds, report = build_prefix_dataset([small_record(), _prefix()], tok, max_prompt_tokens=4096)
    assert report.kept == 2 and report.solved == 1 and report.too_long == 0
    row = ds[1]
    assert json.loads(row["tools"])[0]["function"]["name"] == "get_capital"
    assert json.loads(row["unsolved_set"]) == {"get_capital": []} and row["solve_rate"] == 1.0
    # Arrow pads messages with null keys; cleaned, they render exactly like the record
    length = prompt_length_fn(tok)
    assert row["prompt_tokens"] == length(_prefix().messages, _prefix().tools) > 0
    reward = make_reward_func("solve_f1")
    cols = {k: [ds[0][k]] for k in ("codes", "unsolved_set", "solve_rate", "answer")}
    call = '<tool_call>\n{"name": "get_capital", "arguments": {"country": "Norland"}}\n</tool_call>'
    assert reward(prompts=[ds[0]["prompt"]], completions=[[{"role": "assistant", "content": call}]], **cols) == [1.0]


def test_long_prompts_are_dropped_and_counted_duplicates_kept_once():
    tok = tiny_tokenizer()
    short = small_record()
    budget = prompt_length_fn(tok)(short.messages, short.tools)
    long = small_record("What is the capital of Norland? " * 40)
    ds, report = build_prefix_dataset([short, long, short.copy()], tok, max_prompt_tokens=budget)
    assert (report.kept, report.too_long, report.duplicates) == (1, 1, 1)
    assert "1 longer than" in str(report)
    ds2, report2 = build_prefix_dataset([short, _prefix()], tok, drop_solved=True)
    assert report2.kept == 1 and report2.solved == 1


def test_limit_keeps_a_seeded_subset_in_order():
    recs = [small_record(f"What is the capital of Norland? ({i})") for i in range(10)]
    ds, _ = build_prefix_dataset(recs, limit=4, seed=1)
    again, _ = build_prefix_dataset(recs, limit=4, seed=1)
    assert len(ds) == 4 and ds["prompt"] == again["prompt"]
    order = [int(p[0]["content"].rsplit("(", 1)[1].rstrip(")")) for p in ds["prompt"]]
    assert order == sorted(order)
    # the prefixes left out are the reserve of dynamic sampling: the other 6, once each
    _, report = build_prefix_dataset(recs, limit=4, seed=1)
    left = [int(r["prompt"][0]["content"].rsplit("(", 1)[1].rstrip(")")) for r in report.reserve]
    assert sorted(left + order) == list(range(10)) and report.to_dict()["reserved"] == 6
    assert rows_dataset(report.reserve)["prompt"] == [r["prompt"] for r in report.reserve]
