"""verl Parquet rows and the compute_score reward module."""

import json

import pyarrow.parquet as pq
from _train_helpers import small_record

from ftrl_lab.agent.models import tiny_tokenizer
from ftrl_lab.train.verl_export import REWARD_MODULE, export_verl, main, verl_overrides
from ftrl_lab.train.verl_reward import compute_score

CALL = '<tool_call>\n{"name": "get_capital", "arguments": {"country": "Norland"}}\n</tool_call>'


def test_rows_carry_verl_and_ftrl_fields(tmp_path):
    path = export_verl([small_record()], tmp_path / "train.parquet", variant="solve_precision")
    row = pq.read_table(path).to_pylist()[0]
    assert row["reward_model"]["style"] == "rule"
    assert json.loads(row["reward_model"]["ground_truth"]) == {"get_capital": ["Oslavik"]}
    assert row["extra_info"]["variant"] == "solve_precision" and row["ability"] == "tool_use"
    assert json.loads(row["tools"])[0]["function"]["name"] == "get_capital"
    assert row["prompt"][0]["role"] == "user"


def test_tools_rendered_into_the_system_message_give_the_same_prompt(tmp_path):
    tok = tiny_tokenizer()
    rec = small_record()
    row = pq.read_table(export_verl([rec], tmp_path / "t.parquet", tokenizer=tok)).to_pylist()[0]
    messages = [{k: v for k, v in m.items() if v is not None} for m in row["prompt"]]
    assert messages[0]["role"] == "system" and "get_capital" in messages[0]["content"]
    with_tools = tok.apply_chat_template(rec.messages, tools=rec.tools, tokenize=False, add_generation_prompt=True)
    without = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert with_tools == without


def test_compute_score_follows_the_ftrl_reward(tmp_path):
    row = pq.read_table(export_verl([small_record()], tmp_path / "t.parquet")).to_pylist()[0]
    gt, extra = row["reward_model"]["ground_truth"], row["extra_info"]
    assert compute_score(row["data_source"], CALL, gt, extra) == 1.0  # 2q/(p+1) = 2/2
    assert compute_score(row["data_source"], "", gt, extra) == -0.5  # empty response
    assert compute_score(row["data_source"], CALL + "\n" + CALL, gt, extra) == 2 / 3


def test_cli_and_overrides(tmp_path, capsys):
    from ftrl_lab.core.records import save_records

    src = save_records([small_record()], tmp_path / "p.jsonl")
    assert main([str(src), str(tmp_path / "o.parquet")]) == 0
    assert "custom_reward_function.name=compute_score" in capsys.readouterr().out
    assert f"custom_reward_function.path={REWARD_MODULE}" in verl_overrides("x.parquet")
