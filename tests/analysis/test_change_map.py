"""The change map recovers known deltas exactly (full and LoRA), streams, resumes and aggregates."""

import json
import weakref

import numpy as np
import pandas as pd
import pytest
import torch
from _pair_helpers import N_LAYERS, known_pair, lora_adapter

from ftrl_lab.agent.anatomy import layer_thirds, module_group, parse_name
from ftrl_lab.analysis import change_map as analysis
from ftrl_lab.analysis.change_map import aggregate, change_map, lower_mlp_verdict, module_table, thirds_table
from ftrl_lab.analysis.checkpoint_io import Checkpoint


def rel(delta: list[torch.Tensor], base: list[torch.Tensor]) -> float:
    d = sum(float(x.double().square().sum()) for x in delta)
    b = sum(float(x.double().square().sum()) for x in base)
    return float(np.sqrt(d / b))


def test_names_groups_and_thirds():
    assert parse_name("model.layers.3.mlp.down_proj.weight") == (3, "down_proj", "weight")
    assert parse_name("model.layers.12.self_attn.q_proj.bias") == (12, "q_proj", "bias")
    assert parse_name("model.embed_tokens.weight") == (None, "embed_tokens", "weight")
    assert parse_name("lm_head.weight") == (None, "lm_head", "weight")
    names = (
        "model.layers.0.self_attn.k_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.self_attn.q_norm.weight",
        "model.norm.weight",
        "lm_head.weight",
    )
    assert [module_group(n) for n in names] == ["attention", "mlp", "norm", "norm", "norm", "embedding"]
    assert layer_thirds(30) == {"lower": list(range(10)), "middle": list(range(10, 20)), "upper": list(range(20, 30))}
    assert [len(v) for v in layer_thirds(31).values()] == [11, 10, 10]


def test_full_pair_recovers_every_known_delta_exactly(tmp_path):
    base_dir, trained_dir, base, delta = known_pair(tmp_path, shards=2)
    df = change_map(base_dir, trained_dir, progress=False, block=37)
    assert len(df) == len(base) and set(df["kind"]) == {"full"}
    for row in df.itertuples():
        assert row.rel_change == pytest.approx(rel([delta[row.name]], [base[row.name]]), rel=1e-12, abs=0), row.name
        assert row.mean_abs_change == pytest.approx(float(delta[row.name].double().abs().mean()), rel=1e-12)
        assert row.max_abs_change == float(delta[row.name].abs().max())
    table = module_table(df)
    assert len(table) == N_LAYERS * 9 + 3  # 9 modules per layer; embeddings, final norm, lm_head
    for row in table.itertuples():
        names = [n for n in base if parse_name(n)[:2] == (None if pd.isna(row.layer) else row.layer, row.module)]
        expected = rel([delta[n] for n in names], [base[n] for n in names])  # q_proj: weight + bias together
        assert row.rel_change == pytest.approx(expected, rel=1e-12), (row.layer, row.module)
    q0 = table[(table["layer"] == 0) & (table["module"] == "q_proj")].iloc[0]
    assert q0["numel"] == 8 * 8 + 8


def test_lora_pair_recovers_the_merged_delta_exactly(tmp_path):
    base_dir, _, base, _ = known_pair(tmp_path)
    targets = [f"model.layers.{i}.mlp.{m}.weight" for i in (0, 1) for m in ("gate_proj", "down_proj")]
    deltas = lora_adapter(tmp_path / "adapter", base, targets, r=2, alpha=4)
    df = change_map(base_dir, tmp_path / "adapter", progress=False, block=20)
    assert set(df["kind"]) == {"lora"}
    for row in df.itertuples():
        if row.name in deltas:
            assert row.rel_change == pytest.approx(rel([deltas[row.name]], [base[row.name]]), rel=1e-12)
        else:
            assert row.diff_norm == 0 and row.rel_change == 0, row.name
    thirds = thirds_table(df).set_index(["third", "group"])
    assert thirds.loc[("lower", "mlp"), "share_of_change"] == pytest.approx(1.0)
    assert thirds.loc[("upper", "attention"), "rel_change"] == 0


def test_streaming_never_holds_whole_models(tmp_path, monkeypatch):
    """At most a few row blocks are alive at once, never a whole tensor of the larger ones."""
    base_dir, trained_dir, base, _ = known_pair(tmp_path)
    live, peak = [0], [0]
    original = Checkpoint.read

    def tracked(self, name, start=0, stop=None):
        t = original(self, name, start, stop)
        live[0] += t.numel()
        peak[0] = max(peak[0], live[0])
        weakref.finalize(t, lambda n=t.numel(): live.__setitem__(0, live[0] - n))  # noqa: B008
        return t

    monkeypatch.setattr(Checkpoint, "read", tracked)
    block = 16
    change_map(base_dir, trained_dir, progress=False, block=block)
    assert 0 < peak[0] <= 2 * block  # one block of the base + the same rows of the trained model
    assert peak[0] < max(t.numel() for t in base.values()) < sum(t.numel() for t in base.values())


def test_rerun_resumes_from_tensors_jsonl(tmp_path, monkeypatch):
    base_dir, trained_dir, base, _ = known_pair(tmp_path)
    full = change_map(base_dir, trained_dir, out=tmp_path / "out", progress=False)
    lines = (tmp_path / "out" / "tensors.jsonl").read_text().splitlines()
    assert len(lines) == len(base)
    (tmp_path / "out" / "tensors.jsonl").write_text("\n".join(lines[:10]) + "\n")
    read_names = []
    original = Checkpoint.read
    monkeypatch.setattr(Checkpoint, "read", lambda self, n, *a: read_names.append(n) or original(self, n, *a))
    again = change_map(base_dir, trained_dir, out=tmp_path / "out", progress=False)
    assert not {json.loads(line)["name"] for line in lines[:10]} & set(read_names)
    pd.testing.assert_frame_equal(full, again)


def test_aggregate_is_exact_and_per_run(tmp_path):
    base_dir, trained_dir, base, delta = known_pair(tmp_path)
    df = change_map(base_dir, trained_dir, progress=False)
    lower_mlp = [n for n in base if module_group(n) == "mlp" and parse_name(n)[0] in layer_thirds(N_LAYERS)["lower"]]
    thirds = thirds_table(df).set_index(["third", "group"])
    assert thirds.loc[("lower", "mlp"), "rel_change"] == pytest.approx(
        rel([delta[n] for n in lower_mlp], [base[n] for n in lower_mlp]), rel=1e-12
    )
    assert thirds["share_of_change"].sum() == pytest.approx(1.0)
    two = pd.concat([df.assign(run="a"), df.assign(run="b")])
    per_run = aggregate(two, ("group",))
    assert len(per_run) == 2 * df["group"].nunique()
    assert per_run.groupby("run")["share_of_change"].sum().tolist() == pytest.approx([1.0, 1.0])


def test_figures_and_tables_are_written(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    base_dir, trained_dir, _, _ = known_pair(tmp_path)
    df = change_map(base_dir, trained_dir, progress=False)
    grid, groups = analysis.layer_module_grid(df, "rel_change")
    assert grid.shape == (N_LAYERS, 9) and list(grid.index) == list(range(N_LAYERS - 1, -1, -1))
    assert list(grid.columns[:3]) == ["q_proj", "k_proj", "v_proj"] and groups["down_proj"] == "mlp"
    paths = analysis.save_change_map(df, tmp_path / "out", title="known pair")
    assert all(paths[k].stat().st_size > 5000 for k in ("heatmap", "depth"))
    assert len(pd.read_csv(paths["modules"])) == N_LAYERS * 9 + 3 and len(pd.read_csv(paths["tensors"])) == len(df)
    fig = analysis.plot_compare({"a": df, "b": df}, modules=["gate_proj", "up_proj", "down_proj"])
    assert len(fig.axes) == 4  # two heatmaps, two colour bars


def test_cli_writes_the_change_map(tmp_path):
    base_dir, trained_dir, _, _ = known_pair(tmp_path)
    from ftrl_lab.analysis.__main__ import main

    assert main(["change-map", str(base_dir), str(trained_dir), "--out", str(tmp_path / "cm")]) == 0
    assert (tmp_path / "cm" / "param_change_heatmap.png").exists()
    assert len(pd.read_csv(tmp_path / "cm" / "thirds.csv")) == 9


def test_synthetic_pair_has_the_documented_deltas(tmp_path):
    base_dir, trained_dir = analysis.synthetic_pair(tmp_path, n_layers=6)
    thirds = thirds_table(change_map(base_dir, trained_dir, progress=False)).set_index(["third", "group"])
    assert thirds.loc[("lower", "mlp"), "rel_change"] == pytest.approx(0.05, rel=1e-3)
    assert thirds.loc[("upper", "attention"), "rel_change"] == pytest.approx(0.005, rel=1e-3)


def test_missing_checkpoints_are_named(tmp_path):
    base_dir, _, _, _ = known_pair(tmp_path)
    with pytest.raises(
        FileNotFoundError, match="nowhere/model: not a local model folder and not in the Hugging Face cache"
    ):
        change_map(base_dir, "nowhere/model", progress=False)


@pytest.mark.parametrize(
    "lower, concentrated, words",
    [(2.0, True, "concentrated"), (1.1, False, "by only 10.0%"), (0.9, False, "not largest")],
)
def test_lower_mlp_verdict_needs_a_margin(lower, concentrated, words):
    thirds = pd.DataFrame(
        {
            "third": ["lower", "middle", "upper", "lower"],
            "group": ["mlp", "mlp", "mlp", "attention"],
            "rel_change": [lower, 1.0, 0.5, 9.0],
        }
    )
    verdict = lower_mlp_verdict(thirds)
    assert verdict["concentrated"] is concentrated
    assert verdict["ratio"] == pytest.approx(lower)
    assert words in verdict["text"]


def test_restricted_runs_and_findings(tmp_path):
    from ftrl_lab.analysis.change_map import findings, restricted_runs

    def write(name, lora, delta):
        f1 = {
            "metric": "Solve-F1",
            "n": 200,
            "start": 20.0,
            "final": 20.0 + delta,
            "delta": delta,
            "delta_ci_low": delta - 1,
            "delta_ci_high": delta + 1,
        }
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(
            json.dumps({"config": {"rl": {"lora": lora}}, "comparisons": {"test": [f1]}})
        )

    write("full", None, 28.0)
    write("lower", {"target_modules": "mlp", "layers_to_transform": "lower_third"}, 0.5)
    (tmp_path / "unfinished").mkdir()
    runs = restricted_runs(tmp_path)
    assert list(runs["lora"]) == ["full fine-tuning", "mlp @ lower_third"] and list(runs["gain"]) == [28.0, 0.5]
    recovery = pd.DataFrame(
        [
            {"subset": "base", "n": 40, "gain": 0.0, "recovery": 0.0, "ci_low": 0.0, "ci_high": 0.0},
            {"subset": "trained", "n": 40, "gain": 25.0, "recovery": 1.0, "ci_low": 1.0, "ci_high": 1.0},
            {"subset": "lower_third_mlp", "n": 40, "gain": 5.0, "recovery": 0.2, "ci_low": 0.07, "ci_high": 0.41},
            {"subset": "middle_third_mlp", "n": 40, "gain": 20.0, "recovery": 0.8, "ci_low": 0.57, "ci_high": 1.13},
            {"subset": "upper_third_mlp", "n": 40, "gain": 11.0, "recovery": 0.46, "ci_low": 0.25, "ci_high": 0.77},
        ]
    )
    text = findings({"text": "spread evenly"}, recovery, runs)
    assert "the change is spread evenly." in text
    assert "recover lower 20% [7%, 41%], middle 80% [57%, 113%], upper 46% [25%, 77%]" in text
    # the middle third leads, but its interval overlaps the upper third's: no ordering is claimed
    assert "the intervals of the middle and upper thirds overlap, so no third is shown to carry more" in text
    assert "the most is" not in text
    assert "mlp @ lower_third: +0.5 [-0.5, +1.5] (full fine-tuning: up to +28.0)" in text
    middle = recovery["subset"] == "middle_third_mlp"
    recovery.loc[middle, "ci_low"] = 0.9  # now above every other third's interval
    clear = findings({"text": "x"}, recovery)
    assert (
        "the most is the middle third, its interval above the others', not the lower third the paper points to" in clear
    )
    lower = recovery["subset"] == "lower_third_mlp"
    recovery.loc[lower, ["recovery", "ci_low", "ci_high"]] = [0.9, 0.85, 1.0]
    recovery.loc[middle, ["recovery", "ci_low", "ci_high"]] = [0.3, 0.1, 0.5]
    assert "the most is the lower third, its interval above the others', as the paper's claim predicts" in findings(
        {"text": "x"}, recovery
    )
    partial = findings({"text": "x"}, recovery[~middle])
    assert "recover lower 90% [85%, 100%], upper 46% [25%, 77%] of it; the most is the lower third" in partial
    assert "no gain to attribute" in findings({"text": "x"}, recovery[~recovery["subset"].str.endswith("_mlp")])


def test_finished_pairs_of_training_runs(tmp_path):
    from ftrl_lab.analysis.change_map import finished_pairs

    def run(name, state, config=None):
        d = tmp_path / "runs" / name
        (d / "iter_2" / "model").mkdir(parents=True)
        (d / "state.json").write_text(json.dumps(state))
        (d / "config.json").write_text(json.dumps(config or {"model": "default"}))
        return d

    (tmp_path / "runs" / "main" / "start_model").mkdir(parents=True)
    main = run("main", {"sft": {"model": "runs/main/start_model"}, "iter_1": {}, "iter_2": {}, "eval_final": {}})
    variant = run(
        "variant",
        {
            "sft": {"model": "runs/main/start_model", "reused_from": "runs/main"},
            "iter_1": {},
            "iter_2": {},
            "eval_final": {},
        },
    )
    run("unfinished", {"iter_1": {}})  # no final evaluation yet: no RL pair
    pairs = finished_pairs(tmp_path / "runs", root=tmp_path)
    start = str(tmp_path / "runs/main/start_model")
    assert pairs == {
        "main: RL": (start, str(main / "iter_2" / "model")),
        "main: SFT warm start": ("default", start),
        "variant: RL": (start, str(variant / "iter_2" / "model")),
    }
