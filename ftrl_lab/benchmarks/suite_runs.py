"""Which suite runs notebook 04 shows and makes: folder discovery, policy choice, resume-or-keep.

The notebook names a benchmark folder (``runs/bench``), its model and profile; :func:`plan_suites`
says which suite folders to show (saved ones plus the one this run makes) and which FTRL
evaluation gives each its Solve-P/R/F1 for Table 2; :func:`suite_settings` picks the policy
(QUICK: a randomly initialised 2-layer model, 8 new tokens, 2 turns: the whole path in seconds,
scoring about 0); :func:`run_suite_once` runs or resumes a folder, and keeps one made with other
settings as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftrl_lab.benchmarks import suite, toolhop

SAVED = ("default", "cpu-trained")
"""Suite folders shown when they exist: the default model and notebook 03's trained policy."""
TRAINED = "cpu-trained"
QUICK_SUITE = "tiny-random-quick"
QUICK_MAX_NEW_TOKENS, QUICK_MAX_TURNS = 8, 2


@dataclass
class SuitePlan:
    """The suite folder this run makes (if any), all folders shown, and their FTRL evaluations."""

    suite_name: str
    folders: list[Path]
    ftrl_evals: dict[str, Path] = field(default_factory=dict)


def plan_suites(
    bench_dir: str | os.PathLike,
    runs_dir: str | os.PathLike,
    model: str,
    *,
    quick: bool,
    run_suite: bool,
    bench_runs: list | None = None,
    ftrl_evals: dict | None = None,
    trained_model: str | os.PathLike | None = None,
    model_eval_dir: str | os.PathLike | None = None,
) -> SuitePlan:
    """Folders to show: ``bench_runs`` (None: the :data:`SAVED` ones that have a summary), plus this
    run's suite and, with ``trained_model``, the trained policy's. FTRL evaluations (None: found
    by name, ``<runs_dir>/<folder>-ftrl``; FULL adds ``model_eval_dir`` for this run's model)."""
    bench, runs = Path(bench_dir), Path(runs_dir)
    name = QUICK_SUITE if quick else Path(str(model)).name
    if bench_runs is None:
        bench_runs = [bench / n for n in SAVED if (bench / n / "summary.csv").exists()]
    folders = [Path(f) for f in bench_runs]
    if run_suite and bench / name not in folders:
        folders.append(bench / name)
    if ftrl_evals is None:
        evals = {f.name: runs / f"{f.name}-ftrl" for f in folders if (runs / f"{f.name}-ftrl").exists()}
        if run_suite and not quick and model_eval_dir is not None:
            evals[name] = Path(model_eval_dir)
    else:
        evals = {k: Path(v) for k, v in ftrl_evals.items()}
    if trained_model is not None:
        if bench / TRAINED not in folders:
            folders.append(bench / TRAINED)
        evals[TRAINED] = runs / f"{TRAINED}-ftrl"
    return SuitePlan(name, folders, evals)


def suite_settings(
    model: str,
    quick: bool,
    *,
    api_base: str | None = None,
    limit: int | None = None,
    max_new_tokens: int = 128,
    max_turns: int = toolhop.MAX_TURNS,
    batch_size: int = 8,
    threads: int | None = None,
) -> tuple[Callable[[], tuple[Any, dict]], suite.SuiteSettings]:
    """A policy factory and the suite settings: QUICK a tiny random model, else ``model`` greedy."""
    if quick:
        settings = suite.SuiteSettings(
            model="tiny-random",
            limit_per_category=limit,
            max_new_tokens=QUICK_MAX_NEW_TOKENS,
            max_turns=QUICK_MAX_TURNS,
            batch_size=batch_size,
            threads=threads,
        )
        return (lambda: tiny_policy(batch_size, QUICK_MAX_NEW_TOKENS)), settings
    from ftrl_lab.agent.policies import make_policy

    settings = suite.SuiteSettings(
        model=str(model),
        api_base=api_base,
        limit_per_category=limit,
        max_new_tokens=max_new_tokens,
        max_turns=min(max_turns, toolhop.MAX_TURNS),
        batch_size=batch_size,
        threads=threads,
    )
    return (
        lambda: make_policy(str(model), api_base=api_base, max_new_tokens=max_new_tokens, batch_size=batch_size)
    ), settings


def tiny_policy(batch_size: int = 8, max_new_tokens: int = QUICK_MAX_NEW_TOKENS) -> tuple[Any, dict]:
    """A randomly initialised 2-layer model as a local policy, and its description."""
    from ftrl_lab.agent.engine import Engine
    from ftrl_lab.agent.models import model_info, tiny_model
    from ftrl_lab.agent.policies import LocalPolicy
    from ftrl_lab.agent.sampling import SamplingParams

    model, tokenizer = tiny_model()
    policy = LocalPolicy(Engine(model, tokenizer, batch_size=batch_size), SamplingParams(max_new_tokens=max_new_tokens))
    return policy, {"backend": "local", "model": "tiny-random", "model_info": model_info(model)}


def run_suite_once(
    folder: str | os.PathLike, make: Callable[[], tuple[Any, dict]], settings: suite.SuiteSettings
) -> str:
    """Run the suite into ``folder`` (resuming) and return its summary Markdown; a folder made with
    other settings is kept as it is, and the returned text says why."""
    reason = suite.conflict(folder, settings)
    if reason:
        return f"Keeping `{folder}` as it is (not rerun here): {reason}"
    policy, info = make()
    suite.run_suite(policy, folder, settings, model_info=info)
    return (Path(folder) / "summary.md").read_text()


def describe_folder(folder: str | os.PathLike) -> str:
    """One line per suite folder: its model, token budget, which benchmarks were subsampled, and
    the seconds each took."""
    s = suite.read_summary(folder)
    s = s[s["summary_row"]].drop_duplicates("benchmark")
    sub = s[s["subsample"]]
    sample = (
        "SUBSAMPLE: " + "; ".join(f"{r.benchmark} {r.selection}" for r in sub.itertuples()) if len(sub) else "full sets"
    )
    seconds = ", ".join(f"{r.benchmark} {r.seconds:.0f}" for r in s.itertuples())
    return (
        f"{Path(folder).name}: model {s['model'].iloc[0]}, max {int(s['max_new_tokens'].iloc[0])} new tokens; "
        f"{sample}; seconds: {seconds}"
    )
