"""Offline general-capability checks: perplexity on generic text that Python itself ships, and
HumanEval pass@1 (:mod:`ftrl_lab.agent.humaneval`).

RL on tool use can erode a model's general language modelling. To see that without any
download, we measure perplexity on the Python language reference that every CPython ships
as ``pydoc_data.topics`` (about 460k characters of English technical prose with code; the
text ``help("topics")`` shows). The text is the same on every machine with the same Python
minor version; the report records that version and the topics used.

    from ftrl_lab.agent.general_ability import perplexity
    perplexity(model, tokenizer)  # {"perplexity": ..., "tokens": ..., "windows": ..., "window_nll": [...]}

Both from the command line (prints pass@1 and perplexity; ``--humaneval 0`` skips HumanEval)::

    python -m ftrl_lab.agent.general_ability --model default --humaneval 20
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

import torch


def reference_texts(n_topics: int = 16) -> list[tuple[str, str]]:
    """``(topic, text)`` pairs: every k-th topic of ``pydoc_data.topics`` (sorted), ``n_topics`` of them."""
    from pydoc_data.topics import topics

    names = sorted(topics)
    step = max(1, len(names) // n_topics)
    return [(name, topics[name]) for name in names[::step][:n_topics]]


@torch.no_grad()
def perplexity(
    model,
    tokenizer,
    *,
    n_topics: int = 16,
    window: int = 256,
    windows_per_topic: int = 1,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Token-level perplexity of ``model`` on held-out generic text (see module doc).

    Each of ``n_topics`` topics contributes its first ``windows_per_topic`` windows of
    ``window`` tokens (topics shorter than a window are used whole); every window is scored
    on its own (no context carried over). ``window_nll`` (mean NLL per predicted token) and
    ``window_tokens`` list the windows in the same order every call, for paired comparisons
    (:func:`ftrl_lab.train.report.perplexity_change`).
    """
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll, count, used = 0.0, 0, []
    window_nll: list[float] = []
    window_tokens: list[int] = []
    try:
        for name, text in reference_texts(n_topics):
            ids = tokenizer(text, add_special_tokens=False, truncation=True, max_length=window * windows_per_topic)[
                "input_ids"
            ]
            for w in range(windows_per_topic):
                chunk = ids[w * window : (w + 1) * window]
                if len(chunk) < 2:
                    break
                x = torch.tensor([chunk], device=device)
                out = model(input_ids=x, labels=x)
                n = len(chunk) - 1
                nll += float(out.loss) * n
                count += n
                window_nll.append(float(out.loss))
                window_tokens.append(n)
            used.append(name)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("no reference text could be tokenized")
    return {
        "perplexity": math.exp(nll / count),
        "nll": nll / count,
        "tokens": count,
        "windows": len(window_nll),
        "source": f"pydoc_data.topics (Python {platform.python_version()})",
        "topics": used,
        "window_nll": window_nll,
        "window_tokens": window_tokens,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: HumanEval pass@1 (first ``--humaneval`` problems) and perplexity of a local model."""
    from ftrl_lab.agent.humaneval import DEFAULT_TIMEOUT, humaneval
    from ftrl_lab.agent.policies import add_policy_arguments, policy_from_args

    parser = argparse.ArgumentParser(
        prog="python -m ftrl_lab.agent.general_ability", description=__doc__.split("\n")[0]
    )
    add_policy_arguments(parser)
    parser.add_argument("--humaneval", type=int, default=20, help="HumanEval problems (first N by task id; 0: skip)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per HumanEval program")
    parser.add_argument("--topics", type=int, default=16, help="perplexity: topics of pydoc_data.topics")
    parser.add_argument("--rows", default=None, help="write (and resume from) HumanEval rows in this JSONL file")
    parser.set_defaults(max_new_tokens=384, batch_size=16)
    args = parser.parse_args(argv)
    if args.api_base:
        raise ValueError("--api-base: general-ability checks need a local model (perplexity reads its logits)")
    policy, info = policy_from_args(args)
    model, tokenizer = policy.engine.model, policy.engine.tokenizer
    out: dict[str, Any] = {"model": info["model"], "threads": info.get("threads")}
    if args.humaneval:
        t0 = time.perf_counter()
        he = humaneval(
            model,
            tokenizer,
            limit=args.humaneval,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            timeout=args.timeout,
            bf16_prefill=args.bf16_prefill,
            rows_path=args.rows,
        )
        out["humaneval"] = {k: v for k, v in he.items() if k not in ("rows", "prompt_format")}
        out["humaneval"]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"HumanEval pass@1: {he['pass_at_1']:.3f} ({he['passed']}/{he['n']}, {out['humaneval']['seconds']} s)")
    t0 = time.perf_counter()
    ppl = perplexity(model, tokenizer, n_topics=args.topics)
    out["perplexity"] = {k: v for k, v in ppl.items() if k not in ("window_nll", "window_tokens", "topics")}
    out["perplexity"]["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"perplexity: {ppl['perplexity']:.3f} ({ppl['tokens']} tokens, {ppl['windows']} windows, {ppl['source']})")
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main, sys.argv[1:]))
