"""The native one-query attention kernel (agent.cpu_kernels) against torch's attention."""

import pytest
import torch

from ftrl_lab.agent import cpu_kernels
from ftrl_lab.agent.cpu_kernels import load_library, one_query_attention

needs_kernel = pytest.mark.skipif(load_library() is None, reason="no working C compiler here")


def reference(q, k, v, lengths, scale):
    """softmax(q K^T * scale) V per row over its first lengths[b] keys, in float64."""
    out = torch.empty_like(q, dtype=torch.float64)
    for b, n in enumerate(lengths.tolist()):
        s = torch.matmul(q[b].double(), k[b, :, :n].double().transpose(-1, -2)) * scale
        out[b] = torch.matmul(s.softmax(-1), v[b, :, :n].double())
    return out


@needs_kernel
@pytest.mark.parametrize(
    "batch,kv_heads,groups,dim,cap,lengths",
    [
        (1, 3, 3, 64, 1600, [1504]),  # SmolLM2-135M at batch 1
        (4, 2, 2, 16, 40, [40, 1, 17, 33]),  # ragged rows, a one-key row, a full row
        (3, 1, 8, 128, 300, [299, 120, 7]),  # one key/value head, 128-wide heads
    ],
)
def test_kernel_matches_attention_on_slab_prefixes(batch, kv_heads, groups, dim, cap, lengths):
    torch.manual_seed(0)
    keys, values = torch.randn(batch, kv_heads, cap, dim), torch.randn(batch, kv_heads, cap, dim)
    q = torch.randn(batch, kv_heads, groups, dim) * 3  # peaked softmaxes too
    lengths = torch.tensor(lengths)
    view = int(lengths.max())
    out = one_query_attention(q, keys[:, :, :view], values[:, :, :view], lengths, dim**-0.5)
    assert out is not None and out.shape == q.shape
    assert torch.allclose(out.double(), reference(q, keys, values, lengths, dim**-0.5), atol=2e-5)


@needs_kernel
def test_bf16_slabs_match_attention_over_the_rounded_keys_and_values():
    torch.manual_seed(2)
    keys = torch.randn(3, 2, 50, 32).bfloat16()
    values = torch.randn(3, 2, 50, 32).bfloat16()
    q = torch.randn(3, 2, 4, 32)
    lengths = torch.tensor([50, 9, 31])
    out = one_query_attention(q, keys, values, lengths, 0.2)
    assert out is not None and out.dtype == torch.float32
    ref = reference(q, keys.float(), values.float(), lengths, 0.2)  # the same rounded inputs, exact sums
    assert torch.allclose(out.double(), ref, atol=2e-5)
    assert one_query_attention(q, keys, values.float(), lengths, 0.2) is None  # mixed slabs: not taken


@needs_kernel
def test_kernel_never_reads_past_the_view():
    torch.manual_seed(1)
    keys, values = torch.randn(2, 2, 10, 8), torch.randn(2, 2, 10, 8)
    keys[:, :, 6:] = float("nan")  # beyond the view: must not be read
    values[:, :, 6:] = float("nan")
    q = torch.randn(2, 2, 2, 8)
    out = one_query_attention(q, keys[:, :, :6], values[:, :, :6], torch.tensor([9, 4]), 0.3)
    assert torch.isfinite(out).all()
    assert torch.allclose(out.double(), reference(q, keys, values, torch.tensor([6, 4]), 0.3), atol=2e-5)


@needs_kernel
def test_loading_the_kernel_keeps_subnormal_floats():
    """A library linked with -ffast-math sets flush-to-zero for the whole process when it loads."""
    import sys

    load_library()
    assert sys.float_info.min / 2 > 0.0
    assert torch.tensor(1e-40, dtype=torch.float32).item() > 0.0
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 4, 8)
    one_query_attention(q, k, k, torch.tensor([4]), 1.0)
    assert sys.float_info.min / 2 > 0.0


def test_layouts_the_kernel_does_not_take_return_none():
    q = torch.randn(1, 2, 2, 8)
    k = torch.randn(1, 2, 5, 8)
    lengths = torch.tensor([5])
    assert one_query_attention(q.double(), k.double(), k.double(), lengths, 1.0) is None
    transposed = torch.randn(1, 2, 8, 5).transpose(-1, -2)  # keys not row-major
    assert one_query_attention(q, transposed, transposed, lengths, 1.0) is None
    assert one_query_attention(q.bfloat16(), k.bfloat16(), k.bfloat16(), lengths, 1.0) is None  # bf16 queries


def test_switched_off_by_the_environment(monkeypatch):
    monkeypatch.setenv("FTRL_LAB_NATIVE", "0")
    load_library.cache_clear()
    try:
        q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 4, 8)
        assert load_library() is None
        assert one_query_attention(q, k, k, torch.tensor([4]), 1.0) is None
    finally:
        monkeypatch.delenv("FTRL_LAB_NATIVE")
        load_library.cache_clear()


def test_a_failed_build_falls_back_with_a_warning(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("FTRL_LAB_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setattr(cpu_kernels, "_compiler", lambda: "false")
    load_library.cache_clear()
    try:
        with caplog.at_level("WARNING"):
            assert load_library() is None
        assert "torch path" in caplog.text
        assert not list(tmp_path.rglob("*.so"))
    finally:
        load_library.cache_clear()
