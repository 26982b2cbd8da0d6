"""Feedback-driven training, as the paper: SFT warm start (optional), then k iterations of
"collect trajectory prefixes with the current policy, one epoch of RL on them", then a
before/after evaluation.

    python -m ftrl_lab.train --preset cpu-smollm2                       # the embedded default, CPU
    python -m ftrl_lab.train --preset cpu-smollm2 --algorithm reinforce_pp --set rl.generation_prompts=2
    python -m ftrl_lab.train --preset gpu-qwen2.5-7b-lora --set model=/models/Qwen2.5-7B-Instruct
    python -m ftrl_lab.train ablation runs/train/a runs/train/b runs/train/c
    python -m ftrl_lab.train study --preset study-smollm2 --seeds 0,1,2   # ftrl_lab.train.study

Stages (each resumable: a rerun skips finished stages and resumes RL from its last checkpoint):

1. environments: the train and test splits of the preset (generated with envgen if missing);
2. ``sft``: gold trajectories of the first ``sft.n_envs`` train environments (TRL SFTTrainer,
   assistant tokens only) -> ``<run>/start_model``, the starting checkpoint of RL;
3. ``eval_start``: Solve-P/R/F1 of the starting checkpoint on the test split and the FTRL test
   set (subset), and perplexity on generic text (:mod:`ftrl_lab.agent.general_ability`);
4. ``iter_k`` for k = 1..K: roll the current policy out on fresh train environments
   (:func:`ftrl_lab.agent.trajectories.collect`), build the prefix dataset
   (:mod:`ftrl_lab.train.data`), one epoch of GRPO / REINFORCE++-baseline / RLOO through TRL
   with Engine generation (:mod:`ftrl_lab.train.trainers`) -> ``<run>/iter_k/model``; with
   ``rl.algorithm: continued_sft`` one ``control`` stage instead: continued SFT for the RL run's
   wall time (:mod:`ftrl_lab.train.control`) -> ``<run>/control/model``;
5. ``eval_final`` and the report: ``results.json`` / ``results.md`` (paired bootstrap CIs),
   ``metrics.jsonl`` / ``metrics.csv``, ``iterations.csv`` and the curves figure; copied to
   ``publish_dir`` (small files only).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import mean, pstdev
from typing import Any

import pandas as pd

from ftrl_lab.core.records import EnvRecord, append_jsonl, load_records
from ftrl_lab.core.reward import make_reward_func
from ftrl_lab.train.config import TrainConfig, load_config, lora_kwargs, parse_value
from ftrl_lab.train.report import eval_episodes
from ftrl_lab.train.run_state import RunState
from ftrl_lab.train.selection import models_to_keep, prune_models, select
from ftrl_lab.train.splits import iteration_envs, iteration_level, load_environments, sft_envs

log = logging.getLogger("ftrl_lab.train")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


# --- models ----------------------------------------------------------------------------------
def load_policy_model(path: str, cfg: TrainConfig):
    """Model and tokenizer from a folder (or "default"), on the configured device and dtype."""
    from ftrl_lab.agent.models import load_model

    return load_model(path, dtype=cfg.dtype, device=cfg.device)


def save_model(model, tokenizer, out: Path) -> Path:
    """Save a (merged) model + tokenizer atomically into ``out``."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def on_cpu(cfg: TrainConfig) -> bool:
    from ftrl_lab.agent.models import pick_device

    return pick_device(cfg.device).type == "cpu"


def use_bf16(cfg: TrainConfig) -> bool:
    """bf16 autocast for the SFT and RL steps (``cfg.mixed_precision``, resolved for the device)."""
    from ftrl_lab.agent.models import bf16_mixed_precision, pick_device

    return bf16_mixed_precision(cfg.mixed_precision, pick_device(cfg.device))


# --- evaluation ------------------------------------------------------------------------------
def evaluate_model(
    model, tokenizer, records: Sequence[EnvRecord], out_dir: Path, cfg: TrainConfig, desc: str
) -> pd.DataFrame:
    """Greedy FTRL-loop evaluation (resumable); per-episode rows."""
    from ftrl_lab.agent.evaluate import evaluate
    from ftrl_lab.agent.policies import make_policy

    model.eval()
    policy, _ = make_policy(
        (model, tokenizer),
        max_new_tokens=cfg.eval.max_new_tokens,
        batch_size=cfg.eval.batch_size,
        bf16_prefill=use_bf16(cfg),
        fast_decode=cfg.fast_decode,
    )
    log.info("evaluating %s on %d environments -> %s", desc, len(records), out_dir)
    result = evaluate(
        records,
        policy,
        out_dir,
        max_turns=cfg.eval.max_turns,
        max_active=cfg.eval.batch_size,
        meta={"model": desc, "settings": {"max_turns": cfg.eval.max_turns, "max_new_tokens": cfg.eval.max_new_tokens}},
    )
    return result.episodes


EVAL_SPLITS = ("test", "heldout", "ftrl")
"""The test sets a checkpoint is evaluated on (those the config has); validation is separate."""


def evaluate_all(
    model, tokenizer, envs: dict[str, list[EnvRecord]], run_dir: Path, tag: str, cfg: TrainConfig
) -> dict[str, Any]:
    """Test split + FTRL subset + perplexity (+ HumanEval when ``eval.humaneval``) of one checkpoint."""
    from ftrl_lab.agent.general_ability import perplexity

    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    for name in EVAL_SPLITS:
        if name in envs:
            out[name] = split_scores(model, tokenizer, envs, name, run_dir, tag, cfg)
    out["perplexity"] = perplexity(model, tokenizer, n_topics=cfg.eval.perplexity_topics)
    if cfg.eval.humaneval:  # per-problem rows in eval/<tag>_humaneval.jsonl (resumable), summary here
        from ftrl_lab.agent.humaneval import humaneval

        rows_path = run_dir / "eval" / f"{tag}_humaneval.jsonl"
        he = humaneval(
            model,
            tokenizer,
            limit=cfg.eval.humaneval,
            batch_size=cfg.eval.batch_size,
            bf16_prefill=use_bf16(cfg),
            rows_path=rows_path,
        )
        out["humaneval"] = {k: v for k, v in he.items() if k != "rows"}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def split_scores(model, tokenizer, envs: dict, name: str, run_dir: Path, tag: str, cfg: TrainConfig) -> dict[str, Any]:
    """Mean Solve-P/R/F1 of one checkpoint on one split (episodes in ``eval/<tag>_<name>``), its
    size and, for generated splits, calls and turns against the gold plans (``sft.plan_fit``)."""
    from ftrl_lab.train.sft import plan_fit

    episodes = evaluate_model(model, tokenizer, envs[name], run_dir / "eval" / f"{tag}_{name}", cfg, tag)
    out: dict[str, Any] = {m: float(episodes[m].mean()) for m in ("solve_precision", "solve_rate", "solve_f1")}
    out["n"] = len(episodes)
    fit = plan_fit(envs[name], episodes.to_dict(orient="records"))
    if fit is not None:
        out["plan_fit"] = fit
    return out


def validate(model, tokenizer, envs: dict, run_dir: Path, tag: str, cfg: TrainConfig) -> dict[str, Any]:
    """One checkpoint on the validation split (``val_<tag>`` stages; checkpoint selection)."""
    t0 = time.perf_counter()
    out = split_scores(model, tokenizer, envs, "validation", run_dir, tag, cfg)
    return {**out, "seconds": round(time.perf_counter() - t0, 1)}


# --- reward with training statistics -----------------------------------------------------------
def logged_reward(variant: str, rules: str = "official", echo_guard: bool = True) -> Callable:
    """``reward.make_reward_func(variant, rules=..., echo_guard=...)`` that also logs parse-failure
    rate, calls per response, no-call rate, echo-check fires per response and the mean
    within-group reward std through TRL's ``log_metric`` (from the reward's own breakdowns:
    each completion is parsed once)."""

    def log(scored, kwargs) -> None:
        log_metric = kwargs.get("log_metric")
        if log_metric is None or not scored:
            return
        log_metric("ftrl/parse_failure_rate", mean(float(b.malformed) for b in scored))
        log_metric("ftrl/calls_per_response", mean(float(b.p) for b in scored))
        log_metric("ftrl/no_call_rate", mean(float(b.p == 0) for b in scored))
        log_metric("ftrl/echo_fires", mean(float(b.echoes) for b in scored))
        groups: dict[str, list[float]] = {}
        for prompt, b in zip(kwargs.get("prompts") or [None] * len(scored), scored):
            groups.setdefault(json.dumps(prompt, sort_keys=True, default=str), []).append(b.reward)
        log_metric("ftrl/group_reward_std", mean(pstdev(g) if len(g) > 1 else 0.0 for g in groups.values()))

    return make_reward_func(variant, on_scored=log, rules=rules, echo_guard=echo_guard)


# --- RL ----------------------------------------------------------------------------------------
ALGORITHM_DEFAULTS = {
    # verl's token-mean aggregation is TRL's "dapo"; GRPO normalises within each group.
    "grpo": {"loss_type": "dapo", "scale_rewards": "group"},
    # REINFORCE++-baseline: group-mean baseline, advantages normalised by the batch std, no critic.
    "reinforce_pp": {"loss_type": "dapo", "scale_rewards": "batch"},
    "rloo": {},
}


def trl_config(cfg: TrainConfig, output_dir: Path):
    """The GRPOConfig / RLOOConfig of one RL iteration (one epoch)."""
    from trl import GRPOConfig, RLOOConfig

    from ftrl_lab.agent.models import checkpointing_option

    rl = cfg.rl
    cpu = on_cpu(cfg)
    micro = rl.micro_batch_prompts or rl.prompts_per_step
    accumulate = rl.prompts_per_step // micro
    generate_every = (rl.generation_prompts or rl.prompts_per_step) // micro  # micro-batches per generation
    common = dict(
        output_dir=str(output_dir),
        use_cpu=cpu,
        bf16=use_bf16(cfg),
        **{checkpointing_option(): rl.gradient_checkpointing and not cpu},
        per_device_train_batch_size=micro * rl.num_generations,
        gradient_accumulation_steps=accumulate,
        steps_per_generation=generate_every,
        num_generations=rl.num_generations,
        max_completion_length=rl.max_new_tokens,  # TRL's name for tokens per sample
        temperature=rl.temperature,
        top_p=rl.top_p,
        learning_rate=rl.learning_rate,
        beta=rl.beta,
        num_train_epochs=1,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=rl.warmup_steps,
        max_grad_norm=rl.max_grad_norm,
        epsilon=rl.epsilon,
        logging_steps=1,
        report_to=[],
        seed=cfg.seed,
        save_strategy="steps" if rl.save_steps else "no",
        save_steps=rl.save_steps or 500,
        save_total_limit=1,
        disable_dropout=True,
        use_vllm=False,
        remove_unused_columns=False,
        log_completions=False,
    )
    algo = dict(ALGORITHM_DEFAULTS[rl.algorithm])
    if rl.loss_type:
        algo["loss_type"] = rl.loss_type
    if rl.scale_rewards:
        algo["scale_rewards"] = rl.scale_rewards
    kwargs = {**common, **algo, **rl.trl}
    cls = RLOOConfig if rl.algorithm == "rloo" else GRPOConfig
    if cls is RLOOConfig:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("loss_type", "scale_rewards")}
    return cls(**kwargs)


def make_trainer(
    model,
    tokenizer,
    dataset,
    cfg: TrainConfig,
    output_dir: Path,
    callbacks: list | None = None,
    reference: str | None = None,
    reserve=None,
):
    """An FTRL GRPO / RLOO trainer with Engine generation (see :mod:`ftrl_lab.train.trainers`).

    ``reference``: the folder TRL loads the KL reference from (full fine-tuning with beta > 0;
    with LoRA the reference is the policy the adapter starts from). ``reserve``: a dataset of
    replacement prompts for dynamic sampling (``rl.redraws``).
    """
    from ftrl_lab.train.trainers import FTRLGRPOTrainer, FTRLRLOOTrainer, configure_engine

    rl = cfg.rl
    if reference and rl.beta and not rl.lora:
        from ftrl_lab.agent.models import resolve_model_path

        model.config._name_or_path = resolve_model_path(reference)  # TRL builds the reference from this path
    peft_config = None
    if rl.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **lora_kwargs(rl.lora, model.config.num_hidden_layers))
    from ftrl_lab.agent.models import checkpointing_option

    cls = FTRLRLOOTrainer if rl.algorithm == "rloo" else FTRLGRPOTrainer
    args = trl_config(cfg, output_dir)
    model.train()
    trainer = cls(
        model=model,
        reward_funcs=[logged_reward(rl.reward, rl.reward_rules, rl.echo_guard)],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    configure_engine(
        trainer,
        batch_size=rl.engine_batch_size,
        share_prefix=rl.share_prefix and not getattr(args, checkpointing_option()),
        seed=cfg.seed,
        fast_decode=cfg.fast_decode,
        bf16_prefill=use_bf16(cfg),  # as collection and evaluation: the group's prompt prefilled under bf16 autocast
        redraws=rl.redraws,
        reserve=reserve,
        skip_zero_advantage=rl.skip_zero_advantage,
    )
    return trainer


class MetricsLogger:
    """A TrainerCallback-like object appending every TRL log to ``metrics.jsonl`` (with the
    iteration and a global step across iterations); ``on_log_hook`` sees each row (live plots)."""

    def __init__(self, path: Path, iteration: int, step_offset: int, on_log_hook: Callable | None = None):
        from transformers import TrainerCallback

        outer = self

        class _Callback(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "train_runtime" not in logs:
                    row = {
                        "iteration": iteration,
                        "step": state.global_step,
                        "global_step": step_offset + state.global_step,
                        "time": time.time(),
                        **logs,
                    }
                    append_jsonl(outer.path, [row])
                    if outer.hook is not None:
                        outer.hook(row)

        self.path, self.hook, self.callback = path, on_log_hook, _Callback()


def collect_prefixes(model, tokenizer, records: Sequence[EnvRecord], out_path: Path, cfg: TrainConfig):
    """Roll the current policy out (sampling) and write the prefix records (resumable)."""
    from ftrl_lab.agent.policies import make_policy
    from ftrl_lab.agent.trajectories import collect

    model.eval()
    policy, _ = make_policy(
        (model, tokenizer),
        max_new_tokens=cfg.rl.max_new_tokens,
        temperature=cfg.rl.collect_temperature,
        batch_size=cfg.eval.batch_size,
        seed=cfg.seed + len(records),
        bf16_prefill=use_bf16(cfg),
        fast_decode=cfg.fast_decode,
    )
    return collect(
        records,
        policy,
        out_path,
        max_turns=cfg.rl.collect_max_turns,
        max_active=cfg.eval.batch_size,
    )


def rl_iteration(
    model,
    tokenizer,
    envs: dict,
    run_dir: Path,
    cfg: TrainConfig,
    iteration: int,
    step_offset: int,
    on_log: Callable | None = None,
    reference: str | None = None,
):
    """Collect, build the dataset, train one epoch; returns (trained model, summary)."""
    from accelerate import PartialState

    from ftrl_lab.agent.trajectories import read_jsonl_lines, sidecar_path
    from ftrl_lab.train.data import build_prefix_dataset, rows_dataset

    dist = PartialState()
    it_dir = run_dir / f"iter_{iteration}"
    it_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if dist.is_main_process:
        collect_prefixes(model, tokenizer, iteration_envs(envs, cfg, iteration), it_dir / "prefixes.jsonl", cfg)
    dist.wait_for_everyone()
    t_collect = time.perf_counter() - t0
    episodes, _ = read_jsonl_lines(sidecar_path(it_dir / "prefixes.jsonl"))
    prefixes = load_records(it_dir / "prefixes.jsonl")
    dataset, report = build_prefix_dataset(
        prefixes,
        tokenizer,
        max_prompt_tokens=cfg.rl.max_prompt_tokens,
        drop_solved=cfg.rl.drop_solved,
        limit=cfg.rl.prefixes_per_iteration,
        seed=cfg.seed + iteration,
    )
    log.info("iteration %d: %s", iteration, report)
    if len(dataset) < cfg.rl.prompts_per_step:
        raise RuntimeError(f"iteration {iteration}: only {len(dataset)} prefixes fit the prompt budget")
    dataset = dataset.select(range(len(dataset) - len(dataset) % cfg.rl.prompts_per_step))
    logger = MetricsLogger(run_dir / "metrics.jsonl", iteration, step_offset, on_log)
    reserve = rows_dataset(report.reserve) if cfg.rl.redraws and report.reserve else None
    trainer = make_trainer(
        model,
        tokenizer,
        dataset,
        cfg,
        it_dir / "trainer",
        callbacks=[logger.callback],
        reference=reference,
        reserve=reserve,
    )
    checkpoints = sorted((it_dir / "trainer").glob("checkpoint-*"))
    t1 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    t_train = time.perf_counter() - t1
    if dist.is_main_process:
        save_model(trainer.accelerator.unwrap_model(trainer.model), tokenizer, it_dir / "model")
        shutil.rmtree(it_dir / "trainer", ignore_errors=True)
    dist.wait_for_everyone()
    spread = [r["ftrl/no_spread"] for r in trainer.state.log_history if "ftrl/no_spread" in r]
    summary = {
        "iteration": iteration,
        "level": iteration_level(cfg, iteration),
        "environments": len(episodes),
        "solve_precision": mean(e["solve_precision"] for e in episodes) if episodes else None,
        "solve_rate": mean(e["solve_rate"] for e in episodes) if episodes else None,
        "solve_f1": mean(e["solve_f1"] for e in episodes) if episodes else None,
        "calls_per_episode": mean(e["calls"] for e in episodes) if episodes else None,
        "prefixes": report.to_dict(),
        "steps": trainer.state.global_step,
        "reserve_prompts_drawn": trainer.ftrl_reserve_used,
        "no_spread_steps": mean(spread) if spread else None,  # share of steps with every advantage 0
        "train_loss": out.metrics.get("train_loss"),
        "collect_seconds": round(t_collect, 1),
        "train_seconds": round(t_train, 1),
    }
    del trainer
    gc.collect()
    return summary


# --- the whole run -----------------------------------------------------------------------------
def run(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    reuse_start: str | Path | None = None,
    on_log: Callable | None = None,
    on_stage: Callable[[str, Any], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) every stage of a training run; returns ``results.json``'s content.

    ``reuse_start``: another run folder whose starting checkpoint and start evaluation are
    reused (same preset, e.g. for a reward-variant ablation). ``on_log`` sees every training
    log row, ``on_stage`` every finished stage. Under ``accelerate launch`` only the main
    process generates data, collects, evaluates and saves; every process trains.
    """
    import torch
    from accelerate import PartialState

    dist = PartialState()
    main = dist.is_main_process
    from ftrl_lab.agent.models import pick_threads

    threads, threads_how = pick_threads(cfg.threads)
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    run_dir = Path(run_dir or Path(cfg.runs_dir) / cfg.run_name)
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    state = RunState(run_dir)
    if main:  # every (re)start records its own choice: the load may differ after an interruption
        state.finish("threads", [*(state.get("threads") or []), threads_how])
    notify = on_stage or (lambda stage, value: None)
    clock = [time.perf_counter()]

    def finish(stage: str, value: Any) -> None:
        """Record a finished stage (main process) and the time spent since the last one."""
        now = time.perf_counter()
        if main:
            state.finish("elapsed_seconds", round((state.get("elapsed_seconds") or 0.0) + now - clock[0], 1))
            state.finish(stage, value)
        clock[0] = now
        notify(stage, value)

    def sync() -> RunState:
        dist.wait_for_everyone()
        return RunState(run_dir)

    with dist.main_process_first():
        envs = load_environments(cfg)
    log.info("environments: %s", {k: len(v) for k, v in envs.items()})

    # 2. starting checkpoint
    if reuse_start is not None and not state.done("eval_start") and main:
        src_state = RunState(Path(reuse_start))
        if (cfg.sft.enabled and not src_state.done("sft")) or not src_state.done("eval_start"):
            raise ValueError(f"{reuse_start}: no finished starting checkpoint + start evaluation to reuse")
        for d in [*(Path(reuse_start) / "eval").glob("start_*"), *(Path(reuse_start) / "eval").glob("base_*")]:
            if d.is_dir():
                shutil.copytree(d, run_dir / "eval" / d.name, dirs_exist_ok=True)
            else:  # e.g. start_humaneval.jsonl
                (run_dir / "eval").mkdir(parents=True, exist_ok=True)
                shutil.copy2(d, run_dir / "eval" / d.name)
        if cfg.sft.enabled:
            sft = {**src_state.get("sft"), "reused_from": str(reuse_start)}
            if (Path(reuse_start) / "start_model").is_dir():  # the folder may have moved since it was made
                sft["model"] = str(Path(reuse_start) / "start_model")
            finish("sft", sft)
        if src_state.done("eval_base"):
            finish("eval_base", {**src_state.get("eval_base"), "reused_from": str(reuse_start)})
        finish("eval_start", {**src_state.get("eval_start"), "reused_from": str(reuse_start)})
        src_cfg = json.loads((Path(reuse_start) / "config.json").read_text())
        same_collection = (
            all(
                src_cfg["rl"].get(k) == getattr(cfg.rl, k)
                for k in ("envs_per_iteration", "collect_temperature", "collect_max_turns", "max_new_tokens")
            )
            and src_cfg["seed"] == cfg.seed
            and src_cfg["eval"]["batch_size"] == cfg.eval.batch_size
        )
        rl_run = cfg.rl.algorithm != "continued_sft"  # the control collects nothing
        if rl_run and same_collection and src_state.done("iter_1") and not (run_dir / "iter_1").exists():
            # Iteration 1 collects with the same starting policy, environments and seed: same prefixes.
            from ftrl_lab.agent.trajectories import sidecar_path

            src_prefixes = Path(reuse_start) / "iter_1" / "prefixes.jsonl"
            (run_dir / "iter_1").mkdir(parents=True)
            for f in (src_prefixes, sidecar_path(src_prefixes)):
                shutil.copy(f, run_dir / "iter_1" / f.name)
    elif cfg.sft.enabled and not state.done("sft") and main:
        finish("sft", warm_start(cfg, sft_envs(envs, cfg), run_dir))
    state = sync()
    if cfg.sft.enabled and cfg.eval.base and not state.done("eval_base") and main:
        # The model before any training: the warm start's own effect is then visible too.
        model, tokenizer = load_policy_model(cfg.model, cfg)
        finish("eval_base", evaluate_all(model, tokenizer, envs, run_dir, "base", cfg))
        del model
        gc.collect()
    state = sync()
    start_dir = state.get("sft")["model"] if cfg.sft.enabled else cfg.model
    model, tokenizer = load_policy_model(start_dir, cfg)

    if not state.done("eval_start") and main:
        finish("eval_start", evaluate_all(model, tokenizer, envs, run_dir, "start", cfg))
    state = sync()

    # 4. iterations, or the continued-SFT control in their place (ftrl_lab.train.control)
    control = cfg.rl.algorithm == "continued_sft"
    if control and not state.done("control") and main:
        from ftrl_lab.train.control import CONTROL_DIR, continued_sft

        value = continued_sft(model, tokenizer, envs["train"], run_dir, cfg, use_cpu=on_cpu(cfg), bf16=use_bf16(cfg))
        save_model(model, tokenizer, run_dir / CONTROL_DIR / "model")
        finish("control", {**value, "model": str(run_dir / CONTROL_DIR / "model")})
    state = sync()
    if "validation" in envs and not control and not state.done("val_start") and main:
        finish("val_start", validate(model, tokenizer, envs, run_dir, "start", cfg))
    state = sync()
    for k in range(1, (0 if control else cfg.rl.iterations) + 1):
        trained = False
        if not state.done(f"iter_{k}"):
            if k > 1:  # resumed: continue from the last finished iteration's policy
                del model
                gc.collect()
                model, tokenizer = load_policy_model(str(run_dir / f"iter_{k - 1}" / "model"), cfg)
            offset = sum((state.get(f"iter_{j}") or {}).get("steps", 0) for j in range(1, k))
            value = rl_iteration(model, tokenizer, envs, run_dir, cfg, k, offset, on_log, reference=start_dir)
            finish(f"iter_{k}", value)
            state, trained = sync(), True
        if "validation" in envs and not state.done(f"val_{k}") and main:
            if trained:
                finish(f"val_{k}", validate(model, tokenizer, envs, run_dir, f"iter{k}", cfg))
            else:  # resumed between the iteration and its validation
                vmodel, vtok = load_policy_model(str(run_dir / f"iter_{k}" / "model"), cfg)
                finish(f"val_{k}", validate(vmodel, vtok, envs, run_dir, f"iter{k}", cfg))
                del vmodel
        state = sync()
        if main:  # the latest policy and, when selecting on validation, the best so far
            prune_models(run_dir, models_to_keep(cfg, state, k), k)
    stale = (state.get("selection") or {}).get("iterations") != cfg.rl.iterations  # resumed into more iterations
    if not control and stale and main:
        finish("selection", select(cfg, state, run_dir))
    state = sync()
    last = Path(state.get("control")["model"]) if control else Path(state.get("selection")["model"])
    del model
    gc.collect()
    model, tokenizer = load_policy_model(str(last), cfg)

    # 5. final evaluation and report
    if not state.done("eval_final") and main:
        finish("eval_final", evaluate_all(model, tokenizer, envs, run_dir, "final", cfg))
    state = sync()
    return write_report(cfg, run_dir, state) if main else {}


def warm_start(cfg: TrainConfig, records: Sequence[EnvRecord], run_dir: Path) -> dict[str, Any]:
    """SFT on the gold trajectories of ``records`` -> ``<run>/start_model``."""
    from ftrl_lab.train.sft import build_sft_dataset, complexity_level, gold_trajectories, run_sft

    t0 = time.perf_counter()
    model, tokenizer = load_policy_model(cfg.model, cfg)
    dataset, dropped = build_sft_dataset(gold_trajectories(records), tokenizer, max_length=cfg.sft.max_length)
    log.info("SFT on %d gold trajectories (dropped %s)", len(dataset), dropped)
    s = cfg.sft
    result = run_sft(
        model,
        tokenizer,
        dataset,
        str(run_dir / "sft_trainer"),
        learning_rate=s.learning_rate,
        epochs=s.epochs,
        batch_size=s.batch_size,
        gradient_accumulation_steps=s.gradient_accumulation_steps,
        max_length=s.max_length,
        use_cpu=on_cpu(cfg),
        bf16=use_bf16(cfg),
        seed=cfg.seed,
    )
    out = save_model(model, tokenizer, run_dir / "start_model")
    shutil.rmtree(run_dir / "sft_trainer", ignore_errors=True)
    curve = [[r["step"], r["loss"]] for r in result["log_history"] if "loss" in r]
    levels = sorted({complexity_level(r) for r in records})
    return {
        "model": str(out),
        "examples": len(dataset),
        "environments": len(records),
        "complexity": levels,
        "dropped": dropped,
        "epochs": s.epochs,
        "first_loss": curve[0][1] if curve else None,
        "last_loss": curve[-1][1] if curve else None,
        "loss_curve": curve,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def write_report(cfg: TrainConfig, run_dir: Path, state: RunState) -> dict[str, Any]:
    """results.json / results.md / metrics.csv / iterations.csv / curves figure (+ publish copies)."""
    from ftrl_lab.agent.evaluate import machine_info
    from ftrl_lab.train.report import (
        EVAL_SETS,
        compare,
        general_ability_markdown,
        load_metrics,
        plan_fit_markdown,
        plot_curves,
        plot_sft_loss,
        sft_markdown,
        table_markdown,
    )
    from ftrl_lab.train.selection import selection_markdown

    comparisons, md = (
        {},
        [
            f"# Training run `{run_dir.name}`",
            "",
            f"Preset `{cfg.name}`, model `{cfg.model}`, reward `{cfg.rl.reward}`, "
            f"algorithm `{cfg.rl.algorithm}`, "
            + (
                "continued SFT in place of RL (the control: the training reward below is unused). "
                if state.done("control")
                else f"{cfg.rl.iterations} iteration(s). "
            )
            + f"Training reward: rules `{cfg.rl.reward_rules}`, echo guard {'on' if cfg.rl.echo_guard else 'off'}; "
            "evaluations: rules `official`, echo guard off (FTRL's evaluation_self.py). "
            "Points = x100; CIs: paired bootstrap over environments.",
            "",
        ],
    )
    if state.done("control"):
        from ftrl_lab.train.control import control_markdown

        md += [control_markdown(state.get("control")), ""]
    if state.done("sft"):
        md += [sft_markdown(state.get("sft")), ""]
        plot_sft_loss(state.get("sft"), run_dir / "sft_loss.png", title=run_dir.name)
    for name in EVAL_SPLITS:
        title = EVAL_SETS[name]
        where = {"test": cfg.data.test, "heldout": cfg.data.heldout}.get(name, "shared")
        final = eval_episodes(run_dir, "final", name)
        for before, label in (("start", "RL's starting checkpoint"), ("base", f"`{cfg.model}` before any training")):
            start = eval_episodes(run_dir, before, name)
            if len(start) and len(final):
                table = compare(start, final, cfg.eval.bootstrap, cfg.seed)
                comparisons[name if before == "start" else f"{name}_vs_base"] = table.to_dict(orient="records")
                md += [table_markdown(table, f"{title} ({where}): final vs {label}"), ""]
        fits = {t: (state.get(f"eval_{t}") or {}).get(name, {}).get("plan_fit") for t in ("base", "start", "final")}
        fits = {t: f for t, f in fits.items() if f}
        if fits:
            md += [plan_fit_markdown(fits, title), ""]
        if len(final):
            md += [
                f"Echo-check fires in the final evaluation on the {title}: {int(final['echoes'].sum())} call(s).",
                "",
            ]
    selection = selection_markdown(state, cfg.rl.iterations)
    if selection:
        md += [selection, ""]
    iterations = pd.DataFrame(
        [state.get(f"iter_{k}") for k in range(1, cfg.rl.iterations + 1) if state.done(f"iter_{k}")]
    )
    if len(iterations):
        iterations.drop(columns=["prefixes"]).to_csv(run_dir / "iterations.csv", index=False)
    metrics = load_metrics(run_dir)
    if len(metrics):
        metrics.to_csv(run_dir / "metrics.csv", index=False)
        plot_curves(metrics, iterations if len(iterations) else None, run_dir / "curves.png", title=run_dir.name)
    ppl = {t: (state.get(f"eval_{t}") or {}).get("perplexity", {}).get("perplexity") for t in ("start", "final")}
    ability = general_ability_rows(run_dir, state, cfg)
    md += [
        f"Perplexity on generic text (pydoc_data.topics): start {ppl['start']:.2f}, final {ppl['final']:.2f}"
        if None not in ppl.values()
        else "",
        "",
        *([general_ability_markdown(ability), ""] if ability else []),
        f"Time: {state.get('elapsed_seconds')} s over all stages (this machine: {machine_info().get('processor')}, "
        f"{os.cpu_count()} cores; torch CPU threads per (re)start: {'; '.join(state.get('threads') or ['unrecorded'])}).",
    ]
    results = {
        "run": run_dir.name,
        "config": cfg.to_dict(),
        "comparisons": comparisons,
        "perplexity": ppl,
        "general_ability": ability,
        "stages": state.data,
        "machine": machine_info(),
    }
    (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (run_dir / "results.md").write_text("\n".join(md) + "\n")
    if cfg.publish_dir:
        pub = Path(cfg.publish_dir)
        pub.mkdir(parents=True, exist_ok=True)
        for name in ("results.json", "results.md", "iterations.csv", "metrics.csv", "curves.png", "sft_loss.png"):
            if (run_dir / name).exists():
                shutil.copy(run_dir / name, pub / f"{run_dir.name}_{name}")
    return results


def general_ability_rows(run_dir: Path, state: RunState, cfg: TrainConfig) -> list[dict]:
    """Perplexity and HumanEval pass@1, start vs final, with paired bootstrap CIs (those that both
    evaluations have)."""
    from ftrl_lab.agent.humaneval import load_rows
    from ftrl_lab.train.report import pass_at_1_change, perplexity_change

    rows = []
    ppl = [(state.get(f"eval_{t}") or {}).get("perplexity") or {} for t in ("start", "final")]
    if all("window_nll" in p for p in ppl):
        rows.append(perplexity_change(*ppl, cfg.eval.bootstrap, cfg.seed))
    paths = [run_dir / "eval" / f"{t}_humaneval.jsonl" for t in ("start", "final")]
    if all(p.exists() for p in paths):
        rows.append(pass_at_1_change(*(load_rows(p) for p in paths), cfg.eval.bootstrap, cfg.seed))
    return rows


# --- command line ------------------------------------------------------------------------------
def ablation(run_dirs: Sequence[str], out_prefix: str = "data/train/ablation") -> pd.DataFrame:
    """Reward-variant ablation table (CSV + Markdown) and figure from finished runs."""
    from ftrl_lab.train.report import ablation_table, frame_markdown, plot_ablation

    table = ablation_table(run_dirs)
    out = Path(out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(f"{out}.csv", index=False)
    Path(f"{out}.md").write_text(frame_markdown(table) + "\n")
    for eval_set in sorted(set(table["eval_set"])):
        plot_ablation(table, f"{out}_{eval_set}.png", eval_set=eval_set)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if argv and argv[0] == "ablation":
        p = argparse.ArgumentParser(prog="python -m ftrl_lab.train ablation")
        p.add_argument("runs", nargs="+", help="finished run folders")
        p.add_argument("--out", default="data/train/ablation", help="output prefix (.csv/.md/_<set>.png)")
        a = p.parse_args(argv[1:])
        print(ablation(a.runs, a.out).to_string())
        return 0
    if argv and argv[0] == "study":
        from ftrl_lab.train.study import main as study_main

        return study_main(argv[1:], runner=run)
    p = argparse.ArgumentParser(prog="python -m ftrl_lab.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="cpu-smollm2", help="configs/<name>.yaml or a preset file")
    p.add_argument("--reward", default=None, help="rl.reward: solve_f1, solve_precision, solve_rate, solve_pr")
    p.add_argument("--algorithm", default=None, help="rl.algorithm: grpo, reinforce_pp, rloo, continued_sft")
    p.add_argument("--iterations", type=int, default=None, help="rl.iterations")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config key, e.g. --set rl.learning_rate=2e-5 --set eval.ftrl_limit=10",
    )
    p.add_argument("--run-dir", default=None, help="default: <runs_dir>/<preset>_<reward>_<algorithm>")
    p.add_argument("--reuse-start", default=None, help="reuse the starting checkpoint + start eval of this run")
    a = p.parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in a.set:
        if "=" not in item:
            p.error(f"--set expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        overrides[key] = parse_value(value)
    for key, value in (("rl.reward", a.reward), ("rl.algorithm", a.algorithm), ("rl.iterations", a.iterations)):
        if value is not None:
            overrides[key] = value
    cfg = load_config(a.preset, overrides)
    results = run(cfg, a.run_dir, reuse_start=a.reuse_start)
    print((Path(a.run_dir or Path(cfg.runs_dir) / cfg.run_name) / "results.md").read_text())
    return 0 if results else 1


if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
