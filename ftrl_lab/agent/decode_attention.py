"""Attention for one-token decode steps: grouped-query attention as two batched matmuls.

PyTorch's CPU SDPA kernels are built for blocks of queries. A decode step has one query per
row, and with the engine's boolean mask (rows of different lengths) the flash kernel turns the
mask into a float tensor every layer: measured here at batch 8 over a 1,504-token cache, SDPA
took 56% of a SmolLM2-135M decode step (2.85 ms per layer call). With one query the whole
attention is ``softmax(q K^T) V``; computing it per key/value head, with the query heads of a
group stacked as rows, needs no ``repeat_kv`` copy of the cache and no mask conversion.

:func:`decode_attention` handles steps with one query (no dropout) and hands everything else to
transformers' SDPA path, so it is exact for prefill and training too. :func:`decode_attention_on`
switches a model to it for a block (the engine's generation) and back.

The name is registered with transformers' mask interface too, as SDPA's mask. Without that,
transformers treats an unknown attention name as one that needs no mask (a serving backend),
and the SDPA fallback then runs a multi-token prefill over a cache with ``is_causal``, which
aligns the causal triangle to the top left: every query of a later turn's prefill saw only the
first keys of the conversation (measured on the cpu-smollm2 warm start: the second turn of a
multi-hop episode degenerated into ``_tool_call_tool_call...`` arguments, while a fresh
prefill of the same tokens answered correctly).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ftrl_lab.agent.cpu_kernels import one_query_attention

NAME = "ftrl_decode"


def decode_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """``[batch, heads, 1, dim]`` queries over ``[batch, kv_heads, length, dim]`` keys/values ->
    ``[batch, 1, heads, dim]`` (transformers' attention-function contract)."""
    batch, heads, q_len, dim = query.shape
    if q_len != 1 or dropout or kwargs.get("sliding_window") or heads % key.shape[1]:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    kv_heads = key.shape[1]
    q = query.reshape(batch, kv_heads, heads // kv_heads, dim)  # head h reads key/value head h // group
    scale = dim**-0.5 if scaling is None else scaling
    lengths = _prefix_lengths(attention_mask, batch, key.shape[-2])
    if lengths is not None:
        out = one_query_attention(q, key, value, lengths, scale)
        if out is not None:
            return out.reshape(batch, heads, 1, dim).transpose(1, 2), None
    scores = torch.matmul(q, key.transpose(-1, -2)) * scale
    if attention_mask is not None:
        mask = attention_mask[..., : key.shape[-2]]  # [batch, 1, 1, length]
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    probs = scores.softmax(-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(probs, value)  # [batch, kv_heads, group, dim]
    return out.reshape(batch, heads, 1, dim).transpose(1, 2), None


_last_mask: list = [None, None]  # (mask, its lengths): one mask serves every layer of a step


def _prefix_lengths(mask: torch.Tensor | None, batch: int, length: int) -> torch.Tensor | None:
    """Keys each row sees, when ``mask`` (``[batch, 1, 1, >= length]`` bool) shows a prefix per
    row, as the engine's slab masks do; None for any other mask (the matmul path handles it)."""
    if mask is None:
        return torch.full((batch,), length, dtype=torch.int64)
    if mask is _last_mask[0]:
        return _last_mask[1]
    lengths = None
    if mask.dtype == torch.bool and mask.dim() == 4 and mask.shape[1] == mask.shape[2] == 1:
        rows = mask[:, 0, 0, :length]
        counts = rows.sum(-1)
        if bool((torch.arange(length) < counts[:, None]).eq(rows).all()):
            lengths = counts.expand(batch) if counts.shape[0] == 1 else counts
    _last_mask[0], _last_mask[1] = mask, lengths
    return lengths


AttentionInterface.register(NAME, decode_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


@contextmanager
def decode_attention_on(model: torch.nn.Module) -> Iterator[None]:
    """Within the block, ``model`` (and its text config) uses :func:`decode_attention`."""
    configs = {id(c): c for c in (model.config, model.config.get_text_config(decoder=True))}.values()
    saved = [(c, c._attn_implementation) for c in configs]
    try:
        for c, _ in saved:
            c._attn_implementation = NAME
        yield
    finally:
        for c, old in saved:
            c._attn_implementation = old
