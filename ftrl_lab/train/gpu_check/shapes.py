"""Model shapes of real families, written as data, built with random weights.

``configs/model_shapes/<name>.json`` holds a published ``config.json``'s architecture fields
(``model_type``, sizes, rope, norms). :func:`build_model` turns one into a randomly initialised
model directly on the target device, in the target dtype: good for speed and memory, not for
quality. :func:`tiny_shape` keeps a shape's family but shrinks it so the whole check runs on a CPU.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from ftrl_lab.agent.models import sync_generation_config
from ftrl_lab.train.config import CONFIG_DIR

SHAPES_DIR = CONFIG_DIR / "model_shapes"
TINY_SIZES = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 4096,
}


@dataclass
class ModelShape:
    """A model family's architecture: ``config`` are ``AutoConfig.for_model`` keyword arguments."""

    name: str
    config: dict[str, Any]
    source: str = ""
    tiny: bool = False
    notes: list[str] = field(default_factory=list)


def shape_path(name_or_path: str | os.PathLike) -> Path:
    """``configs/model_shapes/<name>.json`` for a shape name, or the given file."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.is_file():
        return path
    candidate = SHAPES_DIR / f"{name_or_path}.json"
    if candidate.is_file():
        return candidate
    names = sorted(p.stem for p in SHAPES_DIR.glob("*.json"))
    raise FileNotFoundError(f"no model shape '{name_or_path}' (shapes in {SHAPES_DIR}: {names})")


def load_shape(name_or_path: str | os.PathLike) -> ModelShape:
    """Read a shape file; a missing ``name``/``config`` or an unknown ``model_type`` is an error naming the file."""
    path = shape_path(name_or_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise ValueError(f"{path}: a model shape needs a 'config' mapping")
    config = data["config"]
    if "model_type" not in config:
        raise ValueError(f"{path}: config.model_type is missing")
    try:
        AutoConfig.for_model(**config)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: config is not a valid transformers config ({e})") from None
    return ModelShape(name=data.get("name", path.stem), config=dict(config), source=data.get("source", ""))


def tiny_shape(shape: ModelShape) -> ModelShape:
    """The same family (``model_type``, rope, norms, tying) with CPU-test sizes."""
    config = {**shape.config, **TINY_SIZES}
    if "head_dim" not in shape.config:
        config.pop("head_dim")  # the family derives it from hidden_size / heads
    config.pop("vocab_size", None)  # the tokenizer's
    if config.get("sliding_window") is not None:
        config["sliding_window"] = TINY_SIZES["max_position_embeddings"]
    return ModelShape(name=f"{shape.name}-tiny", config=config, source=shape.source, tiny=True)


def build_model(
    shape: ModelShape,
    tokenizer: PreTrainedTokenizerBase,
    *,
    dtype: torch.dtype,
    device: str | torch.device,
    attn_implementation: str = "sdpa",
    seed: int = 0,
) -> PreTrainedModel:
    """A randomly initialised model of ``shape``, created on ``device`` in ``dtype``.

    The vocabulary is the shape's (at least the tokenizer's, so every token id fits; a tiny shape
    takes the tokenizer's); the special
    token ids and the generation config's end tokens are the tokenizer's.
    """
    config = AutoConfig.for_model(**shape.config)
    shape_vocab = 0 if shape.tiny else (getattr(config, "vocab_size", 0) or 0)
    config.vocab_size = max(shape_vocab, len(tokenizer))
    config.bos_token_id = tokenizer.bos_token_id
    config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    model.config.name_or_path = f"random-{shape.name}"
    sync_generation_config(model, tokenizer)
    return model.eval()
