"""``python -m ftrl_lab.analysis change-map|transplant|transfer|failure-modes``: the change map
between two checkpoints, the transplant ablation (:mod:`ftrl_lab.analysis.transplant`), a run's
start vs final checkpoint on FTRL's test set, the benchmark suite and HumanEval
(:mod:`ftrl_lab.analysis.transfer`), or how the episodes of one or two evaluations fail
(:mod:`ftrl_lab.analysis.failure_modes`).

    python -m ftrl_lab.analysis change-map BASE TRAINED --out runs/analysis/sft
    python -m ftrl_lab.analysis transplant BASE TRAINED --test data/envs/cpu/test.jsonl --limit 20 --out DIR
    python -m ftrl_lab.analysis transfer RUN_DIR [--ftrl-limit 20] [--suite-limit 10] [--humaneval 164]
    python -m ftrl_lab.analysis failure-modes EVAL_DIR [EVAL_DIR_AFTER] [--out table.csv]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ftrl_lab.analysis import failure_modes, transfer, transplant
from ftrl_lab.analysis.change_map import change_map, save_change_map, thirds_table
from ftrl_lab.analysis.checkpoint_io import DEFAULT_BLOCK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "transplant":
        return transplant.main(argv[1:])
    if argv and argv[0] == "transfer":
        return transfer.main(argv[1:])
    if argv and argv[0] == "failure-modes":
        return failure_modes.main(argv[1:])
    p = argparse.ArgumentParser(
        prog="python -m ftrl_lab.analysis", description="Which parameters moved: the change map and the transplant."
    )
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("change-map", help="per layer/module change between two checkpoints")
    c.add_argument("base", help='base checkpoint folder (or "default")')
    c.add_argument("trained", help="trained checkpoint folder or LoRA adapter folder")
    c.add_argument("--out", required=True, help="folder for tensors.jsonl/.csv, modules.csv, thirds.csv, figures")
    c.add_argument("--block", type=int, default=DEFAULT_BLOCK, help="elements read per row block")
    sub.add_parser("transplant", help="see python -m ftrl_lab.analysis transplant --help")
    sub.add_parser("transfer", help="see python -m ftrl_lab.analysis transfer --help")
    sub.add_parser("failure-modes", help="see python -m ftrl_lab.analysis failure-modes --help")
    a = p.parse_args(argv)
    df = change_map(a.base, a.trained, out=a.out, block=a.block)
    paths = save_change_map(df, a.out, title=f"{Path(a.trained).name} vs {Path(a.base).name}")
    with pd.option_context("display.width", 160):
        print(thirds_table(df).to_string(index=False, float_format=lambda x: f"{x:.3g}"))
    print("written:", ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
