"""Checkpoint selection on the generated validation split (never on a test set).

After every RL iteration *k* the run evaluates its policy on ``data.validation`` (stage
``val_<k>``, and ``val_start`` for the starting checkpoint). With ``eval.select: validation`` the
final checkpoint is the iteration with the highest validation Solve-F1 (ties: the earlier
iteration, the one with fewer updates); with ``last`` (or without a validation split) it is the
last iteration. Only the latest iteration's model and the best one so far are kept on disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ftrl_lab.train.config import TrainConfig
from ftrl_lab.train.run_state import RunState

METRIC = "solve_f1"


def validation_scores(state: RunState, upto: int) -> dict[int, float]:
    """Validation Solve-F1 of iterations 1..``upto`` that have one."""
    out = {}
    for k in range(1, upto + 1):
        v = state.get(f"val_{k}")
        if v and METRIC in v:
            out[k] = float(v[METRIC])
    return out


def best_iteration(scores: dict[int, float]) -> int | None:
    """The iteration with the highest score (the earliest of ties), or None without scores."""
    return max(sorted(scores), key=lambda k: scores[k]) if scores else None


def selects_on_validation(cfg: TrainConfig, state: RunState) -> bool:
    return cfg.eval.select == "validation" and bool(cfg.data.validation) and state.done("val_start")


def models_to_keep(cfg: TrainConfig, state: RunState, latest: int) -> set[int]:
    """Iterations whose models stay on disk after iteration ``latest``: it and the best so far."""
    keep = {latest}
    if selects_on_validation(cfg, state):
        best = best_iteration(validation_scores(state, latest))
        if best is not None:
            keep.add(best)
    return keep


def prune_models(run_dir: Path, keep: set[int], latest: int) -> None:
    """Remove ``iter_<j>/model`` for iterations before ``latest`` that are not kept."""
    for j in range(1, latest):
        if j not in keep:
            shutil.rmtree(Path(run_dir) / f"iter_{j}" / "model", ignore_errors=True)


def select(cfg: TrainConfig, state: RunState, run_dir: Path) -> dict[str, Any]:
    """The ``selection`` stage: which iteration's model is the final one, and why."""
    k_last = cfg.rl.iterations
    scores = validation_scores(state, k_last)
    on_val = selects_on_validation(cfg, state) and len(scores) == k_last
    k = best_iteration(scores) if on_val else k_last
    start = state.get("val_start") or {}
    return {
        "rule": "best validation Solve-F1" if on_val else "last iteration",
        "iteration": k,
        "iterations": k_last,
        "model": str(Path(run_dir) / f"iter_{k}" / "model"),
        "validation_solve_f1": {"start": start.get(METRIC), **{f"iter_{j}": s for j, s in scores.items()}},
    }


def selection_markdown(state: RunState, iterations: int) -> str:
    """Start and every iteration on the validation split, the selected one marked."""
    sel = state.get("selection") or {}
    rows = [("start", state.get("val_start"))] + [
        (f"iter_{k}", state.get(f"val_{k}")) for k in range(1, iterations + 1)
    ]
    rows = [(tag, v) for tag, v in rows if v]
    if not rows:
        return ""
    lines = [
        f"**Validation split (checkpoint selection: {sel.get('rule', 'not yet made')})** (n = {rows[0][1]['n']})",
        "",
        "| checkpoint | Solve-P | Solve-R | Solve-F1 | selected |",
        "|---|---|---|---|---|",
    ]
    for tag, v in rows:
        mark = "yes" if sel and tag == f"iter_{sel.get('iteration')}" else ""
        lines.append(
            f"| {tag} | {100 * v['solve_precision']:.1f} | {100 * v['solve_rate']:.1f} | "
            f"{100 * v['solve_f1']:.1f} | {mark} |"
        )
    start = state.get("val_start")
    iters = [v[METRIC] for tag, v in rows if tag != "start"]
    if start and iters and max(iters) < start[METRIC]:
        lines += [
            "",
            f"No RL iteration reached the starting checkpoint's validation Solve-F1 ({100 * start[METRIC]:.1f} "
            f"against at best {100 * max(iters):.1f}): the final checkpoint is RL's best, but the validation "
            "split prefers the start.",
        ]
    return "\n".join(lines)
