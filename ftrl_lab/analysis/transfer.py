"""Transfer and general ability of a finished run: its starting and final checkpoints on FTRL's
test set (the paper's protocol), the benchmark suite (ToolHop, RoTBench, BFCL non-live) and
HumanEval, with paired bootstrap 95% CIs of final - start.

    python -m ftrl_lab.analysis transfer runs/train/cpu-smollm2_solve_f1_grpo \\
        [--ftrl-limit 20] [--suite-limit 10] [--humaneval 164] [--publish data/train]

The two checkpoints are the run's own (``state.json``): ``sft.model`` (RL's start; the base model
when the run has no warm start) and the selected final policy (``selection.model``, or
``control.model`` for the continued-SFT control). Each is evaluated with the settings in
:class:`TransferSettings` (decode settings from the run's config), into

    <run>/transfer/<run name>-<tag>/   a suite folder (``python -m ftrl_lab.benchmarks suite``'s; its
                                       name labels the Table 2 row), with
        ftrl/                          transcripts.jsonl, results.csv (``python -m ftrl_lab.evaluate ftrl``'s)
        humaneval.jsonl                per-problem rows
    <run>/transfer/transfer.json|md    the paired comparison; table2.csv: both rows in Table 2

Notebook 04 shows them next to the paper's rows: ``BENCH_RUNS`` = the two ``<run name>-<tag>``
folders, ``FTRL_EVALS`` = {folder name: its ``ftrl/``}.

Every piece resumes (a rerun skips finished episodes, items and problems); a rerun with other
protocol settings is refused. Subsets are chosen before any model runs and are the same for
both checkpoints: FTRL's ``ftrl_limit`` records stratified by scenario
(:func:`ftrl_lab.core.records.stratified_subset`, seed 0), the first ``suite_limit`` items of each
suite category, the first ``humaneval`` HumanEval problems. ``None`` means all of them.

Intervals: FTRL Solve-P/R/F1 resample records (:func:`ftrl_lab.train.report.compare`); a suite
benchmark's overall score (the mean of its categories' means, as its own table computes it)
resamples items within each category; HumanEval resamples problems
(:func:`ftrl_lab.train.report.pass_at_1_change`).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftrl_lab.core.records import default_test_set, load_records, stratified_subset

log = logging.getLogger(__name__)

TAGS = ("start", "final")
SETTINGS_JSON = "settings.json"
GUARDED = ("ftrl_data", "max_turns", "max_new_tokens", "rules", "fast_decode", "bf16_prefill", "seed")
"""Settings the outputs depend on; limits may change between reruns (the comparison uses the
items both checkpoints have)."""


@dataclasses.dataclass
class TransferSettings:
    """What is evaluated and how. Defaults: the paper's FTRL protocol (all 200 records, greedy,
    up to 20 turns, official rules), the whole suite and all 164 HumanEval problems."""

    ftrl_data: str | None = None  # records; None: FTRL's test set (records.default_test_set)
    ftrl_limit: int | None = None  # stratified by scenario; None: all; 0: skip FTRL
    max_turns: int = 20  # FTRL's protocol (ToolHop keeps its own limit)
    max_new_tokens: int = 512  # per turn, FTRL and the suite
    rules: str = "official"  # FTRL's evaluation_self.py outcome
    suite_limit: int | None = None  # first N items per suite category; None: all
    benchmarks: tuple[str, ...] = ("toolhop", "rotbench", "bfcl")
    humaneval: int | None = 164  # first N problems; 0: skip
    batch_size: int = 8
    fast_decode: bool | None = None  # None: the run's config
    bf16_prefill: bool | None = None  # None: the run's mixed precision
    bootstrap: int = 2000
    seed: int = 0


def checkpoints(run_dir: str | Path) -> dict[str, str]:
    """The run's starting and final checkpoints (tag -> model folder or hub id), from ``state.json``."""
    run_dir = Path(run_dir)
    path = run_dir / "state.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a training run folder (no state.json)")
    state = json.loads(path.read_text())
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
    start = (state.get("sft") or {}).get("model") or config.get("model")
    final = (state.get("selection") or state.get("control") or {}).get("model")
    if not start:
        raise ValueError(f"{path}: no starting checkpoint (field sft.model) and no model in config.json")
    if not final or "eval_final" not in state:
        raise ValueError(f"{path}: the run is not finished (no selection.model / control.model or eval_final)")
    out = {"start": str(start), "final": str(final)}
    for tag, model in out.items():
        if model != "default" and ("/" in model or "\\" in model) and not Path(model).exists():
            raise FileNotFoundError(f"{path}: the {tag} checkpoint {model} is missing (pruned or moved?)")
    return out


def resolve_settings(run_dir: Path, settings: TransferSettings) -> TransferSettings:
    """Fill the decode settings the run's config decides (fast decode, bf16 prefill)."""
    from ftrl_lab.train.config import config_from_dict

    if settings.fast_decode is not None and settings.bf16_prefill is not None:
        return settings
    cfg = config_from_dict(json.loads((run_dir / "config.json").read_text()), str(run_dir / "config.json"))
    from ftrl_lab.agent.models import bf16_mixed_precision, pick_device

    fast = cfg.fast_decode if settings.fast_decode is None else settings.fast_decode
    bf16 = bf16_mixed_precision(cfg.mixed_precision, pick_device(cfg.device))
    bf16 = bf16 if settings.bf16_prefill is None else settings.bf16_prefill
    return dataclasses.replace(settings, fast_decode=fast, bf16_prefill=bf16)


def check_settings(out: Path, settings: TransferSettings) -> None:
    """Refuse a rerun whose protocol differs from the one the folder was made with."""
    path = out / SETTINGS_JSON
    if path.exists():
        old = json.loads(path.read_text())
        changed = [k for k in GUARDED if k in old and old[k] != dataclasses.asdict(settings)[k]]
        if changed:
            diff = ", ".join(f"{k}: {old[k]!r} -> {dataclasses.asdict(settings)[k]!r}" for k in changed)
            raise ValueError(f"{path}: made with other settings ({diff}); use another --out")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(settings), indent=2) + "\n")


def ftrl_records(settings: TransferSettings) -> tuple[list, int]:
    """The FTRL records both checkpoints play (a stratified subset when ``ftrl_limit``; 0: none)
    and how many records the source has."""
    if settings.ftrl_limit == 0:
        return [], 0
    source = settings.ftrl_data or default_test_set()
    records = list(load_records(source))
    if not records:
        raise ValueError(f"{source}: no records")
    chosen = stratified_subset(records, settings.ftrl_limit, settings.seed) if settings.ftrl_limit else records
    return chosen, len(records)


def evaluate_checkpoint(
    model: str, out: Path, settings: TransferSettings, records: Sequence, source_records: int | None = None
) -> dict[str, float]:
    """One checkpoint through FTRL, the suite and HumanEval (each resumable); seconds per part.
    ``source_records``: how many records the FTRL source has (``records`` may be a subset of it)."""
    import torch

    from ftrl_lab.agent.evaluate import evaluate
    from ftrl_lab.agent.humaneval import humaneval
    from ftrl_lab.agent.policies import make_policy
    from ftrl_lab.benchmarks.suite import SuiteSettings, run_suite
    from ftrl_lab.core.executor import sandbox_executor

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    policy, info = make_policy(
        model,
        max_new_tokens=settings.max_new_tokens,
        batch_size=settings.batch_size,
        bf16_prefill=bool(settings.bf16_prefill),
        fast_decode=bool(settings.fast_decode),
    )
    seconds["load"] = time.perf_counter() - t0
    if records:
        t0 = time.perf_counter()
        meta = {
            **info,
            "data": str(settings.ftrl_data or default_test_set()),
            "source_records": source_records or len(records),
            "settings": dataclasses.asdict(settings),
        }
        evaluate(
            records,
            policy,
            out / "ftrl",
            max_turns=settings.max_turns,
            max_active=settings.batch_size,
            executor=sandbox_executor(exec_mode="ftrl"),
            meta=meta,
            rules=settings.rules,
            order="interleaved",  # stopped early, it has scored a subset spread over the scenarios
        )
        seconds["ftrl"] = time.perf_counter() - t0
    if settings.benchmarks:
        t0 = time.perf_counter()
        suite = SuiteSettings(
            model=model,
            limit_per_category=settings.suite_limit,
            max_new_tokens=settings.max_new_tokens,
            batch_size=settings.batch_size,
            bf16_prefill=bool(settings.bf16_prefill),
            threads=torch.get_num_threads(),  # recorded in the summary, not set
        )
        run_suite(policy, out, suite, model_info=info, benchmarks=settings.benchmarks)
        seconds["suite"] = time.perf_counter() - t0
    if settings.humaneval:
        t0 = time.perf_counter()
        engine = policy.engine
        humaneval(
            engine.model,
            engine.tokenizer,
            limit=settings.humaneval,
            batch_size=max(settings.batch_size, 16),
            bf16_prefill=bool(settings.bf16_prefill),
            rows_path=out / "humaneval.jsonl",
        )
        seconds["humaneval"] = time.perf_counter() - t0
    return {k: round(v, 1) for k, v in seconds.items()}


def run_transfer(
    run_dir: str | Path,
    settings: TransferSettings | None = None,
    out: str | Path | None = None,
    threads: str | None = None,
    start_from: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate both checkpoints of ``run_dir`` (resuming) and write the comparison; returns it.
    ``start_from``: another run's transfer folder whose start checkpoint is this run's (e.g. a
    study's first run): its start evaluations are copied instead of made again."""
    run_dir = Path(run_dir)
    models = checkpoints(run_dir)
    settings = resolve_settings(run_dir, settings or TransferSettings())
    out = Path(out) if out else run_dir / "transfer"
    check_settings(out, settings)
    if start_from is not None:
        copy_start(Path(start_from), out, run_dir.name, models["start"], settings)
    records, source_records = ftrl_records(settings)
    timing_path = out / "seconds.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    for tag in TAGS:
        folder = tag_dir(out, run_dir.name, tag)
        log.info("transfer: %s checkpoint %s -> %s", tag, models[tag], folder)
        spent = evaluate_checkpoint(models[tag], folder, settings, records, source_records)
        timing.setdefault(tag, []).append({**spent, "threads": threads})
        timing_path.write_text(json.dumps(timing, indent=2) + "\n")
        gc.collect()
    return write_transfer(run_dir, out, settings, models)


def tag_dir(out: Path, run_name: str, tag: str) -> Path:
    """The folder of one checkpoint's evaluations, ``<out>/<run name>-<tag>``: a suite folder (its
    name labels the Table 2 row) holding also ``ftrl/`` and ``humaneval.jsonl``."""
    return out / f"{run_name}-{tag}"


def copy_start(source: Path, out: Path, run_name: str, start_model: str, settings: TransferSettings) -> None:
    """Copy the start evaluations of transfer folder ``source`` into ``out`` after checking it evaluated the same checkpoint with the
    same protocol (a ``ValueError`` naming the difference otherwise)."""
    path = source / "transfer.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no transfer comparison to take the start evaluations from")
    done = json.loads(path.read_text())
    theirs = done["checkpoints"]["start"]
    if Path(theirs).resolve() != Path(start_model).resolve():
        raise ValueError(f"{path}: its start checkpoint is {theirs}, this run's is {start_model}")
    mine = dataclasses.asdict(settings)
    changed = [k for k in GUARDED if done["settings"].get(k) != mine[k]]
    if changed:
        raise ValueError(f"{path}: made with other settings ({', '.join(changed)})")
    shutil.copytree(
        tag_dir(source, Path(done["run"]).name, "start"), tag_dir(out, run_name, "start"), dirs_exist_ok=True
    )


# --- the comparison ---------------------------------------------------------------------------
def _ftrl_frame(folder: Path) -> pd.DataFrame:
    from ftrl_lab.agent.evaluate import load_transcripts
    from ftrl_lab.train.report import METRICS

    rows = load_transcripts(folder) if folder.exists() else []
    return pd.DataFrame([{k: r[k] for k in ("key", *METRICS)} for r in rows], columns=["key", *METRICS])


def _suite_results(folder: Path, benchmark: str) -> pd.DataFrame:
    path = folder / benchmark / "results.jsonl"
    if not path.exists():
        return pd.DataFrame()
    return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines() if line.strip()])


def category_mean_change(
    start: pd.DataFrame, final: pd.DataFrame, metric: str, n_boot: int = 2000, seed: int = 0
) -> dict[str, Any]:
    """Paired change of the mean over categories of each category's item mean, items matched on
    (``id``, ``category``), with a percentile bootstrap 95% CI resampling items within categories."""
    merged = start[["id", "category", metric]].merge(
        final[["id", "category", metric]], on=["id", "category"], suffixes=("_start", "_final")
    )
    groups = [g for _, g in merged.groupby("category", sort=True)]
    if not groups:
        return {
            "n": 0,
            "start": np.nan,
            "final": np.nan,
            "delta": np.nan,
            "delta_ci_low": np.nan,
            "delta_ci_high": np.nan,
        }
    a = [g[f"{metric}_start"].to_numpy(float) * 100 for g in groups]
    b = [g[f"{metric}_final"].to_numpy(float) * 100 for g in groups]
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for x, y in zip(a, b):
        idx = rng.integers(0, len(x), size=(n_boot, len(x)))
        boot += (y[idx] - x[idx]).mean(axis=1)
    boot /= len(groups)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    start_mean = float(np.mean([x.mean() for x in a]))
    final_mean = float(np.mean([y.mean() for y in b]))
    return {
        "n": int(len(merged)),
        "categories": [str(g["category"].iloc[0]) for g in groups],
        "start": start_mean,
        "final": final_mean,
        "delta": final_mean - start_mean,
        "delta_ci_low": float(lo),
        "delta_ci_high": float(hi),
    }


def transfer_table(out: Path, settings: TransferSettings, run_name: str) -> pd.DataFrame:
    """One row per benchmark x metric: start, final, delta and its CI (points x100), ``n`` paired items."""
    from ftrl_lab.agent.humaneval import load_rows
    from ftrl_lab.benchmarks.registry import BENCHMARKS
    from ftrl_lab.train.report import compare, pass_at_1_change

    rows: list[dict[str, Any]] = []
    start, final = (tag_dir(out, run_name, t) for t in TAGS)
    a, b = _ftrl_frame(start / "ftrl"), _ftrl_frame(final / "ftrl")
    if len(a) and len(b):
        for r in compare(a, b, settings.bootstrap, settings.seed).to_dict(orient="records"):
            rows.append({"benchmark": "ftrl", "metric": r["metric"], **_pick(r)})
    for name in settings.benchmarks:
        sa, sb = _suite_results(start, name), _suite_results(final, name)
        if not len(sa) or not len(sb):
            continue
        for metric in BENCHMARKS[name].headline:
            column = BENCHMARKS[name].item_column(metric)
            r = category_mean_change(sa, sb, column, settings.bootstrap, settings.seed)
            rows.append({"benchmark": name, "metric": metric, **_pick(r)})
    paths = [start / "humaneval.jsonl", final / "humaneval.jsonl"]
    if settings.humaneval and all(p.exists() for p in paths):
        r = pass_at_1_change(load_rows(paths[0]), load_rows(paths[1]), settings.bootstrap, settings.seed)
        rows.append({"benchmark": "humaneval", "metric": "pass@1", **_pick(r)})
    table = pd.DataFrame(rows)
    if len(table):
        table["reading"] = [_reading(r) for r in table.itertuples()]
    return table


def _pick(r: dict) -> dict:
    return {k: r[k] for k in ("n", "start", "final", "delta", "delta_ci_low", "delta_ci_high")}


def _reading(r: Any) -> str:
    if not r.n:
        return "no paired items"
    if r.delta_ci_low > 0:
        return "final above start (CI above 0)"
    if r.delta_ci_high < 0:
        return "final below start (CI below 0)"
    return "a tie (CI covers 0)"


def write_transfer(run_dir: Path, out: Path, settings: TransferSettings, models: dict[str, str]) -> dict[str, Any]:
    """``transfer.json`` / ``transfer.md`` and the two Table 2 rows (``table2.csv`` / ``table2.md``)."""
    from ftrl_lab.benchmarks.report import table2_from_suites

    table = transfer_table(out, settings, run_dir.name)
    timing_path = out / "seconds.json"
    summary = {
        "run": str(run_dir),
        "checkpoints": models,
        "settings": dataclasses.asdict(settings),
        "seconds": json.loads(timing_path.read_text()) if timing_path.exists() else {},
        "table": json.loads(table.to_json(orient="records")),
    }
    (out / "transfer.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "transfer.md").write_text(transfer_markdown(summary, table) + "\n")
    folders = {f"{run_dir.name}-{t}": tag_dir(out, run_dir.name, t) for t in TAGS}
    ftrl = {label: f / "ftrl" for label, f in folders.items() if (f / "ftrl" / "results.csv").exists()}
    t2 = table2_from_suites(folders, ftrl)
    t2.to_csv(out / "table2.csv")
    return summary


def transfer_markdown(summary: dict[str, Any], table: pd.DataFrame) -> str:
    """The comparison as Markdown: what was run, the table, and one line per benchmark."""
    s = summary["settings"]
    ftrl = "all records" if s["ftrl_limit"] is None else f"{s['ftrl_limit']} records stratified by scenario"
    ftrl = "not run" if s["ftrl_limit"] == 0 else ftrl
    suite = "all items" if s["suite_limit"] is None else f"first {s['suite_limit']} items per category"
    he = f"first {s['humaneval']} problems" if s["humaneval"] else "not run"
    lines = [
        f"# Transfer and general ability: `{Path(summary['run']).name}`, start vs final",
        "",
        f"Checkpoints: start `{summary['checkpoints']['start']}`, final `{summary['checkpoints']['final']}`.",
        f"FTRL: {ftrl} of `{s['ftrl_data'] or 'the FTRL test set'}`, greedy, up to {s['max_turns']} turns,"
        f" {s['max_new_tokens']} new tokens per turn, rules `{s['rules']}`; suite:"
        f" {', '.join(s['benchmarks']) or 'not run'} ({suite}); HumanEval: {he}."
        " Points x100; paired bootstrap 95% CIs of final - start.",
        "",
        "| benchmark | metric | n | start | final | delta | 95% CI | reading |",
        "|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.benchmark} | {r.metric} | {r.n} | {r.start:.1f} | {r.final:.1f} | {r.delta:+.1f} |"
            f" [{r.delta_ci_low:+.1f}, {r.delta_ci_high:+.1f}] | {r.reading} |"
        )
    if not len(table):
        lines.append("| (nothing evaluated on both checkpoints yet) | | | | | | | |")
    seconds = summary.get("seconds") or {}
    if seconds:
        lines += ["", "Seconds per part (per rerun): " + "; ".join(f"{t}: {v}" for t, v in seconds.items())]
    return "\n".join(lines)


def publish(out: Path, publish_dir: str | Path, prefix: str) -> list[Path]:
    """Copy the comparison and Table 2 rows to ``publish_dir`` as ``<prefix>_transfer.*``."""
    pub = Path(publish_dir)
    pub.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in ("transfer.json", "transfer.md", "table2.csv"):
        if (out / name).exists():
            copied.append(Path(shutil.copy(out / name, pub / f"{prefix}_{name}")))
    return copied


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ftrl_lab.analysis transfer RUN_DIR``: see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m ftrl_lab.analysis transfer", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a finished training run folder")
    p.add_argument("--out", default=None, help="default: <run>/transfer (a rerun resumes)")
    p.add_argument("--ftrl-data", default=None, help="FTRL-format records (default: FTRL's test set)")
    p.add_argument(
        "--ftrl-limit", type=int, default=None, help="records stratified by scenario (default: all; 0: skip)"
    )
    p.add_argument("--max-turns", type=int, default=20)
    p.add_argument("--max-new-tokens", type=int, default=512)
    p.add_argument("--suite-limit", type=int, default=None, help="first N items per suite category (default: all)")
    p.add_argument("--benchmarks", nargs="*", default=["toolhop", "rotbench", "bfcl"])
    p.add_argument("--humaneval", type=int, default=164, help="first N HumanEval problems (0: skip)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the cores free now)")
    p.add_argument("--publish", default=None, help="also copy the results to this folder (e.g. data/train)")
    p.add_argument("--start-from", default=None, help="a transfer folder of the same start checkpoint to copy")
    a = p.parse_args(argv)
    import torch

    from ftrl_lab.agent.models import pick_threads

    threads, how = pick_threads(a.threads)
    torch.set_num_threads(threads)
    log.info("transfer: %s", how)
    settings = TransferSettings(
        ftrl_data=a.ftrl_data,
        ftrl_limit=a.ftrl_limit,
        max_turns=a.max_turns,
        max_new_tokens=a.max_new_tokens,
        suite_limit=a.suite_limit,
        benchmarks=tuple(a.benchmarks),
        humaneval=a.humaneval,
        batch_size=a.batch_size,
    )
    out = Path(a.out) if a.out else Path(a.run) / "transfer"
    summary = run_transfer(a.run, settings, out, threads=how, start_from=a.start_from)
    if a.publish:
        config = json.loads((Path(a.run) / "config.json").read_text())
        publish(out, a.publish, f"{config.get('name', 'run')}_{Path(a.run).name}")
    print((out / "transfer.md").read_text())
    return 0 if summary["table"] else 1
