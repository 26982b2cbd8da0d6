"""Notebook 04's suite plan: which folders are shown, which FTRL evaluation goes with each."""

from pathlib import Path

from ftrl_lab.benchmarks import suite, suite_runs


def _saved(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.csv").write_text("x\n")
    return folder


def test_quick_plan_adds_the_tiny_suite_to_the_saved_folders(tmp_path):
    bench, runs = tmp_path / "bench", tmp_path / "eval"
    _saved(bench / "default")
    (runs / "default-ftrl").mkdir(parents=True)
    plan = suite_runs.plan_suites(bench, runs, "default", quick=True, run_suite=True)
    assert plan.suite_name == suite_runs.QUICK_SUITE
    assert plan.folders == [bench / "default", bench / suite_runs.QUICK_SUITE]
    assert plan.ftrl_evals == {"default": runs / "default-ftrl"}


def test_full_plan_with_a_trained_policy(tmp_path):
    bench, runs = tmp_path / "bench", tmp_path / "eval"
    plan = suite_runs.plan_suites(
        bench, runs, "models/m", quick=False, run_suite=True, trained_model="t", model_eval_dir=runs / "m-ftrl"
    )
    assert plan.folders == [bench / "m", bench / "cpu-trained"]
    assert plan.ftrl_evals == {"m": runs / "m-ftrl", "cpu-trained": runs / "cpu-trained-ftrl"}
    none = suite_runs.plan_suites(bench, runs, "m", quick=False, run_suite=False, bench_runs=[], ftrl_evals={})
    assert none.folders == [] and none.ftrl_evals == {}


def test_quick_settings_and_a_folder_made_with_other_settings_is_kept(tmp_path, monkeypatch):
    make, settings = suite_runs.suite_settings("default", quick=True, limit=1, batch_size=4)
    assert (settings.model, settings.max_new_tokens, settings.max_turns) == ("tiny-random", 8, 2)
    monkeypatch.setattr(suite, "conflict", lambda folder, s: "made with max_new_tokens=512")
    text = suite_runs.run_suite_once(tmp_path, lambda: (_ for _ in ()).throw(AssertionError("ran")), settings)
    assert text.startswith(f"Keeping `{tmp_path}` as it is") and "max_new_tokens=512" in text
