"""Run a benchmark on a local model or an OpenAI-compatible endpoint; write outputs and scores.

    python -m ftrl_lab.benchmarks toolhop  --model default --out runs/toolhop [--limit N] [--modes free]
    python -m ftrl_lab.benchmarks rotbench --model default --out runs/rot [--categories clean heavy]
    python -m ftrl_lab.benchmarks bfcl     --model default --out runs/bfcl [--categories simple multiple]
    python -m ftrl_lab.benchmarks taubench --model default --out runs/tau --data tau-bench.jsonl \\
        --user-base-url https://api.openai.com/v1 --user-model gpt-4o-2024-08-06   (or --user-local default)
    python -m ftrl_lab.benchmarks suite    --model default --out runs/bench/default [--limit-per-category N]

``suite`` runs ToolHop, RoTBench clean/union and BFCL's four non-live AST categories for one
model and writes one summary (see :mod:`ftrl_lab.benchmarks.suite` for its options).

The run folder gets ``outputs.jsonl`` (model outputs, appended as they finish: a rerun resumes),
``results.jsonl`` (per-item scores), ``table.csv`` (the benchmark's table, also printed) and
``meta.json`` (model, settings, the rule set that scored it). ``--limit N`` keeps the first N
items (per category for RoTBench and BFCL). ``--rules`` picks the scoring rule set (default: the
one the paper's numbers were made with). Loading, running and scoring go through
:mod:`ftrl_lab.benchmarks.registry`, as the suite's do.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ftrl_lab.agent.policies import add_policy_arguments, policy_from_args
from ftrl_lab.benchmarks.registry import BENCHMARKS, RunOptions, benchmark, run_and_score


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ftrl_lab.benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "benchmark", choices=list(BENCHMARKS), help="one benchmark (or `suite ...`: see ftrl_lab.benchmarks.suite)"
    )
    p.add_argument("--out", required=True, help="run folder (a rerun resumes)")
    p.add_argument("--data", default=None, help="benchmark data (file or folder); default: the shared copy")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument(
        "--categories", nargs="*", default=None, help="RoTBench noise levels, BFCL categories, or ToolHop modes"
    )
    p.add_argument("--modes", nargs="*", default=None, help="ToolHop modes (direct, mandatory, free)")
    p.add_argument(
        "--rules",
        default=None,
        help="scoring rule set: "
        + "; ".join(f"{b.name}: {'/'.join(b.rules)} (default {b.default_rules})" for b in BENCHMARKS.values()),
    )
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
    p.add_argument(
        "--user-local",
        default=None,
        metavar="MODEL",
        help='tau-bench offline: a local model ("default" or a folder) plays the user through the engine',
    )
    p.add_argument("--max-turns", type=int, default=None, help="ToolHop: 9, tau-bench: 30")
    p.add_argument("--no-progress", action="store_true")
    add_policy_arguments(p)
    return p


def _user(args):
    from ftrl_lab.benchmarks.taubench import LocalUserSimulator, UserSimulator

    if args.user_local:
        if args.user_base_url or args.user_model:
            raise SystemExit("give either --user-local or --user-base-url/--user-model, not both")
        return LocalUserSimulator.from_model(
            args.user_local, max_new_tokens=args.max_new_tokens, device=args.device, dtype=args.dtype
        )
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
    bench = benchmark(args.benchmark)
    try:
        rules = bench.check_rules(args.rules)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    categories = args.modes or args.categories
    options = RunOptions(
        categories=categories,
        limit=args.limit,
        max_turns=args.max_turns,
        batch_size=args.batch_size,
        bfcl_mode=args.bfcl_mode,
        dots_as_underscores=args.dots_as_underscores,
        info_dir=args.info_dir,
        show_progress=not args.no_progress,
    )
    try:
        items = bench.load(args.data, options)
    except ValueError as e:
        raise SystemExit(str(e)) from None
    if bench.name == "taubench":  # fail before loading the evaluated model
        options = dataclasses.replace(options, user=_user(args))
    policy, info = policy_from_args(args)
    t0 = time.perf_counter()
    table, results = run_and_score(bench.name, policy, items, out, options, rules)
    settings = {k: v for k, v in vars(args).items() if k not in ("api_key", "user_api_key")}
    meta = {
        **info,
        "settings": settings,
        "rules": rules,
        "items": len(items),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if bench.name == "taubench":
        from ftrl_lab.benchmarks.taubench import describe_user, is_paper_user

        meta.update(user_simulator=describe_user(options.user), paper_user=is_paper_user(options.user))
    (out / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    print(table.to_string())
    print(f"{len(results)} results (rules {rules!r}) in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
