"""The fused decode-layer ops and the bf16 GEMV (agent/kernels, through agent.cpu_kernels) against torch."""

import pytest
import torch
import torch.nn.functional as F

from ftrl_lab.agent.cpu_kernels import (
    HUGE_PAGE,
    add_rms_norm_bf16,
    gemv_bf16,
    huge_page_buffer,
    load_library,
    rope_attend,
    silu_mul_bf16,
)

needs_kernel = pytest.mark.skipif(load_library() is None, reason="no working C compiler here")


@needs_kernel
@pytest.mark.parametrize("batch,n,k", [(1, 960, 576), (2, 33, 1536), (3, 17, 40), (11, 64, 96), (16, 5, 7)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_gemv_is_the_bf16_linear(batch, n, k, with_bias):
    torch.manual_seed(batch * 100 + k)
    x, w = torch.randn(batch, k).bfloat16(), torch.randn(n, k).bfloat16()
    bias = torch.randn(n).bfloat16() if with_bias else None
    exact = x.double() @ w.double().T + (bias.double() if with_bias else 0)
    y = gemv_bf16(x, w, bias)
    assert y.dtype == torch.bfloat16 and y.shape == (batch, n)
    # one bf16 rounding of an fp32 sum: within a bf16 ulp (2^-8 relative) of the exact result
    assert ((y.double() - exact).abs() <= exact.abs() * 2**-8 + 1e-3 * k**0.5).all()


@needs_kernel
def test_gemv_refuses_mismatched_shapes_and_dtypes():
    with pytest.raises(ValueError, match="columns"):
        gemv_bf16(torch.zeros(1, 8).bfloat16(), torch.zeros(4, 6).bfloat16())
    with pytest.raises(ValueError, match="contiguous CPU"):
        gemv_bf16(torch.zeros(1, 8), torch.zeros(4, 8).bfloat16())


def test_huge_page_buffer_is_aligned_and_big_enough():
    buf, offset = huge_page_buffer(5_000_000)
    assert (buf.data_ptr() + offset) % HUGE_PAGE == 0
    assert buf.numel() - offset >= 5_000_000


@needs_kernel
@pytest.mark.parametrize("with_residual", [False, True])
def test_add_rms_norm_matches_torch(with_residual):
    torch.manual_seed(0)
    x, w = torch.randn(3, 576) * 4, torch.randn(576)
    y = torch.randn(3, 576).bfloat16() if with_residual else None
    expected_x = x + y.float() if with_residual else x.clone()
    expected = F.rms_norm(expected_x, (576,), w, 1e-5).to(torch.bfloat16)
    out = add_rms_norm_bf16(x, y, w, 1e-5)
    assert torch.allclose(x, expected_x)  # the residual stream is updated in place
    assert (out.float() - expected.float()).abs().le(expected.float().abs() * 2**-7 + 1e-6).all()


@needs_kernel
def test_silu_mul_rounds_like_torch():
    torch.manual_seed(1)
    gate_up = (torch.randn(4, 2 * 1536) * 3).bfloat16()
    expected = F.silu(gate_up[:, :1536]) * gate_up[:, 1536:]
    out = silu_mul_bf16(gate_up)
    assert out.dtype == torch.bfloat16
    assert (out.float() - expected.float()).abs().le(expected.float().abs() * 2**-7 + 1e-6).all()


def rope_attend_reference(qkv, cos, sin, positions, keys, values, heads, scale, head_norms):
    """The same step in float64 torch ops: norms, rotary embedding, cache writes, attention."""
    batch, kv, _, d = keys.shape
    t = qkv.double().view(batch, heads + 2 * kv, d)
    qk = t[:, : heads + kv].clone()
    if head_norms is not None:
        qn, kn, eps = head_norms
        qk[:, :heads] = F.rms_norm(qk[:, :heads], (d,), qn.double(), eps)
        qk[:, heads:] = F.rms_norm(qk[:, heads:], (d,), kn.double(), eps)
    c, s = cos.double()[:, None], sin.double()[:, None]
    qk = qk * c + torch.cat((-qk[..., d // 2 :], qk[..., : d // 2]), -1) * s
    out = torch.empty(batch, heads, d, dtype=torch.float64)
    keys, values = keys.double(), values.double()
    for b, p in enumerate(positions.tolist()):
        keys[b, :, p], values[b, :, p] = qk[b, heads:], t[b, heads + kv :]
        q = qk[b, :heads].view(kv, heads // kv, d)
        att = (q @ keys[b, :, : p + 1].transpose(-1, -2) * scale).softmax(-1) @ values[b, :, : p + 1]
        out[b] = att.reshape(heads, d)
    return out.reshape(batch, heads * d), keys, values


@needs_kernel
@pytest.mark.parametrize("slab_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("head_norms", [False, True])
def test_rope_attend_matches_the_torch_ops(slab_dtype, head_norms):
    torch.manual_seed(2)
    batch, heads, kv, d, cap = 3, 6, 2, 32, 24
    positions = torch.tensor([10, 0, 23])  # ragged rows, an empty cache, the slab's last slot
    keys, values = torch.randn(batch, kv, cap, d).to(slab_dtype), torch.randn(batch, kv, cap, d).to(slab_dtype)
    qkv = torch.randn(batch, (heads + 2 * kv) * d).bfloat16()
    angles = positions[:, None].float() * torch.linspace(0.01, 1.0, d // 2)[None]
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    norms = (torch.rand(d) + 0.5, torch.rand(d) + 0.5, 1e-6) if head_norms else None
    expected, exp_keys, exp_values = rope_attend_reference(qkv, cos, sin, positions, keys, values, heads, 0.3, norms)
    out = rope_attend(qkv, cos, sin, positions, keys, values, 24, heads, 0.3, norms)
    assert out.dtype == torch.bfloat16 and out.shape == (batch, heads * d)
    tol = 2e-2 if slab_dtype == torch.bfloat16 else 1e-2
    assert torch.allclose(out.double(), expected, atol=tol)
    assert torch.allclose(keys.double(), exp_keys, atol=tol) and torch.allclose(values.double(), exp_values, atol=tol)


@needs_kernel
def test_rope_attend_refuses_a_step_past_the_slab():
    keys = values = torch.zeros(1, 1, 4, 8)
    qkv = torch.zeros(1, 3 * 8).bfloat16()
    cos = sin = torch.zeros(1, 8)
    with pytest.raises(ValueError, match="do not fit"):
        rope_attend(qkv, cos, sin, torch.tensor([4]), keys, values, 5, 1, 1.0)
