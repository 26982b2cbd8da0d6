"""The environments of a training run: train pools per complexity level, test, validation,
held-out and FTRL splits, and which environments each stage uses.

* ``data.curriculum`` (e.g. ``["0", "1", "2"]``): complexity scaling as a curriculum. One train
  pool per level, ``<train stem>_c<level>.jsonl`` (``data.train_n`` each, seed
  ``train_seed + level``); the warm start takes its ``sft.n_envs`` environments round-robin over
  the levels, and RL iteration *k* of *K* draws fresh environments from level
  ``curriculum[(k - 1) * L // K]`` (L levels), so the iterations climb from the first level to
  the last. Empty: one pool, ``data.train`` at ``data.complexity``, for every stage.
* ``data.validation``: a generated split (``validation_n``, ``validation_seed``) at
  ``validation_complexity`` (default: the range of the curriculum's levels, one level per
  environment). Checkpoints are selected on it (:mod:`ftrl_lab.train.selection`), never on a
  test set.
* ``data.heldout``: a held-out test split from another fictional world (``heldout_world_seed``)
  at ``heldout_complexity`` (default ``"3"``): tools and entities none of the training worlds has.

Every split is generated with envgen when missing (``data.generate``) and excludes the train
pools' questions.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ftrl_lab.core.records import EnvRecord, default_test_set, load_records, stratified_subset
from ftrl_lab.train.config import TrainConfig

log = logging.getLogger("ftrl_lab.train")


def ensure_split(
    path: str | Path,
    n: int,
    seed: int,
    split: str,
    cfg: TrainConfig,
    exclude: Sequence[str | Path] = (),
    complexity: str | None = None,
    world_seed: int | None = None,
) -> Path:
    """The split's JSONL, generated (or completed) with envgen when ``data.generate``."""
    p = Path(path)
    if cfg.data.generate:
        from ftrl_lab.envgen.pipeline import PipelineConfig, generate_split

        have = sum(1 for line in p.open() if line.strip()) if p.exists() else 0
        if have < n:
            config = PipelineConfig(
                n=n,
                split=split,
                seed=seed,
                world_seed=world_seed,
                complexity=complexity if complexity is not None else cfg.data.complexity,
                scenarios=tuple(s for s in cfg.data.scenarios.split(",") if s),
                exclude=tuple(str(e) for e in exclude if Path(e).exists()),
            )
            generate_split(config, p, progress=True)
    if not p.exists():
        raise FileNotFoundError(f"{p}: split missing (set data.generate: true to generate it)")
    return p


def level_path(train: str | Path, level: str) -> Path:
    """The train pool of one curriculum level: ``data/envs/cpu/train.jsonl`` -> ``train_c2.jsonl``."""
    p = Path(train)
    return p.with_name(f"{p.stem}_c{level}{p.suffix}")


def curriculum_levels(cfg: TrainConfig) -> list[str]:
    """The complexity levels of the train pools, in curriculum order (one without a curriculum)."""
    return [str(c) for c in cfg.data.curriculum] or [cfg.data.complexity]


def iteration_level(cfg: TrainConfig, iteration: int) -> str:
    """The curriculum level RL iteration ``iteration`` (1-based) of K trains on: ``rl.iteration_levels``
    when set, else the levels spread evenly from the first (iteration 1) to the last (iteration K),
    rounded to the nearest."""
    if cfg.rl.iteration_levels:
        return cfg.rl.iteration_levels[iteration - 1]
    levels, k_all = curriculum_levels(cfg), cfg.rl.iterations
    if k_all < 2:
        return levels[0]
    return levels[min(len(levels) - 1, int((iteration - 1) * (len(levels) - 1) / (k_all - 1) + 0.5))]


def validation_complexity(cfg: TrainConfig) -> str:
    """``data.validation_complexity``, or the curriculum's range of levels (``"0-2"``)."""
    if cfg.data.validation_complexity:
        return cfg.data.validation_complexity
    levels = sorted(int(c) for c in curriculum_levels(cfg) if str(c).isdigit())
    if cfg.data.curriculum and levels:
        return f"{levels[0]}-{levels[-1]}" if levels[0] != levels[-1] else str(levels[0])
    return cfg.data.complexity


def interleave(pools: Sequence[Sequence[EnvRecord]]) -> list[EnvRecord]:
    """Round-robin over the pools (a pool that runs out is skipped)."""
    out, longest = [], max((len(p) for p in pools), default=0)
    for i in range(longest):
        out += [p[i] for p in pools if i < len(p)]
    return out


def load_environments(cfg: TrainConfig) -> dict[str, list[EnvRecord]]:
    """Every split of a config: ``train`` (the pools interleaved, so ``train[:n]`` spreads over the
    levels), ``train_c<level>`` per curriculum level, ``test``, and ``validation``, ``heldout``,
    ``ftrl`` when configured."""
    d = cfg.data
    envs: dict[str, list[EnvRecord]] = {}
    if d.curriculum:
        paths = {c: level_path(d.train, c) for c in curriculum_levels(cfg)}
        for c, p in paths.items():
            others = [q for q in paths.values() if q != p]
            ensure_split(p, d.train_n, d.train_seed + int(c), "train", cfg, exclude=others, complexity=c)
            envs[f"train_c{c}"] = list(load_records(p))
        envs["train"] = interleave([envs[f"train_c{c}"] for c in paths])
        train_paths = list(paths.values())
    else:
        train_paths = [ensure_split(d.train, d.train_n, d.train_seed, "train", cfg)]
        envs["train"] = list(load_records(train_paths[0]))
    test = ensure_split(d.test, d.test_n, d.test_seed, "test", cfg, exclude=train_paths)
    envs["test"] = list(load_records(test))[: cfg.eval.test_limit or None]
    if d.validation:
        p = ensure_split(
            d.validation,
            d.validation_n,
            d.validation_seed,
            "validation",
            cfg,
            exclude=[*train_paths, test],
            complexity=validation_complexity(cfg),
        )
        envs["validation"] = list(load_records(p))[: d.validation_n]
    if d.heldout:
        p = ensure_split(
            d.heldout,
            d.heldout_n,
            d.heldout_seed,
            "test",
            cfg,
            exclude=[*train_paths, test],
            complexity=d.heldout_complexity,
            world_seed=d.heldout_world_seed,
        )
        envs["heldout"] = list(load_records(p))[: d.heldout_n]
    if d.ftrl_test:
        path = default_test_set() if d.ftrl_test == "default" else Path(d.ftrl_test)
        if path.exists():
            envs["ftrl"] = stratified_subset(list(load_records(path)), cfg.eval.ftrl_limit, cfg.seed)
        else:
            log.warning("FTRL test set %s not found: skipping that evaluation", path)
    return envs


def sft_envs(envs: dict[str, list[EnvRecord]], cfg: TrainConfig) -> list[EnvRecord]:
    """The warm start's environments: the first ``sft.n_envs`` of ``train`` (spread over the levels)."""
    return list(envs["train"][: cfg.sft.n_envs]) if cfg.sft.enabled else []


def iteration_envs(envs: dict[str, list[EnvRecord]], cfg: TrainConfig, iteration: int) -> list[EnvRecord]:
    """Fresh environments for an RL iteration: its curriculum level's pool without the warm start's
    environments, ``rl.envs_per_iteration`` of them, continuing (and cycling) through the pool
    over the iterations at that level."""
    level = iteration_level(cfg, iteration)
    pool_all = envs.get(f"train_c{level}", envs["train"])
    used = {id(r) for r in sft_envs(envs, cfg)}
    pool = [r for r in pool_all if id(r) not in used] or list(pool_all)
    before = sum(1 for k in range(1, iteration) if iteration_level(cfg, k) == level)
    n = cfg.rl.envs_per_iteration
    offset = (before * n) % len(pool)
    return [pool[(offset + i) % len(pool)] for i in range(min(n, len(pool)))]
