"""How fast is the default model on this machine? Numbers for planning the rollout engine.

Measures, on FTRL test prompts rendered with their tools (chat template of the model):
  * prefill tokens/s at prompt lengths ~500 / 1500 / 3000 (batch 1);
  * decode tokens/s at batch 1, 4 and 8 (``generate``, greedy, fixed length);
  * a naively left-padded batch of 4 prompts of mixed length vs the same 4 one after another;
  * extending a conversation by one tool round: prefill of only the new tokens on a reused
    ``DynamicCache`` vs re-prefilling the whole prompt (and whether the logits agree).

Timings are the best of a few repetitions; the machine may be shared, so treat them as
approximate (the load average at start and end is printed). Runs in about 2 minutes on an
idle 2-core machine; much longer when other jobs compete for the cores.

    python perf/bench_model_speed.py [--model default] [--device cpu] [--out runs/bench/model_speed.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from transformers import DynamicCache, LogitsProcessor, LogitsProcessorList

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from ftrl_lab.agent.models import load_model, model_info
from ftrl_lab.core.records import default_test_set, load_records

PREFILL_LENGTHS = (500, 1500, 3000)
DECODE_BATCHES = (1, 4, 8)
DECODE_TOKENS = 16
MIXED_LENGTHS = (500, 700, 1000, 1300)
MIXED_NEW_TOKENS = 8


def best_time(fn, reps: int) -> float:
    """Fastest of ``reps`` runs of ``fn`` (seconds)."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


class StepClock(LogitsProcessor):
    """Records the time at which ``generate`` asks for each next token's scores."""

    def __init__(self):
        self.stamps: list[float] = []

    def __call__(self, input_ids, scores):
        self.stamps.append(time.perf_counter())
        return scores


def timed_generate(model, input_ids, attention_mask, n: int) -> tuple[float, float]:
    """(prefill seconds, mean seconds per decode step) of one greedy ``generate`` of n tokens."""
    clock = StepClock()
    t0 = time.perf_counter()
    model.generate(
        input_ids,
        attention_mask=attention_mask,
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=False,
        logits_processor=LogitsProcessorList([clock]),
    )
    end = time.perf_counter()
    return clock.stamps[0] - t0, (end - clock.stamps[0]) / (n - 1) if n > 1 else 0.0


def ftrl_prompts(tokenizer, targets, max_records: int = 20) -> dict[int, tuple[list[dict], list[dict], list[int]]]:
    """For each target length, the FTRL test prompt (first user turn + its first k tools) whose
    rendered token count is closest to it: {target: (messages, tools, token ids)}."""
    records = load_records(default_test_set())[:max_records]
    best: dict[int, tuple[int, tuple]] = {}
    for rec in records:
        for k in range(1, len(rec.tools) + 1):
            tools = rec.tools[:k]
            ids = tokenizer.apply_chat_template(
                rec.messages, tools=tools, add_generation_prompt=True, return_dict=False
            )
            for target in targets:
                gap = abs(len(ids) - target)
                if target not in best or gap < best[target][0]:
                    best[target] = (gap, (rec.messages, tools, ids))
    return {t: v[1] for t, v in best.items()}


def tool_round_suffix(tokenizer, messages, tools) -> tuple[str, str]:
    """(prefix text, full text) for one more tool round: an assistant tool call and its result."""
    name = tools[0]["function"]["name"]
    props = tools[0]["function"]["parameters"].get("properties", {})
    args = {p: "example" for p in list(props)[:2]}
    turn = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "call_0", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_0",
            "content": json.dumps({"status": "ok", "result": "The event happened on 2004-05-12 in Geneva."}),
        },
    ]
    prefix = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(messages + turn, tools=tools, add_generation_prompt=True, tokenize=False)
    assert full.startswith(prefix), "chat template is not prefix-preserving"
    return prefix, full


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--reps", type=int, default=2, help="repetitions per timing (best is kept)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", default="runs/bench/model_speed.json", help="JSON results ('' to skip)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    model, tok = load_model(args.model, dtype=args.dtype, device=args.device)
    load_s = time.perf_counter() - t0
    info = model_info(model)
    dev = model.device
    rows: list[tuple[str, str, float | str, str]] = [("load model", info["name"].rsplit("/", 1)[-1], load_s, "s")]
    print(
        f"{info['architecture']} {info['params'] / 1e6:.1f}M params, {info['dtype']}, {info['device']}, "
        f"torch threads {torch.get_num_threads()} on {os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, load average {load_before:.1f}"
    )

    prompts = ftrl_prompts(tok, sorted(set(PREFILL_LENGTHS + MIXED_LENGTHS)))

    def ids_of(target: int) -> torch.Tensor:
        return torch.tensor([prompts[target][2]], device=dev)

    with torch.inference_mode():
        model(ids_of(500)[:, :64], logits_to_keep=1)  # warm-up

        # 1. prefill, batch 1 (logits for the last position only, as generate does)
        for target in PREFILL_LENGTHS:
            ids = ids_of(target)
            s = best_time(lambda: model(ids, logits_to_keep=1), args.reps)
            rows.append(("prefill", f"{ids.shape[1]} tokens, batch 1", ids.shape[1] / s, "tok/s"))
            print(f"  prefill {ids.shape[1]:5d} tokens: {s:6.2f} s", flush=True)

        # 1b. the same at one thread: on a busy shared machine, fewer threads can be faster
        threads = torch.get_num_threads()
        if threads > 1:
            torch.set_num_threads(1)
            ids = ids_of(500)
            s1 = best_time(lambda: model(ids, logits_to_keep=1), args.reps)
            _, step1 = timed_generate(model, ids, torch.ones_like(ids), DECODE_TOKENS)
            torch.set_num_threads(threads)
            rows.append(("prefill, 1 thread", f"{ids.shape[1]} tokens, batch 1", ids.shape[1] / s1, "tok/s"))
            rows.append(("decode, 1 thread", "batch 1, ~500-token prompt", 1 / step1, "tok/s"))
            print(f"  1 thread: prefill {s1:.2f} s, decode {step1 * 1000:.1f} ms/step", flush=True)

        # 2. decode: time of each generate step after the first (the prefill), same prompt b times
        for b in DECODE_BATCHES:
            batch = ids_of(500).repeat(b, 1)
            _, per_step = timed_generate(model, batch, torch.ones_like(batch), DECODE_TOKENS)
            rows.append(("decode", f"batch {b}, ~500-token prompt", b / per_step, "tok/s"))
            rows.append(("decode step", f"batch {b}", per_step * 1000, "ms"))
            print(f"  decode batch {b}: {per_step * 1000:6.1f} ms/step", flush=True)

        # 3. naive left-padded batch of mixed lengths vs one by one
        seqs = [prompts[t][2] for t in MIXED_LENGTHS]
        width = max(len(s) for s in seqs)
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=dev)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=dev)
        n = MIXED_NEW_TOKENS
        pre_b, step_b = timed_generate(model, input_ids, mask, n)
        singles = [
            timed_generate(model, torch.tensor([s], device=dev), torch.ones(1, len(s), dtype=torch.long, device=dev), n)
            for s in seqs
        ]
        pre_s, step_s = sum(p for p, _ in singles), sum(t for _, t in singles)
        real, total = sum(len(s) for s in seqs), width * len(seqs)
        lengths = "/".join(str(len(s)) for s in seqs)
        setting = f"{lengths} tok, {100 * (1 - real / total):.0f}% pad"
        rows.append(("mixed 4, padded batch: prefill", setting, pre_b, "s"))
        rows.append(("mixed 4, padded batch: decode", f"{n} steps of batch 4", step_b * (n - 1), "s"))
        rows.append(("mixed 4, sequential: prefill", "same prompts one by one", pre_s, "s"))
        rows.append(("mixed 4, sequential: decode", f"4 x {n} steps of batch 1", step_s * (n - 1), "s"))
        print(
            f"  mixed lengths {lengths}: padded batch {pre_b + step_b * (n - 1):.1f} s, "
            f"sequential {pre_s + step_s * (n - 1):.1f} s",
            flush=True,
        )

        # 4. one more tool round: reuse the KV cache of the prompt vs re-prefill everything
        messages, tools, _ = prompts[1500]
        prefix_text, full_text = tool_round_suffix(tok, messages, tools)
        prefix_ids = tok(prefix_text, add_special_tokens=False, return_tensors="pt").input_ids.to(dev)
        suffix_ids = tok(full_text[len(prefix_text) :], add_special_tokens=False, return_tensors="pt").input_ids.to(dev)
        joined = torch.cat([prefix_ids, suffix_ids], dim=1)
        retokenized = tok(full_text, add_special_tokens=False).input_ids
        cache = DynamicCache(config=model.config)
        model(prefix_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        last: dict[str, torch.Tensor] = {}

        def full_pass():
            last["full"] = model(joined, logits_to_keep=1).logits[0, -1]

        def incremental_pass():
            last["incr"] = model(
                suffix_ids, past_key_values=copy.deepcopy(cache), use_cache=True, logits_to_keep=1
            ).logits[0, -1]

        t_full = best_time(full_pass, args.reps)
        t_incr = best_time(incremental_pass, args.reps)
        t_copy = best_time(lambda: copy.deepcopy(cache), args.reps)
        diff = (last["full"] - last["incr"]).abs().max().item()
        # generate() with a prefilled cache only runs the uncached tail of input_ids
        g_full = model.generate(joined, max_new_tokens=8, do_sample=False)
        g_cached = model.generate(joined, past_key_values=copy.deepcopy(cache), max_new_tokens=8, do_sample=False)
        n_p, n_s = prefix_ids.shape[1], suffix_ids.shape[1]
        rows.append(("tool round, re-prefill all", f"{n_p}+{n_s} tokens", t_full, "s"))
        rows.append(("tool round, reuse KV cache", f"{n_s} new tokens on {n_p} cached", t_incr - t_copy, "s"))
        rows.append(("  (cache deepcopy)", f"{n_p} tokens, 30 layers", t_copy, "s"))
        rows.append(("  max |logit diff|", "cached vs full", diff, ""))
        yes_no = {True: "yes", False: "no"}
        rows.append(("  generate(past_key_values) same", "8 greedy tokens", yes_no[torch.equal(g_full, g_cached)], ""))
        rows.append(
            (
                "  token prefix preserved",
                "tok(full) == tok(prefix)+tok(rest)",
                yes_no[retokenized == joined[0].tolist()],
                "",
            )
        )

    rows.append(("total benchmark time", "", time.perf_counter() - t0, "s"))
    rows.append(
        ("machine load average", "start / end (other jobs too)", f"{load_before:.1f} / {os.getloadavg()[0]:.1f}", "")
    )
    print()
    w = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    print(f"{'measure':<{w[0]}}  {'setting':<{w[1]}}  {'value':>10}  unit")
    print("-" * (w[0] + w[1] + 22))
    for name, setting, value, unit in rows:
        if isinstance(value, str):
            shown = f"{value:>10}"
        else:
            shown = f"{value:10.3g}" if value < 10 else f"{value:10.1f}"
        print(f"{name:<{w[0]}}  {setting:<{w[1]}}  {shown}  {unit}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "model": info,
                    "torch_threads": torch.get_num_threads(),
                    "cpu_count": os.cpu_count(),
                    "load_average_start": load_before,
                    "rows": [dict(zip(("measure", "setting", "value", "unit"), r)) for r in rows],
                },
                indent=2,
            )
            + "\n"
        )
        print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
