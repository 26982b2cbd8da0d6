"""The training pipeline: TRL config mapping, reward logging, and a tiny resumable end-to-end run."""

import json
import math
import shutil

import pytest
from _train_helpers import small_record

from ftrl_lab.agent.models import tiny_model
from ftrl_lab.core.records import stratified_subset
from ftrl_lab.train.config import config_from_dict, load_config
from ftrl_lab.train.loop import logged_reward, main, run, trl_config
from ftrl_lab.train.quick import quick_config
from ftrl_lab.train.run_state import final_policy

CALL = '<tool_call>\n{"name": "get_capital", "arguments": {"country": "Norland"}}\n</tool_call>'


def test_algorithms_map_onto_trl_options(tmp_path):
    grpo = trl_config(
        load_config("cpu-smollm2", {"mixed_precision": "no", "rl.num_generations": 8, "rl.prompts_per_step": 2}),
        tmp_path,
    )
    assert (grpo.scale_rewards, grpo.loss_type, grpo.use_cpu, grpo.bf16, grpo.use_vllm) == (
        "group",
        "dapo",
        True,
        False,
        False,
    )
    assert trl_config(load_config("cpu-smollm2", {"mixed_precision": "bf16"}), tmp_path).bf16
    assert grpo.per_device_train_batch_size == 16 and grpo.num_generations == 8 and not grpo.activation_checkpointing
    rpp = trl_config(load_config("cpu-smollm2", {"rl.algorithm": "reinforce_pp", "rl.generation_prompts": 2}), tmp_path)
    # one prompt per optimizer step, advantages normalised over a generation batch of two
    assert rpp.scale_rewards == "batch" and (rpp.gradient_accumulation_steps, rpp.steps_per_generation) == (1, 2)
    rloo = trl_config(load_config("cpu-smollm2", {"rl.algorithm": "rloo"}), tmp_path)
    assert type(rloo).__name__ == "RLOOConfig"
    micro = trl_config(
        load_config("cpu-smollm2", {"rl.prompts_per_step": 4, "rl.micro_batch_prompts": 2, "rl.num_generations": 8}),
        tmp_path,
    )
    assert (micro.per_device_train_batch_size, micro.gradient_accumulation_steps, micro.steps_per_generation) == (
        16,
        2,
        2,
    )


def test_logged_reward_scores_and_reports_parse_statistics():
    rec = small_record()
    cols = {
        "codes": [json.dumps(rec.codes)] * 3,
        "unsolved_set": [json.dumps(rec.unsolved_set)] * 3,
        "solve_rate": [0.0] * 3,
        "answer": [rec.answer] * 3,
    }
    logged = {}
    reward = logged_reward("solve_f1")
    prompts = [rec.messages] * 3
    values = reward(
        prompts=prompts,
        completions=[CALL, "<tool_call>{bad json</tool_call>", "no idea"],
        log_metric=lambda k, v: logged.__setitem__(k, v),
        **cols,
    )
    assert values == [1.0, -0.3, 0.0]
    assert logged["ftrl/parse_failure_rate"] == pytest.approx(1 / 3)
    assert logged["ftrl/calls_per_response"] == pytest.approx(1 / 3)
    assert logged["ftrl/echo_fires"] == 0.0  # training's guard is on; nothing here echoes
    assert logged["ftrl/group_reward_std"] > 0


def test_stratified_subset_spreads_over_scenarios():
    recs = [small_record(f"Q{i}?") for i in range(12)]
    for i, r in enumerate(recs):
        r.data_source = f"self/{['single_hop', 'multi_hop', 'parallel_multi_hop'][i // 4]}"
    sub = stratified_subset(recs, 6, seed=0)
    assert len(sub) == 6 and sorted(r.scenario for r in sub).count("multi_hop") == 2
    assert [r.question for r in sub] == [r.question for r in recs if r in sub]
    assert stratified_subset(recs, None) == recs


def _tiny_config(tmp_path, iterations):
    """The QUICK preset (configs/quick.yaml, as notebook 03 runs it), publishing into tmp_path/pub."""
    overrides = {"rl.iterations": iterations, "publish_dir": str(tmp_path / "pub"), "data.ftrl_test": None}
    return quick_config(tmp_path, {**overrides, "eval.bootstrap": 50, "eval.humaneval": 2})


@pytest.mark.slow
def test_tiny_end_to_end_run_resumes_into_more_iterations(tmp_path):
    cfg = _tiny_config(tmp_path, iterations=1)
    first = run(cfg)
    run_dir = tmp_path / "runs" / cfg.run_name
    assert set(first["stages"]) >= {"sft", "eval_start", "iter_1", "eval_final", "elapsed_seconds"}
    assert (run_dir / "iter_1" / "model" / "config.json").exists()
    assert final_policy(run_dir) == run_dir / "iter_1" / "model"
    # a second call with more iterations keeps the finished stages and trains on
    state = json.loads((run_dir / "state.json").read_text())
    state.pop("eval_final")
    (run_dir / "state.json").write_text(json.dumps(state))
    assert final_policy(run_dir) is None  # not finished: no final evaluation yet
    second = run(_tiny_config(tmp_path, iterations=2))
    assert second["stages"]["sft"] == first["stages"]["sft"] and "iter_2" in second["stages"]
    # QUICK selects on its validation split: the latest model and the best one stay, the best is final
    chosen = second["stages"]["selection"]["iteration"]
    assert (run_dir / "iter_2" / "model").exists() and (run_dir / "iter_1" / "model").exists() == (chosen == 1)
    assert final_policy(run_dir) == run_dir / f"iter_{chosen}" / "model"
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2] and [r["global_step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["loss"]) for r in rows)
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["metric"] for r in results["comparisons"]["test"]] == ["Solve-P", "Solve-R", "Solve-F1"]
    assert [r["metric"] for r in results["general_ability"]] == ["perplexity", "HumanEval pass@1"]
    assert results["general_ability"][1]["n"] == 2 and results["stages"]["eval_final"]["humaneval"]["n"] == 2
    assert len((run_dir / "eval" / "final_humaneval.jsonl").read_text().splitlines()) == 2
    assert "General ability: final vs RL's starting checkpoint" in (run_dir / "results.md").read_text()
    for name in ("results.md", "metrics.csv", "iterations.csv", "curves.png"):
        assert (tmp_path / "pub" / f"{cfg.run_name}_{name}").exists()
    # an ablation run reuses the starting checkpoint, its evaluation and iteration 1's prefixes
    other = _tiny_config(tmp_path, iterations=1)
    other.rl.reward = "solve_rate"
    moved = tmp_path / "moved"  # a run folder renamed after it was made still lends its start
    shutil.copytree(run_dir, moved)
    third = run(other, tmp_path / "other", reuse_start=moved)
    assert third["stages"]["sft"]["reused_from"] == str(moved)
    assert third["stages"]["sft"]["model"] == str(moved / "start_model")
    assert (tmp_path / "other" / "iter_1" / "prefixes.jsonl").read_text() == (
        run_dir / "iter_1" / "prefixes.jsonl"
    ).read_text()
    assert third["config"]["rl"]["reward"] == "solve_rate" and "test" in third["comparisons"]
    assert (tmp_path / "other" / "eval" / "start_humaneval.jsonl").read_text() == (
        run_dir / "eval" / "start_humaneval.jsonl"
    ).read_text()
    # the reward-variant ablation table, its Markdown and its figure from the two runs
    from ftrl_lab.train.loop import ablation

    table = ablation([str(run_dir), str(tmp_path / "other")], out_prefix=str(tmp_path / "abl" / "ablation"))
    assert set(table["reward"]) == {"solve_f1", "solve_rate"}
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert md.startswith("|") and "solve_rate" in md
    assert list((tmp_path / "abl").glob("ablation_*.png"))


@pytest.mark.slow
def test_tiny_run_selects_on_validation_and_evaluates_the_heldout_split(tmp_path):
    work = tmp_path / "work"
    cfg = _tiny_config(work, iterations=2)
    cfg.data.heldout = cfg.data.validation  # plumbing: any envgen records other than the test split
    cfg.eval.humaneval = None
    results = run(cfg, tmp_path / "run")
    stages = results["stages"]
    assert {"val_start", "val_1", "val_2", "selection"} <= set(stages)
    scores = {k: stages[f"val_{k}"]["solve_f1"] for k in (1, 2)}
    best = 1 if scores[1] >= scores[2] else 2
    assert stages["selection"]["iteration"] == best and stages["selection"]["rule"] == "best validation Solve-F1"
    assert final_policy(tmp_path / "run") == tmp_path / "run" / f"iter_{best}" / "model"
    assert "heldout" in results["comparisons"] and "plan_fit" in stages["eval_final"]["heldout"]
    assert stages["sft"]["loss_curve"] and stages["sft"]["complexity"] == ["0"]
    md = (tmp_path / "run" / "results.md").read_text()
    assert "Validation split (checkpoint selection: best validation Solve-F1)" in md
    assert "held-out split (another world)" in md and "against the gold plans" in md and "Warm start: SFT on" in md
    assert (tmp_path / "run" / "sft_loss.png").exists()


def test_cli_rejects_bad_overrides():
    with pytest.raises(SystemExit):
        main(["--set", "no-equals-sign"])
    with pytest.raises(ValueError, match="unknown key"):
        main(["--set", "rl.nope=1"])


def test_lora_restricted_to_lower_third_mlp_moves_only_those_weights(tmp_path, monkeypatch):
    """rl.lora with target_modules/layers_to_transform trains exactly that part (seen by the change map)."""
    import ftrl_lab.train.loop as train
    from ftrl_lab.analysis.change_map import change_map
    from ftrl_lab.train.data import build_prefix_dataset

    model, tok = tiny_model()  # 2 layers: the lower third is layer 0
    train.save_model(model, tok, tmp_path / "before")
    cfg = config_from_dict(
        {
            "name": "tiny",
            "device": "cpu",
            "rl": {
                "lora": {"r": 4, "lora_alpha": 8, "target_modules": "mlp", "layers_to_transform": "lower_third"},
                "num_generations": 4,
                "prompts_per_step": 2,
                "max_new_tokens": 8,
                "learning_rate": 1e-2,
                "save_steps": 0,
            },
        },
        "tiny",
    )
    monkeypatch.setattr(
        train,
        "logged_reward",
        lambda variant, *settings: lambda completions, **kw: [float(len(str(c))) for c in completions],
    )  # any in-group variance gives a gradient
    dataset, _ = build_prefix_dataset(
        [small_record(), small_record("What is the capital of Sudmark?", "Brenholt")], tok, max_prompt_tokens=4096
    )
    trainer = train.make_trainer(model, tok, dataset, cfg, tmp_path / "trainer")
    trainer.train()
    train.save_model(trainer.model, tok, tmp_path / "after")
    df = change_map(tmp_path / "before", tmp_path / "after", progress=False)
    assert set(df.loc[df["diff_norm"] > 0, "name"]) == {
        f"model.layers.0.mlp.{m}.weight" for m in ("gate_proj", "up_proj", "down_proj")
    }
