"""Checkpoint selection on the validation split: best Solve-F1 (earliest of ties), models kept."""

from ftrl_lab.train.config import config_from_dict
from ftrl_lab.train.run_state import RunState, final_policy
from ftrl_lab.train.selection import best_iteration, models_to_keep, prune_models, select, selection_markdown


def _val(f1: float) -> dict:
    return {"solve_precision": f1, "solve_rate": f1, "solve_f1": f1, "n": 4}


def _state(tmp_path, scores: dict) -> RunState:
    state = RunState(tmp_path)
    state.finish("val_start", _val(0.1))
    for k, f1 in scores.items():
        state.finish(f"iter_{k}", {"steps": 1})
        state.finish(f"val_{k}", _val(f1))
        (tmp_path / f"iter_{k}" / "model").mkdir(parents=True)
    return state


def test_best_iteration_takes_the_highest_score_and_the_earliest_tie():
    assert best_iteration({1: 0.2, 2: 0.5, 3: 0.5}) == 2
    assert best_iteration({1: 0.4, 2: 0.1}) == 1
    assert best_iteration({}) is None


def test_selection_on_validation_keeps_the_best_and_the_latest(tmp_path):
    cfg = config_from_dict({"data": {"validation": "val.jsonl"}, "rl": {"iterations": 3}})
    state = _state(tmp_path, {1: 0.2, 2: 0.6, 3: 0.3})
    assert models_to_keep(cfg, state, 3) == {2, 3}
    prune_models(tmp_path, models_to_keep(cfg, state, 3), 3)
    assert [k for k in (1, 2, 3) if (tmp_path / f"iter_{k}" / "model").exists()] == [2, 3]
    chosen = select(cfg, state, tmp_path)
    assert chosen["iteration"] == 2 and chosen["rule"] == "best validation Solve-F1"
    assert chosen["validation_solve_f1"] == {"start": 0.1, "iter_1": 0.2, "iter_2": 0.6, "iter_3": 0.3}
    state.finish("selection", chosen)
    state.finish("eval_final", {})
    assert final_policy(tmp_path) == tmp_path / "iter_2" / "model"
    # the recorded path is relative to where the run was started; a notebook reading from another
    # working directory (or the run folder after a move) still finds the selected model
    state.finish("selection", {**chosen, "model": "runs/train/elsewhere/iter_2/model"})
    assert final_policy(tmp_path) == tmp_path / "iter_2" / "model"
    md = selection_markdown(RunState(tmp_path), 3)
    assert "| iter_2 | 60.0 | 60.0 | 60.0 | yes |" in md and "| start | 10.0" in md
    assert "prefers the start" not in md


def test_selection_report_says_when_validation_prefers_the_start(tmp_path):
    cfg = config_from_dict({"data": {"validation": "val.jsonl"}, "rl": {"iterations": 2}})
    state = _state(tmp_path, {1: 0.05, 2: 0.08})
    state.finish("selection", select(cfg, state, tmp_path))
    md = selection_markdown(RunState(tmp_path), 2)
    assert "| iter_2 | 8.0 | 8.0 | 8.0 | yes |" in md
    assert "validation Solve-F1 (10.0 against at best 8.0)" in md and "prefers the start" in md


def test_last_iteration_without_validation_or_when_asked(tmp_path):
    state = _state(tmp_path, {1: 0.9, 2: 0.1})
    for cfg in (
        config_from_dict({"rl": {"iterations": 2}}),
        config_from_dict({"data": {"validation": "v.jsonl"}, "rl": {"iterations": 2}, "eval": {"select": "last"}}),
    ):
        assert models_to_keep(cfg, state, 2) == {2}
        chosen = select(cfg, state, tmp_path)
        assert chosen["iteration"] == 2 and chosen["rule"] == "last iteration"
