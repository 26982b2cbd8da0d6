"""Transfer evaluation of a run's start and final checkpoints (ftrl_lab.analysis.transfer)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ftrl_lab.analysis import transfer
from ftrl_lab.analysis.transfer import TransferSettings, category_mean_change, check_settings, checkpoints
from ftrl_lab.benchmarks.registry import BENCHMARKS

TOY = Path(__file__).resolve().parent.parent / "fixtures" / "rollout" / "toy_envs.jsonl"


def _items(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"id": f"{c}-{i}", "category": c, "AC": v} for c, vs in values.items() for i, v in enumerate(vs)]
    )


def test_category_mean_change_is_the_mean_of_category_means():
    start = _items({"a": [0, 0, 0, 0], "b": [1, 1]})
    final = _items({"a": [1, 1, 0, 0], "b": [1, 1]})
    r = category_mean_change(start, final, "AC", n_boot=500)
    assert r["n"] == 6 and r["categories"] == ["a", "b"]
    assert r["start"] == pytest.approx(50.0) and r["final"] == pytest.approx(75.0)
    assert r["delta"] == pytest.approx(25.0)  # (50 + 0) / 2, not the item mean 33.3
    assert r["delta_ci_low"] <= r["delta"] <= r["delta_ci_high"]
    assert r["delta_ci_low"] >= 0  # category b cannot move, a only up


def test_category_mean_change_pairs_on_id_and_category():
    start = _items({"a": [0, 1, 0]})
    final = _items({"a": [1]})  # only a-0 on both sides
    r = category_mean_change(start, final, "AC", n_boot=200)
    assert r["n"] == 1 and r["delta"] == pytest.approx(100.0)
    empty = category_mean_change(start, _items({"b": [1]}), "AC")
    assert empty["n"] == 0 and np.isnan(empty["delta"])


def _run_dir(tmp_path: Path, finished: bool = True) -> Path:
    from ftrl_lab.agent.models import tiny_model

    run = tmp_path / "run"
    run.mkdir()
    folders = {}
    for tag, seed in (("start_model", 0), ("final_model", 1)):
        model, tokenizer = tiny_model(seed=seed)
        model.save_pretrained(run / tag)
        tokenizer.save_pretrained(run / tag)
        folders[tag] = str(run / tag)
    state = {"sft": {"model": folders["start_model"]}, "eval_start": {}}
    if finished:
        state.update(selection={"model": folders["final_model"]}, eval_final={})
    (run / "state.json").write_text(json.dumps(state))
    from ftrl_lab.train.config import load_config

    (run / "config.json").write_text(json.dumps(dataclasses.asdict(load_config("quick")), default=str))
    return run


def test_checkpoints_need_a_finished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="state.json"):
        checkpoints(tmp_path)
    run = _run_dir(tmp_path, finished=False)
    with pytest.raises(ValueError, match="not finished"):
        checkpoints(run)
    state = json.loads((run / "state.json").read_text())
    state.update(selection={"model": str(run / "pruned")}, eval_final={})
    (run / "state.json").write_text(json.dumps(state))
    with pytest.raises(FileNotFoundError, match="final checkpoint .*pruned"):
        checkpoints(run)


def test_a_rerun_with_another_protocol_is_refused(tmp_path):
    check_settings(tmp_path, TransferSettings(max_turns=20))
    check_settings(tmp_path, TransferSettings(max_turns=20, ftrl_limit=40))  # limits may grow
    with pytest.raises(ValueError, match="max_turns: 20 -> 8"):
        check_settings(tmp_path, TransferSettings(max_turns=8))


def test_run_transfer_end_to_end_on_tiny_models(tmp_path):
    run = _run_dir(tmp_path)
    settings = TransferSettings(
        ftrl_data=str(TOY),
        max_turns=2,
        max_new_tokens=8,
        benchmarks=("rotbench",),
        suite_limit=1,
        humaneval=2,
        batch_size=2,
        fast_decode=False,
        bf16_prefill=False,
        bootstrap=100,
    )
    summary = transfer.run_transfer(run, settings)
    out = run / "transfer"
    table = pd.DataFrame(summary["table"])
    assert set(table["benchmark"]) == {"ftrl", "rotbench", "humaneval"}
    ftrl = table[table["benchmark"] == "ftrl"]
    assert list(ftrl["metric"]) == ["Solve-P", "Solve-R", "Solve-F1"] and set(ftrl["n"]) == {3}
    assert set(table[table["benchmark"] == "humaneval"]["n"]) == {2}
    for tag in ("start", "final"):
        assert len((out / f"run-{tag}" / "ftrl" / "transcripts.jsonl").read_text().splitlines()) == 3
        assert (out / f"run-{tag}" / "summary.csv").exists()
    assert "| ftrl | Solve-F1 | 3 |" in (out / "transfer.md").read_text()
    rows = pd.read_csv(out / "table2.csv", index_col=0)
    assert {"run-start", "run-final"} <= set(rows.index)
    before = (out / "run-start" / "ftrl" / "transcripts.jsonl").read_text()
    transfer.run_transfer(run, settings)  # resumes: nothing played again
    assert (out / "run-start" / "ftrl" / "transcripts.jsonl").read_text() == before
    copied = transfer.publish(out, tmp_path / "pub", "quick_run")
    assert {p.name for p in copied} == {"quick_run_transfer.json", "quick_run_transfer.md", "quick_run_table2.csv"}


def test_start_evaluations_are_copied_only_for_the_same_checkpoint(tmp_path):
    run = _run_dir(tmp_path)
    settings = TransferSettings(ftrl_data=str(TOY), max_turns=1, max_new_tokens=4, benchmarks=(), humaneval=0)
    settings = dataclasses.replace(settings, fast_decode=False, bf16_prefill=False, bootstrap=50)
    transfer.run_transfer(run, settings)
    other = tmp_path / "other"
    transfer.copy_start(run / "transfer", other, "control", str(run / "start_model"), settings)
    assert (other / "control-start" / "ftrl" / "transcripts.jsonl").read_text() == (
        run / "transfer" / "run-start" / "ftrl" / "transcripts.jsonl"
    ).read_text()
    with pytest.raises(ValueError, match="start checkpoint is"):
        transfer.copy_start(run / "transfer", tmp_path / "x", "c", str(run / "final_model"), settings)
    with pytest.raises(ValueError, match="other settings .*max_turns"):
        transfer.copy_start(
            run / "transfer", tmp_path / "y", "c", str(run / "start_model"), dataclasses.replace(settings, max_turns=3)
        )


def _fake_suite(folder, benchmark, rows):
    (folder / benchmark).mkdir(parents=True)
    (folder / benchmark / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.mark.parametrize("name", ["toolhop", "rotbench", "bfcl", "taubench"])
def test_every_benchmark_headline_is_compared_from_its_per_item_column(tmp_path, name):
    bench = BENCHMARKS[name]
    cats = bench.categories[:2]
    columns = [bench.item_column(m) for m in bench.headline]
    for tag, value in (("start", 0.0), ("final", 1.0)):
        rows = [{"id": f"{c}/{i}", "category": c, **dict.fromkeys(columns, value)} for c in cats for i in range(3)]
        _fake_suite(tmp_path / f"run-{tag}", name, rows)
    settings = TransferSettings(benchmarks=(name,), humaneval=0, ftrl_limit=0, bootstrap=50)
    table = transfer.transfer_table(tmp_path, settings, "run")
    assert list(table["metric"]) == list(bench.headline)
    assert set(table["delta"]) == {100.0} and set(table["n"]) == {6}
