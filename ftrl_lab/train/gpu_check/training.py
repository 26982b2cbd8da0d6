"""A few SFT and GRPO steps of a preset on a (random) model: seconds per step, tokens/s, memory, loss.

Both go through the project's own training paths: SFT through :func:`ftrl_lab.train.sft.run_sft`
on gold trajectories played in the sandbox, GRPO through :func:`ftrl_lab.train.loop.make_trainer`
(TRL's GRPOTrainer with Engine generation, the preset's group size, lengths, LoRA or full
fine-tuning, KL reference, and the sandboxed Solve-F1 reward). Only the step count, the prompts
per step and the time cap differ from a real run; a callback stops training at the cap.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback

from ftrl_lab.core.records import EnvRecord
from ftrl_lab.train.config import TrainConfig, lora_kwargs
from ftrl_lab.train.gpu_check.generation import peak_gib, reset_peak


@dataclass
class TrainSettings:
    """How much of a preset the check trains (the defaults are the GPU run's)."""

    sft_steps: int = 3
    grpo_steps: int = 2
    prompts_per_step: int = 1
    sft_max_length: int = 8192
    time_cap_s: float = 90.0


class StepClock(TrainerCallback):
    """Wall time of every optimizer step, the tokens each GRPO step trained on, and a time cap."""

    def __init__(self, device: torch.device, cap_s: float):
        self.device, self.cap_s = device, cap_s
        self.seconds: list[float] = []
        self.tokens: list[int] = []
        self.trainer: Any = None  # set after the trainer exists (GRPO: its last generation)
        self.stopped_by_cap = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_begin(self, args, state, control, **kwargs):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds.append(time.perf_counter() - self.t0)
        generation = getattr(self.trainer, "ftrl_last_generation", None)
        if generation is not None:
            self.tokens.append(
                sum(len(p) + len(c) for p, c in zip(generation["prompt_ids"], generation["completion_ids"]))
            )
        if time.perf_counter() - self.start > self.cap_s:
            self.stopped_by_cap = True
            control.should_training_stop = True


def step_summary(clock: StepClock, log_history: list[dict], tokens_per_step: list[int]) -> dict[str, Any]:
    """Per-step timing, throughput and losses of one short training run."""
    losses = [float(r["loss"]) for r in log_history if "loss" in r]
    steady = clock.seconds[1:] or clock.seconds  # the first step pays warm-up
    tokens = tokens_per_step[: len(clock.seconds)]
    return {
        "steps": len(clock.seconds),
        "first_step_s": round(clock.seconds[0], 3) if clock.seconds else None,
        "seconds_per_step": round(statistics.median(steady), 3) if steady else None,
        "tokens_per_step": round(statistics.mean(tokens), 1) if tokens else None,
        "tokens_per_s": round(sum(tokens) / sum(clock.seconds), 1) if tokens and clock.seconds else None,
        "losses": losses,
        "loss_finite": bool(losses) and all(math.isfinite(x) for x in losses),
        "stopped_by_time_cap": clock.stopped_by_cap,
    }


def run_sft_steps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: list[EnvRecord],
    cfg: TrainConfig,
    settings: TrainSettings,
    out_dir: Path,
    *,
    bf16: bool,
) -> dict[str, Any]:
    """``settings.sft_steps`` SFT steps (one gold trajectory each) with LoRA when ``cfg.rl.lora``.

    The model is trained in place; a LoRA adapter is removed again afterwards (not merged).
    """
    from ftrl_lab.core.executor import sandbox_executor
    from ftrl_lab.train.sft import build_sft_dataset, gold_trajectories, run_sft

    device = next(model.parameters()).device
    trajectories = gold_trajectories(records, sandbox_executor())
    dataset, dropped = build_sft_dataset(trajectories, tokenizer, max_length=settings.sft_max_length)
    if len(dataset) == 0:
        raise RuntimeError(f"no gold trajectory fits sft_max_length={settings.sft_max_length} ({dropped})")
    lengths = [len(ids) for ids in dataset["input_ids"]]
    target = model
    if cfg.rl.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(task_type="CAUSAL_LM", **lora_kwargs(cfg.rl.lora, model.config.num_hidden_layers))
        target = get_peft_model(model, lora)
    clock = StepClock(device, settings.time_cap_s)
    reset_peak(device)
    log = run_sft(
        target,
        tokenizer,
        dataset,
        str(out_dir),
        learning_rate=cfg.sft.learning_rate,
        batch_size=1,
        gradient_accumulation_steps=1,
        max_length=settings.sft_max_length,
        use_cpu=device.type == "cpu",
        bf16=bf16,
        seed=cfg.seed,
        extra_args={"max_steps": settings.sft_steps, "include_num_input_tokens_seen": "all"},
        callbacks=[clock],
    )
    peak = peak_gib(device)
    if cfg.rl.lora:
        target.unload()  # back to the plain model for the GRPO section
    tokens_seen = [r["num_input_tokens_seen"] for r in log["log_history"] if "num_input_tokens_seen" in r]
    per_step = [b - a for a, b in zip([0, *tokens_seen], tokens_seen)] if tokens_seen else []
    summary = step_summary(clock, log["log_history"], per_step)
    summary.update(
        lora=bool(cfg.rl.lora),
        examples=len(dataset),
        dropped=dropped,
        sequence_tokens_mean=round(statistics.mean(lengths), 1),
        peak_gib=peak,
    )
    return summary


def run_grpo_steps(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    records: list[EnvRecord],
    cfg: TrainConfig,
    settings: TrainSettings,
    out_dir: Path,
    reference: str | None = None,
) -> dict[str, Any]:
    """``settings.grpo_steps`` GRPO steps of ``cfg`` (its group size, lengths, LoRA, beta, reward)."""
    from ftrl_lab.train.data import build_prefix_dataset
    from ftrl_lab.train.loop import make_trainer

    device = next(model.parameters()).device
    dataset, report = build_prefix_dataset(records, tokenizer, max_prompt_tokens=cfg.rl.max_prompt_tokens)
    if len(dataset) < cfg.rl.prompts_per_step:
        raise RuntimeError(f"only {len(dataset)} prompts fit rl.max_prompt_tokens={cfg.rl.max_prompt_tokens}")
    clock = StepClock(device, settings.time_cap_s)
    reset_peak(device)
    trainer = make_trainer(model, tokenizer, dataset, cfg, out_dir, callbacks=[clock], reference=reference)
    clock.trainer = trainer
    trainer.train()
    peak = peak_gib(device)
    summary = step_summary(clock, trainer.state.log_history, clock.tokens)
    logged = [r for r in trainer.state.log_history if "loss" in r]
    summary.update(
        lora=bool(cfg.rl.lora),
        beta=cfg.rl.beta,
        group_size=cfg.rl.num_generations,
        prompts_per_step=cfg.rl.prompts_per_step,
        max_new_tokens=cfg.rl.max_new_tokens,
        gradient_checkpointing=bool(trainer.args.gradient_checkpointing),
        prompt_tokens_mean=report.to_dict().get("prompt_tokens_mean"),
        rewards=[r.get("reward") for r in logged],
        completion_length_mean=[r.get("completions/mean_length") for r in logged],
        generation_seconds=(trainer.ftrl_generation_stats or {}).get("seconds")
        if hasattr(trainer, "ftrl_generation_stats")
        else None,
        peak_gib=peak,
        settings=asdict(settings),
    )
    del trainer
    return summary
