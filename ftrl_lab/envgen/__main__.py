"""Command line: ``python -m ftrl_lab.envgen --n 2000 --split train --seed 0 --out data/envs/train.jsonl``.

Other modes: ``--check FILE`` re-runs the validation gate on a record file, ``--stats FILE``
prints per-scenario statistics beside FTRL's test set. The LLM backend reads its API key
from the environment variable named by ``--llm-api-key-env`` (never from the command line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ftrl_lab.envgen.decompose import SCENARIOS
from ftrl_lab.envgen.validate import PROBES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ftrl_lab.envgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000, help="number of environment slots (default 2000)")
    p.add_argument("--split", default="train", help="split name written in each record (train/test)")
    p.add_argument("--seed", type=int, default=0, help="generation seed (use disjoint seeds per split)")
    p.add_argument("--world-seed", type=int, default=None, help="fictional-world seed (default: --seed)")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated scenarios, cycled per slot")
    p.add_argument(
        "--complexity",
        default="3",
        help="level '3', a range '0-3' (one level per env), or per strategy 'fg=3,pe=2,pt=0-3,te=1'",
    )
    p.add_argument("--backend", choices=["procedural", "llm"], default="procedural")
    p.add_argument("--out", default="data/envs/train.jsonl", help="output JSONL (appended; a rerun resumes)")
    p.add_argument("--exclude", action="append", default=[], help="record file whose questions must not recur")
    p.add_argument("--chunk-size", type=int, default=100, help="slots per validation batch / write")
    p.add_argument("--max-attempts", type=int, default=20, help="attempts per slot before giving it up")
    p.add_argument("--probes", default=",".join(PROBES), help=f"invalid-argument probes (of {','.join(PROBES)})")
    p.add_argument(
        "--probe-tools",
        choices=["all", "gold"],
        default="all",
        help="probe every tool (default) or only the gold tools (faster)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--check", metavar="FILE", help="only run the validation gate on FILE and print the report")
    p.add_argument("--stats", metavar="FILE", help="only print per-scenario statistics of FILE vs FTRL's test set")
    g = p.add_argument_group("LLM backend (OpenAI-compatible chat endpoint)")
    g.add_argument("--llm-base-url", default=os.environ.get("ENVGEN_LLM_BASE_URL", "https://api.openai.com/v1"))
    g.add_argument("--llm-model", default=os.environ.get("ENVGEN_LLM_MODEL", "gpt-4o"))
    g.add_argument("--llm-api-key-env", default="OPENAI_API_KEY", help="name of the variable holding the key")
    g.add_argument("--llm-timeout", type=float, default=120.0, help="seconds per request")
    g.add_argument("--llm-retries", type=int, default=3, help="retries per request (exponential backoff)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.stats:
        from ftrl_lab.envgen.stats import compare_to_ftrl

        print(compare_to_ftrl(args.stats).to_string())
        return 0
    if args.check:
        from ftrl_lab.core.cli import UserError
        from ftrl_lab.core.records import load_records
        from ftrl_lab.envgen.validate import validate_records

        records = load_records(args.check)
        if not records:
            raise UserError(f"{args.check}: no records in the file")
        report = validate_records(records, probes=_probes(args.probes), probe_tools=args.probe_tools)
        print(json.dumps(report.to_dict(), indent=2))
        return 0 if report.pass_rate == 1.0 else 1
    from ftrl_lab.envgen.pipeline import PipelineConfig, generate_split

    config = PipelineConfig(
        n=args.n,
        split=args.split,
        seed=args.seed,
        world_seed=args.world_seed,
        scenarios=tuple(s.strip() for s in args.scenarios.split(",") if s.strip()),
        complexity=args.complexity,
        chunk_size=args.chunk_size,
        max_attempts=args.max_attempts,
        probes=_probes(args.probes),
        probe_tools=args.probe_tools,
        exclude=tuple(args.exclude),
    )
    backend = None
    if args.backend == "llm":
        from ftrl_lab.envgen.llm import LLMBackend, OpenAIChat

        key = os.environ.get(args.llm_api_key_env, "")
        backend = LLMBackend(
            OpenAIChat(args.llm_base_url, args.llm_model, key, timeout=args.llm_timeout, retries=args.llm_retries)
        )
    report = generate_split(config, args.out, backend=backend, progress=not args.no_progress)
    run = report["runs"][-1]
    print(
        f"{report['records']} records in {args.out} (this run: {run['written']} in {run['seconds']} s, "
        f"{run['envs_per_s']} envs/s); gate pass rate {report['gate']['pass_rate']:.4f}; "
        f"rejections {report['gate']['rejections']}",
        file=sys.stderr,
    )
    return 0


def _probes(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
