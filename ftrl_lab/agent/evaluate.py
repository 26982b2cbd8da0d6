"""Evaluation on the FTRL test set: Solve-P / Solve-R / Solve-F1 per scenario and overall.

:func:`evaluate` plays every record with a policy (FTRL's loop, :mod:`ftrl_lab.agent.rollout`;
greedy for local models, as FTRL evaluates at temperature 0), appends one transcript line per
finished record to ``<out>/transcripts.jsonl`` (flushed, so nothing finished is ever lost),
and writes the table to ``<out>/results.csv`` and ``<out>/results.json`` (with wall time and
machine). A rerun skips the records already in the transcripts.

Command line::

    python -m ftrl_lab.evaluate ftrl --model default --data ../shared/benchmarks/ftrl/test.parquet \\
        --out runs/eval/default-ftrl [--limit 20] [--max-turns 20] [--max-new-tokens 512] [--batch-size 8]
    python -m ftrl_lab.evaluate ftrl --api-base http://127.0.0.1:8000/v1 --model Qwen2.5-7B-Instruct ...
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ftrl_lab.agent.policies import add_policy_arguments, policy_from_args
from ftrl_lab.agent.rollout import Episode, Policy, episode_key, rollout
from ftrl_lab.agent.trajectories import read_jsonl_lines, rewrite_jsonl
from ftrl_lab.core.cli import UserError
from ftrl_lab.core.executor import ToolExecutor
from ftrl_lab.core.records import (
    SCENARIOS,
    EnvRecord,
    append_jsonl,
    default_test_set,
    interleaved_order,
    load_records,
)

TRANSCRIPTS, RESULTS_CSV, RESULTS_JSON = "transcripts.jsonl", "results.csv", "results.json"
METRICS = ("solve_precision", "solve_rate", "solve_f1")
PLAY_ORDERS = ("file", "interleaved")


def load_transcripts(out_dir: str | os.PathLike) -> list[dict]:
    """Finished transcripts of a run folder (a cut-off last line is dropped and the file repaired)."""
    path = Path(out_dir) / TRANSCRIPTS
    rows, cut = read_jsonl_lines(path)
    if cut:
        rewrite_jsonl(path, rows)
    return rows


def summarize(rows: Sequence[dict] | pd.DataFrame) -> pd.DataFrame:
    """Per-scenario and overall means of the episode metrics (one row per scenario + "overall")."""
    df = pd.DataFrame(rows) if not isinstance(rows, pd.DataFrame) else rows
    columns = ["scenario", "n", *METRICS, "turns", "calls", "solved", "total", "echoes", "completion_tokens"]
    if df.empty:
        return pd.DataFrame(columns=[*columns, "rules"])
    numeric = [c for c in columns[2:] if c in df.columns]

    def block(part: pd.DataFrame, name: str) -> dict:
        return {"scenario": name, "n": len(part), **part[numeric].mean().to_dict(), "rules": setting(part)}

    order = [s for s in SCENARIOS if s in set(df["scenario"])] + sorted(set(df["scenario"]) - set(SCENARIOS))
    table = [block(df[df["scenario"] == s], s) for s in order] + [block(df, "overall")]
    return pd.DataFrame(table, columns=[*(c for c in columns if c in ("scenario", "n") or c in numeric), "rules"])


def setting(rows: pd.DataFrame) -> str:
    """The scoring setting of these episodes, e.g. ``official`` or ``official+echo_guard``
    (transcripts written before rule sets existed were lenient; a mix is listed)."""
    rules = rows["rules"].fillna("lenient") if "rules" in rows else pd.Series(["lenient"] * len(rows))
    guard = rows["echo_guard"].fillna(False).astype(bool) if "echo_guard" in rows else pd.Series([False] * len(rows))
    names = sorted({r + ("+echo_guard" if g else "") for r, g in zip(rules, guard)})
    return "/".join(names) if names else "official"


def machine_info() -> dict[str, Any]:
    """Where a run happened: host, CPU, cores, Python/torch versions, accelerator."""
    info = {
        "host": platform.node(),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import torch

        info.update(
            torch=torch.__version__,
            threads=torch.get_num_threads(),
            cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        )
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


@dataclass
class EvalResult:
    """The outcome of :func:`evaluate`: the table, per-episode rows and what this call did."""

    table: pd.DataFrame
    episodes: pd.DataFrame
    out_dir: Path
    wall_seconds: float
    new_episodes: int
    skipped: int


def evaluate(
    records: Sequence[EnvRecord],
    policy: Policy,
    out_dir: str | os.PathLike,
    *,
    max_turns: int = 20,
    max_active: int = 8,
    executor: ToolExecutor | None = None,
    progress: bool = True,
    meta: dict | None = None,
    rules: str = "official",
    echo_guard: bool = False,
    order: str = "file",
) -> EvalResult:
    """Evaluate ``policy`` on ``records``, resumably, writing transcripts and results to ``out_dir``.

    ``meta`` (model, data, settings) is stored in ``results.json``. ``rules`` (default "official":
    FTRL's evaluation_self.py outcome) and ``echo_guard`` (default off: paper parity) set how turns
    are parsed and scored; both are named in every summary row. ``order``: play the records in
    file order, or "interleaved" (:func:`ftrl_lab.core.records.interleaved_order`, round-robin over
    the scenarios) so that a run stopped early has scored a subset spread over the scenarios.
    Transcripts keep each record's file index either way.
    """
    if order not in PLAY_ORDERS:
        raise ValueError(f"unknown order {order!r} (choose from {PLAY_ORDERS})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = [episode_key(r) for r in records]
    done = {row["key"] for row in load_transcripts(out_dir)}
    todo, seen = [], set(done)
    for i, (rec, key) in enumerate(zip(records, keys)):
        if key not in seen:  # a repeated question is played once, as FTRL keys on it
            seen.add(key)
            todo.append((i, rec))
    if order == "interleaved":
        rank = {i: r for r, i in enumerate(interleaved_order(records))}
        todo.sort(key=lambda item: rank[item[0]])
    path = out_dir / TRANSCRIPTS
    t0 = time.perf_counter()
    new = 0

    def save(ep: Episode) -> None:
        nonlocal new
        append_jsonl(path, [ep.to_dict()])
        new += 1

    try:
        if todo:
            rollout(
                [r for _, r in todo],
                policy,
                max_turns=max_turns,
                max_active=max_active,
                executor=executor,
                on_episode=save,
                indices=[i for i, _ in todo],
                progress=progress,
                desc="evaluate",
                rules=rules,
                echo_guard=echo_guard,
            )
    finally:
        wall = time.perf_counter() - t0
        result = _write_results(
            out_dir, set(keys), len(set(keys)), wall, new, {"rules": rules, "echo_guard": echo_guard, **(meta or {})}
        )
    return EvalResult(result[0], result[1], out_dir, wall, new, len(set(keys)) - len(todo))


def _write_results(
    out_dir: Path, keys: set[str], n_records: int, wall: float, new: int, meta: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [r for r in load_transcripts(out_dir) if r["key"] in keys]
    summary_cols = [
        "key",
        "index",
        "scenario",
        "turns",
        "calls",
        "solved",
        "total",
        *METRICS,
        "rules",
        "echo_guard",
        "echoes",
        "prompt_tokens",
        "prefilled_tokens",
        "completion_tokens",
        "gen_seconds",
        "tool_seconds",
        "seconds",
    ]
    episodes = pd.DataFrame([{c: r.get(c) for c in summary_cols} for r in rows], columns=summary_cols)
    table = summarize(episodes)
    table.to_csv(out_dir / RESULTS_CSV, index=False)
    previous = {}
    if (out_dir / RESULTS_JSON).exists():
        try:
            previous = json.loads((out_dir / RESULTS_JSON).read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            previous = {}
    runs = list(previous.get("runs", [])) + [
        {
            "finished_at": dt.datetime.now().isoformat(timespec="seconds"),
            "wall_seconds": round(wall, 2),
            "new_episodes": new,
        }
    ]
    results = {
        "benchmark": "ftrl",
        **meta,
        "n_records": n_records,
        "n_done": len(rows),
        "complete": len(rows) == n_records,
        "table": table.to_dict(orient="records"),
        "wall_seconds_total": round(sum(r["wall_seconds"] for r in runs), 2),
        "episode_seconds_sum": round(float(episodes["seconds"].sum()), 2) if len(episodes) else 0.0,
        "runs": runs,
        "machine": machine_info(),
    }
    tmp = out_dir / (RESULTS_JSON + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / RESULTS_JSON)
    return table, episodes


# --- command line ----------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftrl_lab.evaluate", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="benchmark", required=True)
    p = sub.add_parser("ftrl", help="FTRL's test set (Solve-P/R/F1)")
    p.add_argument("--data", default=str(default_test_set()), help="records (.parquet or .jsonl)")
    p.add_argument("--out", required=True, help="run folder (transcripts, results); a rerun resumes")
    p.add_argument("--limit", type=int, default=None, help="only the first N records")
    p.add_argument("--max-turns", type=int, default=20)
    p.add_argument(
        "--executor",
        choices=("sandbox", "inprocess"),
        default="sandbox",
        help="where tool code runs (inprocess: FTRL's unisolated exec, trusted code only)",
    )
    p.add_argument(
        "--exec-mode",
        choices=("ftrl", "fresh"),
        default="ftrl",
        help="FTRL's exec semantics (module-level names of a tool source invisible to its function) or a fresh"
        " namespace per source (both executors)",
    )
    p.add_argument(
        "--rules", choices=("official", "lenient"), default="official", help="FTRL's parse rules or the lenient ones"
    )
    p.add_argument("--echo-guard", action="store_true", help="refuse solves by echo (off: paper parity)")
    p.add_argument(
        "--order",
        choices=PLAY_ORDERS,
        default="file",
        help="play records in file order, or round-robin over the scenarios (a run stopped early has a stratified subset)",
    )
    p.add_argument("--no-progress", action="store_true")
    add_policy_arguments(p)
    args = parser.parse_args(argv)

    records = load_records(args.data)
    if not records:
        raise UserError(f"{args.data}: no records in the file")
    if args.limit is not None:
        records = records[: args.limit]
    policy, info = policy_from_args(args)
    from ftrl_lab.core.executor import inprocess_executor, sandbox_executor

    if args.executor == "inprocess":
        executor = inprocess_executor(mode=args.exec_mode)
    else:
        executor = sandbox_executor(exec_mode=args.exec_mode)
    meta = {
        **info,
        "data": str(args.data),
        "settings": {
            k: getattr(args, k)
            for k in (
                "limit",
                "max_turns",
                "max_new_tokens",
                "batch_size",
                "temperature",
                "executor",
                "exec_mode",
                "threads",
                "bf16_prefill",
                "fast_decode",
                "order",
            )
        },
    }
    result = evaluate(
        records,
        policy,
        args.out,
        max_turns=args.max_turns,
        max_active=args.batch_size,
        executor=executor,
        progress=not args.no_progress,
        meta=meta,
        rules=args.rules,
        echo_guard=args.echo_guard,
        order=args.order,
    )
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(result.table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(
        f"{result.new_episodes} new, {result.skipped} already done; {result.wall_seconds:.1f} s; "
        f"results in {result.out_dir}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
