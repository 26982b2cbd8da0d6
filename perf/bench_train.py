"""What the GRPO hooks save on a CPU: one group of k samples of one tool prompt.

Measures, with the default model on one generated low-complexity environment prompt:
  * generation of k samples: ``Engine.generate_n`` (prompt prefilled once, cache copied into
    k rows) vs ``model.generate`` on k copies of the prompt (what TRL's own path does: the
    prompt is prefilled k times);
  * the policy-gradient pass over the same k completions: :func:`shared_prefix_logps`
    (prompt once, completions on the shared cache) vs TRL's per-row forward over
    ``prompt + completion`` (forward + backward each), and the largest difference of the
    per-token log-probs between the two.

The machine may be shared: best of ``--reps`` runs; treat timings as approximate.

    python perf/bench_train.py [--k 8] [--new-tokens 48] [--out runs/bench/train.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
from ftrl_lab.agent.engine import Engine, SamplingParams  # noqa: E402
from ftrl_lab.agent.evaluate import machine_info  # noqa: E402
from ftrl_lab.agent.models import load_model  # noqa: E402
from ftrl_lab.envgen.pipeline import generate_records  # noqa: E402
from ftrl_lab.train.trainers import shared_prefix_logps  # noqa: E402


def best(fn, reps: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def trl_style_logps(model, ids, mask, C):
    """TRL's layout: every row runs prompt + completion; log-probs of the completion tokens."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, -C - 1 : -1].float()
    return logits.log_softmax(-1).gather(-1, ids[:, -C:].unsqueeze(-1)).squeeze(-1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", default="runs/bench/train.json")
    args = ap.parse_args(argv)

    model, tok = load_model(args.model, device="cpu")
    rec = generate_records(4, seed=7, complexity="0")[0][2]
    engine = Engine(model, tok, batch_size=args.k, seed=0)
    prompt = engine.encode_chat(rec.messages, rec.tools)
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0)
    rows = []

    t_engine, gens = best(lambda: engine.generate_n([prompt], args.k, params)[0], args.reps)
    x = torch.tensor([prompt] * args.k)
    with torch.inference_mode():
        t_hf, _ = best(
            lambda: model.generate(
                x,
                attention_mask=torch.ones_like(x),
                do_sample=True,
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
            ),
            args.reps,
        )
    rows += [
        {
            "measure": f"generate {args.k} samples",
            "setting": "Engine.generate_n (prefill once)",
            "value": t_engine,
            "unit": "s",
        },
        {
            "measure": f"generate {args.k} samples",
            "setting": f"model.generate, {args.k} prompt copies",
            "value": t_hf,
            "unit": "s",
        },
    ]

    C = max(len(g.token_ids) for g in gens)
    ids = torch.full((args.k, len(prompt) + C), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for b, g in enumerate(gens):
        ids[b, : len(prompt)], mask[b, : len(prompt)] = torch.tensor(prompt), 1
        ids[b, len(prompt) : len(prompt) + len(g.token_ids)] = torch.tensor(g.token_ids)
        mask[b, len(prompt) : len(prompt) + len(g.token_ids)] = 1
    comp = mask[:, -C:].bool()
    model.train()

    def shared():
        model.zero_grad()
        lp, _ = shared_prefix_logps(model, ids, mask, C)
        lp[comp].sum().backward()
        return lp.detach()

    def per_row():
        model.zero_grad()
        lp = trl_style_logps(model, ids, mask, C)
        lp[comp].sum().backward()
        return lp.detach()

    t_shared, lp_shared = best(shared, args.reps)
    t_rows, lp_rows = best(per_row, args.reps)
    rows += [
        {"measure": "log-probs forward+backward", "setting": "shared prefix", "value": t_shared, "unit": "s"},
        {"measure": "log-probs forward+backward", "setting": "per row (TRL layout)", "value": t_rows, "unit": "s"},
        {
            "measure": "max |log-prob difference|",
            "setting": "shared vs per row",
            "value": float((lp_shared - lp_rows)[comp].abs().max()),
            "unit": "",
        },
    ]
    report = {
        "prompt_tokens": len(prompt),
        "k": args.k,
        "completion_tokens": [len(g.token_ids) for g in gens],
        "threads": torch.get_num_threads(),
        "machine": machine_info(),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for r in rows:
        print(f"{r['measure']:<32} {r['setting']:<36} {r['value']:.4g} {r['unit']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
