"""Run a benchmark on a local model or an OpenAI-compatible endpoint; write outputs and scores.

    python -m ftrl_lab.benchmarks toolhop  --model default --out runs/toolhop [--limit N] [--modes free]
    python -m ftrl_lab.benchmarks rotbench --model default --out runs/rot [--categories clean heavy]
    python -m ftrl_lab.benchmarks bfcl     --model default --out runs/bfcl [--categories simple multiple]
    python -m ftrl_lab.benchmarks taubench --model default --out runs/tau --data tau-bench.jsonl \\
        --user-base-url https://api.openai.com/v1 --user-model gpt-4o-2024-08-06
    python -m ftrl_lab.benchmarks suite    --model default --out runs/bench/default [--limit-per-category N]

``suite`` runs ToolHop, RoTBench clean/union and BFCL's four non-live AST categories for one
model and writes one summary (see :mod:`ftrl_lab.benchmarks.suite` for its options).

The run folder gets ``outputs.jsonl`` (model outputs, appended as they finish: a rerun resumes),
``results.jsonl`` (per-item scores), ``table.csv`` (the benchmark's table, also printed) and
``meta.json`` (model and settings). ``--limit N`` keeps the first N items (per category for
RoTBench and BFCL).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ftrl_lab.benchmarks import NAMES, bfcl, get, rotbench


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ftrl_lab.benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("benchmark", choices=NAMES, help="one benchmark (or `suite ...`: see ftrl_lab.benchmarks.suite)")
    p.add_argument("--model", default="default", help='local folder, "default", or the served name with --api-base')
    p.add_argument("--out", required=True, help="run folder (a rerun resumes)")
    p.add_argument("--data", default=None, help="benchmark data (file or folder); default: the shared copy")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument(
        "--categories", nargs="*", default=None, help="RoTBench noise levels, BFCL categories, or ToolHop modes"
    )
    p.add_argument("--modes", nargs="*", default=None, help="ToolHop modes (direct, mandatory, free)")
    p.add_argument("--rules", choices=rotbench.RULES, default=rotbench.DEFAULT_RULES, help="RoTBench scoring rules")
    p.add_argument("--bfcl-rules", choices=bfcl.RULES, default=bfcl.DEFAULT_RULES, help="BFCL decoding rules")
    p.add_argument(
        "--bfcl-mode",
        choices=("fc", "python"),
        default="fc",
        help="BFCL prompting: tools in the chat template (fc) or Python call syntax in the prompt",
    )
    p.add_argument("--dots-as-underscores", action="store_true", help="BFCL: show a.b as a_b (OpenAI-style APIs)")
    p.add_argument("--info-dir", default=None, help="tau-bench: folder of the domain folders")
    p.add_argument("--user-base-url", default=None, help="tau-bench simulated user endpoint ($FTRL_USER_BASE_URL)")
    p.add_argument("--user-model", default=None, help="tau-bench simulated user model ($FTRL_USER_MODEL)")
    p.add_argument("--user-api-key", default=None, help="($FTRL_USER_API_KEY)")
    p.add_argument("--max-turns", type=int, default=None, help="ToolHop: 9, tau-bench: 30")
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--temperature", type=float, default=0.0)
    p.add_argument("--api-base", default=None, help="OpenAI-compatible endpoint for the evaluated model")
    p.add_argument("--api-key", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    return p


def _load(name: str, args) -> list[dict]:
    mod = get(name)
    if name == "toolhop":
        return mod.load(args.data, limit=args.limit)
    if name == "rotbench":
        return mod.load(args.data, levels=args.categories or mod.LEVELS, limit=args.limit)
    if name == "bfcl":
        return mod.load(args.categories or mod.CATEGORIES, path=args.data, limit=args.limit)
    if not args.data:
        raise SystemExit("tau-bench needs --data: FTRL's tau-bench.jsonl (see ftrl_lab/benchmarks/taubench.py)")
    return mod.load(args.data, info_dir=args.info_dir, limit=args.limit)


def _user(args):
    from ftrl_lab.benchmarks.taubench import UserSimulator

    if args.user_base_url or args.user_model:
        if not (args.user_base_url and args.user_model):
            raise SystemExit("give both --user-base-url and --user-model")
        return UserSimulator(
            args.user_base_url, args.user_model, args.user_api_key or os.environ.get("FTRL_USER_API_KEY")
        )
    return UserSimulator.from_env()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["suite"]:
        from ftrl_lab.benchmarks.suite import main as suite_main

        return suite_main(argv[1:])
    args = _parser().parse_args(argv)
    name, mod = args.benchmark, get(args.benchmark)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items = _load(name, args)
    user = _user(args) if name == "taubench" else None  # fail before loading a model
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from ftrl_lab.agent.evaluate import make_policy

    policy, info = make_policy(
        args.model,
        api_base=args.api_base,
        api_key=args.api_key,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        temperature=args.temperature,
        device=args.device,
        dtype=args.dtype,
    )
    outputs_path = out / "outputs.jsonl"
    show = not args.no_progress
    if name == "toolhop":
        modes = args.modes or args.categories or mod.MODES
        rows = mod.run(
            policy,
            items,
            outputs_path,
            modes=modes,
            max_turns=args.max_turns or mod.MAX_TURNS,
            batch_size=args.batch_size,
            show_progress=show,
        )
        results = mod.score(items, rows)
    elif name == "rotbench":
        rows = mod.run(policy, items, outputs_path, batch_size=args.batch_size, show_progress=show)
        results = mod.score(items, rows, args.rules)
    elif name == "bfcl":
        rows = mod.run(
            policy,
            items,
            outputs_path,
            mode=args.bfcl_mode,
            dots_as_underscores=args.dots_as_underscores,
            batch_size=args.batch_size,
            show_progress=show,
        )
        results = mod.score(items, rows, rules=args.bfcl_rules)
    else:
        rows = mod.run(
            policy, items, outputs_path, user=user, max_turns=args.max_turns or mod.MAX_TURNS, show_progress=show
        )
        results = mod.score(items, rows)
    with open(out / "results.jsonl", "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    table = mod.table(results)
    table.to_csv(out / "table.csv")
    settings = {k: v for k, v in vars(args).items() if k not in ("api_key", "user_api_key")}
    (out / "meta.json").write_text(
        json.dumps({**info, "settings": settings, "items": len(items)}, indent=1, default=str)
    )
    print(table.to_string())
    print(f"{len(rows)} outputs, results in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
