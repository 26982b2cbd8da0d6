"""External tool-use benchmarks of the FTRL paper's Table 2, and BFCL.

One small module per benchmark, all with the interface of :mod:`ftrl_lab.benchmarks.common`
(``load``, ``run``, ``score``, ``table``):

* :mod:`~ftrl_lab.benchmarks.toolhop`: multi-hop questions over executable tools (AC);
* :mod:`~ftrl_lab.benchmarks.rotbench`: tool selection under noise (TS, PI, CF);
* :mod:`~ftrl_lab.benchmarks.bfcl`: Berkeley Function Calling Leaderboard, single-turn AST;
* :mod:`~ftrl_lab.benchmarks.taubench`: tau-bench with a simulated user (Pass^1);
* :mod:`~ftrl_lab.benchmarks.suite`: one model through ToolHop, RoTBench and BFCL, one summary;
* :mod:`~ftrl_lab.benchmarks.checks`: the checkers on gold and systematically corrupted outputs;
* :mod:`~ftrl_lab.benchmarks.report`: the paper's Table 2 next to measured rows.

Command line: ``python -m ftrl_lab.benchmarks <toolhop|rotbench|bfcl|taubench> --model default --out DIR``,
or ``python -m ftrl_lab.benchmarks suite --model default --out runs/bench/default``.
"""

import importlib

NAMES = ("toolhop", "rotbench", "bfcl", "taubench")


def get(name: str):
    """The module of a benchmark by name."""
    if name not in NAMES:
        raise ValueError(f"unknown benchmark {name!r} (choose from {NAMES})")
    return importlib.import_module(f"ftrl_lab.benchmarks.{name}")
