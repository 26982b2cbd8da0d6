"""Model anatomy: tensor names -> decoder layer, module, module group and third of the depth.

Torch-free, so training (LoRA targets), the change map and the transplant all use one
definition. ``model.layers.3.mlp.down_proj.weight`` is layer 3, module ``down_proj``, group
``mlp``; :func:`layer_thirds` splits the depth into lower / middle / upper thirds.
"""

from __future__ import annotations

import re

MODULE_ORDER = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
    "input_layernorm",
    "post_attention_layernorm",
)
GROUPS = ("attention", "mlp", "norm", "embedding", "other")
THIRDS = ("lower", "middle", "upper")
# The linear modules of each trainable group (LoRA targets by group; the notebooks' module choices).
GROUP_MODULES = {"attention": ("q_proj", "k_proj", "v_proj", "o_proj"), "mlp": ("gate_proj", "up_proj", "down_proj")}
LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.(.+)$")


def parse_name(name: str) -> tuple[int | None, str, str]:
    """``model.layers.3.mlp.down_proj.weight`` -> (3, "down_proj", "weight"); non-layer tensors
    (``model.embed_tokens.weight``, ``model.norm.weight``, ``lm_head.weight``) get layer None."""
    m = LAYER_RE.search(name)
    rest = m.group(2) if m else name
    parts = rest.split(".")
    module, param = (parts[-2], parts[-1]) if len(parts) > 1 else (parts[0], "")
    return (int(m.group(1)) if m else None), module, param


def module_group(name: str) -> str:
    """attention / mlp / norm / embedding / other, from the tensor's name."""
    _, module, _ = parse_name(name)
    if "norm" in module or module.startswith("ln"):
        return "norm"
    if module in ("embed_tokens", "wte", "wpe", "lm_head"):
        return "embedding"
    if "attn" in name or "attention" in name:
        return "attention"
    if ".mlp." in name or "feed_forward" in name:
        return "mlp"
    return "other"


def layer_thirds(n_layers: int) -> dict[str, list[int]]:
    """Layer indices of the lower, middle and upper thirds (larger parts first: 30 -> 10/10/10,
    31 -> 11/10/10)."""
    base, extra = divmod(n_layers, 3)
    sizes = [base + (i < extra) for i in range(3)]
    starts = [sum(sizes[:i]) for i in range(3)]
    return {t: list(range(s, s + n)) for t, s, n in zip(THIRDS, starts, sizes)}


def third_of(layer: int | None, n_layers: int) -> str | None:
    if layer is None:
        return None
    return next(t for t, idx in layer_thirds(n_layers).items() if layer in idx)
