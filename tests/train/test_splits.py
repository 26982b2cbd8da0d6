"""Curriculum train pools, validation and held-out splits, and which environments each stage uses."""

import pytest
from _train_helpers import small_record

from ftrl_lab.core.records import load_records
from ftrl_lab.train.config import config_from_dict
from ftrl_lab.train.sft import complexity_level, env_meta
from ftrl_lab.train.splits import (
    interleave,
    iteration_envs,
    iteration_level,
    level_path,
    load_environments,
    sft_envs,
    validation_complexity,
)


def _cfg(**sections):
    return config_from_dict(sections)


def test_iterations_climb_the_curriculum_evenly():
    cfg = _cfg(data={"curriculum": ["0", "1", "2", "3"]}, rl={"iterations": 6})
    assert [iteration_level(cfg, k) for k in range(1, 7)] == ["0", "1", "1", "2", "2", "3"]
    cfg = _cfg(data={"curriculum": ["0", "1", "2", "3"]}, rl={"iterations": 3})  # fewer iterations than levels
    assert [iteration_level(cfg, k) for k in range(1, 4)] == ["0", "2", "3"]
    cfg = _cfg(data={"curriculum": ["0", "1", "2"]}, rl={"iterations": 1})
    assert iteration_level(cfg, 1) == "0"
    cfg = _cfg(data={"curriculum": ["0", "2"]}, rl={"iterations": 3})
    assert [iteration_level(cfg, k) for k in range(1, 4)] == ["0", "2", "2"]
    assert validation_complexity(cfg) == "0-2"
    assert [iteration_level(_cfg(rl={"iterations": 2}), k) for k in (1, 2)] == ["0", "0"]  # no curriculum
    assert validation_complexity(_cfg(data={"complexity": "1"})) == "1"
    cfg = _cfg(data={"curriculum": ["0", "1", "2"]}, rl={"iterations": 3, "iteration_levels": [0, "1", "1"]})
    assert [iteration_level(cfg, k) for k in range(1, 4)] == ["0", "1", "1"]
    assert validation_complexity(cfg) == "0-2"  # the pools, the warm start and validation keep every level


@pytest.mark.parametrize(
    "levels, message",
    [(["0", "1"], "one level per iteration"), (["0", "1", "3"], r"\['3'\] have no train pool")],
)
def test_iteration_levels_must_name_one_pool_per_iteration(levels, message):
    with pytest.raises(ValueError, match=f"rl.iteration_levels: .*{message}"):
        _cfg(data={"curriculum": ["0", "1", "2"]}, rl={"iterations": 3, "iteration_levels": levels})


def test_warm_start_spreads_over_levels_and_iterations_use_fresh_envs_of_their_level():
    pools = {c: [small_record(f"L{c} Q{i}?") for i in range(5)] for c in ("0", "1")}
    envs = {f"train_c{c}": p for c, p in pools.items()}
    envs["train"] = interleave(list(pools.values()))
    cfg = _cfg(data={"curriculum": ["0", "1"]}, sft={"n_envs": 4}, rl={"iterations": 4, "envs_per_iteration": 2})
    assert [r.question for r in sft_envs(envs, cfg)] == ["L0 Q0?", "L1 Q0?", "L0 Q1?", "L1 Q1?"]
    got = [[r.question for r in iteration_envs(envs, cfg, k)] for k in range(1, 5)]
    assert got == [["L0 Q2?", "L0 Q3?"], ["L0 Q4?", "L0 Q2?"], ["L1 Q2?", "L1 Q3?"], ["L1 Q4?", "L1 Q2?"]]
    # without a curriculum: the one pool after the warm start's, cycling
    cfg = _cfg(sft={"n_envs": 2}, rl={"envs_per_iteration": 3})
    train = [small_record(f"Q{i}?") for i in range(7)]
    first, second = iteration_envs({"train": train}, cfg, 1), iteration_envs({"train": train}, cfg, 2)
    assert [r.question for r in first] == ["Q2?", "Q3?", "Q4?"]
    assert [r.question for r in second] == ["Q5?", "Q6?", "Q2?"]


def test_bad_curriculum_and_complexity_settings_name_the_key():
    with pytest.raises(ValueError, match="data.curriculum"):
        _cfg(data={"curriculum": ["0-2"]})
    with pytest.raises(ValueError, match="data.heldout_complexity"):
        _cfg(data={"heldout_complexity": "7"})
    with pytest.raises(ValueError, match="eval.select"):
        _cfg(eval={"select": "test"})
    assert _cfg(data={"curriculum": [0, 1]}).data.curriculum == ["0", "1"]


@pytest.mark.slow
def test_generated_pools_validation_and_heldout_world(tmp_path):
    data = {
        "train": str(tmp_path / "train.jsonl"),
        "test": str(tmp_path / "test.jsonl"),
        "curriculum": ["0", "1"],
        "train_n": 3,
        "test_n": 2,
        "validation": str(tmp_path / "val.jsonl"),
        "validation_n": 2,
        "heldout": str(tmp_path / "heldout.jsonl"),
        "heldout_n": 2,
        "heldout_complexity": "2",
        "ftrl_test": None,
    }
    cfg = _cfg(data=data, sft={"n_envs": 2})
    envs = load_environments(cfg)
    assert {k: len(v) for k, v in envs.items()} == {
        "train_c0": 3,
        "train_c1": 3,
        "train": 6,
        "test": 2,
        "validation": 2,
        "heldout": 2,
    }
    assert level_path(data["train"], "1").exists() and not (tmp_path / "train.jsonl").exists()
    levels = {k: {complexity_level(r) for r in v} for k, v in envs.items()}
    assert levels["train_c0"] == {"0"} and levels["train_c1"] == {"1"} and levels["heldout"] == {"2"}
    assert levels["validation"] <= {"0", "1"}
    meta = {k: [env_meta(r) for r in v] for k, v in envs.items()}
    worlds = {k: {m["world_seed"] for m in v} for k, v in meta.items()}
    assert worlds["heldout"] == {cfg.data.heldout_world_seed}
    assert not worlds["heldout"] & (worlds["train_c0"] | worlds["train_c1"] | worlds["test"] | worlds["validation"])
    questions = {k: {r.question for r in v} for k, v in envs.items() if k != "train"}
    assert not questions["validation"] & (questions["train_c0"] | questions["train_c1"])
    # a second call reads the files instead of generating again
    before = (tmp_path / "val.jsonl").read_text()
    assert [r.question for r in load_environments(cfg)["validation"]] == [r.question for r in envs["validation"]]
    assert (tmp_path / "val.jsonl").read_text() == before
    assert len(list(load_records(tmp_path / "heldout.jsonl"))) == 2
