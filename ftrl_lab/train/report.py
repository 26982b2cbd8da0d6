"""Training reports: before/after tables with paired bootstrap CIs, curves and ablation figures.

:func:`compare` pairs two evaluations of the same environments (by episode key) and gives,
for Solve-P, Solve-R and Solve-F1 (in points, x100), the start and final means, the
difference and a 95% percentile bootstrap CI of the difference (environments resampled with
replacement). :func:`perplexity_change` and :func:`pass_at_1_change` do the same for the
general-ability checks (windows of text, HumanEval problems), :func:`general_ability_markdown`
shows both. :func:`plot_curves` draws the training metrics of a run, :func:`ablation_table`
and :func:`plot_ablation` compare several runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("solve_precision", "solve_rate", "solve_f1")
LABELS = {"solve_precision": "Solve-P", "solve_rate": "Solve-R", "solve_f1": "Solve-F1"}
CURVES = (  # (metrics.jsonl key, panel title, y-axis label)
    ("reward", "reward mean", "reward (solve-F1 units)"),
    ("ftrl/group_reward_std", "reward std within groups", "std of reward"),
    ("frac_reward_zero_std", "groups with zero reward variance", "share of groups (every draw)"),
    ("ftrl/no_spread", "steps trained without reward spread", "share of steps (after redraws)"),
    ("ftrl/parse_failure_rate", "parse-failure rate", "share of responses"),
    ("ftrl/calls_per_response", "calls per response", "tool calls"),
    ("ftrl/echo_fires", "echo-check fires per response", "fires per response"),
    ("kl", "KL to reference", "KL (nats per token)"),
)


def bootstrap_ci(values: np.ndarray, n: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values``."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def compare(start: pd.DataFrame, final: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Paired start-vs-final table (points x100) over the environments both evaluated."""
    merged = start.merge(final, on="key", suffixes=("_start", "_final"))
    rows = []
    for m in METRICS:
        a, b = merged[f"{m}_start"].to_numpy(float) * 100, merged[f"{m}_final"].to_numpy(float) * 100
        diff = b - a
        lo, hi = bootstrap_ci(diff, n_boot, seed)
        slo, shi = bootstrap_ci(a, n_boot, seed)
        flo, fhi = bootstrap_ci(b, n_boot, seed)
        rows.append(
            {
                "metric": LABELS[m],
                "n": len(merged),
                "start": a.mean() if len(a) else np.nan,
                "start_ci": [slo, shi],
                "final": b.mean() if len(b) else np.nan,
                "final_ci": [flo, fhi],
                "delta": diff.mean() if len(diff) else np.nan,
                "delta_ci_low": lo,
                "delta_ci_high": hi,
            }
        )
    return pd.DataFrame(rows)


def perplexity_change(start: dict, final: dict, n_boot: int = 2000, seed: int = 0) -> dict:
    """Perplexity start vs final (two :func:`ftrl_lab.agent.general_ability.perplexity` results
    on the same windows) with a paired percentile bootstrap 95% CI of ``final - start``: the
    same resampled windows for both, perplexity = exp(token-weighted mean NLL)."""
    a, b = np.asarray(start["window_nll"], float), np.asarray(final["window_nll"], float)
    w = np.asarray(start["window_tokens"], float)
    if len(a) != len(b) or list(start["window_tokens"]) != list(final["window_tokens"]):
        raise ValueError(
            f"perplexity windows differ between the two evaluations ({len(a)} vs {len(b)} windows, "
            "or other token counts): not the same text and tokenizer"
        )
    if len(a) == 0:
        raise ValueError("perplexity: no windows to compare")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    weights = w[idx]
    ppl_a = np.exp((a[idx] * weights).sum(1) / weights.sum(1))
    ppl_b = np.exp((b[idx] * weights).sum(1) / weights.sum(1))
    lo, hi = np.quantile(ppl_b - ppl_a, [0.025, 0.975])
    pa, pb = float(np.exp((a * w).sum() / w.sum())), float(np.exp((b * w).sum() / w.sum()))
    return {
        "metric": "perplexity",
        "n": len(a),
        "start": pa,
        "final": pb,
        "delta": pb - pa,
        "delta_ci_low": float(lo),
        "delta_ci_high": float(hi),
    }


def pass_at_1_change(start_rows: Sequence[dict], final_rows: Sequence[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """HumanEval pass@1 (points x100) start vs final over the problems both evaluated (paired by
    ``task_id``), with a paired percentile bootstrap 95% CI of the difference."""
    first = {r["task_id"]: float(bool(r["passed"])) for r in start_rows}
    second = {r["task_id"]: float(bool(r["passed"])) for r in final_rows}
    common = [t for t in first if t in second]
    a = np.array([first[t] for t in common]) * 100
    b = np.array([second[t] for t in common]) * 100
    lo, hi = bootstrap_ci(b - a, n_boot, seed)
    return {
        "metric": "HumanEval pass@1",
        "n": len(common),
        "start": float(a.mean()) if len(a) else float("nan"),
        "final": float(b.mean()) if len(b) else float("nan"),
        "delta": float((b - a).mean()) if len(a) else float("nan"),
        "delta_ci_low": lo,
        "delta_ci_high": hi,
    }


def general_ability_markdown(rows: Sequence[dict]) -> str:
    """The rows of :func:`pass_at_1_change` / :func:`perplexity_change` as a Markdown table."""
    lines = [
        "**General ability: final vs RL's starting checkpoint** (paired bootstrap 95% CIs)",
        "",
        "| check | n | start | final | delta | 95% CI of delta |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        f = ".2f" if r["metric"] == "perplexity" else ".1f"
        unit = "windows" if r["metric"] == "perplexity" else "problems"
        lines.append(
            f"| {r['metric']} | {r['n']} {unit} | {r['start']:{f}} | {r['final']:{f}} | {r['delta']:+{f}} | "
            f"[{r['delta_ci_low']:+{f}}, {r['delta_ci_high']:+{f}}] |"
        )
    return "\n".join(lines)


def plan_fit_markdown(fits: dict[str, dict], title: str) -> str:
    """Calls and turns per episode of each evaluated checkpoint (``{tag: sft.plan_fit(...)}``)
    against the gold plans of the same environments."""
    rows = [
        {
            "checkpoint": tag,
            "episodes": f["episodes"],
            "calls": f["calls"],
            "gold calls": f["gold_calls"],
            "calls ratio": f["calls_ratio"],
            "turns": f["turns"],
            "gold turns": f["gold_turns"],
            "turns ratio": f["turns_ratio"],
            "healthy": "yes" if f["healthy"] else "no",
        }
        for tag, f in fits.items()
    ]
    tolerance = next(iter(fits.values()))["tolerance"]
    head = f"**{title}: calls and turns per episode against the gold plans** (healthy: both ratios within {tolerance:.0%} of 1)"
    return f"{head}\n\n{frame_markdown(pd.DataFrame(rows), '.2f')}"


def sft_markdown(sft: dict) -> str:
    """One line on the warm start: data, steps, loss from first to last logged step."""
    curve = sft.get("loss_curve") or []
    if sft.get("reused_from"):
        return f"Warm start reused from `{sft['reused_from']}`."
    loss = (
        f"loss {curve[0][1]:.3f} -> {curve[-1][1]:.3f} over {curve[-1][0]} logged steps" if curve else "no loss logged"
    )
    return (
        f"Warm start: SFT on {sft.get('examples')} gold trajectories "
        f"(complexity {', '.join(sft.get('complexity') or ['?'])}; {sft.get('epochs')} epoch(s)), {loss}, "
        f"{sft.get('seconds')} s (curve: sft_loss.png)."
    )


def plot_sft_loss(sft: dict, out: str | Path, title: str = ""):
    """The warm start's training loss per optimizer step (nothing when none was logged)."""
    import matplotlib.pyplot as plt

    curve = sft.get("loss_curve") or []
    if not curve:
        return None
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([c[0] for c in curve], [c[1] for c in curve], marker="." if len(curve) < 40 else None)
    ax.set(xlabel="optimizer step", ylabel="SFT loss", title=f"warm start {title}".strip())
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def table_markdown(table: pd.DataFrame, title: str) -> str:
    """A before/after table as Markdown."""
    lines = [
        f"**{title}** (n = {int(table['n'].iloc[0]) if len(table) else 0})",
        "",
        "| metric | start | final | delta | 95% CI of delta |",
        "|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r['metric']} | {r['start']:.1f} | {r['final']:.1f} | {r['delta']:+.1f} | "
            f"[{r['delta_ci_low']:+.1f}, {r['delta_ci_high']:+.1f}] |"
        )
    return "\n".join(lines)


def frame_markdown(frame: pd.DataFrame, floatfmt: str = ".1f") -> str:
    """Any DataFrame as a GitHub Markdown table (floats formatted; no ``tabulate`` needed)."""

    def cell(v) -> str:
        return format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The per-step training log of a run (``metrics.jsonl``)."""
    path = Path(run_dir) / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return pd.DataFrame(rows)


def eval_episodes(run_dir: str | Path, tag: str, name: str) -> pd.DataFrame:
    """Per-episode scores (``key``, Solve-P/R/F1 in 0-1, ``echoes``) of a run's evaluation
    ``<run>/eval/<tag>_<name>`` (tag: base, start, final; name: the eval set); empty if absent."""
    from ftrl_lab.agent.evaluate import load_transcripts

    rows = load_transcripts(Path(run_dir) / "eval" / f"{tag}_{name}")
    keys = ("key", *METRICS)
    return pd.DataFrame([{**{k: r[k] for k in keys}, "echoes": r.get("echoes", 0)} for r in rows])


def plot_curves(
    metrics: pd.DataFrame,
    iterations: pd.DataFrame | None = None,
    out: str | Path | None = None,
    title: str = "",
    close: bool = True,
):
    """Training curves (one panel per metric, x = global step) and Solve-F1 per iteration."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    panels = [(k, label, unit) for k, label, unit in CURVES if k in metrics.columns and metrics[k].notna().any()]
    n = len(panels) + (1 if iterations is not None and len(iterations) else 0)
    cols = min(max(n, 1), 4)
    rows = -(-max(n, 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.9 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, (key, label, unit) in zip(flat, panels):
        part = metrics[["global_step", key]].dropna()
        ax.plot(part["global_step"], part[key], marker=".", lw=1.2)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(unit)
    if iterations is not None and len(iterations):
        ax = flat[len(panels)]
        ax.plot(iterations["iteration"], iterations["solve_f1"] * 100, marker="o", color="tab:green")
        ax.set_title("Solve-F1 of collection rollouts", fontsize=10)
        ax.set_xlabel("iteration")
        ax.set_ylabel("Solve-F1 (%)")
    for ax in flat[:n]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and iterations are counts
        ax.tick_params(labelsize=9)
    for ax in flat[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    if close:
        plt.close(fig)
    return fig


def ablation_table(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run and eval set: reward variant, algorithm, start/final/delta (with CI) per metric."""
    rows = []
    for run_dir in run_dirs:
        res = json.loads((Path(run_dir) / "results.json").read_text())
        for set_name, table in res.get("comparisons", {}).items():
            row = {
                "run": Path(run_dir).name,
                "reward": res["config"]["rl"]["reward"],
                "reward rules": res["config"]["rl"].get("reward_rules", "official"),
                "echo guard": res["config"]["rl"].get("echo_guard", False),
                "algorithm": res["config"]["rl"]["algorithm"],
                "eval_set": set_name,
            }
            for r in table:
                key = r["metric"]
                row.update(
                    {
                        f"{key} start": r["start"],
                        f"{key} final": r["final"],
                        f"{key} delta": r["delta"],
                        f"{key} CI": f"[{r['delta_ci_low']:+.1f}, {r['delta_ci_high']:+.1f}]",
                    }
                )
            rows.append(row)
    return pd.DataFrame(rows)


def ci_bounds(text: str) -> tuple[float, float]:
    """The (low, high) of an interval as :func:`ablation_table` writes it, e.g. "[+1.2, -0.4]"."""
    low, high = text.strip("[] ").split(",")
    return float(low), float(high)


def plot_ablation(table: pd.DataFrame, out: str | Path | None = None, eval_set: str = "test", close: bool = True):
    """Grouped bars: final minus start per metric, one bar group per reward variant (95% CI whiskers)."""
    import matplotlib.pyplot as plt

    part = table[table["eval_set"] == eval_set]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    width = 0.8 / max(len(part), 1)
    for i, (_, row) in enumerate(part.iterrows()):
        deltas = [row[f"{LABELS[m]} delta"] for m in METRICS]
        cis = [ci_bounds(row[f"{LABELS[m]} CI"]) for m in METRICS]
        err = np.array([[d - c[0] for d, c in zip(deltas, cis)], [c[1] - d for d, c in zip(deltas, cis)]])
        x = np.arange(len(METRICS)) + i * width
        ax.bar(x, deltas, width, yerr=err, capsize=3, label=f"{row['reward']} ({row['algorithm']})")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xticks(np.arange(len(METRICS)) + width * (len(part) - 1) / 2)
    ax.set_xticklabels([LABELS[m] for m in METRICS])
    ax.set_ylabel("final − start (Solve points, 0-100)")
    ax.set_title(f"Reward-variant ablation ({eval_set} split), 95% CI whiskers", fontsize=10)
    ax.legend(title="reward (algorithm)", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=120)
    if close:
        plt.close(fig)
    return fig


# --- what came out --------------------------------------------------------------------------------
def _delta_text(row: dict) -> str:
    lo, hi = row["delta_ci_low"], row["delta_ci_high"]
    sure = "the interval excludes 0" if lo > 0 or hi < 0 else "the interval includes 0"
    return (
        f"{row['start']:.1f} → {row['final']:.1f} ({row['delta']:+.1f} [{lo:+.1f}, {hi:+.1f}], n = {row['n']}; {sure})"
    )


def findings(results: dict, ablation: pd.DataFrame | None = None) -> str:
    """Markdown bullets reading one run's ``results.json`` (and optionally :func:`ablation_table`)
    against the paper's claims: a verifiable Solve-F1 gain, general ability kept, solve-F1 the best
    reward. Every number is taken from the inputs; nothing is asserted that they do not show."""
    lines = []
    names = {
        "test": "the generated test split",
        "heldout": "the held-out split (another world, harder level)",
        "ftrl": "FTRL's own test set",
    }
    for key, where in names.items():
        rows = {r["metric"]: r for r in results.get("comparisons", {}).get(key, [])}
        if "Solve-F1" not in rows:
            continue
        f1, p, r = rows["Solve-F1"], rows.get("Solve-P"), rows.get("Solve-R")
        line = f"- **Solve-F1 on {where}**: {_delta_text(f1)}."
        if p and r:
            line += f" Solve-P {p['delta']:+.1f}, Solve-R {r['delta']:+.1f}"
            if p["delta"] > 0 > r["delta"]:
                line += ": the policy calls more carefully rather than solving more (precision up, recall down)"
            elif p["delta"] >= 0 and r["delta"] >= 0 and f1["delta"] > 0:
                line += ": neither precision nor recall is lower than at the start"
            line += "."
        lines.append(line)
    ppl = results.get("perplexity") or {}
    ability = results.get("general_ability") or []
    for row in ability:
        f = ".2f" if row["metric"] == "perplexity" else ".1f"
        lo, hi = row["delta_ci_low"], row["delta_ci_high"]
        sure = "the interval excludes 0" if lo > 0 or hi < 0 else "the interval includes 0"
        lines.append(
            f"- **General ability** (the paper: kept), {row['metric']}: {row['start']:{f}} → {row['final']:{f}} "
            f"({row['delta']:+{f}} [{lo:+{f}}, {hi:+{f}}], n = {row['n']}; {sure})."
        )
    if not any(r["metric"] == "perplexity" for r in ability) and ppl.get("start") and ppl.get("final"):
        change = ppl["final"] / ppl["start"] - 1
        lines.append(
            f"- **General ability** (the paper: kept): perplexity on generic text {ppl['start']:.2f} → "
            f"{ppl['final']:.2f} ({change:+.1%})."
        )
    if ablation is not None and len(ablation) > 1:
        verdict = ablation_verdict(ablation)
        if verdict:
            lines.append(verdict)
    return "\n".join(lines) if lines else "- No finished comparison to read yet."


def ablation_verdict(ablation: pd.DataFrame, eval_set: str = "test") -> str:
    """One bullet ranking the reward variants by ΔSolve-F1 on ``eval_set``, claiming a winner only
    when its interval lies above every other variant's; equal deltas or overlapping intervals are
    called a tie (never broken by row order). Empty when fewer than two variants were run."""
    part = ablation[ablation["eval_set"] == eval_set].sort_values(["Solve-F1 delta", "reward"], ascending=[False, True])
    if len(part) < 2:
        return ""
    order = ", ".join(f"{r.reward} {r['Solve-F1 delta']:+.1f} {r['Solve-F1 CI']}" for _, r in part.iterrows())
    best = part.iloc[0]
    low_best = ci_bounds(best["Solve-F1 CI"])[0]
    tied = [
        r["reward"]
        for _, r in part.iloc[1:].iterrows()
        if r["Solve-F1 delta"] == best["Solve-F1 delta"] or ci_bounds(r["Solve-F1 CI"])[1] >= low_best
    ]
    if len(tied) == len(part) - 1 and part["Solve-F1 delta"].nunique() == 1:
        verdict = (
            f"a tie: every variant moves Solve-F1 by {best['Solve-F1 delta']:+.1f}, so this run cannot tell "
            "them apart (the paper reports solve-F1 best)"
        )
    elif tied:
        verdict = (
            f"a tie: {best['reward']} leads, but its interval overlaps that of {', '.join(tied)}, so this run "
            "does not separate them (the paper reports solve-F1 best)"
        )
    elif best["reward"] == "solve_f1":
        verdict = "solve-F1 is best, as the paper reports; its interval lies above every other variant's"
    else:
        verdict = (
            f"{best['reward']} is best, not solve-F1 as the paper reports; its interval lies above every other "
            "variant's"
        )
    where = {"test": "the generated test split", "ftrl": "FTRL's test set"}.get(eval_set, eval_set)
    return f"- **Reward ablation** (ΔSolve-F1 on {where}, 95% CI): {order}: {verdict}."


EVAL_SETS = {"test": "generated test split", "heldout": "held-out split (another world)", "ftrl": "FTRL test set"}


def comparison_frame(comparisons: dict[str, list[dict]]) -> pd.DataFrame:
    """``results["comparisons"]`` as one before/after table: eval set (``*_vs_base``: final vs the
    untrained base), metric, n, start, final, delta and its 95% CI as text."""
    tables = []
    for name, rows in comparisons.items():
        t = pd.DataFrame(rows)
        eval_set, _, vs = name.partition("_vs_")
        t.insert(0, "eval set", EVAL_SETS.get(eval_set, eval_set) + (" (final vs untrained base)" if vs else ""))
        t["95% CI of delta"] = [f"[{a:+.1f}, {b:+.1f}]" for a, b in zip(t["delta_ci_low"], t["delta_ci_high"])]
        tables.append(t[["eval set", "metric", "n", "start", "final", "delta", "95% CI of delta"]])
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def parameter_count(model_dir: str | Path) -> int | None:
    """Parameters of a saved model, from its safetensors headers (no weights loaded); None if absent."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with open(path, "rb") as f:
            header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        total += sum(int(np.prod(v["shape"])) for k, v in header.items() if k != "__metadata__")
    return total


def limits_note(results: dict) -> str:
    """What one run cannot show, from its own ``results.json``: the model size, the training budget
    and the size of each evaluation, against the paper's 7B-14B models trained with verl."""
    cfg, rl = results.get("config", {}), results.get("config", {}).get("rl", {})
    start = (results.get("stages", {}).get("sft") or {}).get("model")
    n_params = parameter_count(start) if start else None
    size = f"a {n_params / 1e6:.1f}M-parameter model" if n_params else f"the model {cfg.get('model')}"
    sizes = {k: rows[0]["n"] for k, rows in results.get("comparisons", {}).items() if rows and "_vs_" not in k}
    evals = " and ".join(f"{n} environments of the {EVAL_SETS.get(k, k)}" for k, n in sizes.items())
    return (
        f"What this does not show: one seed, {size} and the `{cfg.get('name')}` preset ({rl.get('iterations')} "
        f"iteration(s) of GRPO-style steps, {rl.get('num_generations')} samples per prompt, at most "
        f"{rl.get('max_new_tokens')} new tokens per turn), against the paper's 7B-14B models trained with "
        f"verl. The evaluation used {evals or 'no environments'}: intervals over so few environments are wide. "
        "A gain on the generated test split is in-distribution; FTRL's own test set (longer prompts, unseen tool "
        "documents) is the harder check."
    )
