"""Decode speed of the rollout engine against llama.cpp, side by side in one run.

One FTRL test prompt (rendered with its tools by the model's chat template, cut to
``--prompt-tokens`` tokens), greedy, 1 CPU thread by default. Rows:

  * ``engine fp32``: :class:`ftrl_lab.agent.engine.Engine` as it was (fp32 linears);
  * ``engine fast-decode``: the same engine with ``fast_decode=True`` (oneDNN prepacked bf16
    linears, :mod:`ftrl_lab.agent.bf16_linears`; the native one-query attention kernel,
    :mod:`ftrl_lab.agent.cpu_kernels`; for Llama-family models the module-free decode step,
    :mod:`ftrl_lab.agent.decode_step`), at batch 1 and at ``--batches``;
  * ``llama.cpp F32`` / ``llama.cpp BF16``: ``llama-cpp-python`` on GGUF files of the same
    weights (``--gguf-f32`` / ``--gguf-bf16``; made with llama.cpp's ``convert_hf_to_gguf.py``,
    see docs/RESULTS.md). Skipped, with a note, when ``llama_cpp`` is not installed.

Each row prints prefill tokens/s, decode ms per step (best of ``--reps``), the ratio of
llama.cpp F32's decode time to the row's (> 1: the row is faster) and how many of the first
greedy tokens equal the fp32 engine's. The machine may be shared: the load average is printed
before and after, and every ratio comes from rows measured in the same run.

    python perf/bench_decode.py --gguf-f32 smollm2-f32.gguf --gguf-bf16 smollm2-bf16.gguf
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from ftrl_lab.agent.cpu_kernels import load_library
from ftrl_lab.agent.engine import Engine, KVState
from ftrl_lab.agent.models import load_model
from ftrl_lab.agent.sampling import SamplingParams
from ftrl_lab.core.records import default_test_set, load_records


def ftrl_prompt(tokenizer, n_tokens: int) -> list[int]:
    """The first FTRL test prompt with at least ``n_tokens`` tokens, cut to ``n_tokens``."""
    for record in load_records(default_test_set()):
        text = tokenizer.apply_chat_template(
            record.messages, tools=record.tools, tokenize=False, add_generation_prompt=True
        )
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) >= n_tokens:
            return ids[:n_tokens]
    raise ValueError(f"no FTRL test prompt has {n_tokens} tokens")


def engine_row(model, tokenizer, prompt, batch: int, new_tokens: int, reps: int, fast: bool) -> dict:
    """Prefill tokens/s (batch 1) and decode ms/step at ``batch`` rows of the same prompt."""
    engine = Engine(model, tokenizer, batch_size=batch, fast_decode=fast, seed=0)
    params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)
    prefill, decode, tokens = [], [], None
    for _ in range(reps):
        state = KVState()
        t0 = time.perf_counter()
        engine.generate([prompt], SamplingParams(max_new_tokens=1, temperature=0.0), [state])
        prefill.append(time.perf_counter() - t0)
        gens = engine.generate_n([prompt], batch, params, [state])[0]  # prompt cached: decode only
        steps = max(len(g.token_ids) for g in gens) - 1
        decode.append(gens[0].decode_seconds / max(steps, 1))
        tokens = gens[0].token_ids
    return {
        "prefill_tok_s": len(prompt) / min(prefill),
        "decode_ms": 1e3 * min(decode),
        "tokens": tokens,
        "bf16_linears": engine.bf16_linears,
        "decode_attention": engine.decode_attention,
        "decode_step": engine.decode_step is not None,
        "attention_kernel": load_library() is not None,
    }


def llama_row(path: str, prompt, new_tokens: int, reps: int, threads: int) -> dict:
    """The same measurement through llama-cpp-python (greedy: top_k=1)."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=path,
        n_ctx=len(prompt) + new_tokens + 8,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=512,
        verbose=False,
    )
    prefill, decode, tokens = [], [], None
    for _ in range(reps):
        llm.reset()
        out, stamps = [], []
        t0 = time.perf_counter()
        for tok in llm.generate(prompt, top_k=1, temp=0.0, reset=True):  # first token: after the prefill
            stamps.append(time.perf_counter())
            out.append(tok)
            if len(out) >= new_tokens or tok == llm.token_eos():
                break
        prefill.append(stamps[0] - t0)
        decode.append((stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1))
        tokens = out
    return {"prefill_tok_s": len(prompt) / min(prefill), "decode_ms": 1e3 * min(decode), "tokens": tokens}


def same_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default")
    p.add_argument("--prompt-tokens", type=int, default=1504)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", default="8,16", help="extra engine batch sizes (fast-decode vs fp32)")
    p.add_argument("--gguf-f32", default=None)
    p.add_argument("--gguf-bf16", default=None)
    p.add_argument("--out", default="runs/bench/decode.json")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    model, tokenizer = load_model(a.model, dtype="fp32", device="cpu")
    model.eval()
    prompt = ftrl_prompt(tokenizer, a.prompt_tokens)
    rows: dict[str, dict] = {}
    rows["engine fp32 b1"] = engine_row(model, tokenizer, prompt, 1, a.new_tokens, a.reps, False)
    rows["engine fast-decode b1"] = engine_row(model, tokenizer, prompt, 1, a.new_tokens, a.reps, True)
    for name, path in (("llama.cpp F32 b1", a.gguf_f32), ("llama.cpp BF16 b1", a.gguf_bf16)):
        if not path:
            continue
        try:
            rows[name] = llama_row(path, prompt, a.new_tokens, a.reps, a.threads)
        except ImportError:
            print(f"{name}: skipped (pip install llama-cpp-python to compare)")
            break
    for b in (int(x) for x in a.batches.split(",") if x):
        rows[f"engine fp32 b{b}"] = engine_row(model, tokenizer, prompt, b, a.new_tokens, a.reps, False)
        rows[f"engine fast-decode b{b}"] = engine_row(model, tokenizer, prompt, b, a.new_tokens, a.reps, True)
    ref = rows["engine fp32 b1"]["tokens"]
    llama = rows.get("llama.cpp F32 b1")
    print(
        f"prompt {len(prompt)} tokens, {a.new_tokens} new tokens, {a.threads} thread(s), "
        f"{platform.processor() or platform.machine()}, load {load_before[0]:.2f} -> {os.getloadavg()[0]:.2f}"
    )
    print(f"{'row':28s} {'prefill tok/s':>13s} {'decode ms/step':>14s} {'vs llama.cpp F32':>16s} {'same greedy':>11s}")
    for name, r in rows.items():
        batch = int(name.rsplit("b", 1)[1])
        ratio = f"{llama['decode_ms'] / r['decode_ms']:.2f}x" if llama and batch == 1 else "-"
        same = f"{same_prefix(ref, r['tokens'])}/{len(ref)}"
        print(f"{name:28s} {r['prefill_tok_s']:13.0f} {r['decode_ms']:14.1f} {ratio:>16s} {same:>11s}")
    fast = rows["engine fast-decode b1"]
    print(f"fast-decode: decode_step {fast['decode_step']}, native attention kernel {fast['attention_kernel']}")
    for b in (int(x) for x in a.batches.split(",") if x):
        fp32, bf16 = rows[f"engine fp32 b{b}"], rows[f"engine fast-decode b{b}"]
        print(
            f"batch {b}: fast-decode {fp32['decode_ms'] / bf16['decode_ms']:.2f}x faster per step "
            f"({1e3 * b / bf16['decode_ms']:.0f} tokens/s)"
        )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "threads": a.threads, "load": [load_before, os.getloadavg()]}, indent=1))


if __name__ == "__main__":
    main()
