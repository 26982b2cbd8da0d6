"""The engine against plain ``model.generate`` on the same prompts: speed, memory, greedy identity.

Prompts are random ordinary tokens of fixed lengths (the models are random too), so every
prompt of a batch has the same length and ``model.generate`` runs without padding. Measured:

* greedy identity: each prompt alone, engine vs ``generate`` (asserted by the check), and one
  equal-length batch (recorded: batched kernels may round differently from single-row ones);
* prefill tokens/s at each prompt length (one new token);
* decode tokens/s at each batch size (prefill subtracted for ``generate``; the engine times its
  decode loop itself);
* the sample-group path: ``k`` samples of one prompt (engine: one prefill, ``k`` rows;
  ``generate``: ``num_return_sequences=k``, the prompt expanded ``k`` times);
* peak device memory of each measurement (CUDA only; ``None`` elsewhere).

Every measurement checks a deadline first and is recorded as skipped once it has passed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ftrl_lab.agent.engine import Engine, SamplingParams, stop_token_ids

HF_CACHES = ("dynamic", "static")


@dataclass
class GenerationSettings:
    """Sizes of the generation measurements (the defaults are the GPU run's)."""

    prefill_lengths: tuple[int, ...] = (2048, 8192)
    decode_batches: tuple[int, ...] = (1, 16, 64)
    decode_prompt_tokens: int = 512
    decode_new_tokens: int = 128
    group_size: int = 16
    group_prompt_tokens: int = 2048
    group_new_tokens: int = 256
    identity_prompts: int = 3
    identity_prompt_tokens: int = 256
    identity_new_tokens: int = 32
    hf_cache: str = "dynamic"  # model.generate's cache: "static" also lets transformers torch.compile decode on CUDA
    engine_compile: bool = False  # run the engine on torch.compile(model, dynamic=True)
    compile_backend: str = "inductor"
    time_cap_s: float = 120.0

    def __post_init__(self) -> None:
        if self.hf_cache not in HF_CACHES:
            raise ValueError(f"hf_cache must be one of {HF_CACHES}, got {self.hf_cache!r}")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak allocated memory since the last :func:`reset_peak`, in GiB (CUDA only)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)


def ordinary_token_ids(tokenizer: PreTrainedTokenizerBase, model: PreTrainedModel) -> torch.Tensor:
    """Token ids that are neither special nor end-of-turn (what random prompts are drawn from)."""
    banned = set(tokenizer.all_special_ids) | stop_token_ids(model, tokenizer)
    return torch.tensor([i for i in range(len(tokenizer)) if i not in banned])


def random_prompts(pool: torch.Tensor, n: int, length: int, seed: int) -> list[list[int]]:
    """``n`` prompts of ``length`` ids drawn from ``pool`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    return pool[torch.randint(len(pool), (n, length), generator=g)].tolist()


def trim_at_stop(tokens: list[int], stop: set[int]) -> list[int]:
    """``generate``'s row up to and including its first end token (the rest is padding)."""
    for i, t in enumerate(tokens):
        if t in stop:
            return tokens[: i + 1]
    return tokens


class Baseline:
    """Plain ``model.generate`` on equal-length prompts, timed."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, cache: str = "dynamic"):
        self.model, self.cache = model, cache
        self.device = next(model.parameters()).device
        self.stop = stop_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id

    @torch.inference_mode()
    def run(
        self, prompts: list[list[int]], new_tokens: int, *, sample: bool = False, n: int = 1
    ) -> tuple[list[list[int]], float]:
        """Completions (trimmed at the end token) and wall seconds."""
        x = torch.tensor(prompts, device=self.device)
        kw: dict[str, Any] = dict(
            attention_mask=torch.ones_like(x),
            max_new_tokens=new_tokens,
            do_sample=sample,
            num_return_sequences=n,
            pad_token_id=self.pad_id,
        )
        kw.update(temperature=1.0, top_p=1.0, top_k=0) if sample else kw.update(
            temperature=None, top_p=None, top_k=None
        )
        if self.cache == "static":
            kw["cache_implementation"] = "static"
        synchronize(self.device)
        t0 = time.perf_counter()
        out = self.model.generate(x, **kw)
        synchronize(self.device)
        seconds = time.perf_counter() - t0
        return [trim_at_stop(row, self.stop) for row in out[:, x.shape[1] :].tolist()], seconds


def timed_engine(engine: Engine, call: Callable[[], Any]) -> tuple[Any, float]:
    synchronize(engine.device)
    t0 = time.perf_counter()
    out = call()
    synchronize(engine.device)
    return out, time.perf_counter() - t0


def measure_generation(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, settings: GenerationSettings, seed: int = 0
) -> dict[str, Any]:
    """All generation measurements of one model (see the module docstring)."""
    device = next(model.parameters()).device
    deadline = time.perf_counter() + settings.time_cap_s
    engine_model = model
    if settings.engine_compile:
        engine_model = torch.compile(model, dynamic=True, backend=settings.compile_backend)
    hf = Baseline(model, tokenizer, settings.hf_cache)
    pool = ordinary_token_ids(tokenizer, model)
    result: dict[str, Any] = {
        "settings": asdict(settings),
        "attn_implementation": model.config._attn_implementation,
        "hf_cache": settings.hf_cache,
        "hf_compiled_by_transformers": settings.hf_cache == "static" and device.type == "cuda",
        "engine_compile": settings.engine_compile,
        "skipped": [],
    }

    def engine(batch_size: int) -> Engine:
        return Engine(engine_model, tokenizer, batch_size=batch_size, seed=seed)

    def left(what: str) -> bool:
        if time.perf_counter() < deadline:
            return True
        result["skipped"].append(f"{what}: time cap {settings.time_cap_s:.0f} s reached")
        return False

    # warm-up (kernel selection, cuBLAS handles, compilation) outside every measurement
    warm = random_prompts(pool, 2, 16, seed)
    engine(2).generate(warm, SamplingParams(max_new_tokens=4))
    hf.run(warm, 4)

    # greedy identity
    greedy = SamplingParams(max_new_tokens=settings.identity_new_tokens)
    prompts = random_prompts(pool, settings.identity_prompts, settings.identity_prompt_tokens, seed + 1)
    solo = []
    for p in prompts:
        mine = engine(1).generate([p], greedy)[0].token_ids
        theirs = hf.run([p], settings.identity_new_tokens)[0][0]
        solo.append({"identical": mine == theirs, "first_difference": _first_difference(mine, theirs)})
    batch_mine = [g.token_ids for g in engine(len(prompts)).generate(prompts, greedy)]
    batch_theirs = hf.run(prompts, settings.identity_new_tokens)[0]
    result["greedy_identity"] = {
        "single": solo,
        "identical": all(s["identical"] for s in solo),
        "batched_identical": batch_mine == batch_theirs,
        "tokens_compared": settings.identity_new_tokens,
    }

    # prefill
    result["prefill"] = []
    one = SamplingParams(max_new_tokens=1)
    for length in settings.prefill_lengths:
        if not left(f"prefill {length}"):
            break
        p = random_prompts(pool, 1, length, seed + 2 + length)
        reset_peak(device)
        gen = engine(1).generate(p, one)[0]
        engine_peak = peak_gib(device)
        reset_peak(device)
        _, hf_s = hf.run(p, 1)
        hf_peak = peak_gib(device)
        result["prefill"].append(
            _pair("prompt_tokens", length, length / gen.prefill_seconds, length / hf_s, engine_peak, hf_peak)
        )

    # decode
    result["decode"] = []
    params = SamplingParams(max_new_tokens=settings.decode_new_tokens)
    for batch in settings.decode_batches:
        if not left(f"decode batch {batch}"):
            break
        p = random_prompts(pool, batch, settings.decode_prompt_tokens, seed + 3 + batch)
        reset_peak(device)
        gens = engine(batch).generate(p, params)
        engine_peak = peak_gib(device)
        engine_tokens = sum(max(g.completion_tokens - 1, 0) for g in gens)  # the first comes from the prefill
        engine_tps = engine_tokens / max(max(g.decode_seconds for g in gens), 1e-9)
        reset_peak(device)
        _, hf_prefill_s = hf.run(p, 1)
        rows, hf_s = hf.run(p, settings.decode_new_tokens)
        hf_peak = peak_gib(device)
        hf_tokens = sum(max(len(r) - 1, 0) for r in rows)
        hf_tps = hf_tokens / max(hf_s - hf_prefill_s, 1e-9)
        result["decode"].append(_pair("batch", batch, engine_tps, hf_tps, engine_peak, hf_peak))

    # the sample-group path
    if left("sample group"):
        k = settings.group_size
        p = random_prompts(pool, 1, settings.group_prompt_tokens, seed + 4)
        sampled = SamplingParams(max_new_tokens=settings.group_new_tokens, temperature=1.0)
        eng = engine(k)
        reset_peak(device)
        gens, engine_s = timed_engine(eng, lambda: eng.generate_n(p, k, sampled)[0])
        engine_peak = peak_gib(device)
        reset_peak(device)
        rows, hf_s = hf.run(p, settings.group_new_tokens, sample=True, n=k)
        hf_peak = peak_gib(device)
        row = _pair(
            "group_size",
            k,
            sum(g.completion_tokens for g in gens) / engine_s,
            sum(len(r) for r in rows) / hf_s,
            engine_peak,
            hf_peak,
        )
        row.update(prompt_tokens=settings.group_prompt_tokens, engine_seconds=engine_s, generate_seconds=hf_s)
        result["sample_group"] = row
    return result


def _first_difference(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def _pair(key: str, value: int, engine_tps: float, hf_tps: float, engine_peak, hf_peak) -> dict[str, Any]:
    """One engine-vs-generate row: tokens/s of each, their ratio and the peak memory of each."""
    return {
        key: value,
        "engine_tokens_per_s": round(engine_tps, 1),
        "generate_tokens_per_s": round(hf_tps, 1),
        "engine_over_generate": round(engine_tps / hf_tps, 3) if hf_tps > 0 else None,
        "engine_peak_gib": engine_peak,
        "generate_peak_gib": hf_peak,
    }
