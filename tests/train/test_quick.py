"""The QUICK preset: one definition (configs/quick.yaml) for notebook 03 and the training tests."""

import json

import pytest

from ftrl_lab.core.records import load_records
from ftrl_lab.train import quick
from ftrl_lab.train.config import preset_path, read_preset


def test_quick_config_writes_its_model_and_data_and_points_at_them(tmp_path):
    cfg = quick.quick_config(tmp_path, {"rl.reward": "solve_rate", "rl.iterations": 1})
    assert cfg.name == "quick" and cfg.rl.reward == "solve_rate" and cfg.rl.iterations == 1
    assert cfg.model == str(tmp_path.resolve() / "tiny")
    assert json.loads((tmp_path / "tiny" / "config.json").read_text())["num_hidden_layers"] == 2
    assert cfg.runs_dir == str(tmp_path.resolve() / "runs") and not cfg.data.generate
    train, test, val = (load_records(p) for p in (cfg.data.train, cfg.data.test, cfg.data.validation))
    assert (len(train), len(test), len(val)) == (
        quick.N_TRAIN,
        quick.N_TEST,
        quick.N_ENVS - quick.N_TRAIN - quick.N_TEST,
    )
    questions = [{r.question for r in split} for split in (train, test, val)]
    assert not (questions[0] & questions[1] or questions[0] & questions[2] or questions[1] & questions[2])
    # a second call reuses what is there (the same files, untouched)
    stamp = (tmp_path / "train.jsonl").stat().st_mtime_ns
    assert quick.quick_config(tmp_path).rl.iterations == read_preset(preset_path("quick"))["rl"]["iterations"]
    assert (tmp_path / "train.jsonl").stat().st_mtime_ns == stamp


def test_a_bad_override_names_the_preset_file(tmp_path):
    with pytest.raises(ValueError, match=r"quick\.yaml.*rl\.nope"):
        quick.quick_config(tmp_path, {"rl.nope": 1})
