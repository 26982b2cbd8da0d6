"""Transplants take exactly the chosen subset from the trained model; evaluation resumes; recovery math."""

import json

import pandas as pd
import pytest
import torch
from _pair_helpers import N_LAYERS, known_pair, layout, lora_adapter
from safetensors import safe_open

from ftrl_lab.analysis import transplant
from ftrl_lab.analysis.change_map import synthetic_pair
from ftrl_lab.analysis.checkpoint_io import Checkpoint
from ftrl_lab.analysis.transplant import SUBSETS, build, recovery_table, select
from ftrl_lab.core.records import append_jsonl

NAMES = list(layout())


def names_where(pred):
    return [n for n in NAMES if pred(n)]


def layer(n):
    return int(n.split(".")[2]) if ".layers." in n else None


def test_named_subsets_select_the_right_tensors():
    mlp = {"gate_proj", "up_proj", "down_proj"}
    assert select("lower_third_mlp", NAMES, N_LAYERS) == names_where(
        lambda n: layer(n) in (0, 1) and n.split(".")[-2] in mlp
    )
    assert select("upper_third_mlp", NAMES, N_LAYERS) == names_where(
        lambda n: layer(n) in (4, 5) and n.split(".")[-2] in mlp
    )
    assert select("all_attention", NAMES, N_LAYERS) == names_where(lambda n: ".self_attn." in n)
    assert len(select("all_mlp", NAMES, N_LAYERS)) == 3 * N_LAYERS
    assert select("norms", NAMES, N_LAYERS) == names_where(lambda n: "norm" in n)  # incl. the final norm
    assert select("everything", NAMES, N_LAYERS) == NAMES
    assert select("q_proj,down_proj@2-3", NAMES, N_LAYERS) == names_where(
        lambda n: layer(n) in (2, 3) and n.split(".")[-2] in ("q_proj", "down_proj")
    )
    assert select("norm@upper", NAMES, N_LAYERS) == names_where(lambda n: layer(n) in (4, 5) and "norm" in n)
    with pytest.raises(ValueError, match="unknown group or module \\['mpl'\\]"):
        select("mpl@lower", NAMES, N_LAYERS)
    with pytest.raises(ValueError, match="layers 'bottom' is not"):
        select("mlp@bottom", NAMES, N_LAYERS)


@pytest.mark.parametrize("subset", ["lower_third_mlp", "all_attention", "norm@upper"])
def test_build_takes_exactly_the_subset(tmp_path, subset):
    base_dir, trained_dir, base, delta = known_pair(tmp_path, shards=2)
    (trained_dir / "tokenizer_config.json").write_text("{}")
    out = build(base_dir, trained_dir, subset, tmp_path / "t", block=24)
    chosen = set(select(subset, NAMES, N_LAYERS))
    ck = Checkpoint(out)
    assert len(ck.files) == 2 and (out / "model.safetensors.index.json").exists()
    for name in NAMES:
        with safe_open(str(ck.tensors[name].file), "pt") as f:
            got = f.get_tensor(name)
        want = base[name] + delta[name] if name in chosen else base[name]
        assert torch.equal(got, want), name
    meta = json.loads((out / "transplant.json").read_text())
    assert set(meta["tensors"]) == chosen and meta["params"] == sum(base[n].numel() for n in chosen)
    assert (out / "config.json").exists() and (out / "tokenizer_config.json").exists()
    assert not (tmp_path / "t.tmp").exists()


def test_build_from_a_lora_adapter_adds_only_the_subsets_delta(tmp_path):
    base_dir, _, base, _ = known_pair(tmp_path)
    targets = ["model.layers.0.mlp.up_proj.weight", "model.layers.5.mlp.up_proj.weight"]
    deltas = lora_adapter(tmp_path / "adapter", base, targets, r=2, alpha=4)
    out = build(base_dir, tmp_path / "adapter", "lower_third_mlp", tmp_path / "t")
    ck = Checkpoint(out)
    assert torch.equal(ck.read(targets[0]), (base[targets[0]].double() + deltas[targets[0]]).float())
    assert torch.equal(ck.read(targets[1]), base[targets[1]])  # upper third: not transplanted
    assert not (out / "adapter_config.json").exists()


def fake_eval(out, name, f1s, params=0):
    """A finished evaluation of one model: transcripts + a results row."""
    rows = [{"key": f"k{i}", "solve_f1": v} for i, v in enumerate(f1s)]
    append_jsonl(out / "eval" / name / "transcripts.jsonl", rows)
    append_jsonl(
        out / "results.jsonl", [{"name": name, "spec": name, "tensors": 1, "params": params, "total_params": 100}]
    )


def test_recovery_is_the_share_of_the_gain(tmp_path):
    fake_eval(tmp_path, "base", [0.0, 0.0, 0.5, 0.5])
    fake_eval(tmp_path, "trained", [1.0, 0.5, 1.0, 0.5], params=100)
    fake_eval(tmp_path, "lower_third_mlp", [0.5, 0.25, 0.75, 0.5], params=20)
    fake_eval(tmp_path, "all_attention", [0.0, 0.0, 0.5, 0.5], params=30)
    table = recovery_table(tmp_path).set_index("subset")
    assert table.loc["trained", "recovery"] == 1.0 and table.loc["trained", "gain"] == pytest.approx(50.0)
    assert table.loc["lower_third_mlp", "recovery"] == pytest.approx(0.5)
    assert table.loc["all_attention", "recovery"] == 0.0 and table.loc["all_attention", "param_share"] == 0.3
    lo, hi = table.loc["lower_third_mlp", ["ci_low", "ci_high"]]
    assert lo <= 0.5 <= hi
    assert table.loc["base", "solve_f1"] == 25.0 and table.loc["trained", "n"] == 4


def test_no_gain_gives_nan_recovery_and_a_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    fake_eval(tmp_path, "base", [0.0, 0.0])
    fake_eval(tmp_path, "trained", [0.0, 0.0])
    fake_eval(tmp_path, "all_mlp", [0.0, 0.0])
    table = recovery_table(tmp_path)
    assert table["recovery"].isna().all()
    ax = transplant.plot_recovery(table)
    assert any("no solve-f1 gain to recover" in t.get_text().lower() for t in ax.texts)


def test_recovery_needs_the_references(tmp_path):
    fake_eval(tmp_path, "base", [0.0])
    with pytest.raises(FileNotFoundError, match="base and trained evaluations"):
        recovery_table(tmp_path)


def test_run_transplant_end_to_end_and_resumes(tmp_path, toy, monkeypatch):
    base_dir, trained_dir = synthetic_pair(tmp_path / "pair", n_layers=3)
    settings = {"eval.max_turns": 1, "eval.max_new_tokens": 4, "eval.batch_size": 2, "dtype": "fp32", "device": "cpu"}
    table = transplant.run_transplant(
        base_dir, trained_dir, toy[:2], tmp_path / "out", subsets=["lower_third_mlp"], eval_overrides=settings
    )
    assert list(table["subset"]) == ["base", "trained", "lower_third_mlp"] and set(table["n"]) == {2}
    rows = transplant.load_results(tmp_path / "out")
    assert rows[2]["tensors"] == 3 and rows[2]["settings"]["max_new_tokens"] == 4 and rows[2]["complete"]
    assert not (tmp_path / "out" / "models" / "lower_third_mlp").exists()  # deleted after its evaluation

    import ftrl_lab.train.loop as train

    monkeypatch.setattr(train, "evaluate_model", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-ran")))
    again = transplant.run_transplant(
        base_dir, trained_dir, toy[:2], tmp_path / "out", subsets=["lower_third_mlp"], eval_overrides=settings
    )
    pd.testing.assert_frame_equal(table, again)
    monkeypatch.undo()
    more = transplant.run_transplant(
        base_dir, trained_dir, toy[:3], tmp_path / "out", subsets=["lower_third_mlp"], eval_overrides=settings
    )  # a larger rerun evaluates the new record
    assert set(more["n"]) == {3} and [r["n"] for r in transplant.load_results(tmp_path / "out")] == [3, 3, 3]
    assert set(SUBSETS) >= {"lower_third_mlp", "upper_third_mlp", "all_attention", "all_mlp", "norms", "everything"}
