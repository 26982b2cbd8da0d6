"""External tool-use benchmarks of the FTRL paper's Table 2, and BFCL.

One small module per benchmark, all with the interface of :mod:`ftrl_lab.benchmarks.common`
(``load``, ``run``, ``score``, ``table``):

* :mod:`~ftrl_lab.benchmarks.toolhop`: multi-hop questions over executable tools (AC), with
  its gold plans and oracle in :mod:`~ftrl_lab.benchmarks.toolhop_gold`;
* :mod:`~ftrl_lab.benchmarks.rotbench`: tool selection under noise (TS, PI, CF);
* :mod:`~ftrl_lab.benchmarks.bfcl`: Berkeley Function Calling Leaderboard, single-turn AST;
* :mod:`~ftrl_lab.benchmarks.taubench`: tau-bench with a simulated user (Pass^1);
* :mod:`~ftrl_lab.benchmarks.suite`: one model through ToolHop, RoTBench and BFCL, one summary;
* :mod:`~ftrl_lab.benchmarks.checks`: the checkers on gold and systematically corrupted outputs;
* :mod:`~ftrl_lab.benchmarks.report`: the paper's Table 2 next to measured rows, and which
  numbers are comparable to the paper's;
* :mod:`~ftrl_lab.benchmarks.registry`: the one dispatch (load, run, score with a named rule
  set, tabulate) that the command line and the suite share.

Command line: ``python -m ftrl_lab.benchmarks <toolhop|rotbench|bfcl|taubench> --model default --out DIR``,
or ``python -m ftrl_lab.benchmarks suite --model default --out runs/bench/default``.
"""
