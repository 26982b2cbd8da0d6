"""Per-scenario statistics of environment sets, beside FTRL's own test set.

For any records (ours or FTRL's): tools per environment, gold sub-answers per environment
and parameters per tool, as mean / min / max per scenario (a pandas DataFrame), plus the
share of each parameter type. `within_ranges` checks that a generated set falls inside
FTRL's per-scenario ranges; `plot_comparison` draws the two side by side.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from ftrl_lab.core.records import SCENARIOS, EnvRecord, default_test_set, load_records

METRICS = ("tools", "gold", "params")
FTRL_PUBLISHED = {  # the brief's / benchmarks README's numbers: mean, min, max
    "single_hop": {"tools": (7.96, 5, 11), "gold": (1.00, 1, 1)},
    "parallel_single_hop": {"tools": (7.48, 1, 12), "gold": (2.02, 2, 3)},
    "multi_hop": {"tools": (10.34, 2, 14), "gold": (5.72, 2, 10)},
    "parallel_multi_hop": {"tools": (11.26, 8, 15), "gold": (7.66, 5, 11)},
    "all": {"tools": (9.26, 1, 15), "gold": (4.10, 1, 11), "params": (7.14, 1, 12)},  # computed from the parquet
}
FTRL_PARAMS_PER_TOOL = 7.1


def _records(x: str | Path | Iterable[EnvRecord]) -> list[EnvRecord]:
    return list(load_records(x)) if isinstance(x, (str, Path)) else list(x)


def record_stats(records: str | Path | Iterable[EnvRecord]) -> pd.DataFrame:
    """Rows: scenarios and 'all'; columns: n and <metric>_mean/_min/_max for tools, gold, params."""
    rows = []
    recs = _records(records)
    groups = [(s, [r for r in recs if r.scenario == s]) for s in SCENARIOS] + [("all", recs)]
    for name, group in groups:
        if not group:
            continue
        values = {
            "tools": [len(r.tools) for r in group],
            "gold": [r.n_unsolved for r in group],
            "params": [len(t["function"]["parameters"].get("properties", {})) for r in group for t in r.tools],
        }
        row = {"scenario": name, "n": len(group)}
        for m, v in values.items():
            row.update(
                {
                    f"{m}_mean": round(sum(v) / len(v), 2) if v else float("nan"),
                    f"{m}_min": min(v) if v else None,
                    f"{m}_max": max(v) if v else None,
                }
            )
        rows.append(row)
    return pd.DataFrame(rows).set_index("scenario")


def param_type_shares(records: str | Path | Iterable[EnvRecord]) -> pd.Series:
    """Share of each JSON type among all tool parameters (plus 'enum' and 'default' shares)."""
    counts: Counter = Counter()
    total = 0
    for r in _records(records):
        for t in r.tools:
            for p in t["function"]["parameters"].get("properties", {}).values():
                total += 1
                counts[p.get("type", "?")] += 1
                counts["with enum"] += "enum" in p
                counts["with default"] += "default" in p
    return (pd.Series(counts, dtype=float) / max(total, 1)).round(3).sort_values(ascending=False)


def ftrl_stats(path: str | Path | None = None) -> pd.DataFrame:
    """FTRL's test-set statistics: computed from the parquet when present, else the published ones."""
    path = Path(path) if path else default_test_set()
    if path.exists():
        return record_stats(path)
    rows = []
    for s, d in FTRL_PUBLISHED.items():
        row = {
            "scenario": s,
            "n": 200 if s == "all" else 50,
            "params_mean": FTRL_PARAMS_PER_TOOL,
            "params_min": None,
            "params_max": None,
        }
        for m, (mean, lo, hi) in d.items():
            row.update({f"{m}_mean": mean, f"{m}_min": lo, f"{m}_max": hi})
        rows.append(row)
    return pd.DataFrame(rows).set_index("scenario")


def compare_to_ftrl(ours: str | Path | Iterable[EnvRecord], ftrl: pd.DataFrame | None = None) -> pd.DataFrame:
    """Side by side: for each metric 'mean [min-max]' of ours and of FTRL's test set."""
    a = record_stats(ours)
    b = ftrl if ftrl is not None else ftrl_stats()
    out = pd.DataFrame(index=[i for i in a.index if i in b.index or i == "all"])

    def fmt(df: pd.DataFrame, i: str, m: str) -> str:
        if i not in df.index:
            return ""
        lo, hi = df.loc[i, f"{m}_min"], df.loc[i, f"{m}_max"]
        rng = "" if pd.isna(lo) else f" [{int(lo)}-{int(hi)}]"
        return f"{df.loc[i, f'{m}_mean']:.2f}{rng}"

    for m in METRICS:
        out[f"{m} (ours)"] = [fmt(a, i, m) for i in out.index]
        out[f"{m} (FTRL)"] = [fmt(b, i, m) for i in out.index]
    out.insert(0, "n (ours)", [int(a.loc[i, "n"]) for i in out.index])
    return out


def within_ranges(
    ours: pd.DataFrame, ftrl: pd.DataFrame, metrics: Sequence[str] = ("tools", "gold"), params_tolerance: float = 1.0
) -> list[str]:
    """Violations: our per-scenario min/max outside FTRL's range, or mean params per tool off by more
    than `params_tolerance`. Empty when the generated set lands within FTRL's ranges."""
    problems = []
    for s in SCENARIOS:
        if s not in ours.index or s not in ftrl.index:
            continue
        for m in metrics:
            lo, hi = ftrl.loc[s, f"{m}_min"], ftrl.loc[s, f"{m}_max"]
            if ours.loc[s, f"{m}_min"] < lo or ours.loc[s, f"{m}_max"] > hi:
                problems.append(
                    f"{s} {m}: ours [{ours.loc[s, f'{m}_min']}-{ours.loc[s, f'{m}_max']}] outside FTRL [{lo}-{hi}]"
                )
    if "all" in ours.index:
        ref = ftrl.loc["all", "params_mean"] if "all" in ftrl.index else FTRL_PARAMS_PER_TOOL
        if abs(ours.loc["all", "params_mean"] - ref) > params_tolerance:
            problems.append(f"params per tool: ours {ours.loc['all', 'params_mean']} vs FTRL {ref:.2f}")
    return problems


def plot_comparison(
    ours: pd.DataFrame,
    ftrl: pd.DataFrame,
    path: str | Path | None = None,
    labels: tuple[str, str] = ("generated", "FTRL test"),
):
    """Bar chart (mean with min-max whiskers) per scenario for each metric; saved when `path` is given."""
    import matplotlib

    if path is not None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    scen = [s for s in SCENARIOS if s in ours.index]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.6))
    titles = {"tools": "tools per environment", "gold": "gold sub-answers", "params": "parameters per tool"}
    width = 0.38
    for ax, m in zip(axes, METRICS):
        for j, (df, label) in enumerate(((ours, labels[0]), (ftrl, labels[1]))):
            xs = [i + (j - 0.5) * width for i in range(len(scen))]
            means = [df.loc[s, f"{m}_mean"] if s in df.index else 0 for s in scen]
            lo = [
                means[i] - (df.loc[s, f"{m}_min"] if s in df.index and not pd.isna(df.loc[s, f"{m}_min"]) else means[i])
                for i, s in enumerate(scen)
            ]
            hi = [
                (df.loc[s, f"{m}_max"] if s in df.index and not pd.isna(df.loc[s, f"{m}_max"]) else means[i]) - means[i]
                for i, s in enumerate(scen)
            ]
            ax.bar(xs, means, width, yerr=[lo, hi], capsize=3, label=label, alpha=0.85)
        ax.set_xticks(range(len(scen)))
        ax.set_xticklabels([s.replace("parallel_", "par. ").replace("_", " ") for s in scen], rotation=20, fontsize=8)
        ax.set_title(titles[m], fontsize=10)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    return fig


def main(argv: list[str] | None = None) -> int:
    import sys

    args = argv if argv is not None else sys.argv[1:]
    if not args:
        print("usage: python -m ftrl_lab.envgen.stats RECORDS.jsonl [...]", file=sys.stderr)
        return 2
    for path in args:
        print(f"== {path}")
        print(compare_to_ftrl(path).to_string())
        print(json.dumps(param_type_shares(path).to_dict()))
    return 0


if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
