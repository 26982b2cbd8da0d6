"""Synthetic (base, trained) checkpoint pairs with known deltas (not a test module).

Values are dyadic (k / 64 and small multiples of powers of two), so ``base + delta`` is exact in
float32 and the change map must recover every delta to float64 rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ftrl_lab.analysis.checkpoint_io import write_safetensors

N_LAYERS, HIDDEN, FFN, VOCAB = 6, 8, 16, 32
SHAPES = {
    "self_attn.q_proj": (HIDDEN, HIDDEN),
    "self_attn.k_proj": (4, HIDDEN),
    "self_attn.v_proj": (4, HIDDEN),
    "self_attn.o_proj": (HIDDEN, HIDDEN),
    "mlp.gate_proj": (FFN, HIDDEN),
    "mlp.up_proj": (FFN, HIDDEN),
    "mlp.down_proj": (HIDDEN, FFN),
    "input_layernorm": (HIDDEN,),
    "post_attention_layernorm": (HIDDEN,),
}


def layout() -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a 6-layer Llama-like model with a q_proj bias."""
    out = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    for i in range(N_LAYERS):
        for mod, shape in SHAPES.items():
            out[f"model.layers.{i}.{mod}.weight"] = shape
        out[f"model.layers.{i}.self_attn.q_proj.bias"] = (HIDDEN,)
    out["model.norm.weight"] = (HIDDEN,)
    out["lm_head.weight"] = (VOCAB, HIDDEN)
    return out


def dyadic(shape, gen, scale: float = 1.0) -> torch.Tensor:
    """Random multiples of scale/64 in [-scale, scale], never all zero."""
    t = torch.randint(-64, 65, shape, generator=gen).float()
    t.view(-1)[0] = 17.0
    return t * (scale / 64)


def save_folder(folder: Path, tensors: dict[str, torch.Tensor], shards: int = 1) -> Path:
    """A model folder: config.json and the tensors in ``shards`` files (with an index when > 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"num_hidden_layers": N_LAYERS, "model_type": "llama"}))
    names = list(tensors)
    parts = [names[i::shards] for i in range(shards)]
    weight_map = {}
    for k, part in enumerate(parts):
        fname = "model.safetensors" if shards == 1 else f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(
            folder / fname, [(n, tensors[n].dtype, tuple(tensors[n].shape)) for n in part], lambda n: iter([tensors[n]])
        )
        weight_map.update({n: fname for n in part})
    if shards > 1:
        (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def known_pair(root: Path, seed: int = 0, shards: int = 1):
    """``(base_dir, trained_dir, base, delta)``: every tensor moved by a different power of two."""
    gen = torch.Generator().manual_seed(seed)
    base, delta = {}, {}
    for j, (name, shape) in enumerate(layout().items()):
        base[name] = dyadic(shape, gen)
        delta[name] = dyadic(shape, gen, scale=2.0 ** -(1 + j % 12))
    trained = {n: base[n] + delta[n] for n in base}
    assert all(torch.equal(trained[n] - base[n], delta[n]) for n in base)  # exact in float32
    return save_folder(root / "base", base, shards), save_folder(root / "trained", trained, shards), base, delta


def lora_adapter(
    folder: Path,
    base: dict[str, torch.Tensor],
    targets: list[str],
    r: int = 2,
    alpha: int = 8,
    seed: int = 1,
    extra_config: dict | None = None,
) -> dict[str, torch.Tensor]:
    """A PEFT-format LoRA adapter on ``targets`` (base tensor names); returns the exact deltas."""
    gen = torch.Generator().manual_seed(seed)
    tensors, deltas = {}, {}
    for name in targets:
        out_f, in_f = base[name].shape
        a, b = dyadic((r, in_f), gen), dyadic((out_f, r), gen)
        mod = name[: -len(".weight")]
        tensors[f"base_model.model.{mod}.lora_A.weight"] = a
        tensors[f"base_model.model.{mod}.lora_B.weight"] = b
        deltas[name] = (b.double() @ a.double()) * (alpha / r)
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(
        folder / "adapter_model.safetensors",
        [(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()],
        lambda n: iter([tensors[n]]),
    )
    config = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": alpha,
        "target_modules": sorted({t.split(".")[-2] for t in targets}),
        **(extra_config or {}),
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return deltas
