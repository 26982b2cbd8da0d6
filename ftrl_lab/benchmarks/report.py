"""The paper's Table 2 next to our measured rows: a styled table and a grouped-bar figure.

Table 2 columns: Solve-P, Solve-R, Solve-F1 (FTRL's own test set), ToolHop AC, tau-bench
Pass^1, RoTBench TS, PI, CF, and Avg, the mean of those eight. The paper's numbers come from
``data/paper_table2.csv`` (see ``data/paper_table2.md`` for their sources and status).

Measured rows are built by :func:`measured_row` from the tables the benchmark modules make
(``toolhop.table``, ``taubench.table``, ``rotbench.table``) and FTRL test-set metrics, or by
:func:`measured_from_runs` from run folders of ``python -m ftrl_lab.benchmarks`` and
``python -m ftrl_lab.evaluate``, or by :func:`suite_row` / :func:`table2_from_suites` from
``python -m ftrl_lab.benchmarks suite`` folders (with a ``notes`` cell saying what they cover); a
benchmark not run leaves its cells empty, and Avg is given only when all eight are there.
Every row has a ``rules`` cell (the rule set of each measured benchmark; paper rows: the rule
sets the paper's numbers were made with), and :func:`comparability` says, from
:data:`PAPER_SETUP`, whether a measured number can be set beside the paper's and why
(:func:`comparability_table`, :func:`comparability_markdown` for a suite summary).
:func:`oracle_tables` shows the checkers on known-good outputs; :func:`plot_table2` and
:func:`plot_suites` draw the figures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

METRICS = ("Solve-P", "Solve-R", "Solve-F1", "ToolHop AC", "tau Pass^1", "TS", "PI", "CF")
PAPER_SETUP: dict[str, dict[str, Any]] = {
    "ftrl": {"rules": "official", "n": 200, "how": "FTRL's evaluation_self.py on its 200-environment test set"},
    "toolhop": {"rules": "ftrl", "n": 995, "how": "FTRL's evaluation_toolhop.py on all 995 queries, 3 modes"},
    "rotbench": {
        "rules": "ftrl",
        "categories": ("clean", "slight", "medium", "heavy", "union"),
        "how": "FTRL's evaluation_rotbench.py on the 5 first-turn noise levels",
    },
    "taubench": {"rules": "default", "user": "gpt-4o-2024-08-06", "how": "FTRL's evaluation_taubench.py, GPT-4o user"},
}
"""How the paper made each Table 2 number (BFCL is not in Table 2): the rule set, the data, the user."""
COLUMNS = METRICS + ("Avg",)
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent


def paper_table2_path() -> Path:
    """``data/paper_table2.csv`` in the project (``FTRL_PAPER_TABLE2`` overrides it)."""
    return Path(os.environ.get("FTRL_PAPER_TABLE2", PROJECT_ROOT / "data" / "paper_table2.csv"))


def paper_table2(path: str | os.PathLike | None = None):
    """The stored Table 2 rows, indexed by "model / method" (empty cells are NaN)."""
    import pandas as pd

    df = pd.read_csv(path or paper_table2_path())
    missing = [c for c in ("model", "method", *COLUMNS) if c not in df.columns]
    if missing:
        raise ValueError(f"{path or paper_table2_path()}: missing column(s) {missing}")
    df.index = df["model"] + " / " + df["method"]
    df.index.name = "row"
    df["origin"] = "paper"
    return df


def _overall(table: Any, column: str) -> float:
    """The ``overall`` row of a benchmark table (a DataFrame or a mapping), or NaN."""
    if table is None:
        return math.nan
    if isinstance(table, Mapping):
        return float(table.get(column, math.nan))
    if "overall" in table.index and column in table.columns:
        return float(table.loc["overall", column])
    return math.nan


def comparability(
    benchmark: str,
    rules: str | None,
    n: int | None = None,
    categories: Sequence[str] | None = None,
    subsample: bool = False,
    user_simulator: str | None = None,
) -> tuple[bool, str]:
    """(comparable, why): whether a measured number can stand next to the paper's Table 2 number,
    judged against :data:`PAPER_SETUP`: same rule set, the full data (``n`` items per category,
    all ``categories``), and for tau-bench the paper's simulated user."""
    if benchmark == "bfcl":
        return False, "BFCL is not in the paper's Table 2 (compare with the BFCL leaderboard under rules `official`)"
    setup = PAPER_SETUP.get(benchmark)
    if setup is None:
        return False, f"{benchmark} is not in the paper's Table 2"
    why = []
    if rules != setup["rules"]:
        why.append(f"scored with rules `{rules}`, the paper's numbers with `{setup['rules']}`")
    if subsample:
        why.append("a subsample")
    if "n" in setup and n is not None and n < setup["n"]:
        why.append(f"{n} of the paper's {setup['n']} items")
    missing = [c for c in setup.get("categories", ()) if categories is not None and c not in categories]
    if missing:
        why.append(f"without {', '.join(missing)}")
    if "user" in setup and (user_simulator is None or not user_simulator.startswith(setup["user"])):
        why.append(f"user simulator {user_simulator or 'unknown'} (paper: {setup['user']})")
    if why:
        return False, "not comparable: " + "; ".join(why)
    return True, f"comparable: same rules and data as the paper ({setup['how']})"


def comparability_table(summary: Any):
    """One row per benchmark of a suite summary (:func:`ftrl_lab.benchmarks.suite.summarize`):
    ``benchmark``, ``rules``, ``n``, ``comparable`` and ``why``."""
    import pandas as pd

    rows = []
    overall = summary[summary["summary_row"].astype(bool)].drop_duplicates("benchmark")
    for _, r in overall.iterrows():
        cats = list(
            summary.loc[(summary["benchmark"] == r["benchmark"]) & ~summary["summary_row"].astype(bool), "category"]
        )
        per_category = int(r["n"]) // max(1, len(set(cats))) if cats else int(r["n"])
        ok, why = comparability(r["benchmark"], r["rules"], per_category, cats, bool(r["subsample"]))
        rows.append({"benchmark": r["benchmark"], "rules": r["rules"], "n": int(r["n"]), "comparable": ok, "why": why})
    return pd.DataFrame(rows, columns=["benchmark", "rules", "n", "comparable", "why"])


def comparability_markdown(summary: Any) -> str:
    """Markdown bullets for a README: which of a suite summary's numbers are comparable to the
    paper's and why (from :func:`comparability_table`)."""
    table = comparability_table(summary)
    if not len(table):
        return "- No benchmark was run."
    return "\n".join(f"- **{r.benchmark}** (rules `{r.rules}`, n={r.n}): {r.why}." for r in table.itertuples())


def measured_row(
    label: str,
    ftrl: Mapping[str, float] | None = None,
    toolhop: Any = None,
    taubench: Any = None,
    rotbench: Any = None,
    rules: Mapping[str, str] | None = None,
) -> dict:
    """One Table 2 row from measurements. ``ftrl``: mean episode metrics as fractions
    (``solve_precision``, ``solve_rate``, ``solve_f1``) or percents under the column names;
    the others: the benchmark modules' ``table(...)`` DataFrames (their ``overall`` rows).
    ``rules``: benchmark ("ftrl", "toolhop", "taubench", "rotbench") -> the rule set that scored
    it, written to the ``rules`` cell for the benchmarks measured."""
    row: dict[str, Any] = {"row": label, "model": label, "method": "measured", "origin": "measured"}
    ftrl = dict(ftrl or {})
    for col, key in (("Solve-P", "solve_precision"), ("Solve-R", "solve_rate"), ("Solve-F1", "solve_f1")):
        if col in ftrl:
            row[col] = float(ftrl[col])  # already in percent
        elif key in ftrl:
            row[col] = 100.0 * float(ftrl[key])  # a fraction, as reward.episode_metrics gives it
        else:
            row[col] = math.nan
    row["ToolHop AC"] = _overall(toolhop, "AC")
    row["tau Pass^1"] = _overall(taubench, "pass^1")
    for col in ("TS", "PI", "CF"):
        row[col] = _overall(rotbench, col)
    values = [row[c] for c in METRICS]
    row["Avg"] = sum(values) / len(values) if all(v == v for v in values) else math.nan
    measured = {"ftrl": ftrl, "toolhop": toolhop, "taubench": taubench, "rotbench": rotbench}
    rules = dict(rules or {})
    row["rules"] = "; ".join(f"{b} {rules.get(b, 'unrecorded')}" for b, v in measured.items() if v is not None)
    return row


def read_run(out_dir: str | os.PathLike):
    """The table of a ``python -m ftrl_lab.benchmarks`` run folder (``table.csv``)."""
    import pandas as pd

    path = Path(out_dir) / "table.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no table (run `python -m ftrl_lab.benchmarks ... --out {out_dir}` first)")
    return pd.read_csv(path, index_col=0)


def ftrl_metrics(out_dir: str | os.PathLike) -> dict[str, float]:
    """Solve-P/R/F1 (fractions) of a ``python -m ftrl_lab.evaluate ftrl`` run folder, averaged
    over its scenarios as the paper averages (its ``overall`` row when it has no scenarios).
    Read from ``results.csv``, or summarised from ``transcripts.jsonl`` while a run has not
    written its results yet."""
    import pandas as pd

    path = Path(out_dir) / "results.csv"
    if path.exists():
        df = pd.read_csv(path).set_index("scenario")
    elif (Path(out_dir) / "transcripts.jsonl").exists():
        from ftrl_lab.agent.evaluate import load_transcripts, summarize

        df = summarize(load_transcripts(out_dir)).set_index("scenario")
    else:
        raise FileNotFoundError(f"{path}: no results (run `python -m ftrl_lab.evaluate ftrl ... --out {out_dir}`)")
    keys = ("solve_precision", "solve_rate", "solve_f1")
    scenarios = df.drop(index="overall", errors="ignore")
    part = scenarios if len(scenarios) else df
    return {k: float(part[k].mean()) for k in keys}


def measured_from_runs(
    label: str,
    ftrl: str | os.PathLike | None = None,
    toolhop: str | os.PathLike | None = None,
    taubench: str | os.PathLike | None = None,
    rotbench: str | os.PathLike | None = None,
) -> dict:
    """:func:`measured_row` from run folders (any may be None: its cells stay empty); the rule
    sets come from each folder's ``meta.json`` / ``results.json``."""
    folders = {"ftrl": ftrl, "toolhop": toolhop, "taubench": taubench, "rotbench": rotbench}
    return measured_row(
        label,
        ftrl_metrics(ftrl) if ftrl else None,
        read_run(toolhop) if toolhop else None,
        read_run(taubench) if taubench else None,
        read_run(rotbench) if rotbench else None,
        rules={b: run_rules(f) for b, f in folders.items() if f},
    )


def run_rules(out_dir: str | os.PathLike) -> str:
    """The rule set booked in a run folder (``meta.json`` of a benchmark run, ``results.json``
    of an FTRL evaluation), or "unrecorded"."""
    import json

    for name in ("meta.json", "results.json"):
        path = Path(out_dir) / name
        if path.exists():
            rules = json.loads(path.read_text(encoding="utf-8")).get("rules")
            if isinstance(rules, str):
                return rules
    return "unrecorded"


def _ftrl_note(out_dir: str | os.PathLike) -> str:
    """What an FTRL evaluation folder covers: episodes, scenarios, and whether it is complete."""
    import json

    from ftrl_lab.agent.evaluate import load_transcripts

    rows = load_transcripts(out_dir)
    scenarios = sorted({r.get("scenario", "?") for r in rows})
    results = Path(out_dir) / "results.json"
    meta = json.loads(results.read_text(encoding="utf-8")) if results.exists() else {}
    total = meta.get("n_records")
    of = f" of {total}" if total else ""
    partial = "" if total and len(rows) >= total else " (partial)"
    note = f"Solve-P/R/F1: {len(rows)}{of} FTRL test episodes{partial}, scenarios {', '.join(scenarios)}"
    source = meta.get("source_records")  # the evaluation played a subset of a larger source
    if source and total and total < source:
        note += f"; Solve-P/R/F1 not comparable: a subset, {total} of the source's {source} records"
    return note


def suite_row(folder: str | os.PathLike, label: str | None = None, ftrl: str | os.PathLike | None = None) -> dict:
    """A Table 2 row from a ``python -m ftrl_lab.benchmarks suite`` folder: ToolHop AC (mean of
    its modes) and RoTBench TS/PI/CF (mean of the suite's levels), Solve-P/R/F1 from an FTRL
    evaluation folder when given. tau-bench is not in the suite, so Avg stays empty. The
    ``notes`` cell says what each number covers (subsample, levels, sample size)."""
    from ftrl_lab.benchmarks.suite import SUITE, read_summary

    folder = Path(folder)
    summary = read_summary(folder)
    toolhop = read_run(folder / "toolhop") if (folder / "toolhop" / "table.csv").exists() else None
    rot = read_run(folder / "rotbench") if (folder / "rotbench" / "table.csv").exists() else None
    overall = summary[summary["summary_row"].astype(bool)].drop_duplicates("benchmark").set_index("benchmark")
    rules = {
        b: str(overall.loc[b, "rules"]) for b in ("toolhop", "rotbench") if b in overall.index and "rules" in overall
    }
    if ftrl:
        rules["ftrl"] = run_rules(ftrl)
    row = measured_row(label or folder.name, ftrl_metrics(ftrl) if ftrl else None, toolhop, None, rot, rules=rules)
    notes = []
    if "toolhop" in overall.index:
        notes.append(
            f"ToolHop: {overall.loc['toolhop', 'selection']} of the 10-record sample x 3 modes (paper: 995 queries)"
        )
    if "rotbench" in overall.index:
        notes.append(
            f"RoTBench: {' + '.join(SUITE['rotbench'])} only (paper: 5 levels), {overall.loc['rotbench', 'selection']}"
        )
    if "rules" in summary:
        notes += [f"{r.benchmark} {r.why}" for r in comparability_table(summary).itertuples() if r.benchmark != "bfcl"]
    notes.append("tau-bench not run, so no Avg")
    notes.append(_ftrl_note(ftrl) if ftrl else "Solve-P/R/F1 not measured here")
    row["notes"] = "; ".join(notes)
    return row


def table2_from_suites(
    folders: Sequence[str | os.PathLike] | Mapping[str, str | os.PathLike],
    ftrl: Mapping[str, str | os.PathLike] | None = None,
    path: str | os.PathLike | None = None,
):
    """The paper's Table 2 (unverified secondary-source numbers, see ``data/paper_table2.md``)
    with one measured row per suite folder; ``folders`` is a list (labels: folder names) or a
    mapping label -> folder, ``ftrl`` maps a label to its FTRL evaluation folder. Folders
    without a ``summary.csv`` are skipped."""
    labelled = dict(folders) if isinstance(folders, Mapping) else {Path(f).name: f for f in folders}
    ftrl = dict(ftrl or {})
    rows = [suite_row(f, label, ftrl.get(label)) for label, f in labelled.items() if (Path(f) / "summary.csv").exists()]
    return table2(rows, path)


def oracle_tables(toolhop_items: Sequence[dict] | None = None, bfcl_limit: int | None = 20) -> dict:
    """The checkers on known-good outputs, no model needed: ToolHop's oracle policy (gold calls
    derived and run in the sandbox), RoTBench's first acceptable answers, BFCL's first
    possible answers (Python call syntax). Each value is the benchmark's table."""
    from ftrl_lab.benchmarks import bfcl, rotbench, toolhop

    items = list(toolhop_items) if toolhop_items is not None else toolhop.load()
    gold = {it["id"]: toolhop.derive_gold_calls(it, strict=False) for it in items}
    rows = toolhop.run(toolhop.OraclePolicy(items, gold), items, None, modes=["mandatory", "free"], show_progress=False)
    rot = rotbench.load()
    bf = bfcl.load(bfcl.NON_LIVE_AST + bfcl.LIVE_AST, limit=bfcl_limit)
    return {
        "toolhop": toolhop.table(toolhop.score(items, rows)),
        "rotbench": rotbench.table(rotbench.score(rot, [{"id": it["id"], "output": it["answers"][0]} for it in rot])),
        "bfcl": bfcl.table(bfcl.score(bf, [{"id": it["id"], "output": bfcl.gold_output(it)} for it in bf])),
    }


def table2(measured: Sequence[dict] = (), path: str | os.PathLike | None = None):
    """Paper rows then measured rows, columns :data:`COLUMNS`, ``origin``, ``rules`` (the rule
    set of each benchmark) and ``notes`` (paper rows: their source and that they are
    unverified; measured rows: what they cover and whether they are comparable)."""
    import pandas as pd

    paper = paper_table2(path)
    paper["notes"] = [
        f"{src}; {'verified' if v == 'yes' else 'UNVERIFIED secondary source'}"
        for src, v in zip(paper["source"], paper["verified"])
    ]
    paper["rules"] = "; ".join(f"{b} {s['rules']}" for b, s in PAPER_SETUP.items())
    rows = pd.DataFrame(list(measured)).set_index("row") if measured else None
    df = pd.concat([paper, rows]) if rows is not None else paper
    if "notes" not in df:
        df["notes"] = ""
    df["notes"] = df["notes"].fillna("")
    if "rules" not in df:
        df["rules"] = ""
    df["rules"] = df["rules"].fillna("")
    return df[[*COLUMNS, "origin", "rules", "notes"]]


def style_table2(df):
    """A styled Table 2: two decimals, empty cells as "–", measured rows shaded, the best
    value of each column in bold."""

    def shade(row):
        colour = "background-color: #eef6ee" if row.get("origin") == "measured" else ""
        return [colour] * len(row)

    numeric = [c for c in COLUMNS if c in df.columns]
    return (
        df.style.format("{:.2f}", subset=numeric, na_rep="–")
        .apply(shade, axis=1)
        .highlight_max(subset=numeric, props="font-weight: bold")
        .set_caption(
            "FTRL Table 2: paper rows are unverified secondary-source numbers "
            "(data/paper_table2.md); shaded rows measured here (see notes)"
        )
    )


TABLE2_GROUPS = (  # the paper's column groups, left to right
    ("FTRL test set", ("Solve-P", "Solve-R", "Solve-F1")),
    ("ToolHop", ("ToolHop AC",)),
    ("τ-bench", ("tau Pass^1",)),
    ("RoTBench", ("TS", "PI", "CF")),
    ("", ("Avg",)),
)
ORIGIN_COLOURS = {"paper": "#dbe9f6", "measured": "#dff0d8"}


def plot_table2(df, out: str | os.PathLike = "figures/table2_ours_vs_paper.png", title: str | None = None) -> Path:
    """Table 2 drawn as the paper lays it out: one row per model (the paper's rows, then ours),
    the paper's column groups, each cell its value in percent ("–": not reported / not run).
    Row shading says where a row comes from (the only colour meaning); a rule separates the
    paper's rows from ours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    columns = [c for _, cols in TABLE2_GROUPS for c in cols]
    n_rows, label_w, cell_w, row_h = len(df), 4.2, 1.0, 0.42
    fig_w = label_w + cell_w * len(columns) + 0.4
    fig, ax = plt.subplots(figsize=(fig_w, row_h * (n_rows + 2) + 1.3))
    ax.set_xlim(0, fig_w - 0.2)
    ax.set_ylim(n_rows + 2, -0.2)
    ax.axis("off")
    x0 = label_w
    for group, cols in TABLE2_GROUPS:  # two header rows: group, then column
        if group:
            ax.text(x0 + cell_w * len(cols) / 2, 0.4, group, ha="center", va="center", fontsize=10, weight="bold")
            ax.plot([x0 + 0.08, x0 + cell_w * len(cols) - 0.08], [0.75, 0.75], color="0.3", lw=0.8)
        for k, col in enumerate(cols):
            name = {"ToolHop AC": "AC", "tau Pass^1": "Pass^1"}.get(col, col)
            ax.text(x0 + cell_w * (k + 0.5), 1.25, name, ha="center", va="center", fontsize=10, weight="bold")
        x0 += cell_w * len(cols)
    ax.text(0.1, 1.25, "model / method", ha="left", va="center", fontsize=10, weight="bold")
    ax.plot([0, fig_w - 0.2], [1.7, 1.7], color="black", lw=1)
    previous = None
    for r, (label, row) in enumerate(df.iterrows()):
        y = 2 + r
        origin = row.get("origin", "paper")
        if previous is not None and origin != previous:
            ax.plot([0, fig_w - 0.2], [y - 0.5, y - 0.5], color="black", lw=1)
        previous = origin
        ax.add_patch(Rectangle((0, y - 0.5), fig_w - 0.2, 1, color=ORIGIN_COLOURS.get(origin, "white"), lw=0))
        ax.text(0.1, y, str(label), ha="left", va="center", fontsize=9)
        for k, col in enumerate(columns):
            value = row.get(col)
            text = "–" if value is None or value != value else f"{float(value):.2f}"
            ax.text(
                label_w + cell_w * (k + 0.5),
                y,
                text,
                ha="center",
                va="center",
                fontsize=9,
                color="0.55" if text == "–" else "black",
            )
    handles = [
        Patch(fc=ORIGIN_COLOURS["paper"], label="paper (secondary sources, unverified; data/paper_table2.md)"),
        Patch(fc=ORIGIN_COLOURS["measured"], label="measured here"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, 0), ncol=2, fontsize=9, frameon=False)
    ax.set_title(
        title or "FTRL Table 2: the paper's rows vs. ours (percent; – = not reported or not run)",
        fontsize=11,
        loc="left",
    )
    return _save(fig, out)


def _save(fig, out: str | os.PathLike, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Lay out (inside ``rect``, figure fraction, when given), write (creating the folder) and
    close a figure; returns its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout(rect=rect)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_suites(df, out: str | os.PathLike = "figures/bench_suites.png", title: str | None = None) -> Path:
    """Per-category bars of several suite runs: one panel per benchmark, one bar per run, each
    labelled with its value ("–": not run). ``df``: :func:`ftrl_lab.benchmarks.suite.compare`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [c for c in df.columns if not str(c).startswith("n ")]
    benches = list(dict.fromkeys(df.index.get_level_values(0)))
    fig, axes = plt.subplots(1, max(1, len(benches)), figsize=(5.5 * max(1, len(benches)), 4.5), squeeze=False)
    for ax, bench in zip(axes[0], benches):
        part = df.loc[bench]
        labels = [c if m in ("AC", "accuracy") else f"{c} {m}" for c, m in part.index]
        width = 0.8 / max(1, len(runs))
        for k, run in enumerate(runs):
            xs = [i + (k - (len(runs) - 1) / 2) * width for i in range(len(part))]
            bars = ax.bar(xs, part[run].fillna(0).values, width, label=run)
            ax.bar_label(bars, labels=["–" if v != v else f"{v:.0f}" for v in part[run].values], fontsize=7)
        ax.set_xticks(range(len(part)), labels, rotation=40, ha="right", fontsize=8)
        ax.set_ylim(0, 118)  # headroom for the value labels
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("score (%)")
        ax.set_title(bench)
    fig.legend(
        *axes[0][0].get_legend_handles_labels(),
        title="run",
        loc="upper center",
        ncol=max(1, len(runs)),
        fontsize=9,
        bbox_to_anchor=(0.5, 0.93),
        frameon=False,
    )
    fig.suptitle(title or "Benchmark suite per category")
    return _save(fig, out, rect=(0, 0, 1, 0.84))


EVAL_METRICS = (("solve_precision", "Solve-P"), ("solve_rate", "Solve-R"), ("solve_f1", "Solve-F1"))


def plot_eval(table, out: str | os.PathLike, title: str = "") -> Path:
    """Solve-P, Solve-R and Solve-F1 (percent) per scenario of one evaluation (the ``table`` of
    :func:`ftrl_lab.agent.evaluate.evaluate`: a ``scenario`` column or index, ``n`` and the
    metrics as fractions); the legend sits above the axes, so it covers no bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = table.set_index("scenario") if "scenario" in getattr(table, "columns", []) else table
    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(EVAL_METRICS)
    for k, (key, label) in enumerate(EVAL_METRICS):
        xs = [i + (k - 1) * width for i in range(len(t))]
        bars = ax.bar(xs, t[key].astype(float) * 100, width, label=label)
        ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=1)
    labels = [f"{s.replace('_', ' ')}\n(n = {int(n)})" for s, n in zip(t.index, t["n"])] if "n" in t else list(t.index)
    ax.set_xticks(range(len(t)), labels, fontsize=9)
    ax.set_xlabel("scenario")
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 110)
    ax.set_yticks(range(0, 101, 20))
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncol=3, fontsize=9, frameon=False)
    ax.set_title(title, fontsize=11, pad=26)
    return _save(fig, out)


def findings(table: Any, base: str = "default", trained: str = "cpu-trained", compared: Any = None) -> str:
    """Markdown bullets reading Table 2 (:func:`table2_from_suites`): the paper's FTRL-GRPO Avg gain
    over each base model, and our trained row minus our base row per measured column (plus BFCL's
    ``non_live_ast`` accuracy from :func:`ftrl_lab.benchmarks.suite.compare`, when given)."""
    lines = []
    paper = table[table["origin"] == "paper"]
    gains = []
    for row in paper.index:
        model, _, method = row.partition(" / ")
        if method == "FTRL-GRPO" and f"{model} / base" in paper.index:
            gains.append((model, paper.loc[row, "Avg"] - paper.loc[f"{model} / base", "Avg"]))
    gains = [(m, g) for m, g in gains if not math.isnan(g)]
    if gains:
        lo, hi = min(g for _, g in gains), max(g for _, g in gains)
        lines.append(
            f"- **The paper** (unverified secondary numbers): FTRL-GRPO raises Table 2's Avg by "
            f"{lo:+.1f} to {hi:+.1f} points over the base model ({len(gains)} models of 7B-14B)."
        )
    measured = table[table["origin"] == "measured"]
    if base in measured.index and trained in measured.index:
        pairs = [(col, measured.loc[base, col], measured.loc[trained, col]) for col in METRICS]
        pairs = [(c, a, b) for c, a, b in pairs if not (math.isnan(a) or math.isnan(b))]
        key = ("bfcl", "non_live_ast", "accuracy")
        if compared is not None and {base, trained} <= set(compared.columns) and key in compared.index:
            pairs.append(("BFCL non-live AST", compared.loc[key, base], compared.loc[key, trained]))
        lines.append(
            f"- **Ours**, `{base}` → `{trained}`: " + "; ".join(f"{c} {a:.1f} → {b:.1f}" for c, a, b in pairs) + "."
        )
        better, worse = sum(b > a for _, a, b in pairs), sum(b < a for _, a, b in pairs)
        lines.append(
            f"- The trained model is higher on {better}, lower on {worse} and level on "
            f"{len(pairs) - better - worse} of these {len(pairs)} numbers. Without tau-bench there is no Avg "
            "to set beside the paper's; read each column with its `n` and the notes above."
        )
    elif len(measured):
        lines.append(
            f"- **Ours**: {len(measured)} measured row(s) ({', '.join(measured.index)}); a trained-minus-base "
            f"reading needs both `{base}` and `{trained}`."
        )
    return "\n".join(lines) if lines else "- No rows to read."
