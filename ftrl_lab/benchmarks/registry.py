"""One dispatch for every benchmark: how to load, run, score and tabulate it, by name.

The command line (``python -m ftrl_lab.benchmarks <name>``) and the suite
(:mod:`ftrl_lab.benchmarks.suite`) both go through :func:`run_and_score`, so a benchmark is
run and scored the same way whichever starts it. Each :class:`Benchmark` names its rule sets
(``rules``, ``default_rules``: what the paper's numbers were made with) and every result row it
scores carries the rule set that scored it (``rules``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ftrl_lab.benchmarks import bfcl, rotbench, taubench, toolhop


@dataclass(frozen=True)
class RunOptions:
    """How a benchmark is run (each benchmark reads the options that concern it)."""

    categories: Sequence[str] | None = None  # RoTBench levels, BFCL categories, ToolHop modes
    limit: int | None = None  # first N items (per category for RoTBench and BFCL)
    max_turns: int | None = None  # ToolHop (default 9), tau-bench (default 30)
    batch_size: int = 8
    bfcl_mode: str = "fc"
    dots_as_underscores: bool = False
    user: Any = None  # tau-bench's simulated user
    info_dir: str | None = None  # tau-bench's domain folders
    executor: Any = None  # ToolHop's tool executor (default: the sandbox)
    show_progress: bool = True


@dataclass(frozen=True)
class Benchmark:
    """A benchmark module and what the shared dispatch needs to know about it."""

    name: str
    module: ModuleType
    categories: tuple[str, ...]
    headline: tuple[str, ...]  # the metrics a summary shows
    summary_row: str  # the row of its table that summarises the categories
    load: Callable[[str | None, RunOptions], list[dict]]
    run: Callable[[Any, Sequence[dict], Path | None, RunOptions], list[dict]]
    item_columns: tuple[str, ...] | None = None  # per-item result column of each headline metric (None: same names)

    def item_column(self, metric: str) -> str:
        """The per-item result column whose category mean is headline ``metric`` (BFCL's
        ``accuracy`` is the mean of ``correct``)."""
        return dict(zip(self.headline, self.item_columns or self.headline))[metric]

    @property
    def rules(self) -> tuple[str, ...]:
        """The rule sets its scorer knows (a module without named rule sets has one: "default")."""
        return tuple(getattr(self.module, "RULES", ("default",)))

    @property
    def default_rules(self) -> str:
        """The rule set the paper's numbers were made with (the module's ``DEFAULT_RULES``)."""
        return getattr(self.module, "DEFAULT_RULES", self.rules[0])

    def check_rules(self, rules: str | None) -> str:
        """``rules`` (None: the default) if this benchmark has it, else a ``ValueError``."""
        rules = self.default_rules if rules is None else rules
        if rules not in self.rules:
            raise ValueError(f"unknown {self.name} rules {rules!r} (choose from {self.rules})")
        return rules

    def score(self, items: Sequence[dict], rows: Sequence[dict], rules: str | None = None) -> list[dict]:
        """Per-item results, each with the rule set that scored it."""
        rules = self.check_rules(rules)
        named = hasattr(self.module, "RULES")
        results = self.module.score(items, rows, rules=rules) if named else self.module.score(items, rows)
        return [{**r, "rules": rules} for r in results]

    def table(self, results: Sequence[dict]):
        return self.module.table(results)


def _load_toolhop(data, opt: RunOptions):
    return toolhop.load(data, limit=opt.limit)


def _run_toolhop(policy, items, out, opt: RunOptions):
    return toolhop.run(
        policy,
        items,
        out,
        modes=opt.categories or toolhop.MODES,
        executor=opt.executor,
        max_turns=opt.max_turns or toolhop.MAX_TURNS,
        batch_size=opt.batch_size,
        show_progress=opt.show_progress,
    )


def _load_rotbench(data, opt: RunOptions):
    return rotbench.load(data, levels=opt.categories or rotbench.LEVELS, limit=opt.limit)


def _run_rotbench(policy, items, out, opt: RunOptions):
    return rotbench.run(policy, items, out, batch_size=opt.batch_size, show_progress=opt.show_progress)


def _load_bfcl(data, opt: RunOptions):
    return bfcl.load(opt.categories or bfcl.CATEGORIES, path=data, limit=opt.limit)


def _run_bfcl(policy, items, out, opt: RunOptions):
    return bfcl.run(
        policy,
        items,
        out,
        mode=opt.bfcl_mode,
        dots_as_underscores=opt.dots_as_underscores,
        batch_size=opt.batch_size,
        show_progress=opt.show_progress,
    )


def _load_taubench(data, opt: RunOptions):
    if not data:
        raise ValueError(
            "tau-bench needs its data (--data on the command line): FTRL's tau-bench.jsonl (see ftrl_lab/benchmarks/taubench.py)"
        )
    return taubench.load(data, info_dir=opt.info_dir, limit=opt.limit)


def _run_taubench(policy, items, out, opt: RunOptions):
    return taubench.run(
        policy,
        items,
        out,
        user=opt.user,
        max_turns=opt.max_turns or taubench.MAX_TURNS,
        show_progress=opt.show_progress,
    )


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("toolhop", toolhop, toolhop.MODES, ("AC",), "overall", _load_toolhop, _run_toolhop),
        Benchmark("rotbench", rotbench, rotbench.LEVELS, rotbench.METRICS, "overall", _load_rotbench, _run_rotbench),
        Benchmark("bfcl", bfcl, bfcl.CATEGORIES, ("accuracy",), "non_live_ast", _load_bfcl, _run_bfcl, ("correct",)),
        Benchmark(
            "taubench",
            taubench,
            ("airline", "retail"),
            ("pass^1",),
            "overall",
            _load_taubench,
            _run_taubench,
            ("pass",),
        ),
    )
}


def benchmark(name: str) -> Benchmark:
    """The registered benchmark of that name."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r} (choose from {tuple(BENCHMARKS)})")
    return BENCHMARKS[name]


def run_and_score(
    name: str,
    policy: Any,
    items: Sequence[dict],
    folder: str | os.PathLike,
    options: RunOptions | None = None,
    rules: str | None = None,
):
    """Run (resuming from ``folder/outputs.jsonl``) and score one benchmark; writes
    ``results.jsonl`` (each row with its ``rules``) and ``table.csv``. Returns (table, results)."""
    bench = benchmark(name)
    rules = bench.check_rules(rules)  # before any model output is made
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = bench.run(policy, items, folder / "outputs.jsonl", options or RunOptions())
    results = bench.score(items, rows, rules)
    with open(folder / "results.jsonl", "w", encoding="utf-8") as f:
        for r in results:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    table = bench.table(results)
    table.to_csv(folder / "table.csv")
    return table, results
