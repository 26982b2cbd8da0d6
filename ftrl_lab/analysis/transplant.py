"""Causal transplant ablation: which part of the trained delta carries the gain?

For a (base, trained) pair, :func:`build` writes a model that takes the trained tensors only for
a chosen subset and the base tensors everywhere else (streamed, block by block; with a LoRA
adapter the subset's merged delta is added). :func:`run_transplant` evaluates the base, the
trained model and each subset model on the same test environments (greedy, the preset's
evaluation settings, :func:`ftrl_lab.train.loop.evaluate_model`) and :func:`recovery_table` reports
the share of the Solve-F1 gain each subset recovers,
``(F1_subset - F1_base) / (F1_trained - F1_base)``, with a paired bootstrap CI over environments.

Subsets are named (:data:`SUBSETS`) or written as ``WHAT[@LAYERS]``: ``WHAT`` a comma list of
groups (attention, mlp, norm, embedding, other, all) or module names (q_proj, down_proj, ...),
``LAYERS`` lower / middle / upper (thirds of the depth), ``i`` or ``i-j``. Without ``@`` the
non-layer tensors of the groups count too (``norm``: the final norm; ``all``: embeddings).

    python -m ftrl_lab.analysis transplant BASE TRAINED --test data/envs/cpu/test.jsonl --limit 20 \\
        --out runs/analysis/transplant [--subsets lower_third_mlp,all_mlp] [--preset cpu-smollm2]

Results go to ``<out>/results.jsonl`` one model at a time; a rerun skips finished models and
resumes a half-finished evaluation (``<out>/eval/<name>/transcripts.jsonl``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ftrl_lab.agent.anatomy import GROUPS, layer_thirds, module_group, parse_name
from ftrl_lab.analysis.change_map import count_layers, resolve, wrapped_title
from ftrl_lab.analysis.checkpoint_io import (
    ADAPTER_CONFIG,
    ADAPTER_FILE,
    DEFAULT_BLOCK,
    INDEX_FILE,
    Checkpoint,
    open_trained,
    write_safetensors,
)
from ftrl_lab.core.records import append_jsonl, load_records

SUBSETS = {
    "lower_third_mlp": "mlp@lower",
    "middle_third_mlp": "mlp@middle",
    "upper_third_mlp": "mlp@upper",
    "all_attention": "attention",
    "all_mlp": "mlp",
    "norms": "norm",
    "everything": "all",
}
REFERENCES = ("base", "trained")
SKIP_FILES = {INDEX_FILE, ADAPTER_CONFIG, ADAPTER_FILE, "ftrl_lab_manifest.json", "transplant.json"}


def select(spec: str, names: Sequence[str], n_layers: int) -> list[str]:
    """The tensor names a subset (named or ``WHAT[@LAYERS]``) takes from the trained model."""
    spec = SUBSETS.get(spec, spec)
    what, _, layers = spec.partition("@")
    items = {w.strip() for w in what.split(",") if w.strip()}
    if not items:
        raise ValueError(f"subset '{spec}': nothing selected (expected e.g. 'mlp@lower' or a name in {list(SUBSETS)})")
    wanted: set[int] | None = None
    if layers:
        thirds = layer_thirds(n_layers)
        if layers in thirds:
            wanted = set(thirds[layers])
        else:
            try:
                lo, _, hi = layers.partition("-")
                wanted = set(range(int(lo), int(hi or lo) + 1))
            except ValueError:
                raise ValueError(f"subset '{spec}': layers '{layers}' is not lower/middle/upper, i or i-j") from None
    modules = {parse_name(n)[1] for n in names}
    unknown = items - set(GROUPS) - {"all"} - modules
    if unknown:
        raise ValueError(
            f"subset '{spec}': unknown group or module {sorted(unknown)} (groups: {GROUPS}, modules: {sorted(modules)})"
        )
    out = []
    for name in names:
        layer, module, _ = parse_name(name)
        if wanted is not None and (layer is None or layer not in wanted):
            continue
        if "all" in items or module in items or module_group(name) in items:
            out.append(name)
    return out


def build(
    base: str | Path, trained: str | Path, subset: str | Sequence[str], out: str | Path, *, block: int = DEFAULT_BLOCK
) -> Path:
    """Write ``out``: base tensors, except those of ``subset`` (a spec or a list of tensor names),
    which come from the trained checkpoint (merged, for a LoRA adapter). Same shard layout, config
    and tokenizer files as the trained folder (the base's for an adapter); ``transplant.json``
    lists the transplanted tensors. Written to ``out.tmp`` and renamed."""
    b = Checkpoint(resolve(base))
    t = open_trained(resolve(trained), b)
    chosen = set(select(subset, b.names, count_layers(b)) if isinstance(subset, str) else subset)
    missing = chosen - set(b.names)
    if missing:
        raise ValueError(f"{b.path}: no tensor(s) {sorted(missing)[:5]}")
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    def blocks(name: str):
        for start, stop in b.blocks(name, block):
            before = b.read(name, start, stop)
            yield t.after(name, start, stop, before) if name in chosen and t.changed(name) else before

    for file in b.files:
        infos = sorted((i for i in b.tensors.values() if i.file == file), key=lambda i: i.offset)
        write_safetensors(tmp / file.name, [(i.name, i.dtype, i.shape) for i in infos], blocks)
    if (b.path / INDEX_FILE).is_file():
        shutil.copy(b.path / INDEX_FILE, tmp / INDEX_FILE)
    for f in Path(t.files_dir).iterdir():
        if f.is_file() and f.suffix != ".safetensors" and f.name not in SKIP_FILES:
            shutil.copy(f, tmp / f.name)
    params = sum(b.tensors[n].numel for n in chosen)
    (tmp / "transplant.json").write_text(
        json.dumps(
            {
                "base": str(b.path),
                "trained": str(trained),
                "subset": subset if isinstance(subset, str) else None,
                "tensors": sorted(chosen),
                "params": params,
                "total_params": sum(i.numel for i in b.tensors.values()),
            },
            indent=1,
        )
        + "\n"
    )
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def load_results(out: str | Path) -> list[dict]:
    """The rows of ``<out>/results.jsonl``, the latest per model (a larger rerun appends a new row)."""
    path = Path(out) / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return list({r["name"]: r for r in rows}.values())


def run_transplant(
    base: str | Path,
    trained: str | Path,
    records: Sequence,
    out: str | Path,
    *,
    subsets: Sequence[str] = tuple(SUBSETS),
    preset: str = "cpu-smollm2",
    eval_overrides: dict | None = None,
    keep_models: bool = False,
) -> pd.DataFrame:
    """Evaluate base, trained and each subset model on ``records``; returns :func:`recovery_table`.

    ``preset`` supplies the evaluation settings (``eval.max_turns``, ``eval.max_new_tokens``,
    ``eval.batch_size``, ``dtype``, ``device``), ``eval_overrides`` changes them
    (``{"eval.max_new_tokens": 48}``). Built models live in ``<out>/models/<subset>`` and are
    deleted after their evaluation unless ``keep_models``.
    """
    from ftrl_lab.agent.evaluate import load_transcripts
    from ftrl_lab.agent.rollout import episode_key
    from ftrl_lab.train.config import load_config
    from ftrl_lab.train.loop import evaluate_model, load_policy_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(preset, eval_overrides or {})
    settings = {"preset": preset, **{k: getattr(cfg.eval, k) for k in ("max_turns", "max_new_tokens", "batch_size")}}
    lora = (Path(resolve(trained)) / ADAPTER_CONFIG).is_file()
    b = Checkpoint(resolve(base))
    names, n_layers, total = b.names, count_layers(b), sum(i.numel for i in b.tensors.values())
    done, wanted = {r["name"]: r for r in load_results(out)}, len({episode_key(r) for r in records})
    for name in [*REFERENCES, *subsets]:
        if name in done and done[name]["complete"] and done[name]["n"] >= wanted:
            continue  # a rerun on more records evaluates only the new ones (evaluate resumes per episode)
        t0 = time.perf_counter()
        spec = {"base": "none", "trained": "all"}.get(name, SUBSETS.get(name, name))
        chosen = select(spec, names, n_layers) if spec != "none" else []
        if name == "base":
            folder = resolve(base)
        elif name == "trained" and not lora:
            folder = resolve(trained)
        else:
            folder = out / "models" / name
            if not (folder / "transplant.json").is_file():
                build(base, trained, chosen, folder)
        model, tokenizer = load_policy_model(str(folder), cfg)
        episodes = evaluate_model(model, tokenizer, records, out / "eval" / name, cfg, f"transplant:{name}")
        del model
        gc.collect()
        if name not in REFERENCES and not keep_models:
            shutil.rmtree(folder, ignore_errors=True)
        done = {r["key"] for r in load_transcripts(out / "eval" / name)}
        append_jsonl(
            out / "results.jsonl",
            [
                {
                    "name": name,
                    "spec": spec,
                    "tensors": len(chosen),
                    "params": sum(b.tensors[n].numel for n in chosen),
                    "total_params": total,
                    "n": len(episodes),
                    "complete": len(done) >= len(episodes),
                    **{m: float(episodes[m].mean()) for m in ("solve_precision", "solve_rate", "solve_f1")},
                    "settings": settings,
                    "seconds": round(time.perf_counter() - t0, 1),
                }
            ],
        )
    return recovery_table(out)


def recovery_table(out: str | Path, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per model: Solve-F1 (points), its gain over the base and the share of the trained model's
    gain it recovers, with a 95% paired bootstrap CI (environments resampled)."""
    from ftrl_lab.agent.evaluate import load_transcripts

    rows = load_results(out)
    if not {"base", "trained"} <= {r["name"] for r in rows}:
        raise FileNotFoundError(f"{out}/results.jsonl: the base and trained evaluations are not both there yet")
    f1 = {r["name"]: {t["key"]: t["solve_f1"] for t in load_transcripts(Path(out) / "eval" / r["name"])} for r in rows}
    keys = sorted(set.intersection(*(set(v) for v in f1.values())))
    base = np.array([f1["base"][k] for k in keys]) * 100
    gain_t = np.array([f1["trained"][k] for k in keys]) * 100 - base
    idx = np.random.default_rng(seed).integers(0, len(keys), size=(n_boot, len(keys))) if keys else None
    table = []
    for r in rows:
        gain = np.array([f1[r["name"]][k] for k in keys]) * 100 - base
        rec, lo, hi = np.nan, np.nan, np.nan
        if keys and gain_t.mean() != 0:
            rec = gain.mean() / gain_t.mean()
            with np.errstate(divide="ignore", invalid="ignore"):
                boot = gain[idx].mean(1) / gain_t[idx].mean(1)
            boot = boot[np.isfinite(boot)]
            if len(boot):
                lo, hi = np.quantile(boot, [0.025, 0.975])
        table.append(
            {
                "subset": r["name"],
                "spec": r["spec"],
                "tensors": r["tensors"],
                "param_share": r["params"] / r["total_params"],
                "n": len(keys),
                "solve_f1": float(np.mean(base + gain)) if keys else np.nan,
                "gain": float(gain.mean()) if keys else np.nan,
                "recovery": rec,
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return pd.DataFrame(table)


def style_recovery(table: pd.DataFrame):
    """:func:`recovery_table` for display: percents and points formatted, undefined shares (no
    gain to divide by) shown as "–" rather than ``nan%``."""
    return table.style.format(
        {
            "param_share": "{:.1%}",
            "solve_f1": "{:.1f}",
            "gain": "{:+.1f}",
            "recovery": "{:.0%}",
            "ci_low": "{:.0%}",
            "ci_high": "{:.0%}",
        },
        na_rep="–",
    ).hide(axis="index")


def plot_recovery(table: pd.DataFrame, ax=None, title: str | None = None):
    """Bar chart of the share of the Solve-F1 gain each subset recovers (95% CI whiskers)."""
    import matplotlib.pyplot as plt

    t = table[table["subset"] != "base"].reset_index(drop=True)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(t) + 2), 4))
    trained = table.loc[table["subset"] == "trained"]
    gain = float(trained["gain"].iloc[0]) if len(trained) else float("nan")
    n = int(t["n"].iloc[0]) if len(t) else 0
    ax.set_title(
        wrapped_title(title or f"Transplant ablation (trained gain {gain:+.1f} F1 points, n = {n})"), fontsize=10
    )
    if t["recovery"].isna().all():  # no gain, so no share: say so instead of drawing empty bars
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"No Solve-F1 gain to recover: the trained model scores {gain:+.1f} points over the base\n"
            f"on these {n} environment(s), so no subset's share of the gain is defined.",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=10,
        )
        ax.get_figure().tight_layout()
        return ax
    y = t["recovery"].fillna(0).to_numpy() * 100
    err = np.array(
        [y - t["ci_low"].fillna(t["recovery"]).fillna(0) * 100, t["ci_high"].fillna(t["recovery"]).fillna(0) * 100 - y]
    )
    colors = ["#555555" if s == "trained" else "#4C72B0" for s in t["subset"]]
    ax.bar(range(len(t)), y, color=colors, yerr=np.clip(err, 0, None), capsize=3)
    ax.axhline(100, color="black", lw=0.8, ls="--", label="100% = the trained model's gain")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(
        range(len(t)),
        [f"{s}\n({p:.0%} of params)" for s, p in zip(t["subset"], t["param_share"])],
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.set_xlabel("weights transplanted into the base model")
    ax.set_ylabel("share of the Solve-F1 gain recovered (%)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.get_figure().tight_layout()
    return ax


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ftrl_lab.analysis transplant", description=__doc__.split("\n\n")[0])
    p.add_argument("base", help='base checkpoint folder (or "default")')
    p.add_argument("trained", help="trained checkpoint folder or LoRA adapter folder")
    p.add_argument("--test", default="data/envs/cpu/test.jsonl", help="test records (.jsonl/.parquet)")
    p.add_argument("--limit", type=int, default=None, help="only the first N test records")
    p.add_argument("--out", required=True, help="results folder (results.jsonl, eval/, recovery.csv/.png)")
    p.add_argument("--subsets", default=",".join(SUBSETS), help=f"comma list of names {list(SUBSETS)} or WHAT@LAYERS")
    p.add_argument("--preset", default="cpu-smollm2", help="evaluation settings from this training preset")
    p.add_argument("--max-turns", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--keep-models", action="store_true", help="keep the built subset models")
    a = p.parse_args(argv)
    import logging

    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    records = list(load_records(a.test))[: a.limit]
    overrides = {
        f"eval.{k}": getattr(a, k) for k in ("max_turns", "max_new_tokens", "batch_size") if getattr(a, k) is not None
    }
    table = run_transplant(
        a.base,
        a.trained,
        records,
        a.out,
        subsets=[s for s in a.subsets.split(",") if s],
        preset=a.preset,
        eval_overrides=overrides,
        keep_models=a.keep_models,
    )
    table.to_csv(Path(a.out) / "recovery.csv", index=False)
    ax = plot_recovery(table)
    ax.get_figure().savefig(Path(a.out) / "transplant_recovery.png", dpi=120)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    return 0


if __name__ == "__main__":
    from ftrl_lab.core.cli import run_cli

    raise SystemExit(run_cli(main))
