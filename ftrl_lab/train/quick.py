"""The QUICK training profile: ``configs/quick.yaml`` made runnable in a work folder.

QUICK is a plumbing check: a randomly initialised 2-layer model (:func:`ftrl_lab.agent.models.tiny_model`)
and 10 envgen environments at complexity 0 (6 train, 2 test, 2 validation, seed 3), small enough
that SFT, the RL iterations, the validations and both evaluations run in about a minute on a CPU. Notebook 03 (QUICK) and the
end-to-end training tests use this one definition::

    cfg = quick_config(work_dir, {"rl.reward": "solve_rate"})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ftrl_lab.train.config import TrainConfig, apply_overrides, config_from_dict, preset_path, read_preset

PRESET = "quick"
N_ENVS, N_TRAIN, N_TEST, SEED = 10, 6, 2, 3
PATH_KEYS = ("model", "runs_dir", "data.train", "data.test", "data.validation")
"""Keys of the preset that are paths relative to the work folder."""


def materialise(work_dir: str | os.PathLike) -> Path:
    """Write the tiny model (``tiny/``) and the train/test/validation environments into ``work_dir`` unless
    they are there already; returns the folder."""
    from ftrl_lab.agent.models import tiny_model
    from ftrl_lab.core.records import save_records
    from ftrl_lab.envgen.pipeline import generate_records

    work = Path(work_dir)
    if not (work / "tiny" / "config.json").exists():
        model, tok = tiny_model()
        model.save_pretrained(work / "tiny")
        tok.save_pretrained(work / "tiny")
    names = ("train.jsonl", "test.jsonl", "validation.jsonl")
    if not all((work / n).exists() for n in names):
        records, _ = generate_records(N_ENVS, seed=SEED, complexity="0")
        save_records(records[:N_TRAIN], work / "train.jsonl")
        save_records(records[N_TRAIN : N_TRAIN + N_TEST], work / "test.jsonl")
        save_records(records[N_TRAIN + N_TEST :], work / "validation.jsonl")
    return work


def quick_config(work_dir: str | os.PathLike, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The QUICK preset with its model and data written into ``work_dir`` and its paths resolved
    there, then dotted ``overrides`` applied (``{"rl.iterations": 1}``)."""
    work = materialise(work_dir).resolve()
    path = preset_path(PRESET)
    data = read_preset(path)
    resolved = {key: str(work / _get(data, key, path)) for key in PATH_KEYS}
    return config_from_dict(apply_overrides(data, {**resolved, **(overrides or {})}), str(path))


def _get(data: dict[str, Any], dotted: str, path: Path) -> str:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"{path}: the QUICK preset needs '{dotted}' (a path relative to the work folder)")
        node = node[part]
    return str(node)
