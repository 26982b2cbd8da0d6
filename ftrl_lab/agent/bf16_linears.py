"""Generation through a prepacked bf16 copy of every linear layer (fp32 master weights untouched).

Decoding a small model on a CPU is bound by reading the weights once per step. The fp32
``aten::mm`` path reads 4 bytes per weight through a kernel that does poorly at one row;
oneDNN's linear with a bf16 weight reordered once into its blocked layout
(``torch.ops.mkldnn._reorder_linear_weight``, what inductor's CPU freezing uses) reads half
the bytes with a kernel made for it. Measured on the 2-core dev machine, 1 thread
(``perf/bench_decode.py``, whole decode steps of SmolLM2-135M after a 1,504-token prompt, with
:mod:`ftrl_lab.agent.decode_attention`): 56-58 ms per step at batch 1 against 73-79 ms in
fp32 (1.3x), 1.3x at batch 8; llama.cpp F32 takes 32-33 ms there (docs/RESULTS.md).

Only the linear layers change: attention, norms, the residual stream and the KV cache stay
fp32, and each linear's output is cast back to its input's dtype. Training keeps its fp32
weights; a packed copy is refreshed whenever its weight changed (the tensor's version counter
moves on every in-place update, e.g. an optimizer step), so an RL trainer's sampler always
runs the current policy, rounded to bf16 (as vLLM-style bf16 samplers beside fp32 trainers do).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def packed_bf16_available(model: nn.Module) -> bool:
    """Whether ``model`` is an fp32 model on a CPU whose oneDNN has native bf16 linears."""
    try:
        param = next(model.parameters())
    except StopIteration:
        return False
    return (
        param.device.type == "cpu"
        and param.dtype == torch.float32
        and torch.backends.mkldnn.is_available()
        and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    )


class PackedBF16Linears:
    """bf16 oneDNN copies of a model's ``nn.Linear`` weights, swapped in by :meth:`active`.

    ``batch_hint``: the number of rows the reorder is tuned for (any row count works).
    """

    def __init__(self, model: nn.Module, batch_hint: int = 1):
        self.model = model
        self.batch_hint = batch_hint
        self._packed: dict[nn.Linear, tuple[tuple[int, int], torch.Tensor, torch.Tensor | None]] = {}
        self.repacks = 0  # how many weights were (re)packed: a test and log figure

    def linears(self) -> list[nn.Linear]:
        return [m for m in self.model.modules() if isinstance(m, nn.Linear)]

    def sync(self) -> None:
        """(Re)pack every linear whose weight changed since it was last packed."""
        for m in self.linears():
            w = m.weight
            key = (w._version, w.data_ptr())
            have = self._packed.get(m)
            if have is not None and have[0] == key:
                continue
            with torch.no_grad():
                packed = torch.ops.mkldnn._reorder_linear_weight(w.detach().to(torch.bfloat16), self.batch_hint)
                bias = None if m.bias is None else m.bias.detach().to(torch.bfloat16)
            self._packed[m] = (key, packed, bias)
            self.repacks += 1

    @contextmanager
    def active(self) -> Iterator[None]:
        """Within the block, every linear of the model runs on its packed bf16 weight."""
        self.sync()
        saved = {}
        for m, (_, packed, bias) in self._packed.items():
            saved[m] = m.__dict__.get("forward")
            m.forward = _packed_forward(packed, bias)
        try:
            yield
        finally:
            for m, old in saved.items():
                if old is None:
                    del m.forward
                else:
                    m.forward = old


def _packed_forward(packed: torch.Tensor, bias: torch.Tensor | None):
    def forward(x: torch.Tensor) -> torch.Tensor:
        y = torch.ops.mkldnn._linear_pointwise(x.to(torch.bfloat16), packed, bias, "none", [], "")
        return y.to(x.dtype)

    return forward
