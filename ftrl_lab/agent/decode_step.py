"""One decode step of a Llama-family model without the Hugging Face module stack (CPU, fp32).

At batch 1 a SmolLM2-135M decode step through ``model(...)`` spends about a quarter of its time
outside the matrix kernels: thirty decoder layers of module calls, mask and cache bookkeeping,
and a dtype cast around every linear. :class:`DecodeStep` computes the same step from the
model's own weights with a short list of tensor ops per layer:

* the linear layers run on bf16 copies of the weights, with q/k/v fused into one matrix and
  gate/up into another, refreshed when a weight changes (an optimizer step moves the tensor's
  version counter): at 1-2 rows the native GEMV (``kernels/bf16_gemv.c``) over row-major copies
  in a huge-page arena, which streams the weights about twice as fast as oneDNN; at more rows
  oneDNN's prepacked linears (as :mod:`ftrl_lab.agent.bf16_linears`), which win there;
* the small ops between the linears (norms, casts, rotary embedding, cache writes, the SiLU
  gate, residual adds) run as three native calls per layer (``kernels/decode_layer_ops.c``)
  instead of two dozen tensor ops; norms, rotary embeddings and the residual stream stay fp32;
* the engine hands it bf16 key/value slabs (the prompt's fp32 cache rounded once per
  generation, each step's keys and values rounded as written), which halves what attention
  reads; the conversation state the engine keeps across turns stays fp32 (the completion's
  keys/values widened back); attention runs the native one-query kernel
  (:mod:`ftrl_lab.agent.cpu_kernels`) on the slabs, with fp32 sums.

Where the kernel library is not built (no C compiler, ``FTRL_LAB_NATIVE=0``) the same step runs
as torch ops on oneDNN's linears. It serves the engine's ``fast_decode`` for the families whose decoder layer it reproduces
(Llama, Mistral without a sliding window, Qwen2, Qwen3); :func:`unsupported_reason` says why a
model is left to the ``model(...)`` path (LoRA wrappers, other activations, sliding windows,
...). Prefill always goes through ``model(...)``. ``tests/agent/test_decode_step.py`` checks
logits and greedy tokens against the module path; ``perf/bench_decode.py`` times it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ftrl_lab.agent.bf16_linears import packed_bf16_available
from ftrl_lab.agent.cpu_kernels import (
    add_rms_norm_bf16,
    gemv_bf16,
    gemv_bf16_available,
    huge_page_buffer,
    load_library,
    one_query_attention,
    rope_attend,
    silu_mul_bf16,
)

FAMILIES = ("llama", "mistral", "qwen2", "qwen3")
GEMV_MAX_BATCH = 2  # up to this many rows the native GEMV beats oneDNN (perf/bench_decode.py); above, oneDNN
_PROJECTIONS = (("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")), ("mlp", ("gate_proj", "up_proj", "down_proj")))


def unsupported_reason(model: nn.Module) -> str | None:
    """Why :class:`DecodeStep` cannot run ``model``'s decode steps, or None when it can."""
    cfg = model.config.get_text_config(decoder=True)
    if cfg.model_type not in FAMILIES:
        return f"model type {cfg.model_type!r} is not one of {FAMILIES}"
    if not packed_bf16_available(model):
        return "not an fp32 CPU model on a CPU with native bf16 linears"
    if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "mlp_bias", False):
        return "the MLP is not a bias-free SiLU-gated one"
    if (getattr(cfg, "pretraining_tp", 1) or 1) != 1:
        return "pretraining_tp > 1"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return "sliding-window attention"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        return "no model.model.layers / rotary_emb"
    if type(getattr(model, "lm_head", None)) is not nn.Linear:
        return "the LM head is not a plain nn.Linear"
    for i, layer in enumerate(inner.layers):
        for part, names in _PROJECTIONS:
            for name in names:
                if type(getattr(getattr(layer, part, None), name, None)) is not nn.Linear:
                    return f"layer {i} {part}.{name} is not a plain nn.Linear (e.g. a LoRA wrapper)"
    return None


def _fused_linears(layer: nn.Module) -> dict[str, list[nn.Linear]]:
    """The decode step's four linears of a decoder layer, each a list of projections stacked by rows."""
    a, m = layer.self_attn, layer.mlp
    return {
        "qkv": [a.q_proj, a.k_proj, a.v_proj],
        "o": [a.o_proj],
        "gate_up": [m.gate_proj, m.up_proj],
        "down": [m.down_proj],
    }


def _pack(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().to(torch.bfloat16), 1)


def _linear(x: torch.Tensor, packed: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")


def _eps(norm: nn.Module) -> float:
    return float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))


def _cat_bias(linears: list[nn.Linear]) -> torch.Tensor | None:
    if all(m.bias is None for m in linears):
        return None
    parts = [m.bias if m.bias is not None else torch.zeros(m.out_features) for m in linears]
    return torch.cat([p.detach() for p in parts]).to(torch.bfloat16)


class DecodeStep:
    """Decode steps of ``model`` (see the module docstring); call :meth:`sync` after weights change
    (the engine does, once per generation)."""

    def __init__(self, model: nn.Module):
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"DecodeStep cannot run {type(model).__name__}: {reason}")
        self.model = model
        cfg = model.config.get_text_config(decoder=True)
        attn = model.model.layers[0].self_attn
        self.heads = cfg.num_attention_heads
        self.kv_heads = cfg.num_key_value_heads
        self.head_dim = getattr(attn, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        self.scale = float(getattr(attn, "scaling", self.head_dim**-0.5))
        self.intermediate = model.model.layers[0].mlp.gate_proj.out_features
        self._key: tuple | None = None
        self._layers: list[dict] = []
        self._plain: tuple[list[dict], tuple, torch.Tensor] | None = None  # GEMV weights, built on use
        self.repacks = 0

    def sync(self) -> None:
        """(Re)build the packed weights when any parameter changed since the last build."""
        key = tuple((p._version, p.data_ptr()) for p in self.model.parameters())
        if key == self._key:
            return
        inner = self.model.model
        layers = []
        with torch.no_grad():
            for layer in inner.layers:
                q_norm = _head_norm(getattr(layer.self_attn, "q_norm", None))
                k_norm = _head_norm(getattr(layer.self_attn, "k_norm", None))
                packed = {
                    name: (_pack(torch.cat([m.weight for m in group])), _cat_bias(group))
                    for name, group in _fused_linears(layer).items()
                }
                layers.append(
                    {
                        "norm1": (layer.input_layernorm.weight.detach(), _eps(layer.input_layernorm)),
                        "norm2": (layer.post_attention_layernorm.weight.detach(), _eps(layer.post_attention_layernorm)),
                        "q_norm": q_norm,
                        "k_norm": k_norm,
                        "head_norms": None if q_norm is None else (q_norm[0], k_norm[0], q_norm[1]),  # rope_attend's
                        **packed,
                    }
                )
            self._final_norm = (inner.norm.weight.detach(), _eps(inner.norm))
            self._head = (_pack(self.model.lm_head.weight), _cat_bias([self.model.lm_head]))
        self._layers = layers
        self._plain = None
        self._key = key
        self.repacks += 1

    def _plain_weights(self) -> tuple[list[dict], tuple, torch.Tensor]:
        """Row-major bf16 copies of the linear weights (same fusions as the packed ones) in one
        huge-page arena, for :func:`~ftrl_lab.agent.cpu_kernels.gemv_bf16`; built once per sync.
        Returns the per-layer weights, the head and the arena (kept alive with them)."""
        if self._plain is not None:
            return self._plain
        groups = [_fused_linears(layer) for layer in self.model.model.layers]
        mats = [[m.weight for m in group] for layer in groups for group in layer.values()]
        mats.append([self.model.lm_head.weight])
        sizes = [sum(p.numel() for p in parts) * 2 for parts in mats]
        offsets = [0]
        for size in sizes[:-1]:
            offsets.append(offsets[-1] + (size + 63) // 64 * 64)
        buf, base = huge_page_buffer(offsets[-1] + sizes[-1])
        views = []
        with torch.no_grad():
            for parts, size, at in zip(mats, sizes, offsets):
                view = buf[base + at : base + at + size].view(torch.bfloat16).view(-1, parts[0].shape[1])
                torch.cat([p.detach() for p in parts], out=view)  # cast to bf16 on the way in
                views.append(view)
        it = iter(views)
        layers = [{name: (next(it), packed[name][1]) for name in group} for group, packed in zip(groups, self._layers)]
        self._plain = (layers, (views[-1], self._head[1]), buf)
        return self._plain

    @torch.inference_mode()
    def __call__(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        slabs: list[tuple[torch.Tensor, torch.Tensor]],
        kv_len: int,
    ) -> torch.Tensor:
        """Next-token logits ``[B, vocab]`` (fp32) for ``input_ids`` ``[B]`` at ``positions`` ``[B]``.

        ``slabs``: per layer the ``[B, kv_heads, capacity, head_dim]`` key and value buffers,
        fp32 or bf16 (row b's earlier tokens at positions ``0 .. positions[b] - 1``); this step's
        keys and values are written at ``positions``; ``kv_len`` = ``positions.max() + 1``.
        """
        if self._key is None:
            self.sync()
        fused = load_library() is not None and all(k.is_contiguous() and v.is_contiguous() for k, v in slabs)
        step = self._fused_step if fused else self._torch_step
        return step(input_ids, positions, slabs, kv_len)

    def _fused_step(self, input_ids, positions, slabs, kv_len) -> torch.Tensor:
        """The step with the small ops of each layer in three native calls (``kernels/decode_layer_ops.c``)."""
        if input_ids.shape[0] <= GEMV_MAX_BATCH and gemv_bf16_available():
            (weights, head, _), linear = self._plain_weights(), gemv_bf16
        else:
            weights, head, linear = self._layers, self._head, _linear
        x = self.model.model.embed_tokens(input_ids).float().contiguous()  # [B, hidden], updated in place
        cos, sin = self.model.model.rotary_emb(x, positions[:, None])
        cos, sin = cos[:, 0].float().contiguous(), sin[:, 0].float().contiguous()
        positions = positions.to(torch.int64).contiguous()
        hidden = add_rms_norm_bf16(x, None, *self._layers[0]["norm1"])
        norms_after = [layer["norm1"] for layer in self._layers[1:]] + [self._final_norm]
        for layer, w, (keys, values), next_norm in zip(self._layers, weights, slabs, norms_after):
            qkv = linear(hidden, *w["qkv"])
            attn = rope_attend(
                qkv, cos, sin, positions, keys, values, kv_len, self.heads, self.scale, layer["head_norms"]
            )
            hidden = add_rms_norm_bf16(x, linear(attn, *w["o"]), *layer["norm2"])
            act = silu_mul_bf16(linear(hidden, *w["gate_up"]))
            hidden = add_rms_norm_bf16(x, linear(act, *w["down"]), *next_norm)
        return linear(hidden, *head).float()

    def _torch_step(self, input_ids, positions, slabs, kv_len) -> torch.Tensor:
        """The same step in torch ops (where the kernel library is not built)."""
        batch = input_ids.shape[0]
        h, kv, d = self.heads, self.kv_heads, self.head_dim
        rows = torch.arange(batch)
        lengths = positions + 1
        x = self.model.model.embed_tokens(input_ids).float()  # [B, hidden]
        cos, sin = self.model.model.rotary_emb(x, positions[:, None])  # [B, 1, d] each
        half = d // 2
        at = int(positions[0]) if batch == 1 else None
        for layer, (keys, values) in zip(self._layers, slabs):
            w, eps = layer["norm1"]
            hidden = F.rms_norm(x, (x.shape[-1],), w, eps).to(torch.bfloat16)
            qkv = _linear(hidden, *layer["qkv"]).float().view(batch, h + 2 * kv, d)
            qk = qkv[:, : h + kv]
            if layer["q_norm"] is not None:
                qk = torch.cat(
                    [_apply_head_norm(qk[:, :h], layer["q_norm"]), _apply_head_norm(qk[:, h:], layer["k_norm"])], 1
                )
            qk = qk * cos + torch.cat((-qk[..., half:], qk[..., :half]), -1) * sin
            if at is None:
                keys[rows, :, positions] = qk[:, h:].to(keys.dtype)
                values[rows, :, positions] = qkv[:, h + kv :].to(values.dtype)
            else:  # one row: a plain slice write
                keys[0, :, at].copy_(qk[0, h:])
                values[0, :, at].copy_(qkv[0, h + kv :])
            q = qk[:, :h].reshape(batch, kv, h // kv, d)
            k_view, v_view = keys[:, :, :kv_len], values[:, :, :kv_len]
            attn = one_query_attention(q, k_view, v_view, lengths, self.scale)
            if attn is None:
                attn = _matmul_attention(q, k_view, v_view, lengths, self.scale)
            x = x + _linear(attn.reshape(batch, h * d).to(torch.bfloat16), *layer["o"])
            w, eps = layer["norm2"]
            hidden = F.rms_norm(x, (x.shape[-1],), w, eps).to(torch.bfloat16)
            gate_up = _linear(hidden, *layer["gate_up"])
            act = F.silu(gate_up[:, : self.intermediate]) * gate_up[:, self.intermediate :]
            x = x + _linear(act, *layer["down"])
        w, eps = self._final_norm
        return _linear(F.rms_norm(x, (x.shape[-1],), w, eps).to(torch.bfloat16), *self._head).float()


def _head_norm(norm: nn.Module | None) -> tuple[torch.Tensor, float] | None:
    return None if norm is None else (norm.weight.detach(), _eps(norm))


def _apply_head_norm(t: torch.Tensor, norm: tuple[torch.Tensor, float]) -> torch.Tensor:
    w, eps = norm
    return F.rms_norm(t, (t.shape[-1],), w, eps)


def _matmul_attention(q, keys, values, lengths, scale) -> torch.Tensor:
    """The torch fallback of the native kernel: row b sees its first ``lengths[b]`` keys."""
    keys, values = keys.to(q.dtype), values.to(q.dtype)
    scores = torch.matmul(q, keys.transpose(-1, -2)) * scale  # [B, kv, group, L]
    if bool((lengths < keys.shape[-2]).any()):
        mask = torch.arange(keys.shape[-2])[None, :] < lengths[:, None]
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    return torch.matmul(scores.softmax(-1), values)
