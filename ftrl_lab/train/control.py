"""The continued-SFT control (``rl.algorithm: continued_sft``): does RL beat more SFT of equal cost?

From the same starting checkpoint as the RL run, the control spends the RL run's wall time on
collection + updates (the sum of its iterations' ``collect_seconds`` + ``train_seconds``, read from
``rl.budget_from``, or ``rl.budget_seconds``) on continued SFT on gold trajectories, then the run
is evaluated exactly like an RL run's final evaluation. ``rl.budget_steps`` instead fixes the number
of optimizer steps: a wall-time stop depends on the machine's load (two runs of one seed stopped
after 47 and 49 steps), so a published control is replayed exactly by its recorded ``steps``.

* Data: gold trajectories (:func:`ftrl_lab.train.sft.gold_trajectories`) of the train
  environments after the warm start's (``train[sft.n_envs:]``, all of them without a warm
  start): the same pool the RL iterations draw their fresh environments from
  (:func:`ftrl_lab.train.splits.iteration_envs`), so the control sees those environments with gold
  demonstrations where RL sees its own rewarded rollouts. The whole pool is played up front
  (a few seconds for hundreds of environments) and training cycles over it, so the budget, not
  the data, ends training; ``passes`` > 1 in the stage record says the examples repeated.
* Settings: the warm start's (``sft.learning_rate``, ``batch_size``, ``gradient_accumulation_steps``,
  ``max_length``) and ``seed``.
* Clock: it starts before the gold trajectories are played (as RL's collection counts) and
  :class:`WallTimeBudget` stops training after the first optimizer step that ends past the
  deadline; saving the model is outside the budget (as in RL).
* Resumable as one stage: an interrupted control restarts from the starting checkpoint with a
  fresh budget; ``control/attempts.jsonl`` counts the starts and the stage records ``restarts``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from ftrl_lab.core.records import EnvRecord, append_jsonl
from ftrl_lab.train.config import TrainConfig
from ftrl_lab.train.run_state import RunState

log = logging.getLogger(__name__)

CONTROL_DIR = "control"
"""The control's folder in a run: ``model/`` (the trained policy), ``attempts.jsonl``, ``log.jsonl``."""
MAX_STEPS = 10**7
"""``max_steps`` of the control's trainer: never reached, the wall-time budget stops it."""


class WallTimeBudget(TrainerCallback):
    """Stops a ``transformers`` Trainer at the first optimizer step that ends at or after
    ``deadline`` (a ``clock()`` reading, ``time.monotonic`` by default)."""

    def __init__(self, deadline: float, clock: Callable[[], float] = time.monotonic):
        self.deadline, self.clock = deadline, clock
        self.stopped_at_step: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.clock() >= self.deadline:
            control.should_training_stop = True
            self.stopped_at_step = state.global_step
        return control


def budget_from_run(run_dir: str | Path) -> tuple[float, int]:
    """Seconds of collection + updates of a finished RL run (sum over its iterations of
    ``collect_seconds`` + ``train_seconds``) and its number of iterations; ``ValueError`` naming
    ``rl.budget_from`` when the folder has no finished iterations or not all of them."""
    run_dir = Path(run_dir)
    if not (run_dir / "state.json").exists():
        raise ValueError(f"rl.budget_from: {run_dir} is no run folder (no state.json)")
    state = RunState(run_dir)
    done = sorted(int(k[5:]) for k in state.data if k.startswith("iter_") and k[5:].isdigit())
    if not done:
        raise ValueError(f"rl.budget_from: {run_dir} has no finished RL iterations (no iter_k in its state.json)")
    config = run_dir / "config.json"
    wanted = json.loads(config.read_text())["rl"]["iterations"] if config.exists() else len(done)
    if done != list(range(1, wanted + 1)):
        raise ValueError(f"rl.budget_from: {run_dir} has finished iterations {done} of {wanted}: not a finished run")
    seconds = 0.0
    for k in done:
        it = state.get(f"iter_{k}")
        if "collect_seconds" not in it or "train_seconds" not in it:
            raise ValueError(f"rl.budget_from: {run_dir}/state.json iter_{k} has no collect_seconds/train_seconds")
        seconds += float(it["collect_seconds"]) + float(it["train_seconds"])
    return seconds, len(done)


def control_budget(cfg: TrainConfig) -> dict[str, Any]:
    """The control's budget: ``budget_seconds`` (or ``budget_steps``) and where it came from
    (``budget_from``, ``budget_iterations``)."""
    rl = cfg.rl
    none = {"budget_from": None, "budget_iterations": None}
    if rl.budget_steps is not None:
        return {"budget_seconds": None, "budget_steps": rl.budget_steps, **none}
    if rl.budget_seconds is not None:
        return {"budget_seconds": rl.budget_seconds, "budget_steps": None, **none}
    if not rl.budget_from:
        raise ValueError(
            "rl.budget_seconds / rl.budget_from / rl.budget_steps: the continued-SFT control needs a budget"
        )
    seconds, iterations = budget_from_run(rl.budget_from)
    return {
        "budget_seconds": round(seconds, 1),
        "budget_steps": None,
        "budget_from": str(rl.budget_from),
        "budget_iterations": iterations,
    }


def control_envs(train: Sequence[EnvRecord], cfg: TrainConfig) -> list[EnvRecord]:
    """The control's fresh environments: the train split after the warm start's (all without one)."""
    start = cfg.sft.n_envs if cfg.sft.enabled else 0
    pool = list(train[start:])
    if not pool:
        raise ValueError(f"data.train has {len(train)} environments, all used by the warm start: none left")
    return pool


def record_attempt(ctrl_dir: Path) -> int:
    """Append this start to ``attempts.jsonl``; returns how many starts came before it."""
    path = ctrl_dir / "attempts.jsonl"
    before = sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0
    append_jsonl(path, [{"attempt": before + 1, "time": time.time()}])
    return before


def continued_sft(
    model,
    tokenizer,
    train: Sequence[EnvRecord],
    run_dir: Path,
    cfg: TrainConfig,
    *,
    use_cpu: bool,
    bf16: bool,
) -> dict[str, Any]:
    """Train ``model`` (the starting checkpoint) in place for the control's wall-time budget; returns
    the stage record (budget, seconds actually spent, steps, examples, passes over the pool, losses,
    restarts). The caller saves the model into ``<run>/control/model``."""
    from accelerate import PartialState

    from ftrl_lab.train.sft import build_sft_dataset, gold_trajectories, run_sft

    if PartialState().num_processes > 1:
        raise RuntimeError("rl.algorithm continued_sft runs in one process (its wall-time stop is not synchronised)")
    budget = control_budget(cfg)
    ctrl_dir = run_dir / CONTROL_DIR
    ctrl_dir.mkdir(parents=True, exist_ok=True)
    restarts = record_attempt(ctrl_dir)
    if restarts:
        log.warning("control: restarting from the starting checkpoint (attempt %d)", restarts + 1)
    shutil.rmtree(ctrl_dir / "trainer", ignore_errors=True)
    (ctrl_dir / "log.jsonl").unlink(missing_ok=True)
    t0 = time.monotonic()
    by_steps = budget["budget_steps"] is not None
    pool = control_envs(train, cfg)
    dataset, dropped = build_sft_dataset(gold_trajectories(pool), tokenizer, max_length=cfg.sft.max_length)
    if not len(dataset):
        raise RuntimeError(f"control: none of the {len(pool)} gold trajectories is usable ({dropped})")
    t_data = time.monotonic() - t0
    log.info(
        "control: %d gold examples of %d environments (%.1f s), budget %s",
        len(dataset),
        len(pool),
        t_data,
        f"{budget['budget_steps']} steps" if by_steps else f"{budget['budget_seconds']:.1f} s",
    )
    stop = None if by_steps else WallTimeBudget(t0 + budget["budget_seconds"])
    s = cfg.sft
    t1 = time.monotonic()
    result = run_sft(
        model,
        tokenizer,
        dataset,
        str(ctrl_dir / "trainer"),
        learning_rate=s.learning_rate,
        batch_size=s.batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        max_length=s.max_length,
        use_cpu=use_cpu,
        bf16=bf16,
        seed=cfg.seed,
        extra_args={"max_steps": budget["budget_steps"] if by_steps else MAX_STEPS},
        callbacks=[] if stop is None else [stop],
    )
    t_end = time.monotonic()
    shutil.rmtree(ctrl_dir / "trainer", ignore_errors=True)
    history = result["log_history"]
    append_jsonl(ctrl_dir / "log.jsonl", history)
    losses = [r["loss"] for r in history if "loss" in r]
    epochs = max((r.get("epoch", 0.0) for r in history), default=0.0)
    examples = round(epochs * len(dataset))
    return {
        **budget,
        "pool": f"data.train[{len(train) - len(pool)}:], the environments after the warm start's",
        "pool_environments": len(pool),
        "pool_examples": len(dataset),
        "dropped": dropped,
        "steps": max((r.get("step", 0) for r in history), default=0),
        "examples": examples,
        "passes": round(epochs, 3),
        "stopped_by": "budget_steps" if by_steps else "budget" if stop.stopped_at_step is not None else "max_steps",
        "data_seconds": round(t_data, 1),
        "train_seconds": round(t_end - t1, 1),
        "seconds": round(t_end - t0, 1),
        "overshoot_seconds": None if by_steps else round(t_end - t0 - budget["budget_seconds"], 1),
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "restarts": restarts,
    }


def control_markdown(value: dict[str, Any]) -> str:
    """One paragraph of ``results.md`` saying what the control did with its budget."""
    if value.get("budget_steps") is not None:
        budget = f"{value['budget_steps']} optimizer steps from `rl.budget_steps`"
    elif value.get("budget_from"):
        budget = (
            f"{value['budget_seconds']:.1f} s from the collection + update time of `{value['budget_from']}` "
            f"({value['budget_iterations']} iteration(s))"
        )
    else:
        budget = f"{value['budget_seconds']:.1f} s from `rl.budget_seconds`"
    passes = value["passes"]
    repeat = (
        f"{passes:.2f} passes over the pool, so examples repeated after the first pass"
        if passes > 1
        else f"{passes:.2f} of one pass over the pool (every example fresh)"
    )
    text = (
        f"Continued-SFT control (in place of RL): budget {budget}; "
        f"spent {value['seconds']:.1f} s ({value['data_seconds']:.1f} s playing gold trajectories, "
        f"{value['train_seconds']:.1f} s training, stopped by the {value['stopped_by']}), "
        f"{value['steps']} optimizer steps on about {value['examples']} examples of a pool of "
        f"{value['pool_examples']} gold trajectories ({value['pool']}): {repeat}. "
        f"Loss {_loss(value['first_loss'])} → {_loss(value['last_loss'])}."
    )
    if value.get("restarts"):
        text += (
            f" Interrupted before: restarted from the starting checkpoint {value['restarts']} time(s), "
            "with a fresh budget; these numbers are the last attempt's."
        )
    return text


def _loss(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"
