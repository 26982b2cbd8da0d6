"""The study runner: plan, pooled-seed statistics, findings that never overclaim, a tiny resumable study."""

import json

import pandas as pd
import pytest

from ftrl_lab.train.config import config_from_dict, load_config
from ftrl_lab.train.loop import main, run
from ftrl_lab.train.quick import quick_config
from ftrl_lab.train.study import plan_runs, run_config, run_study, settings_changes, study_findings, study_table


def test_plan_runs_the_control_after_the_grpo_run_it_is_budgeted_by(tmp_path):
    runs = plan_runs([0, 1], ["continued_sft", "grpo"], tmp_path)
    assert [(r.seed, r.arm) for r in runs] == [(0, "grpo"), (0, "continued_sft"), (1, "grpo"), (1, "continued_sft")]
    assert runs[0].folder == tmp_path / "seed0_grpo"


def test_settings_changes_ignore_threads_and_the_study_section_only():
    old = {"threads": None, "study": {"seeds": [0]}, "rl": {"learning_rate": 2e-5, "threads": 1}}
    new = {"threads": 1, "study": {"seeds": [0, 1]}, "rl": {"learning_rate": 1e-5, "threads": 1}}
    assert settings_changes(old, new) == ["rl.learning_rate: 2e-05 -> 1e-05"]


def test_study_section_is_checked():
    assert config_from_dict({"study": {"seeds": [3], "arms": ["rloo"]}}).study.seeds == [3]
    with pytest.raises(ValueError, match="study.arms: unknown"):
        config_from_dict({"study": {"arms": ["ppo"]}})
    with pytest.raises(ValueError, match="add grpo"):
        config_from_dict({"study": {"arms": ["reinforce_pp", "continued_sft"]}})
    with pytest.raises(ValueError, match="study.seeds: repeated"):
        config_from_dict({"study": {"seeds": [1, 1]}})
    with pytest.raises(SystemExit):
        main(["study", "--seeds", "zero,one"])


def test_run_config_applies_the_arms_overrides(tmp_path):
    base = load_config("cpu-smollm2")
    runs = plan_runs([0], ["grpo", "reinforce_pp", "continued_sft"], tmp_path)
    cfgs = {r.arm: run_config(base, r, runs, {}) for r in runs}
    assert cfgs["reinforce_pp"].rl.generation_prompts == 2 and cfgs["reinforce_pp"].rl.algorithm == "reinforce_pp"
    assert cfgs["grpo"].rl.generation_prompts is None and cfgs["continued_sft"].rl.generation_prompts is None
    assert cfgs["continued_sft"].rl.budget_from == str(tmp_path / "seed0_grpo")


def _episodes(values):
    return pd.DataFrame(
        {
            "key": [f"e{i}" for i in range(len(values))],
            "solve_precision": values,
            "solve_rate": values,
            "solve_f1": values,
        }
    )


def test_study_table_pools_seeds_per_environment_and_keeps_the_per_seed_values():
    start = {(s, "test"): _episodes([0.0] * 4) for s in (0, 1)}  # one shared start
    finals = {
        ("grpo", 0, "test"): _episodes([1.0] * 4),
        ("grpo", 1, "test"): _episodes([0.0] * 4),
        ("continued_sft", 0, "test"): _episodes([0.5] * 4),  # seed 1 of the control not finished
    }
    table = study_table(start, finals, ["grpo", "continued_sft"], [0, 1], n_boot=200)
    f1 = table[table["metric"] == "Solve-F1"].set_index(["a", "b"])
    grpo = f1.loc[("grpo", "start")]
    assert (grpo["n_seeds"], grpo["n_envs"], grpo["a_mean"], grpo["delta"]) == (2, 4, 50.0, 50.0)
    # every environment averages 0.5 over the seeds: no environment-to-environment spread, the
    # seed-to-seed spread is in the std and min-max
    assert (grpo["ci_low"], grpo["ci_high"]) == (50.0, 50.0)
    assert grpo["a_std"] == pytest.approx(70.71, abs=0.01) and (grpo["a_min"], grpo["a_max"]) == (0.0, 100.0)
    assert grpo["per_seed"] == {"0": {"a": 100.0, "b": 0.0, "delta": 100.0}, "1": {"a": 0.0, "b": 0.0, "delta": 0.0}}
    contrast = f1.loc[("grpo", "continued_sft")]
    assert (contrast["seeds"], contrast["delta"]) == ("0", 50.0)  # only the seed both arms finished
    assert ("grpo", "reinforce_pp") not in f1.index


def test_study_table_pairs_each_seed_with_its_own_start():
    start = {(0, "test"): _episodes([0.0] * 4), (1, "test"): _episodes([0.5] * 4)}  # per-seed warm starts
    finals = {("grpo", 0, "test"): _episodes([0.25] * 4), ("grpo", 1, "test"): _episodes([0.75] * 4)}
    f1 = study_table(start, finals, ["grpo"], [0, 1], n_boot=100)
    grpo = f1[f1["metric"] == "Solve-F1"].iloc[0]
    assert (grpo["b_mean"], grpo["a_mean"], grpo["delta"], grpo["delta_std"]) == (25.0, 50.0, 25.0, 0.0)
    assert grpo["per_seed"]["1"] == {"a": 75.0, "b": 50.0, "delta": 25.0}
    # a seed whose start evaluation is missing is left out rather than compared with another seed's
    del start[(1, "test")]
    assert study_table(start, finals, ["grpo"], [0, 1], n_boot=100)["seeds"].unique().tolist() == ["0"]


def _row(a, b, delta, lo, hi, n_seeds=3, n_envs=200, dmin=None, dmax=None):
    return {
        "eval_set": "test",
        "metric": "Solve-F1",
        "a": a,
        "b": b,
        "seeds": "0,1,2",
        "n_seeds": n_seeds,
        "n_envs": n_envs,
        "a_mean": 40 + delta,
        "b_mean": 40.0,
        "delta": delta,
        "ci_low": lo,
        "ci_high": hi,
        "a_std": 1.0,
        "a_min": 39 + delta,
        "a_max": 41 + delta,
        "delta_std": 1.0,
        "delta_min": delta - 1 if dmin is None else dmin,
        "delta_max": delta + 1 if dmax is None else dmax,
        "per_seed": {},
    }


def test_findings_call_overlapping_intervals_a_tie_and_a_ci_with_zero_no_evidence():
    tie = pd.DataFrame(
        [
            _row("grpo", "start", 6.0, 2.0, 10.0),
            _row("continued_sft", "start", 4.0, 0.5, 7.5),
            _row("grpo", "continued_sft", 2.0, -1.5, 5.5),
        ]
    )
    text = study_findings(tie)
    assert "a tie, the interval of grpo overlaps that of continued_sft" in text
    assert "no evidence of a difference from continued_sft (the interval includes 0)" in text
    assert "grpo +6.0 [+2.0, +10.0] (seeds 45.0-47.0): above the start" in text
    assert "Plumbing" not in text and "leads" not in text
    assert "the seeds share one warm start" in text
    assert "share one warm start" not in study_findings(tie, shared_start=False)


def test_findings_state_a_clear_difference_and_label_a_plumbing_check():
    clear = pd.DataFrame(
        [
            _row("grpo", "start", 20.0, 16.0, 24.0),
            _row("continued_sft", "start", 1.0, -2.0, 4.0),
            _row("grpo", "continued_sft", 19.0, 15.0, 23.0),
            _row("grpo", "reinforce_pp", 3.0, 1.0, 5.0, dmin=-2.0, dmax=6.0),
        ]
    )
    text = study_findings(clear)
    assert "grpo leads, its interval lies above every other arm's" in text
    assert "continued_sft +1.0 [-2.0, +4.0] (seeds 40.0-42.0): no evidence of a difference from the start" in text
    assert "+19.0 [+15.0, +23.0]: above continued_sft." in text
    assert "above reinforce_pp, but the seeds disagree in sign (-2.0 to +6.0): not a consistent difference" in text
    plumbing = study_findings(clear.assign(n_seeds=1, n_envs=2), plumbing="the QUICK preset")
    assert plumbing.startswith("- **Plumbing check** (the QUICK preset)")
    assert "one seed" in plumbing and "only 2 environments" in plumbing
    assert study_findings(clear.iloc[:0]).endswith("No finished run to read yet.")


def _counting_runner():
    """The loop's ``run``, recording (run folder, reused start folder) of every call."""
    calls = []

    def counted_run(cfg, run_dir, reuse_start=None):
        calls.append((run_dir.name, reuse_start and reuse_start.name))
        return run(cfg, run_dir, reuse_start=reuse_start)

    return calls, counted_run


def test_tiny_study_writes_per_seed_rows_and_cis_and_a_rerun_does_no_work(tmp_path):
    work = tmp_path / "work"
    overrides = {
        "rl.iterations": 1,
        "publish_dir": str(tmp_path / "pub"),
        "eval.bootstrap": 50,
        "study.seeds": [0, 1],
        "study.arms": ["grpo", "continued_sft"],
    }
    base = quick_config(work, {**overrides, "data.ftrl_test": str(work / "test.jsonl"), "eval.ftrl_limit": 1})
    calls, counted_run = _counting_runner()
    study_dir = tmp_path / "study"
    summary = run_study(base, runner=counted_run, study_dir=study_dir)
    assert calls == [
        ("seed0_grpo", None),
        ("seed0_continued_sft", "seed0_grpo"),
        ("seed1_grpo", "seed0_grpo"),
        ("seed1_continued_sft", "seed0_grpo"),
    ]
    assert [r["status"] for r in summary["runs"]] == ["finished"] * 4
    control = json.loads((study_dir / "seed1_continued_sft" / "state.json").read_text())["control"]
    assert control["budget_from"] == str(study_dir / "seed1_grpo")
    assert (study_dir / "ftrl_subset.jsonl").exists()  # one FTRL subset for every seed
    table = pd.DataFrame(summary["table"])
    assert set(table["eval_set"]) == {"test", "ftrl"}
    f1 = table[(table["metric"] == "Solve-F1") & (table["eval_set"] == "test")].set_index(["a", "b"])
    assert set(f1.index) == {("grpo", "start"), ("continued_sft", "start"), ("grpo", "continued_sft")}
    assert all(set(ps) == {"0", "1"} for ps in f1["per_seed"]) and (f1["n_seeds"] == 2).all()
    assert (f1["ci_low"] <= f1["delta"]).all() and (f1["delta"] <= f1["ci_high"]).all()
    assert summary["plumbing"].startswith("the QUICK preset")
    md = (study_dir / "study.md").read_text()
    assert "Plumbing check" in md and "grpo − continued_sft" in md and "seed1_continued_sft" in md
    csv = pd.read_csv(study_dir / "study.csv")
    assert {"a_seed0", "a_seed1", "delta_seed1", "ci_low", "ci_high"} <= set(csv.columns)
    assert (tmp_path / "pub" / "quick_study.md").exists()
    # a rerun finds every run finished: nothing is trained or evaluated again
    before = (study_dir / "study.json").read_text()
    run_study(base, runner=lambda *a, **k: pytest.fail("a finished study ran again"), study_dir=study_dir)
    assert (study_dir / "study.json").read_text() == before
    changed = quick_config(work, {**overrides, "data.ftrl_test": str(work / "test.jsonl"), "rl.learning_rate": 0.5})
    with pytest.raises(ValueError, match="other settings .*rl.learning_rate"):
        run_study(changed, runner=counted_run, study_dir=study_dir)
    # another study from that start: every run (the first too) reuses it
    calls.clear()
    more = {**overrides, "study.seeds": [0], "study.arms": ["reinforce_pp"], "data.ftrl_test": str(work / "test.jsonl")}
    summary = run_study(
        quick_config(work, {**more, "eval.ftrl_limit": 1}),
        runner=counted_run,
        study_dir=tmp_path / "study2",
        start_from=study_dir / "seed0_grpo",
    )
    assert calls == [("seed0_reinforce_pp", "seed0_grpo")] and summary["runs"][0]["status"] == "finished"


def test_per_seed_warm_starts_each_seed_trains_its_own_and_refuses_a_shared_resume(tmp_path):
    work = tmp_path / "work"
    overrides = {
        "rl.iterations": 1,
        "eval.bootstrap": 20,
        "study.seeds": [0, 1],
        "study.arms": ["grpo", "continued_sft"],
        "study.warm_start": "per_seed",
    }
    base = quick_config(work, overrides)
    calls, counted_run = _counting_runner()
    study_dir = tmp_path / "study"
    summary = run_study(base, runner=counted_run, study_dir=study_dir)
    reused = dict(calls)  # run -> the folder whose warm start it reused (the order: the test above)
    assert reused == {
        "seed0_grpo": None,
        "seed0_continued_sft": "seed0_grpo",
        "seed1_grpo": None,
        "seed1_continued_sft": "seed1_grpo",
    }
    assert summary["start_runs"] == {"0": "seed0_grpo", "1": "seed1_grpo"}
    assert (study_dir / "seed1_grpo" / "start_model").is_dir()
    md = (study_dir / "study.md").read_text()
    assert "One warm start + start evaluation per seed" in md and "share one warm start" not in md
    with pytest.raises(ValueError, match="seed1_grpo/state.json: this run's start came from its own warm start"):
        run_study(
            quick_config(work, {**overrides, "study.warm_start": "shared"}), runner=counted_run, study_dir=study_dir
        )
    with pytest.raises(ValueError, match="needs study.warm_start: shared"):
        run_study(base, runner=counted_run, study_dir=tmp_path / "s2", start_from=study_dir / "seed0_grpo")
    with pytest.raises(ValueError, match="study.warm_start: unknown 'each'"):
        config_from_dict({"study": {"warm_start": "each"}})
