"""Which parameters moved: a change map between two checkpoints, per decoder layer and module.

For a base and a trained checkpoint (a full fine-tune, or a LoRA adapter whose delta
``B @ A * scaling`` is merged first) :func:`change_map` streams every tensor a block of rows at
a time (:mod:`ftrl_lab.analysis.checkpoint_io`; two full models are never in memory) and returns a tidy
table: per tensor its layer, module (q/k/v/o, gate/up/down, the two norms; embeddings, the final
norm and ``lm_head`` as rows without a layer), module group and third of the depth, the
relative change ``||after - before||_F / ||before||_F``, the mean absolute change and the sums
behind them, so :func:`aggregate` combines any rows exactly. :func:`thirds_table` sums the
lower / middle / upper thirds; :func:`plot_heatmap`, :func:`plot_depth` and :func:`plot_compare`
draw them. The causal test (transplanting a subset of the delta) is :mod:`ftrl_lab.analysis.transplant`.

    python -m ftrl_lab.analysis change-map BASE TRAINED --out runs/analysis/sft
    python -m ftrl_lab.analysis transplant BASE TRAINED --test data/envs/cpu/test.jsonl --limit 20 --out DIR
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ftrl_lab.agent.anatomy import MODULE_ORDER, THIRDS, layer_thirds, module_group, parse_name, third_of
from ftrl_lab.analysis.checkpoint_io import DEFAULT_BLOCK, Checkpoint, open_trained
from ftrl_lab.core.records import append_jsonl

METRICS = {
    "rel_change": "relative change ||ΔW||/||W||",
    "mean_abs_change": "mean |ΔW|",
    "diff_norm": "||ΔW||_F",
    "share_of_change": "share of the total ||ΔW||²",
}
SUMS = ("numel", "before_sq", "diff_sq", "abs_sum")


def count_layers(ckpt: Checkpoint) -> int:
    """Decoder layers: ``num_hidden_layers`` from config.json, else the highest layer index + 1."""
    found = [parse_name(n)[0] for n in ckpt.names]
    return ckpt.n_layers or (max((i for i in found if i is not None), default=-1) + 1)


def resolve(path: str | Path) -> Path:
    """A checkpoint folder: an existing path; "default" (the embedded default model, converted if
    needed); or a hub id (from the local Hugging Face cache, its weights and configs downloaded when
    allowed; ``HF_HUB_OFFLINE=1`` is honoured). Existing
    paths never import transformers (keeps the change map's own memory small)."""
    if Path(path).expanduser().exists():
        return Path(path).expanduser()
    from ftrl_lab.agent.models import resolve_model_path

    resolved = Path(resolve_model_path(path))
    if resolved.exists():
        return resolved
    from huggingface_hub import snapshot_download

    from ftrl_lab.agent.models import hub_load_error

    try:
        return Path(snapshot_download(str(path), allow_patterns=["*.json", "*.safetensors"]))
    except Exception as e:  # noqa: BLE001 - any lookup failure: not a folder, not obtainable
        raise hub_load_error(path, e) from None


def finish(df: pd.DataFrame) -> pd.DataFrame:
    """Derived columns from the sums: norms, relative and mean absolute change, share of change."""
    df = df.copy()
    df["numel"] = df["numel"].astype("int64")  # a count (sums of it came back as floats)
    df["before_norm"], df["diff_norm"] = np.sqrt(df["before_sq"]), np.sqrt(df["diff_sq"])
    df["rel_change"] = df["diff_norm"] / df["before_norm"].where(df["before_norm"] > 0)
    df["mean_abs_change"] = df["abs_sum"] / df["numel"]
    total = df["diff_sq"].sum()
    df["share_of_change"] = df["diff_sq"] / total if total > 0 else 0.0
    return df


def change_map(
    base: str | Path,
    trained: str | Path,
    *,
    out: str | Path | None = None,
    block: int = DEFAULT_BLOCK,
    progress: bool = True,
) -> pd.DataFrame:
    """Per-tensor change table between two checkpoints, streamed (see module docstring).

    ``out``: a folder; each finished tensor is appended to ``<out>/tensors.jsonl`` and a rerun
    skips those already there. ``block``: elements per row block read at a time.
    """
    b = Checkpoint(resolve(base))
    t = open_trained(resolve(trained), b)
    n_layers = count_layers(b)
    path = Path(out) / "tensors.jsonl" if out is not None else None
    done = {}
    if path is not None and path.exists():
        done = {r["name"]: r for r in map(json.loads, path.read_text().splitlines()) if r}
    rows = []
    for name in tqdm(b.names, desc="change map", unit="tensor", disable=not progress):
        if name in done:
            rows.append(done[name])
            continue
        layer, module, param = parse_name(name)
        sums = dict.fromkeys(SUMS, 0.0) | {"max_abs_change": 0.0}
        for start, stop in b.blocks(name, block):
            raw = b.read(name, start, stop)
            diff = t.delta(name, start, stop, raw).reshape(-1) if t.changed(name) else None
            before = raw.double().reshape(-1)
            sums["numel"] += before.numel()
            sums["before_sq"] += float(before @ before)
            if diff is not None and diff.numel():
                sums["diff_sq"] += float(diff @ diff)
                sums["abs_sum"] += float(torch.linalg.vector_norm(diff, 1))
                sums["max_abs_change"] = max(sums["max_abs_change"], float(diff.abs().max()))
            del raw, before, diff
        row = {
            "name": name,
            "layer": layer,
            "module": module,
            "param": param,
            "group": module_group(name),
            "third": third_of(layer, n_layers),
            "n_layers": n_layers,
            "kind": t.kind,
            **sums,
        }
        if path is not None:
            append_jsonl(path, [row])
        rows.append(row)
    return finish(pd.DataFrame(rows).astype({"layer": "Int64"}))


def aggregate(df: pd.DataFrame, by: Sequence[str] = ("layer", "module")) -> pd.DataFrame:
    """Rows combined exactly (sums of squares and of |Δ|) over ``by``: per (layer, module) merges a
    module's weight and bias; per ("third", "group") gives the thirds."""
    keys = (["run"] if "run" in df.columns and "run" not in by else []) + list(by)
    extra = {k: "first" for k in ("group", "third", "n_layers") if k in df.columns and k not in keys}
    out = (
        df.groupby(keys, dropna=False, sort=False)
        .agg({**{s: "sum" for s in SUMS}, "max_abs_change": "max", **extra})
        .reset_index()
    )
    parts = [finish(g) for _, g in out.groupby("run", sort=False)] if "run" in out.columns else [finish(out)]
    return pd.concat(parts, ignore_index=True)


def module_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (layer, module), non-layer modules (layer <NA>) last."""
    table = aggregate(df, ("layer", "module"))
    order = {m: i for i, m in enumerate(MODULE_ORDER)}
    table["_m"] = table["module"].map(lambda m: order.get(m, len(order)))
    table["_l"] = table["layer"].fillna(10**6)
    return (
        table.sort_values([c for c in ("run", "_l", "_m", "module") if c in table])
        .drop(columns=["_m", "_l"])
        .reset_index(drop=True)
    )


def thirds_table(df: pd.DataFrame) -> pd.DataFrame:
    """Lower / middle / upper thirds x module group, decoder layers only: relative and mean
    absolute change of the combined tensors and their share of the layers' total squared change."""
    layers = df[df["layer"].notna()]
    agg = aggregate(layers, ("third", "group"))
    agg["third"] = pd.Categorical(agg["third"], THIRDS, ordered=True)
    cols = ["run"] if "run" in agg.columns else []
    return agg.sort_values([*cols, "third", "group"])[
        [*cols, "third", "group", "numel", "rel_change", "mean_abs_change", "share_of_change"]
    ].reset_index(drop=True)


def lower_mlp_verdict(thirds: pd.DataFrame, margin: float = 0.25) -> dict:
    """Does the change concentrate in the lower-third MLPs (the paper's claim)?

    ``thirds`` is :func:`thirds_table` of one pair. The lower third counts as *concentrated* only
    when its MLP relative change exceeds the larger of the middle and upper thirds' by more than
    ``margin`` (a fraction: 0.25 = 25%); ``ratio`` is lower / max(middle, upper).
    """
    mlp = thirds[thirds["group"] == "mlp"].set_index("third")["rel_change"].astype(float)
    ratio = float(mlp["lower"] / max(mlp["middle"], mlp["upper"]))
    if ratio > 1 + margin:
        text = f"concentrated in the lower-third MLPs ({ratio:.2f}x the next third), as the paper says"
    elif ratio > 1:
        text = (
            f"largest in the lower-third MLPs by only {ratio - 1:.1%} (threshold {margin:.0%}): no concentration there"
        )
    else:
        text = "not largest in the lower-third MLPs: the paper's claim is not supported by this pair"
    return {"concentrated": ratio > 1 + margin, "ratio": ratio, "text": text}


def finished_pairs(runs_dir: str | Path, root: str | Path = ".") -> dict[str, tuple[str, str]]:
    """(base, trained) checkpoint pairs of the finished training runs under ``runs_dir``: "<run>: RL"
    (RL's starting checkpoint -> final policy) and "<run>: SFT warm start" (the model before it ->
    the warm start; not for runs that reused another run's start). Relative paths in a run's state
    are taken from ``root`` (the project root)."""
    from ftrl_lab.train.run_state import RunState, final_policy

    pairs = {}
    for run in sorted(p for p in Path(runs_dir).glob("*") if (p / "state.json").exists()):
        state = RunState(run)
        config = json.loads((run / "config.json").read_text()) if (run / "config.json").exists() else {}
        sft = state.get("sft")
        start = Path(sft["model"]) if sft else None
        start = start if start is None or start.is_absolute() else Path(root) / start
        final = final_policy(run)
        rl_base = start if start is not None else config.get("model")
        if final is not None and rl_base is not None:
            pairs[f"{run.name}: RL"] = (str(rl_base), str(final))
        if start is not None and start.exists() and "reused_from" not in sft:
            pairs[f"{run.name}: SFT warm start"] = (config.get("model", "default"), str(start))
    return pairs


def restricted_runs(runs_dir: str | Path) -> pd.DataFrame:
    """Every finished run under ``runs_dir`` with its LoRA restriction ("full fine-tuning" when it
    has none) and its Solve-F1 gain on the generated test split (final vs start, paired CI)."""
    rows = []
    for path in sorted(Path(runs_dir).glob("*/results.json")):
        res = json.loads(path.read_text())
        f1 = next((m for m in res.get("comparisons", {}).get("test", []) if m["metric"] == "Solve-F1"), None)
        if f1:
            lora = res["config"]["rl"].get("lora")
            rows.append(
                {
                    "run": path.parent.name,
                    "lora": "full fine-tuning"
                    if not lora
                    else f"{lora.get('target_modules')} @ {lora.get('layers_to_transform', 'all layers')}",
                    "n": f1["n"],
                    "start": f1["start"],
                    "final": f1["final"],
                    "gain": f1["delta"],
                    "ci_low": f1["delta_ci_low"],
                    "ci_high": f1["delta_ci_high"],
                }
            )
    return pd.DataFrame(rows, columns=["run", "lora", "n", "start", "final", "gain", "ci_low", "ci_high"])


def findings(verdict: dict, recovery: pd.DataFrame | None = None, restricted: pd.DataFrame | None = None) -> str:
    """Markdown bullets setting the paper's lower-layer-MLP claim against the three measures:
    the change map (:func:`lower_mlp_verdict`), the transplant (``transplant.run_transplant``'s
    table) and restricted LoRA training (:func:`restricted_runs`). Numbers come from the inputs."""
    lines = [f"- **Where the weights moved**: the change is {verdict['text']}."]
    thirds = [f"{t}_third_mlp" for t in ("lower", "middle", "upper")]
    if recovery is not None and len(recovery):
        r = recovery.set_index("subset")
        present = [t for t in thirds if t in r.index]
        if r.loc["trained", "gain"] == 0 or not present:
            lines.append("- **Transplant**: no gain to attribute, or no MLP third was transplanted.")
        else:
            best = max(present, key=lambda t: r.loc[t, "recovery"])
            parts = ", ".join(
                f"{t.split('_')[0]} {r.loc[t, 'recovery']:.0%} [{r.loc[t, 'ci_low']:.0%}, {r.loc[t, 'ci_high']:.0%}]"
                for t in present
            )
            overlapping = [t for t in present if t != best and r.loc[t, "ci_high"] >= r.loc[best, "ci_low"]]
            if overlapping:  # no ordering: the best third's interval overlaps another's
                reading = (
                    f"the intervals of the {best.split('_')[0]} and {' and '.join(t.split('_')[0] for t in overlapping)} "
                    "thirds overlap, so no third is shown to carry more than another"
                )
            else:
                claim = (
                    "as the paper's claim predicts"
                    if best == "lower_third_mlp"
                    else "not the lower third the paper points to"
                )
                reading = f"the most is the {best.split('_')[0]} third, its interval above the others', {claim}"
            lines.append(
                f"- **What carries the gain** (transplant, n = {int(r.loc['trained', 'n'])}): the MLP thirds alone "
                f"recover {parts} of it; {reading}."
            )
    if restricted is not None and len(restricted):
        lora = restricted[restricted["lora"].str.contains("mlp @ (?:lower|middle|upper)_third", regex=True)]
        full = restricted[restricted["lora"] == "full fine-tuning"]
        if len(lora):
            parts = "; ".join(
                f"{row.lora}: {row.gain:+.1f} [{row.ci_low:+.1f}, {row.ci_high:+.1f}]" for row in lora.itertuples()
            )
            ref = f" (full fine-tuning: up to {full['gain'].max():+.1f})" if len(full) else ""
            lines.append(f"- **Training only those weights** (LoRA, ΔSolve-F1 on the test split): {parts}{ref}.")
    return "\n".join(lines)


# --- figures -----------------------------------------------------------------------------------
def grid_style(grid: pd.DataFrame, digits: int = 3):
    """A layer x module grid as a styled table: ``digits`` significant digits, and a colour
    gradient only when the values differ at that precision (otherwise rounding noise, e.g.
    0.00500 vs 0.00501, would be painted from one end of the colour map to the other)."""
    fmt = f"{{:.{digits}g}}"
    styler = grid.style.format(fmt, na_rep="–")
    shown = {fmt.format(v) for v in grid.to_numpy().ravel() if v == v}
    if len(shown) > 1:
        styler = styler.background_gradient(cmap="viridis", axis=None)
    return styler


def layer_module_grid(
    df: pd.DataFrame, metric: str = "rel_change", modules: Sequence[str] | None = None
) -> tuple[pd.DataFrame, dict]:
    """Layer x module grid of ``metric`` (top row = last layer) and each module's group."""
    table = module_table(df)
    table = table[table["layer"].notna()]
    if modules:
        table = table[table["module"].isin(modules)]
    cols = [m for m in MODULE_ORDER if m in set(table["module"])] + sorted(set(table["module"]) - set(MODULE_ORDER))
    grid = table.pivot(index="layer", columns="module", values=metric)[cols].sort_index(ascending=False)
    return grid.astype(float), dict(zip(table["module"], table["group"]))


def plot_heatmap(
    df: pd.DataFrame,
    metric: str = "rel_change",
    *,
    modules: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
    vmax: float | None = None,
):
    """Layer x module heatmap of ``metric`` (layer 0 at the bottom)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    grid, _ = layer_module_grid(df, metric, modules)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 2.5 + 0.7 * grid.shape[1]), max(4.5, 2.8 + 0.18 * grid.shape[0])))
    sns.heatmap(grid, ax=ax, cmap="viridis", vmin=0, vmax=vmax, cbar_kws={"label": METRICS[metric]})
    n_layers = int(df["n_layers"].iloc[0]) if "n_layers" in df else len(grid)
    for idx in list(layer_thirds(n_layers).values())[1:]:  # rows run top = last layer
        if idx:
            ax.axhline(len(grid) - idx[0], color="0.75", lw=1.5)
    ax.set_title(wrapped_title(title if title is not None else METRICS[metric]), fontsize=10)
    ax.set_xlabel("module (grey lines: thirds of the depth)")
    ax.set_ylabel("decoder layer")
    ax.tick_params(axis="x", labelrotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return ax


def plot_depth(
    df: pd.DataFrame,
    metric: str = "rel_change",
    *,
    modules: Sequence[str] | None = None,
    ax=None,
    title: str | None = None,
):
    """``metric`` over depth, one line per module (MLP solid, attention dashed, norms dotted),
    thirds marked."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    grid, groups = layer_module_grid(df, metric, modules)
    grid = grid.sort_index()
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.8))
    styles = {"attention": "--", "mlp": "-", "norm": ":"}
    for module in grid.columns:
        ax.plot(grid.index.astype(int), grid[module], styles.get(groups[module], "-."), marker=".", label=module)
    for idx in list(layer_thirds(int(df["n_layers"].iloc[0])).values())[1:]:
        if idx:
            ax.axvline(idx[0] - 0.5, color="grey", lw=0.8)
    ax.set_xlabel("decoder layer (lower → upper; grey lines: thirds)")
    ax.set_ylabel(METRICS[metric])
    ax.set_title(wrapped_title(title if title is not None else METRICS[metric]), fontsize=10)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, ncol=2, loc="best", framealpha=0.9)
    return ax


def plot_compare(maps: dict[str, pd.DataFrame], metric: str = "rel_change", *, modules: Sequence[str] | None = None):
    """Heatmaps of several runs side by side, one colour scale."""
    import matplotlib.pyplot as plt

    vmax = max(float(np.nanmax(layer_module_grid(d, metric, modules)[0].to_numpy())) for d in maps.values())
    fig, axes = plt.subplots(1, len(maps), figsize=(5.5 * len(maps), 6), squeeze=False)
    for ax, (label, d) in zip(axes[0], maps.items()):
        plot_heatmap(d, metric, modules=modules, ax=ax, title=label, vmax=vmax)
    fig.tight_layout()
    return fig


def save_change_map(df: pd.DataFrame, out: str | Path, title: str = "") -> dict[str, Path]:
    """CSV tables (tensors, modules, thirds) and the two figures into ``out``."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "tensors": out / "tensors.csv",
        "modules": out / "modules.csv",
        "thirds": out / "thirds.csv",
        "heatmap": out / "param_change_heatmap.png",
        "depth": out / "param_change_depth.png",
    }
    df.to_csv(paths["tensors"], index=False)
    module_table(df).to_csv(paths["modules"], index=False)
    thirds_table(df).to_csv(paths["thirds"], index=False)
    for key, plot in (("heatmap", plot_heatmap), ("depth", plot_depth)):
        ax = plot(df, title=title or None)
        ax.get_figure().tight_layout()
        ax.get_figure().savefig(paths[key], dpi=120)
        plt.close(ax.get_figure())
    return paths


# --- a synthetic pair -----------------------------------------------------------------------------
def synthetic_pair(
    out: str | Path, n_layers: int = 6, seed: int = 0, scales: dict[tuple[str, str | None], float] | None = None
) -> tuple[Path, Path]:
    """A tiny random Llama pair ``(out/base, out/trained)`` for demos and CI (seconds, no download).

    trained = base + Gaussian noise of relative size ``scales[(group, third)]`` per tensor
    (default: lower-third MLP 5%, every other tensor 0.5%); the numbers illustrate the
    plumbing, not any training run.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    from ftrl_lab.agent.models import prepare_tokenizer, tiny_tokenizer

    scales = scales or {("mlp", "lower"): 0.05}
    out = Path(out)
    tok = prepare_tokenizer(tiny_tokenizer())
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out / "base")
    tok.save_pretrained(out / "base")
    with torch.no_grad():
        for name, w in model.named_parameters():
            layer = parse_name(name)[0]
            scale = scales.get((module_group(name), third_of(layer, n_layers)), 0.005)
            noise = torch.randn(w.shape, generator=gen)
            w += scale * w.norm() / noise.norm() * noise
    model.save_pretrained(out / "trained")
    tok.save_pretrained(out / "trained")
    return out / "base", out / "trained"


# --- command line ------------------------------------------------------------------------------


def wrapped_title(title: str, width: int = 70) -> str:
    """``title`` broken into lines of at most ``width`` characters (long run names stay inside the figure)."""
    return "\n".join(textwrap.wrap(title, width)) or title
