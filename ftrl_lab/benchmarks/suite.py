"""One model through the benchmark suite, resumably, into one tidy summary.

    python -m ftrl_lab.benchmarks suite --model default --out runs/bench/default \\
        [--limit-per-category N] [--threads T] [--max-new-tokens 512] [--batch-size 8]

The suite (:data:`SUITE`): ToolHop on the shared 10-record sample in its three modes (direct,
mandatory, free), RoTBench clean and union, BFCL simple / multiple / parallel /
parallel_multiple. Decoding is greedy with the benchmarks' defaults (512 new tokens per turn,
ToolHop 9 turns). ``--limit-per-category N`` keeps the first N items of each category (of each
ToolHop mode), in file order; the summary says so on every row (``selection``, ``subsample``).

Run folder::

    <out>/suite.json             settings the outputs depend on, model, machine, one entry per call
    <out>/<benchmark>/           outputs.jsonl (appended as items finish), results.jsonl, table.csv
    <out>/summary.{csv,json,md}  headline metrics per benchmark and category, with n and settings

A rerun skips every output already written (a larger limit only runs the new items); a rerun
with other generation settings or another model is refused rather than mixed in.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ftrl_lab.agent.policies import add_policy_arguments, policy_from_args
from ftrl_lab.agent.sampling import DEFAULT_MAX_NEW_TOKENS
from ftrl_lab.benchmarks import bfcl, toolhop
from ftrl_lab.benchmarks.registry import BENCHMARKS, RunOptions, run_and_score

SUITE: dict[str, tuple[str, ...]] = {
    "toolhop": toolhop.MODES,
    "rotbench": ("clean", "union"),
    "bfcl": bfcl.NON_LIVE_AST,
}
HEADLINE = {name: BENCHMARKS[name].headline for name in SUITE}
SUMMARY_ROWS = {name: BENCHMARKS[name].summary_row for name in SUITE}
"""The row of each benchmark's table that summarises its categories (a mean over them)."""
GUARDED = ("model", "api_base", "max_new_tokens", "temperature", "max_turns", "bfcl_mode", "data", "bf16_prefill")
"""Settings the outputs depend on: a rerun in the same folder must keep them."""
SUITE_JSON = "suite.json"


@dataclass
class SuiteSettings:
    """How the suite is run. ``data`` maps a benchmark to a file/folder replacing its default;
    ``rules`` maps a benchmark to the rule set that scores it (default: the one the paper's
    numbers were made with, :attr:`~ftrl_lab.benchmarks.registry.Benchmark.default_rules`)."""

    model: str = "default"
    api_base: str | None = None
    limit_per_category: int | None = None
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float = 0.0
    max_turns: int = toolhop.MAX_TURNS
    bfcl_mode: str = "fc"
    rules: dict[str, str] = field(default_factory=dict)
    batch_size: int = 8
    threads: int | None = None
    data: dict[str, str] = field(default_factory=dict)
    bf16_prefill: bool = False

    def __post_init__(self):
        if self.limit_per_category is not None and self.limit_per_category < 1:
            raise ValueError(f"limit_per_category must be >= 1 or None, got {self.limit_per_category}")
        unknown = set(self.data) - set(SUITE)
        if unknown:
            raise ValueError(f"data given for unknown benchmark(s) {sorted(unknown)} (suite: {list(SUITE)})")
        unknown = set(self.rules) - set(SUITE)
        if unknown:
            raise ValueError(f"rules given for unknown benchmark(s) {sorted(unknown)} (suite: {list(SUITE)})")
        for name, rules in self.rules.items():
            BENCHMARKS[name].check_rules(rules)

    def rules_for(self, name: str) -> str:
        """The rule set that scores a suite benchmark."""
        return self.rules.get(name) or BENCHMARKS[name].default_rules


# --- items ---------------------------------------------------------------------------------------
def load_items(name: str, data: str | None = None) -> list[dict]:
    """Every item of a suite benchmark in the suite's categories (ToolHop: the records)."""
    if name not in SUITE:
        raise ValueError(f"{name!r} is not in the suite ({list(SUITE)})")
    categories = None if name == "toolhop" else SUITE[name]
    return BENCHMARKS[name].load(data, RunOptions(categories=categories))


def select(name: str, items: Sequence[dict], limit: int | None) -> tuple[list[dict], dict[str, int]]:
    """(the first ``limit`` items of each category, items available per category).

    ToolHop's categories are its modes, each played on the same records."""
    if name == "toolhop":
        chosen = list(items if limit is None else items[:limit])
        return chosen, {mode: len(items) for mode in SUITE["toolhop"]}
    available: dict[str, int] = {}
    chosen = []
    for it in items:
        available[it["category"]] = available.get(it["category"], 0) + 1
        if limit is None or available[it["category"]] <= limit:
            chosen.append(it)
    return chosen, available


def _done_keys(name: str, path: Path) -> set:
    """Output keys already in a benchmark's ``outputs.jsonl`` (a cut-off line is ignored)."""
    if not path.exists():
        return set()
    keys = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "id" in row:
            keys.add((str(row["id"]), row.get("mode")) if name == "toolhop" else str(row["id"]))
    return keys


def _wanted_keys(name: str, items: Sequence[dict]) -> set:
    if name == "toolhop":
        return {(str(it["id"]), m) for it in items for m in SUITE["toolhop"]}
    return {str(it["id"]) for it in items}


# --- running -------------------------------------------------------------------------------------
def run_benchmark(
    name: str,
    policy: Any,
    items: Sequence[dict],
    folder: str | os.PathLike,
    settings: SuiteSettings,
    executor: Any = None,
    show_progress: bool = True,
):
    """Run (resuming) and score one suite benchmark in ``folder`` through the shared dispatch
    (:func:`ftrl_lab.benchmarks.registry.run_and_score`); returns its table."""
    if name not in SUITE:
        raise ValueError(f"{name!r} is not in the suite ({list(SUITE)})")
    options = RunOptions(
        categories=SUITE[name] if name == "toolhop" else None,
        max_turns=settings.max_turns,
        batch_size=settings.batch_size,
        bfcl_mode=settings.bfcl_mode,
        executor=executor,
        show_progress=show_progress,
    )
    table, _ = run_and_score(name, policy, items, folder, options, settings.rules_for(name))
    return table


def _read_state(out: Path) -> dict:
    path = out / SUITE_JSON
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: malformed JSON ({e.msg}, line {e.lineno})") from None


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def check_resumable(out: str | os.PathLike, settings: SuiteSettings) -> None:
    """Raise ``ValueError`` if ``out`` holds outputs made with other :data:`GUARDED` settings."""
    before = _read_state(Path(out)).get("settings")
    if not before:
        return
    now, defaults = asdict(settings), asdict(SuiteSettings())
    for key in GUARDED:  # a key missing from an older suite.json had its default value
        if before.get(key, defaults[key]) != now[key]:
            raise ValueError(
                f"{Path(out) / SUITE_JSON}: this folder's outputs were made with {key}="
                f"{before.get(key)!r}, not {now[key]!r}; use another --out (or delete the folder)"
            )


def conflict(out: str | os.PathLike, settings: SuiteSettings) -> str | None:
    """Why ``out`` cannot take a run with ``settings`` (its outputs were made with other
    :data:`GUARDED` settings), or None when it can (empty, or the same settings: a resume)."""
    try:
        check_resumable(out, settings)
    except ValueError as e:
        return str(e)
    return None


def run_suite(
    policy: Any,
    out: str | os.PathLike,
    settings: SuiteSettings | None = None,
    *,
    model_info: dict | None = None,
    benchmarks: Sequence[str] = tuple(SUITE),
    executor: Any = None,
    show_progress: bool = True,
):
    """Run ``policy`` through the suite benchmarks into ``out`` (resuming) and write the summary.

    ``policy``: any benchmark policy (see :mod:`ftrl_lab.benchmarks.common`); ``model_info``
    describes it in the summary. Returns the summary DataFrame (:func:`summarize`)."""
    from ftrl_lab.agent.evaluate import machine_info

    settings = settings or SuiteSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_resumable(out, settings)
    state = _read_state(out)
    state.update(
        settings=asdict(settings),
        model=model_info or state.get("model") or {"model": settings.model},
        machine=machine_info(),
    )
    state.setdefault("runs", [])
    _write_json(out / SUITE_JSON, state)
    for name in benchmarks:
        items, available = select(name, load_items(name, settings.data.get(name)), settings.limit_per_category)
        wanted = _wanted_keys(name, items)
        before = _done_keys(name, out / name / "outputs.jsonl") & wanted
        t0 = time.perf_counter()
        try:
            run_benchmark(name, policy, items, out / name, settings, executor, show_progress)
            state.setdefault("selected", {})[name] = {
                "limit_per_category": settings.limit_per_category,
                "available": available,
                "rules": settings.rules_for(name),
            }
        finally:  # an interrupted run still books its time and outputs
            n_new = len(_done_keys(name, out / name / "outputs.jsonl") & wanted) - len(before)
            state["runs"].append(
                {
                    "benchmark": name,
                    "finished_at": dt.datetime.now().isoformat(timespec="seconds"),
                    "seconds": round(time.perf_counter() - t0, 2),
                    "new_outputs": n_new,
                    "limit_per_category": settings.limit_per_category,
                }
            )
            _write_json(out / SUITE_JSON, state)
    return write_summary(out)


# --- the summary ---------------------------------------------------------------------------------
def _selection(limit: int | None, n: int, available: int, summary_row: bool) -> str:
    """How the items were chosen, e.g. "first 5 of 400", "all 105"."""
    if n >= available:
        return f"all {available}"
    if summary_row:
        return f"first {limit} per category: {n} of {available}"
    return f"first {limit} of {available}"


def _machine_line(machine: dict) -> str:
    gpu = machine.get("cuda")
    return f"{machine.get('processor', '?')} ({machine.get('cpu_count', '?')} cores)" + (f", {gpu}" if gpu else "")


def _older_rules(name: str, settings: dict) -> str:
    """The rule set of a folder written before rule sets were booked per benchmark."""
    if name == "rotbench" and settings.get("rotbench_rules"):
        return settings["rotbench_rules"]
    return "unrecorded"


def summarize(out: str | os.PathLike):
    """The tidy summary of a suite folder: one row per benchmark, category and headline metric,
    with ``n`` (items scored), ``available``, ``selection``, ``subsample``, ``rules`` (the rule set
    that scored it) and the settings."""
    import pandas as pd

    out = Path(out)
    state = _read_state(out)
    if not state:
        raise FileNotFoundError(
            f"{out / SUITE_JSON}: not a suite folder (run `python -m ftrl_lab.benchmarks suite --out {out}` first)"
        )
    settings = state["settings"]
    model = state.get("model", {})
    rows = []
    for name in SUITE:
        path = out / name / "table.csv"
        if not path.exists():
            continue
        table = pd.read_csv(path, index_col=0)
        selected = state.get("selected", {}).get(name, {})
        limit, available = selected.get("limit_per_category"), selected.get("available", {})
        rules = selected.get("rules") or _older_rules(name, settings)
        runs = [r for r in state.get("runs", []) if r["benchmark"] == name]
        seconds = sum(r["seconds"] for r in runs)
        new = sum(r["new_outputs"] for r in runs)
        for category in table.index:
            summary_row = category == SUMMARY_ROWS[name]
            cats = list(SUITE[name]) if summary_row else [category]
            n_avail = sum(available.get(c, 0) for c in cats)
            n = int(table.loc[category, "n"])
            for metric in HEADLINE[name]:
                rows.append(
                    {
                        "benchmark": name,
                        "category": category,
                        "metric": metric,
                        "value": float(table.loc[category, metric]),
                        "n": n,
                        "available": n_avail,
                        "selection": _selection(limit, n, n_avail, summary_row),
                        "subsample": n < n_avail,
                        "summary_row": summary_row,
                        "rules": rules,
                        "model": model.get("model", settings.get("model")),
                        "model_path": model.get("model_path"),
                        "limit_per_category": limit,
                        "max_new_tokens": settings["max_new_tokens"],
                        "temperature": settings["temperature"],
                        "max_turns": settings["max_turns"] if name == "toolhop" else None,
                        "seconds": round(seconds, 1),
                        "new_outputs": new,
                        "seconds_per_output": round(seconds / new, 2) if new else math.nan,
                        "machine": _machine_line(state.get("machine", {})),
                    }
                )
    return pd.DataFrame(rows)


def write_summary(out: str | os.PathLike):
    """Write ``summary.csv`` / ``summary.json`` / ``summary.md`` of a suite folder; returns the summary."""
    out = Path(out)
    df = summarize(out)
    state = _read_state(out)
    df.to_csv(out / "summary.csv", index=False)
    payload = {
        "model": state.get("model"),
        "settings": state.get("settings"),
        "machine": state.get("machine"),
        "subsample": bool(df["subsample"].any()) if len(df) else False,
        "runs": state.get("runs", []),
        "rows": json.loads(df.to_json(orient="records")),
    }
    _write_json(out / "summary.json", payload)
    (out / "summary.md").write_text(summary_markdown(df, state), encoding="utf-8")
    return df


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v):
        if isinstance(v, float):
            return "–" if v != v else f"{v:.2f}"
        return str(v)

    numeric = [all(isinstance(row[i], (int, float)) for row in rows) for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def summary_markdown(df, state: dict) -> str:
    """The summary as Markdown: settings first (a subsample says so in bold), one table per benchmark."""
    settings = state.get("settings", {})
    model = state.get("model", {})
    df = df if len(df) else df.reindex(columns=["benchmark", "rules"])
    lines = [f"# Benchmark suite: {model.get('model', settings.get('model'))}", ""]
    if len(df) and df["subsample"].any():
        limits = sorted({int(v) for v in df.loc[df["subsample"], "limit_per_category"]})
        lines.append(
            f"**SUBSAMPLE: the first {' / '.join(map(str, limits))} item(s) of each category in file order, "
            "not the full sets (see the selection column).**"
        )
    else:
        lines.append("Full sets (ToolHop: the shared 10-record sample, not the 995-query release).")
    name = model.get("model", settings.get("model"))
    path = model.get("model_path")
    lines += [
        "",
        f"- model: `{name}`"
        + (f" at `{path}`" if path and path != name else "")
        + (f", loaded in {model['load_seconds']} s" if model.get("load_seconds") is not None else "")
        + (f" via {settings['api_base']}" if settings.get("api_base") else ""),
        f"- decoding: greedy (temperature {settings.get('temperature')}), at most {settings.get('max_new_tokens')} "
        f"new tokens per turn; ToolHop at most {settings.get('max_turns')} turns; BFCL prompt mode "
        f"`{settings.get('bfcl_mode')}`; scoring rule sets: "
        + (", ".join(f"{b} `{r}`" for b, r in df.drop_duplicates("benchmark")[["benchmark", "rules"]].values) or "–")
        + ("; prefill under bf16 autocast" if settings.get("bf16_prefill") else ""),
        f"- batch size {settings.get('batch_size')}, torch threads {settings.get('threads')}",
        f"- machine: {_machine_line(state.get('machine', {}))}",
        "",
    ]
    for name in SUITE:
        part = df[df["benchmark"] == name] if len(df) else df
        if not len(part):
            continue
        wide = part.pivot_table(index="category", columns="metric", values="value", sort=False)
        first = part.drop_duplicates("category").set_index("category")
        metrics = list(HEADLINE[name])
        rows = [
            [
                c,
                int(first.loc[c, "n"]),
                first.loc[c, "selection"],
                first.loc[c, "rules"],
                *[float(wide.loc[c, m]) for m in metrics],
            ]
            for c in first.index
        ]
        seconds, new = first["seconds"].iloc[0], first["new_outputs"].iloc[0]
        lines += [
            f"## {name} ({', '.join(metrics)} in %)",
            "",
            _md_table(["category", "n", "selection", "rules", *metrics], rows),
            "",
            f"{seconds:.1f} s for {new} model outputs ({seconds / new:.2f} s each)"
            if new
            else f"{seconds:.1f} s (no new outputs)",
            "",
        ]
    return "\n".join(lines)


def read_summary(out: str | os.PathLike):
    """The tidy summary of a suite folder (``summary.csv``, written by :func:`run_suite`)."""
    import pandas as pd

    path = Path(out) / "summary.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no summary (run `python -m ftrl_lab.benchmarks suite --out {out}` first)")
    return pd.read_csv(path)


def compare(folders: Sequence[str | os.PathLike] | dict[str, str | os.PathLike]):
    """Headline metrics of several suite folders side by side: index (benchmark, category,
    metric), one value column per folder (or label), plus ``n <label>`` columns."""
    import pandas as pd

    labelled = folders if isinstance(folders, dict) else {Path(f).name: f for f in folders}
    parts = []
    for label, folder in labelled.items():
        df = read_summary(folder).set_index(["benchmark", "category", "metric"])
        parts.append(df[["value", "n"]].rename(columns={"value": label, "n": f"n {label}"}))
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, axis=1)


# --- command line --------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ftrl_lab.benchmarks suite", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="run folder, e.g. runs/bench/default (a rerun resumes)")
    p.add_argument(
        "--limit-per-category",
        type=int,
        default=None,
        help="first N items of each category (each ToolHop mode); default: all",
    )
    p.add_argument("--benchmarks", nargs="*", default=list(SUITE), choices=list(SUITE))
    p.add_argument("--max-turns", type=int, default=toolhop.MAX_TURNS, help="ToolHop turns per episode")
    p.add_argument("--bfcl-mode", choices=("fc", "python"), default="fc")
    for name in SUITE:
        b = BENCHMARKS[name]
        p.add_argument(
            f"--{name}-rules", choices=b.rules, default=None, help=f"{name} scoring rules (default {b.default_rules})"
        )
    for name in SUITE:
        p.add_argument(f"--{name}-data", default=None, help=f"{name} data instead of the default copy")
    p.add_argument("--no-progress", action="store_true")
    add_policy_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    data = {name: str(getattr(args, f"{name}_data")) for name in SUITE if getattr(args, f"{name}_data")}
    settings = SuiteSettings(
        model=args.model,
        api_base=args.api_base,
        limit_per_category=args.limit_per_category,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        max_turns=args.max_turns,
        bfcl_mode=args.bfcl_mode,
        rules={name: getattr(args, f"{name}_rules") for name in SUITE if getattr(args, f"{name}_rules")},
        batch_size=args.batch_size,
        threads=args.threads,
        data=data,
        bf16_prefill=args.bf16_prefill,
    )
    try:
        check_resumable(args.out, settings)  # before loading a model
    except ValueError as e:
        raise SystemExit(str(e)) from None
    t0 = time.perf_counter()
    policy, info = policy_from_args(args)
    info["load_seconds"] = round(time.perf_counter() - t0, 1)
    if not args.api_base:
        from ftrl_lab.agent.models import resolve_model_path

        info["model_path"] = resolve_model_path(args.model)
    df = run_suite(
        policy, args.out, settings, model_info=info, benchmarks=args.benchmarks, show_progress=not args.no_progress
    )
    print((Path(args.out) / "summary.md").read_text(encoding="utf-8"))
    print(f"{len(df)} summary rows in {Path(args.out) / 'summary.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
