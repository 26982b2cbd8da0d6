"""A study: several arms (RL algorithms and the continued-SFT control) x several seeds.

    python -m ftrl_lab.train study --preset study-smollm2 [--seeds 0,1,2]
        [--arms grpo,reinforce_pp,continued_sft] [--study-dir DIR] [--set KEY=VALUE ...]

Seeds and arms are preset data (``study.seeds``, ``study.arms``; the flags override them). The
study folder (default ``<runs_dir>/study/<preset>``) holds one run folder per seed and arm,
``seed<s>_<arm>``, and the summary ``study.json`` / ``study.csv`` / ``study.md``:

* ``study.warm_start: shared`` (default): one warm start + start evaluation, done by the first run
  (first seed, first arm that is not the control); every other run reuses them (``reuse_start``),
  so all runs start from one checkpoint and are compared with one start evaluation; the seeds vary
  RL's sampling and collection and the control's data order, not the warm start (the findings say
  so). ``per_seed``: the first run of every seed trains that seed's own warm start (the SFT data
  order is seeded) and the seed's other arms reuse it; every comparison with "start" pairs a
  run with its own seed's start, so the spread over seeds includes the warm start's;
* ``continued_sft`` takes its wall-time budget from the same seed's ``grpo`` run
  (``rl.budget_from``), which therefore runs first;
* a subset of the FTRL test set (``eval.ftrl_limit``) is drawn once (first seed) into
  ``ftrl_subset.jsonl`` and every run evaluates on that file: otherwise each seed would draw
  its own subset and the runs could not be paired with the start evaluation;
* resumable: a rerun skips finished runs, resumes the unfinished one (stage by stage, as
  :func:`ftrl_lab.train.loop.run` does) and refuses a run folder made with other settings;
* after every finished run the summary is rewritten: for every arm x eval set (those the runs'
  ``results.json`` compare) and metric, the mean over seeds with the spread (std, min-max),
  the per-seed values, and paired bootstrap 95% CIs (:func:`ftrl_lab.train.report.compare`,
  environments resampled; seeds pooled by averaging each environment over the seeds) of every
  arm vs the start, grpo vs continued_sft and grpo vs reinforce_pp; :func:`study_findings`
  reads the table without overclaiming; and the wall time of every run and stage.

The module takes the training function as ``runner`` (:func:`ftrl_lab.train.loop.run`, which
wires this command) so it does not import the loop.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftrl_lab.core.records import default_test_set, load_records, save_records, stratified_subset
from ftrl_lab.train.config import ALGORITHMS, TrainConfig, apply_overrides, config_from_dict, load_config, parse_value
from ftrl_lab.train.quick import PRESET as QUICK_PRESET
from ftrl_lab.train.report import EVAL_SETS, LABELS, METRICS, compare, eval_episodes, frame_markdown
from ftrl_lab.train.run_state import RunState

log = logging.getLogger(__name__)

CONTROL = "continued_sft"
CONTRASTS = (("grpo", CONTROL), ("grpo", "reinforce_pp"))
"""Arm-vs-arm comparisons of the study (besides every arm vs the start), when both arms are run."""
MIN_RL_STEPS = 10
"""Fewer RL updates than this per run: the study is labelled a plumbing check."""
MIN_EVAL_ENVS = 20
"""Fewer evaluation environments than this: the eval set's findings carry a small-sample caveat."""
OUTPUTS = ("study.json", "study.csv", "study.md")


@dataclass(frozen=True)
class StudyRun:
    """One seed x arm of a study and its run folder."""

    seed: int
    arm: str
    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def finished(self) -> bool:
        return (self.folder / "results.json").exists() and RunState(self.folder).done("eval_final")


def default_study_dir(cfg: TrainConfig) -> Path:
    """``<runs_dir>/study/<preset name>``."""
    return Path(cfg.runs_dir) / "study" / cfg.name


def plan_runs(seeds: Sequence[int], arms: Sequence[str], study_dir: Path) -> list[StudyRun]:
    """The runs in order: seed by seed, every arm, the control after the grpo run it is budgeted by."""
    ordered = [a for a in arms if a != CONTROL] + [a for a in arms if a == CONTROL]
    return [StudyRun(s, a, Path(study_dir) / f"seed{s}_{a}") for s in seeds for a in ordered]


def start_runs(runs: Sequence[StudyRun], warm_start: str) -> dict[int, StudyRun]:
    """Per seed, the run that makes the warm start + start evaluation that seed's runs use: the
    study's first run (``shared``) or the seed's first run (``per_seed``)."""
    firsts: dict[int, StudyRun] = {}
    for r in runs:
        firsts.setdefault(r.seed, r)
    return firsts if warm_start == "per_seed" else {s: runs[0] for s in firsts}


def check_same_start(run: StudyRun, reuse: str | Path | None) -> None:
    """Refuse to resume a run folder whose start evaluation came from another warm start (e.g. a
    study made with ``study.warm_start: shared`` resumed as ``per_seed``)."""
    state = RunState(run.folder)
    if not state.done("eval_start"):
        return
    had = state.get("eval_start").get("reused_from")
    if (had and Path(had).name) != (reuse and Path(reuse).name):
        raise ValueError(
            f"{run.folder / 'state.json'}: this run's start came from {had or 'its own warm start'}, "
            f"the study now gives it {reuse or 'its own warm start'} (study.warm_start); "
            "use another --study-dir for the new settings"
        )


def pin_eval_sets(cfg: TrainConfig, study_dir: Path, seed: int) -> dict[str, Any]:
    """Overrides making every run evaluate the same FTRL subset: drawn once (``seed``) into
    ``<study>/ftrl_subset.jsonl``. Empty when the whole set (or none) is evaluated."""
    if not cfg.data.ftrl_test or cfg.eval.ftrl_limit is None:
        return {}
    source = default_test_set() if cfg.data.ftrl_test == "default" else Path(cfg.data.ftrl_test)
    if not source.exists():
        return {}  # the runs warn and skip that evaluation
    pinned = Path(study_dir) / "ftrl_subset.jsonl"
    if not pinned.exists():
        save_records(stratified_subset(list(load_records(source)), cfg.eval.ftrl_limit, seed), pinned)
    return {"data.ftrl_test": str(pinned.resolve()), "eval.ftrl_limit": None}


def run_config(base: TrainConfig, run: StudyRun, runs: Sequence[StudyRun], pins: dict[str, Any]) -> TrainConfig:
    """The config of one study run: the base preset with its seed, algorithm, the arm's
    ``study.arm_overrides``, the pinned eval sets, no publishing and, for the control,
    ``rl.budget_from`` = the same seed's grpo run."""
    overrides: dict[str, Any] = {
        "seed": run.seed,
        "rl.algorithm": run.arm,
        "publish_dir": None,
        **base.study.arm_overrides.get(run.arm, {}),
        **pins,
    }
    if run.arm == CONTROL:
        grpo = next(r for r in runs if r.seed == run.seed and r.arm == "grpo")
        overrides.update({"rl.budget_from": str(grpo.folder), "rl.budget_seconds": None})
    return config_from_dict(apply_overrides(base.to_dict(), overrides), f"study run {run.name}")


RUNTIME_KEYS = ("study", "threads")
"""Config keys a study run may change on resume: which runs to plan, and the CPU threads (a
machine resource, recorded per (re)start in the run's state; parallel study runs take 1 each)."""


def settings_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config mappings (:data:`RUNTIME_KEYS` ignored)."""
    out = []
    for key in sorted(set(old) | set(new)):
        dotted = f"{prefix}{key}"
        if dotted in RUNTIME_KEYS:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += settings_changes(a, b, f"{dotted}.")
        elif a != b:
            out.append(f"{dotted}: {a!r} -> {b!r}")
    return out


def check_same_settings(run: StudyRun, cfg: TrainConfig) -> None:
    """Refuse to resume or reuse a run folder that was made with other settings."""
    path = run.folder / "config.json"
    if not path.exists():
        return
    changes = settings_changes(json.loads(path.read_text()), json.loads(json.dumps(cfg.to_dict())))
    if changes:
        raise ValueError(
            f"{path}: this study run was made with other settings ({'; '.join(changes)}); "
            "use another --study-dir for the new settings"
        )


def run_study(
    base: TrainConfig,
    *,
    runner: Callable[..., dict],
    study_dir: str | Path | None = None,
    start_from: str | Path | None = None,
) -> dict[str, Any]:
    """Run (or resume) every seed x arm of ``base.study`` and write the summary after each finished
    run; returns ``study.json``'s content. ``runner``: :func:`ftrl_lab.train.loop.run`.
    ``start_from``: a finished run of the same preset whose warm start and start evaluation every
    run reuses (notebook 03 passes its main run); default: the study's first run makes them."""
    folder = Path(study_dir or default_study_dir(base))
    folder.mkdir(parents=True, exist_ok=True)
    seeds, arms = list(base.study.seeds), list(base.study.arms)
    runs = plan_runs(seeds, arms, folder)
    if start_from is not None and base.study.warm_start != "shared":
        raise ValueError(f"start_from {start_from}: one start for every run needs study.warm_start: shared")
    starts = start_runs(runs, base.study.warm_start)
    pins = pin_eval_sets(base, folder, runs[0].seed)
    configs = {r: run_config(base, r, runs, pins) for r in runs}
    reuses = {
        r: start_from if start_from is not None else (None if starts[r.seed] == r else starts[r.seed].folder)
        for r in runs
    }
    for r in runs:
        check_same_settings(r, configs[r])
        check_same_start(r, reuses[r])
    summary = write_study(base, runs, folder)
    for r in runs:
        if r.finished:
            continue
        log.info("study: run %s (%d of %d)", r.name, runs.index(r) + 1, len(runs))
        runner(configs[r], r.folder, reuse_start=reuses[r])
        summary = write_study(base, runs, folder)
    return summary


# --- the summary --------------------------------------------------------------------------------
def eval_set_names(runs: Sequence[StudyRun]) -> list[str]:
    """The eval sets the finished runs compare (``results.json`` comparisons, not the ``*_vs_base``)."""
    names: dict[str, None] = {}
    for r in runs:
        if r.finished:
            results = json.loads((r.folder / "results.json").read_text())
            names.update({k: None for k in results.get("comparisons", {}) if "_vs_" not in k})
    return list(names)


def study_table(
    start: dict[tuple[int, str], pd.DataFrame],
    finals: dict[tuple[str, int, str], pd.DataFrame],
    arms: Sequence[str],
    seeds: Sequence[int],
    n_boot: int = 2000,
    boot_seed: int = 0,
) -> pd.DataFrame:
    """One row per eval set x comparison (every arm vs "start", then :data:`CONTRASTS`) x metric.

    ``start[(seed, eval_set)]`` (the start evaluation that seed's runs began from: one frame for
    every seed with a shared warm start) and ``finals[(arm, seed, eval_set)]`` are per-episode
    frames (``key`` and the metrics, 0-1). A comparison uses the seeds both sides have and the
    environments every one of those evaluations covers. Columns (points x100): ``a_mean`` / ``b_mean`` (means over seeds),
    ``a_std`` / ``a_min`` / ``a_max`` (spread of a's per-seed means; std with n-1), ``delta`` (a - b)
    with its 95% paired bootstrap CI ``ci_low`` / ``ci_high`` (environments resampled, each one's
    scores averaged over the seeds), ``delta_std`` / ``delta_min`` / ``delta_max`` (over seeds) and
    ``per_seed`` ({seed: {a, b, delta}})."""
    pairs = [(a, "start") for a in arms] + [(a, b) for a, b in CONTRASTS if a in arms and b in arms]
    rows = []
    for eval_set in dict.fromkeys(name for _, name in start):
        for a, b in pairs:
            frames = {s: (finals.get((a, s, eval_set)), _side(b, s, eval_set, start, finals)) for s in seeds}
            used = [s for s in seeds if _has(frames[s][0]) and _has(frames[s][1]) and _has(start.get((s, eval_set)))]
            if not used:
                continue
            frames_a = [frames[s][0] for s in used]
            frames_b = [frames[s][1] for s in used]
            keys = set.intersection(*(set(f["key"]) for f in frames_a + frames_b))
            if not keys:
                continue
            per_seed = {
                s: {m: (_mean(fa, keys, m), _mean(fb, keys, m)) for m in METRICS}
                for s, fa, fb in zip(used, frames_a, frames_b)
            }
            table = compare(_seed_average(frames_b, keys), _seed_average(frames_a, keys), n_boot, boot_seed)
            for m, t in zip(METRICS, table.to_dict(orient="records")):
                a_values = np.array([per_seed[s][m][0] for s in used])
                deltas = np.array([per_seed[s][m][0] - per_seed[s][m][1] for s in used])
                rows.append(
                    {
                        "eval_set": eval_set,
                        "metric": LABELS[m],
                        "a": a,
                        "b": b,
                        "seeds": ",".join(map(str, used)),
                        "n_seeds": len(used),
                        "n_envs": len(keys),
                        "a_mean": t["final"],
                        "b_mean": t["start"],
                        "delta": t["delta"],
                        "ci_low": t["delta_ci_low"],
                        "ci_high": t["delta_ci_high"],
                        "a_std": _std(a_values),
                        "a_min": float(a_values.min()),
                        "a_max": float(a_values.max()),
                        "delta_std": _std(deltas),
                        "delta_min": float(deltas.min()),
                        "delta_max": float(deltas.max()),
                        "per_seed": {
                            str(s): {"a": per_seed[s][m][0], "b": per_seed[s][m][1], "delta": float(d)}
                            for s, d in zip(used, deltas)
                        },
                    }
                )
    return pd.DataFrame(rows)


def _side(arm: str, seed: int, eval_set: str, start: dict, finals: dict) -> pd.DataFrame | None:
    return start.get((seed, eval_set)) if arm == "start" else finals.get((arm, seed, eval_set))


def _has(frame: pd.DataFrame | None) -> bool:
    return frame is not None and len(frame) > 0 and "key" in frame


def _mean(frame: pd.DataFrame, keys: set, metric: str) -> float:
    return float(frame.loc[frame["key"].isin(keys), metric].mean() * 100)


def _seed_average(frames: Sequence[pd.DataFrame], keys: set) -> pd.DataFrame:
    rows = pd.concat([f.loc[f["key"].isin(keys), ["key", *METRICS]] for f in frames])
    return rows.groupby("key", as_index=False)[list(METRICS)].mean()


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def plumbing_reason(cfg: TrainConfig, runs: Sequence[StudyRun]) -> str | None:
    """Why the study is only a plumbing check (the QUICK preset; fewer than :data:`MIN_RL_STEPS`
    RL updates in a finished RL run), or None."""
    reasons = []
    if cfg.name == QUICK_PRESET:
        reasons.append("the QUICK preset: a tiny random model and a handful of environments")
    steps = [
        sum(v.get("steps", 0) for k, v in RunState(r.folder).data.items() if k.startswith("iter_"))
        for r in runs
        if r.finished and r.arm != CONTROL
    ]
    if steps and min(steps) < MIN_RL_STEPS:
        reasons.append(f"a tiny training budget: {min(steps)} RL update(s) in a run")
    return "; ".join(reasons) or None


def _ci(row: Any) -> str:
    return f"{row['delta']:+.1f} [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}]"


def _reading(row: Any, versus: str) -> str:
    if row["ci_low"] > 0:
        verdict = f"above {versus}"
    elif row["ci_high"] < 0:
        verdict = f"below {versus}"
    else:
        return f"no evidence of a difference from {versus} (the interval includes 0)"
    if row["n_seeds"] > 1 and row["delta_min"] < 0 < row["delta_max"]:
        verdict += (
            f", but the seeds disagree in sign ({row['delta_min']:+.1f} to {row['delta_max']:+.1f}): "
            "not a consistent difference"
        )
    return verdict


def study_findings(
    table: pd.DataFrame, plumbing: str | None = None, metric: str = "Solve-F1", shared_start: bool = True
) -> str:
    """Markdown bullets reading a :func:`study_table` on ``metric``: each arm vs the start and the
    arm contrasts, each stated only as far as its 95% CI goes (an interval including 0 is "no
    evidence of a difference"), arms whose intervals vs the start overlap are a tie, one seed, a
    small eval set or seeds sharing one warm start (``shared_start``) is said, and ``plumbing``
    (a reason) labels the whole study a plumbing check."""
    lines = []
    if plumbing:
        lines.append(
            f"- **Plumbing check** ({plumbing}): these numbers only show that the study runs end to end; "
            "they are no evidence for or against any arm."
        )
    if not len(table):
        return "\n".join([*lines, "- No finished run to read yet."])
    for eval_set in dict.fromkeys(table["eval_set"]):
        part = table[(table["eval_set"] == eval_set) & (table["metric"] == metric)]
        where = EVAL_SETS.get(eval_set, eval_set)
        vs_start = part[part["b"] == "start"].sort_values(["delta", "a"], ascending=[False, True])
        if len(vs_start):
            n, seeds = int(vs_start["n_envs"].min()), int(vs_start["n_seeds"].max())
            caveats = []
            if seeds < 2:
                caveats.append("one seed: the intervals cover environments, not seed-to-seed variation")
            elif shared_start:
                caveats.append("the seeds share one warm start: their spread is RL's, not the warm start's")
            if n < MIN_EVAL_ENVS:
                caveats.append(f"only {n} environments: wide intervals")
            items = "; ".join(
                f"{r['a']} {_ci(r)} (seeds {r['a_min']:.1f}-{r['a_max']:.1f}): {_reading(r, 'the start')}"
                for _, r in vs_start.iterrows()
            )
            line = f"- **{metric} vs the start on the {where}** (n = {n}, {seeds} seed(s){'; ' if caveats else ''}{'; '.join(caveats)}): {items}."
            if len(vs_start) > 1:
                best, others = vs_start.iloc[0], vs_start.iloc[1:]
                tied = [r["a"] for _, r in others.iterrows() if r["ci_high"] >= best["ci_low"]]
                line += (
                    f" Between the arms: a tie, the interval of {best['a']} overlaps that of {' and '.join(tied)}."
                    if tied
                    else f" Between the arms: {best['a']} leads, its interval lies above every other arm's."
                )
            lines.append(line)
        for _, r in part[part["b"] != "start"].iterrows():
            label = f"{r['a']} − {r['b']}" + (" (RL vs continued SFT of equal wall time)" if r["b"] == CONTROL else "")
            reading = _reading(r, r["b"])
            if r["n_seeds"] < 2:
                reading += "; one seed only"
            lines.append(
                f"- **{label}**, {metric} on the {where} (paired over {r['n_envs']} environments x "
                f"{r['n_seeds']} seed(s)): {_ci(r)}: {reading}."
            )
    return "\n".join(lines)


def run_times(run: StudyRun) -> dict[str, Any]:
    """Status, total wall time and per-stage seconds of a study run (reused stages marked, not counted)."""
    state = RunState(run.folder)
    stages = {}
    for key, value in state.data.items():
        if not isinstance(value, dict):
            continue
        if key.startswith("iter_"):
            seconds = float(value.get("collect_seconds", 0)) + float(value.get("train_seconds", 0))
        else:
            seconds = value.get("seconds")
        stages[key] = {"seconds": seconds, "reused": "reused_from" in value}
    status = "finished" if run.finished else ("unfinished" if state.data else "not started")
    out = {
        "seed": run.seed,
        "arm": run.arm,
        "run": run.name,
        "status": status,
        "elapsed_seconds": state.get("elapsed_seconds"),
        "stages": stages,
    }
    if state.done("control"):
        c = state.get("control")
        out["control"] = {
            k: c.get(k)
            for k in ("budget_seconds", "seconds", "steps", "examples", "passes", "pool_examples", "restarts")
        }
    return out


def write_study(cfg: TrainConfig, runs: Sequence[StudyRun], study_dir: Path) -> dict[str, Any]:
    """``study.json`` / ``study.csv`` / ``study.md`` from the finished runs (copied to ``publish_dir``)."""
    seeds, arms = list(cfg.study.seeds), list(cfg.study.arms)
    names = eval_set_names(runs)
    starts = start_runs(runs, cfg.study.warm_start)
    shared = cfg.study.warm_start == "shared"
    start = {(s, n): eval_episodes(starts[s].folder, "start", n) for s in seeds for n in names}
    finals = {(r.arm, r.seed, n): eval_episodes(r.folder, "final", n) for r in runs if r.finished for n in names}
    table = study_table(start, finals, arms, seeds, cfg.eval.bootstrap, seeds[0])
    plumbing = plumbing_reason(cfg, runs)
    findings = study_findings(table, plumbing, shared_start=shared)
    times = [run_times(r) for r in runs]
    summary = {
        "preset": cfg.name,
        "study_dir": str(study_dir),
        "seeds": seeds,
        "arms": arms,
        "warm_start": cfg.study.warm_start,
        "first_run": runs[0].name,
        "start_runs": {str(s): r.name for s, r in starts.items()},
        "bootstrap": cfg.eval.bootstrap,
        "plumbing": plumbing,
        "runs": times,
        "table": _json_safe(table.to_dict(orient="records")),
        "findings": findings,
    }
    (study_dir / "study.json").write_text(json.dumps(summary, indent=2) + "\n")
    flat_table(table, seeds).to_csv(study_dir / "study.csv", index=False)
    (study_dir / "study.md").write_text(study_markdown(summary, table) + "\n")
    if cfg.publish_dir:
        pub = Path(cfg.publish_dir)
        pub.mkdir(parents=True, exist_ok=True)
        for name in OUTPUTS:
            shutil.copy(study_dir / name, pub / f"{cfg.name}_{name}")
    return summary


def flat_table(table: pd.DataFrame, seeds: Sequence[int]) -> pd.DataFrame:
    """:func:`study_table` with ``per_seed`` spread into ``a_seed<s>`` / ``delta_seed<s>`` columns (CSV)."""
    if not len(table):
        return table
    out = table.drop(columns=["per_seed"]).copy()
    for s in seeds:
        out[f"a_seed{s}"] = [ps.get(str(s), {}).get("a") for ps in table["per_seed"]]
        out[f"delta_seed{s}"] = [ps.get(str(s), {}).get("delta") for ps in table["per_seed"]]
    return out


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _spread(row: Any) -> str:
    std = "" if math.isnan(row["a_std"]) else f" ± {row['a_std']:.1f}"
    return f"{row['a_mean']:.1f}{std} [{row['a_min']:.1f}, {row['a_max']:.1f}]"


def _start_sentence(summary: dict[str, Any]) -> str:
    if summary.get("warm_start") == "per_seed":
        names = ", ".join(f"`{name}`" for name in summary["start_runs"].values())
        return (
            f"One warm start + start evaluation per seed (runs {names}), reused by that seed's other runs; "
            "every Δ vs start pairs a run with its own seed's start; "
        )
    return f"One warm start + start evaluation (run `{summary['first_run']}`), reused by every other run; "


def study_markdown(summary: dict[str, Any], table: pd.DataFrame) -> str:
    """The study's report: findings, per eval set the arms (mean ± std [min, max] over seeds, per-seed
    Solve-F1, Δ vs start with CI) and the contrasts, then the runs' wall times."""
    md = [
        f"# Study `{summary['preset']}`: arms {', '.join(summary['arms'])} x seeds "
        f"{', '.join(map(str, summary['seeds']))}",
        "",
        _start_sentence(summary),
        "`continued_sft` is continued SFT on fresh gold trajectories for the wall time (collection + "
        "updates) of the same seed's `grpo` run. Points x100; scores: mean over seeds ± std (n-1) "
        "[min, max]; CIs: 95% paired bootstrap over environments, seeds pooled (each environment's score "
        f"averaged over the seeds), {summary['bootstrap']} resamples.",
        "",
        "## Findings",
        "",
        summary["findings"],
        "",
    ]
    for eval_set in dict.fromkeys(table["eval_set"]) if len(table) else []:
        part = table[table["eval_set"] == eval_set]
        vs_start = part[part["b"] == "start"]
        n = int(vs_start["n_envs"].min()) if len(vs_start) else int(part["n_envs"].min())
        md += [f"## {EVAL_SETS.get(eval_set, eval_set)} (`{eval_set}`, n = {n})", ""]
        if len(vs_start):
            start_row = {"arm": "start", "seeds": "-"}
            start_row.update({r["metric"]: f"{r['b_mean']:.1f}" for _, r in vs_start.iterrows()})
            if summary.get("warm_start") == "per_seed":  # the start's mean over the seeds, and each seed's
                f1 = vs_start[vs_start["metric"] == "Solve-F1"].iloc[0]
                start_row["seeds"] = f1["seeds"]
                start_row["Solve-F1 per seed"] = ", ".join(f"{s}: {v['b']:.1f}" for s, v in f1["per_seed"].items())
            arm_rows = [start_row]
            for arm in dict.fromkeys(vs_start["a"]):
                rows = {r["metric"]: r for _, r in vs_start[vs_start["a"] == arm].iterrows()}
                f1 = rows["Solve-F1"]
                arm_rows.append(
                    {
                        "arm": arm,
                        "seeds": f1["seeds"],
                        **{label: _spread(r) for label, r in rows.items()},
                        "Solve-F1 per seed": ", ".join(f"{s}: {v['a']:.1f}" for s, v in f1["per_seed"].items()),
                        "ΔSolve-F1 vs start [95% CI]": _ci(f1),
                    }
                )
            md += [frame_markdown(pd.DataFrame(arm_rows).fillna("")), ""]
        contrasts = part[part["b"] != "start"]
        if len(contrasts):
            rows = []
            for (a, b), group in contrasts.groupby(["a", "b"], sort=False):
                by_metric = {r["metric"]: r for _, r in group.iterrows()}
                f1 = by_metric["Solve-F1"]
                rows.append(
                    {
                        "contrast": f"{a} − {b}",
                        "seeds": f1["seeds"],
                        **{f"Δ{label} [95% CI]": _ci(r) for label, r in by_metric.items()},
                        "ΔSolve-F1 per seed": ", ".join(f"{s}: {v['delta']:+.1f}" for s, v in f1["per_seed"].items()),
                    }
                )
            md += [frame_markdown(pd.DataFrame(rows)), ""]
    md += ["## Runs and wall time", ""]
    rows, total = [], 0.0
    for r in summary["runs"]:
        stages = ", ".join(
            f"{k} {v['seconds']:.0f} s" + (" (reused)" if v["reused"] else "")
            for k, v in r["stages"].items()
            if v["seconds"] is not None
        )
        total += r["elapsed_seconds"] or 0.0
        rows.append(
            {
                "run": r["run"],
                "status": r["status"],
                "wall s": "" if r["elapsed_seconds"] is None else f"{r['elapsed_seconds']:.0f}",
                "stages": stages,
            }
        )
    md += [frame_markdown(pd.DataFrame(rows)), ""]
    for r in summary["runs"]:
        c = r.get("control")
        if c:
            restarted = f", restarted {c['restarts']} time(s)" if c["restarts"] else ""
            md.append(
                f"- `{r['run']}`: budget {c['budget_seconds']:.1f} s, spent {c['seconds']:.1f} s, {c['steps']} steps, "
                f"about {c['examples']} examples ({c['passes']:.2f} passes over {c['pool_examples']}){restarted}."
            )
    md += [
        "",
        f"Wall time of all runs: {total:.0f} s ({total / 3600:.2f} h; each run's `elapsed_seconds`, "
        "in which reused stages cost nothing).",
    ]
    return "\n".join(md)


# --- command line --------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None, *, runner: Callable[..., dict]) -> int:
    """``python -m ftrl_lab.train study``: parse the flags, run the study, print ``study.md``."""
    p = argparse.ArgumentParser(prog="python -m ftrl_lab.train study", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="study-smollm2", help="configs/<name>.yaml or a preset file")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (overrides study.seeds), e.g. 0,1,2")
    p.add_argument("--arms", default=None, help=f"comma-separated arms (overrides study.arms) of {ALGORITHMS}")
    p.add_argument("--study-dir", default=None, help="default: <runs_dir>/study/<preset name>")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override any config key")
    a = p.parse_args(list(argv or []))
    overrides: dict[str, Any] = {}
    for item in a.set:
        if "=" not in item:
            p.error(f"--set expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        overrides[key] = parse_value(value)
    if a.seeds:
        try:
            overrides["study.seeds"] = [int(s) for s in a.seeds.split(",") if s.strip()]
        except ValueError:
            p.error(f"--seeds expects comma-separated integers, got '{a.seeds}'")
    if a.arms:
        overrides["study.arms"] = [s.strip() for s in a.arms.split(",") if s.strip()]
    cfg = load_config(a.preset, overrides)
    folder = Path(a.study_dir or default_study_dir(cfg))
    run_study(cfg, runner=runner, study_dir=folder)
    print((folder / "study.md").read_text())
    return 0
