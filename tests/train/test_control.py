"""The continued-SFT control: the wall-time stop, the budget read from an RL run, the resumable stage."""

import json
import time

import pytest
from _train_helpers import envgen_records
from transformers import TrainerControl, TrainerState

from ftrl_lab.agent.models import tiny_model
from ftrl_lab.core.executor import inprocess_executor
from ftrl_lab.train import control
from ftrl_lab.train.config import ALGORITHMS, config_from_dict
from ftrl_lab.train.control import WallTimeBudget, budget_from_run, control_budget, control_envs
from ftrl_lab.train.loop import run
from ftrl_lab.train.quick import quick_config
from ftrl_lab.train.run_state import final_policy
from ftrl_lab.train.sft import build_sft_dataset, gold_trajectories, run_sft


def test_budget_callback_stops_at_the_first_step_past_the_deadline():
    now = [0.0]
    stop = WallTimeBudget(deadline=10.0, clock=lambda: now[0])
    state, ctl = TrainerState(), TrainerControl()
    for step, t in enumerate([3.0, 9.9], start=1):
        now[0], state.global_step = t, step
        assert not stop.on_step_end(None, state, ctl).should_training_stop
    now[0], state.global_step = 10.0, 3
    assert stop.on_step_end(None, state, ctl).should_training_stop and stop.stopped_at_step == 3


def test_budget_callback_stops_a_real_trainer_on_time(tmp_path):
    model, tok = tiny_model()
    trajs = gold_trajectories(list(envgen_records())[:1], executor=inprocess_executor())
    dataset, _ = build_sft_dataset(trajs, tok, max_length=4096)
    budget = 4.0
    stop = WallTimeBudget(time.monotonic() + budget)
    t0 = time.monotonic()
    out = run_sft(
        model,
        tok,
        dataset,
        str(tmp_path),
        gradient_accumulation_steps=1,
        extra_args={"max_steps": control.MAX_STEPS},
        callbacks=[stop],
    )
    spent = time.monotonic() - t0
    steps = max(r["step"] for r in out["log_history"])
    assert stop.stopped_at_step == steps and steps > len(dataset)  # the budget, not the data, ended it
    assert budget <= spent < budget + 10  # one step past the deadline at most (plus trainer set-up)


def _fake_run(folder, iterations, done):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"rl": {"iterations": iterations}}))
    state = {"sft": {"seconds": 5}}
    state.update({f"iter_{k}": {"collect_seconds": 10.0 * k, "train_seconds": 1.5} for k in range(1, done + 1)})
    (folder / "state.json").write_text(json.dumps(state))
    return folder


def test_budget_from_sums_collect_and_train_seconds_of_a_finished_run(tmp_path):
    assert budget_from_run(_fake_run(tmp_path / "done", 2, 2)) == (10 + 1.5 + 20 + 1.5, 2)
    cfg = config_from_dict({"rl": {"algorithm": "continued_sft", "budget_from": str(tmp_path / "done")}})
    assert control_budget(cfg) == {
        "budget_seconds": 33.0,
        "budget_steps": None,
        "budget_from": str(tmp_path / "done"),
        "budget_iterations": 2,
    }
    with pytest.raises(ValueError, match="rl.budget_from: .* no finished RL iterations"):
        budget_from_run(_fake_run(tmp_path / "none", 2, 0))
    with pytest.raises(ValueError, match=r"rl.budget_from: .* finished iterations \[1\] of 2"):
        budget_from_run(_fake_run(tmp_path / "half", 2, 1))
    with pytest.raises(ValueError, match="rl.budget_from: .* no run folder"):
        budget_from_run(tmp_path / "missing")


def test_continued_sft_needs_exactly_one_budget():
    assert "continued_sft" in ALGORITHMS
    with pytest.raises(ValueError, match="rl.budget_seconds / rl.budget_from / rl.budget_steps"):
        config_from_dict({"rl": {"algorithm": "continued_sft"}}, "preset.yaml")
    with pytest.raises(ValueError, match="both set"):
        config_from_dict({"rl": {"algorithm": "continued_sft", "budget_seconds": 5, "budget_from": "x"}})
    with pytest.raises(ValueError, match="rl.budget_from and rl.budget_steps: both set"):
        config_from_dict({"rl": {"algorithm": "continued_sft", "budget_steps": 5, "budget_from": "x"}})
    for bad in (0, 2.5, "3", True):
        with pytest.raises(ValueError, match="rl.budget_steps: expected a whole number"):
            config_from_dict({"rl": {"algorithm": "continued_sft", "budget_steps": bad}})
    with pytest.raises(ValueError, match="rl.budget_seconds: must be > 0"):
        config_from_dict({"rl": {"algorithm": "continued_sft", "budget_seconds": 0}})
    assert config_from_dict({"rl": {"algorithm": "continued_sft", "budget_seconds": "1.5e2"}}).rl.budget_seconds == 150
    cfg = config_from_dict({"sft": {"n_envs": 2}})
    assert control_envs(list(envgen_records()), cfg) == list(envgen_records())[2:]
    with pytest.raises(ValueError, match="none left"):
        control_envs(list(envgen_records())[:2], cfg)


def test_a_step_budget_trains_exactly_that_many_steps_and_says_so(tmp_path):
    cfg = config_from_dict(
        {
            "rl": {"algorithm": "continued_sft", "budget_steps": 3},
            "sft": {"n_envs": 2, "gradient_accumulation_steps": 1},
        }
    )
    assert control_budget(cfg)["budget_steps"] == 3 and control_budget(cfg)["budget_seconds"] is None
    model, tok = tiny_model()
    value = control.continued_sft(model, tok, list(envgen_records()), tmp_path, cfg, use_cpu=True, bf16=False)
    assert value["steps"] == 3 and value["stopped_by"] == "budget_steps" and value["overshoot_seconds"] is None
    text = control.control_markdown(value)
    assert "budget 3 optimizer steps from `rl.budget_steps`" in text and "3 optimizer steps on about" in text


@pytest.mark.slow
def test_control_stage_restarts_after_an_interruption_and_reports_it(tmp_path, monkeypatch):
    budget = 2.0
    overrides = {"publish_dir": None, "data.ftrl_test": None, "eval.bootstrap": 50}
    cfg = quick_config(tmp_path, {**overrides, "rl.algorithm": "continued_sft", "rl.budget_seconds": budget})
    run_dir = tmp_path / "control_run"
    real = WallTimeBudget.on_step_end

    def interrupted(self, args, state, ctl, **kwargs):
        raise KeyboardInterrupt  # the machine went away mid-training

    monkeypatch.setattr(WallTimeBudget, "on_step_end", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, run_dir)
    state = json.loads((run_dir / "state.json").read_text())
    assert "eval_start" in state and "control" not in state
    monkeypatch.setattr(WallTimeBudget, "on_step_end", real)
    results = run(cfg, run_dir)
    value = results["stages"]["control"]
    assert value["restarts"] == 1 and value["stopped_by"] == "budget"
    assert value["budget_seconds"] == budget <= value["seconds"] and value["steps"] >= 1
    assert value["examples"] >= 1 and value["pool_environments"] == 4  # data.train[2:] of the 6 QUICK envs
    assert "eval_final" in results["stages"] and "test" in results["comparisons"]
    assert not list(run_dir.glob("iter_*")) and final_policy(run_dir) == run_dir / "control" / "model"
    md = (run_dir / "results.md").read_text()
    assert "Continued-SFT control" in md and "restarted from the starting checkpoint 1 time(s)" in md
    assert "continued SFT in place of RL" in md
