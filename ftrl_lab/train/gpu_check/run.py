"""``python -m ftrl_lab.gpu_check``: the whole GPU check, one command (``scripts/gpu_check.sh`` wraps it).

For each job (by default Qwen2.5-7B shape + the LoRA preset, Qwen2.5-0.5B shape + full fine-tuning)
it builds the random-init model on the device, measures the engine against ``model.generate``
(:mod:`.generation`), runs a few SFT and GRPO steps (:mod:`.training`) and writes
``gpu_check.json`` / ``gpu_check.md`` (:mod:`.report`). Every section has a time cap and the
whole check a budget; a failing section is recorded and the next one runs. Exit status 0 only
when greedy outputs were identical, every loss finite and no section failed.

``--tiny`` shrinks the shapes, lengths and group sizes so the same path runs on a CPU in seconds.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from ftrl_lab.agent.evaluate import machine_info
from ftrl_lab.agent.models import model_info, pick_device, pick_dtype
from ftrl_lab.train.config import TrainConfig, load_config
from ftrl_lab.train.gpu_check.generation import GenerationSettings, measure_generation
from ftrl_lab.train.gpu_check.report import summary_lines, write_outputs
from ftrl_lab.train.gpu_check.shapes import build_model, load_shape, tiny_shape
from ftrl_lab.train.gpu_check.training import TrainSettings, run_grpo_steps, run_sft_steps

SECTIONS = ("generation", "sft", "grpo")
DEFAULT_JOBS = ("qwen2.5-7b:gpu-qwen2.5-7b-lora:lora", "qwen2.5-0.5b:gpu-qwen3-8b:full")
TINY_GENERATION = GenerationSettings(
    prefill_lengths=(32, 128),
    decode_batches=(1, 4),
    decode_prompt_tokens=16,
    decode_new_tokens=4,
    group_size=4,
    group_prompt_tokens=32,
    group_new_tokens=4,
    identity_prompts=2,
    identity_prompt_tokens=16,
    identity_new_tokens=6,
)
TINY_RL = {"rl.num_generations": 4, "rl.max_new_tokens": 6, "rl.max_prompt_tokens": 4096}


@dataclass
class Job:
    """One model shape trained with one preset's settings (``tuning``: "lora", "full" or "preset")."""

    shape: str
    preset: str
    tuning: str = "preset"

    @classmethod
    def parse(cls, text: str) -> Job:
        parts = text.split(":")
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("lora", "full", "preset")):
            raise ValueError(f"--job {text!r}: expected SHAPE:PRESET[:lora|full|preset]")
        return cls(*parts)


@dataclass
class CheckOptions:
    """Everything one check run does."""

    out_dir: Path = Path("runs/gpu_check")
    jobs: list[Job] = field(default_factory=lambda: [Job.parse(j) for j in DEFAULT_JOBS])
    sections: tuple[str, ...] = SECTIONS
    tiny: bool = False
    device: str = "auto"
    tokenizer: str = "default"
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    training: TrainSettings = field(default_factory=TrainSettings)
    budget_s: float = 450.0
    seed: int = 0


def versions() -> dict[str, str | None]:
    """Versions of the libraries the check runs with (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "peft", "trl", "accelerate", "datasets"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def environment(device: torch.device) -> dict[str, Any]:
    """Device name, bf16 support, CUDA version and library versions."""
    cuda = device.type == "cuda"
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if cuda else machine_info().get("processor"),
        "bf16_supported": torch.cuda.is_bf16_supported() if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
        "memory_gib": round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1) if cuda else None,
        "versions": versions(),
        "machine": machine_info(),
    }


def load_tokenizer(spec: str):
    """ "tiny" (the offline test tokenizer), "default" (SmolLM2's, converting it if needed) or a folder."""
    from ftrl_lab.agent.models import prepare_tokenizer, resolve_model_path, tiny_tokenizer

    if spec == "tiny":
        return tiny_tokenizer()
    from transformers import AutoTokenizer

    return prepare_tokenizer(AutoTokenizer.from_pretrained(resolve_model_path(spec)))


def job_config(job: Job, options: CheckOptions, device: torch.device) -> TrainConfig:
    """The job's preset with the check's step counts (and CPU sizes in tiny mode)."""
    t = options.training
    overrides: dict[str, Any] = {
        "device": str(device),
        "seed": options.seed,
        "rl.prompts_per_step": t.prompts_per_step,
        "rl.micro_batch_prompts": 1,
        "rl.save_steps": 0,
        "rl.trl": {"max_steps": t.grpo_steps},
    }
    if job.tuning == "full":
        overrides["rl.lora"] = None
    elif job.tuning == "lora":
        preset_lora = load_config(job.preset).rl.lora
        overrides["rl.lora"] = preset_lora or {"r": 64, "lora_alpha": 128, "target_modules": "all-linear"}
    if options.tiny:
        overrides.update(TINY_RL)
        if device.type == "cpu":
            overrides.update({"dtype": "fp32", "mixed_precision": "no"})
    return load_config(job.preset, overrides)


def task_records(cfg: TrainConfig, options: CheckOptions):
    """Enough envgen environments for the SFT and GRPO steps (the preset's complexity; 0 when tiny)."""
    from ftrl_lab.envgen.pipeline import generate_records

    t = options.training
    n = max(t.sft_steps, t.grpo_steps * t.prompts_per_step) + 2
    records, _ = generate_records(n, seed=options.seed + 7, complexity="0" if options.tiny else cfg.data.complexity)
    return records


def guarded(results: dict[str, Any], where: str, fn, *args, **kwargs) -> dict[str, Any] | None:
    """Run one section; an exception is recorded under ``results["errors"]`` and the check goes on."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - a failing section must not hide the others' figures
        results["errors"][where] = f"{type(e).__name__}: {e}"
        results.setdefault("tracebacks", {})[where] = traceback.format_exc(limit=8)
        print(f"gpu_check: {where} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return None
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_job(job: Job, options: CheckOptions, tokenizer, device: torch.device, results: dict, deadline: float) -> None:
    """Build one shape and run the chosen sections on it, filling ``results["shapes"][name]``."""
    cfg = job_config(job, options, device)
    shape = load_shape(job.shape)
    shape = tiny_shape(shape) if options.tiny else shape
    name = shape.name
    entry: dict[str, Any] = {"preset": job.preset, "tuning": "LoRA" if cfg.rl.lora else "full", "source": shape.source}
    results["shapes"][name] = entry
    t0 = time.perf_counter()
    model = build_model(shape, tokenizer, dtype=pick_dtype(cfg.dtype, device), device=device, seed=options.seed)
    entry["build_s"] = round(time.perf_counter() - t0, 1)
    entry["model"] = model_info(model)
    records = task_records(cfg, options) if {"sft", "grpo"} & set(options.sections) else []
    work = options.out_dir / "work" / name
    from ftrl_lab.train.loop import use_bf16

    for section in options.sections:
        if time.perf_counter() > deadline:
            entry[section] = {"skipped": f"check budget {options.budget_s:.0f} s reached"}
            continue
        t1 = time.perf_counter()
        if section == "generation":
            entry[section] = guarded(
                results, f"{name}/generation", measure_generation, model, tokenizer, options.generation
            )
        elif section == "sft":
            entry[section] = guarded(
                results, f"{name}/sft", run_sft_steps, model, tokenizer, records, cfg, options.training,
                work / "sft", bf16=use_bf16(cfg),
            )  # fmt: skip
        elif section == "grpo":
            reference = None
            if cfg.rl.beta and not cfg.rl.lora:  # TRL loads the KL reference of full fine-tuning from a folder
                reference = str(work / "reference_model")
                model.save_pretrained(reference)
                tokenizer.save_pretrained(reference)
            entry[section] = guarded(
                results, f"{name}/grpo", run_grpo_steps, model, tokenizer, records, cfg, options.training,
                work / "grpo", reference=reference,
            )  # fmt: skip
        if entry.get(section) is not None:
            entry[section]["section_s"] = round(time.perf_counter() - t1, 1)
    del model
    shutil.rmtree(work, ignore_errors=True)


def checks(results: dict[str, Any]) -> dict[str, bool | None]:
    """The verdicts: greedy identity (single rows) and finite losses over every shape; None: not run."""
    identical = [
        e["generation"]["greedy_identity"]["identical"] for e in results["shapes"].values() if e.get("generation")
    ]
    finite = [
        e[s]["loss_finite"] for e in results["shapes"].values() for s in ("sft", "grpo") if e.get(s, {}).get("steps")
    ]
    return {
        "greedy_identical_engine_vs_generate": all(identical) if identical else None,
        "losses_finite": all(finite) if finite else None,
    }


def run_check(options: CheckOptions) -> dict[str, Any]:
    """Run the check and write its outputs; returns the results (also in ``gpu_check.json``)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    start = time.perf_counter()
    deadline = start + options.budget_s
    device = pick_device(options.device)
    tokenizer = load_tokenizer(options.tokenizer)
    results: dict[str, Any] = {
        "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "tiny": options.tiny,
        "environment": environment(device),
        "tokenizer": {"spec": options.tokenizer, "vocab": len(tokenizer), "name": tokenizer.name_or_path or "tiny"},
        "modes": {
            "attn_implementation": "sdpa",
            "hf_cache": options.generation.hf_cache,
            "hf_compiled_by_transformers": options.generation.hf_cache == "static" and device.type == "cuda",
            "engine_compile": options.generation.engine_compile,
        },
        "sections": list(options.sections),
        "shapes": {},
        "errors": {},
    }
    for job in options.jobs:
        if time.perf_counter() > deadline:
            results["errors"][job.shape] = f"not run: check budget {options.budget_s:.0f} s reached"
            continue
        guarded(results, f"{job.shape}:{job.preset}", run_job, job, options, tokenizer, device, results, deadline)
    results["checks"] = checks(results)
    results["ok"] = not results["errors"] and all(v is not False for v in results["checks"].values())
    results["seconds"] = round(time.perf_counter() - start, 1)
    write_outputs(results, options.out_dir)
    return results


def parse_args(argv: list[str] | None = None) -> CheckOptions:
    ap = argparse.ArgumentParser(prog="python -m ftrl_lab.gpu_check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/gpu_check", help="output folder (gpu_check.json, gpu_check.md)")
    ap.add_argument("--tiny", action="store_true", help="tiny shapes and lengths (runs on a CPU in seconds)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tokenizer", default="default", help='"default" (SmolLM2), "tiny", or a tokenizer folder')
    ap.add_argument("--job", action="append", help=f"SHAPE:PRESET[:lora|full] (repeatable; default {DEFAULT_JOBS})")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    ap.add_argument("--budget-s", type=float, default=450.0, help="whole-check budget (sections after it are skipped)")
    ap.add_argument("--generation-cap-s", type=float, default=None)
    ap.add_argument("--train-cap-s", type=float, default=None, help="time cap of each SFT / GRPO section")
    ap.add_argument("--sft-steps", type=int, default=3)
    ap.add_argument("--grpo-steps", type=int, default=2)
    ap.add_argument("--prompts-per-step", type=int, default=1)
    ap.add_argument("--hf-cache", choices=("dynamic", "static"), default="dynamic")
    ap.add_argument("--engine-compile", action="store_true", help="run the engine on torch.compile(model)")
    ap.add_argument("--compile-backend", default="inductor")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    sections = tuple(s for s in a.sections.split(",") if s)
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        ap.error(f"--sections: unknown {unknown} (choose from {SECTIONS})")
    base = TINY_GENERATION if a.tiny else GenerationSettings()
    generation = GenerationSettings(
        **{
            **base.__dict__,
            "hf_cache": a.hf_cache,
            "engine_compile": a.engine_compile,
            "compile_backend": a.compile_backend,
            "time_cap_s": a.generation_cap_s or base.time_cap_s,
        }
    )
    training = TrainSettings(
        sft_steps=a.sft_steps,
        grpo_steps=a.grpo_steps,
        prompts_per_step=a.prompts_per_step,
        sft_max_length=4096 if a.tiny else TrainSettings.sft_max_length,
        time_cap_s=a.train_cap_s or TrainSettings.time_cap_s,
    )
    try:
        jobs = [Job.parse(j) for j in (a.job or DEFAULT_JOBS)]
    except ValueError as e:
        ap.error(str(e))
    return CheckOptions(
        out_dir=Path(a.out),
        jobs=jobs,
        sections=sections,
        tiny=a.tiny,
        device=a.device,
        tokenizer=a.tokenizer,
        generation=generation,
        training=training,
        budget_s=a.budget_s,
        seed=a.seed,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the check; print the summary; exit 0 when every check passed."""
    options = parse_args(argv)
    results = run_check(options)
    print("\n".join(summary_lines(results)))
    print(f"gpu_check: wrote {options.out_dir / 'gpu_check.json'} and {options.out_dir / 'gpu_check.md'}")
    return 0 if results["ok"] else 1
