"""Fast CPU decode: prepacked bf16 linears and matmul decode attention (agent.bf16_linears,
agent.decode_attention, Engine(fast_decode=True))."""

import pytest
import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from ftrl_lab.agent.bf16_linears import PackedBF16Linears, packed_bf16_available
from ftrl_lab.agent.decode_attention import NAME, decode_attention, decode_attention_on
from ftrl_lab.agent.engine import Engine, KVState, SamplingParams
from ftrl_lab.agent.models import tiny_model

needs_bf16 = pytest.mark.skipif(
    not packed_bf16_available(tiny_model()[0]), reason="oneDNN without native bf16 on this CPU"
)


class _Module(torch.nn.Module):
    is_causal = True
    num_key_value_groups = 3
    training = False


@pytest.mark.parametrize("masked", [False, True])
def test_decode_attention_equals_sdpa_for_one_query(masked):
    torch.manual_seed(0)
    q, k, v = torch.randn(4, 6, 1, 16), torch.randn(4, 2, 9, 16), torch.randn(4, 2, 9, 16)
    mask = None
    if masked:  # rows of different lengths, as the engine's slabs
        lengths = torch.tensor([9, 5, 1, 7])
        mask = (torch.arange(9)[None, :] < lengths[:, None])[:, None, None, :]
    ours, _ = decode_attention(_Module(), q, k, v, mask, scaling=0.25)
    ref, _ = sdpa_attention_forward(_Module(), q, k, v, mask, scaling=0.25)
    assert ours.shape == ref.shape == (4, 1, 6, 16)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_decode_attention_hands_longer_queries_to_sdpa():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 4, 5, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    ours, _ = decode_attention(_Module(), q, k, v, None)
    ref, _ = sdpa_attention_forward(_Module(), q, k, v, None)
    assert torch.equal(ours, ref)


def test_decode_attention_on_restores_the_implementation():
    model, _ = tiny_model()
    before = model.config._attn_implementation
    with decode_attention_on(model):
        assert model.config._attn_implementation == NAME
    assert model.config._attn_implementation == before
    with pytest.raises(RuntimeError), decode_attention_on(model):
        raise RuntimeError("boom")
    assert model.config._attn_implementation == before


@needs_bf16
def test_packed_linears_are_close_follow_updates_and_restore():
    model, _ = tiny_model()
    ids = torch.tensor([list(range(5, 40))])
    with torch.inference_mode():
        ref = model(input_ids=ids).logits
    packed = PackedBF16Linears(model)
    with torch.inference_mode(), packed.active():
        fast = model(input_ids=ids).logits
    assert fast.dtype == torch.float32
    assert (fast - ref).abs().max() / ref.abs().max() < 0.05
    assert not torch.equal(fast, ref)  # bf16 weights really ran
    n_linears = len(packed.linears())
    assert packed.repacks == n_linears
    with torch.inference_mode(), packed.active():  # nothing changed: nothing repacked
        model(input_ids=ids)
    assert packed.repacks == n_linears
    with torch.no_grad():  # an optimizer-like in-place update of one weight
        model.lm_head.weight.mul_(2.0)
    with torch.inference_mode():
        ref2 = model(input_ids=ids).logits
    with torch.inference_mode(), packed.active():
        fast2 = model(input_ids=ids).logits
    assert packed.repacks == n_linears + 1  # the tied head/embedding only
    assert (fast2 - ref2).abs().max() / ref2.abs().max() < 0.05
    assert all("forward" not in m.__dict__ for m in packed.linears())  # plain forwards again


@needs_bf16
def test_engine_fast_decode_flags_and_close_greedy_logits():
    model, tok = tiny_model()
    exact, fast = Engine(model, tok, batch_size=4), Engine(model, tok, batch_size=4, fast_decode=True)
    assert (exact.bf16_linears, exact.decode_attention) == (False, False)
    assert (fast.bf16_linears, fast.decode_attention) == (True, True)
    prompts = [list(range(5, 5 + n)) for n in (7, 12, 20)]  # different lengths: masked decode
    params = SamplingParams(max_new_tokens=6, temperature=0.0)
    a = exact.generate(prompts, params)
    b = fast.generate(prompts, params)
    assert [len(g.token_ids) for g in b] == [len(g.token_ids) for g in a]
    agree = sum(x == y for ga, gb in zip(a, b) for x, y in zip(ga.token_ids, gb.token_ids))
    assert agree >= 0.5 * sum(len(g.token_ids) for g in a)
    state = KVState()
    fast.generate([prompts[0]], params, [state])
    assert state.layers[0][0].dtype == torch.float32  # caches stay fp32


def test_prefill_over_a_kept_cache_matches_a_fresh_prefill_under_decode_attention():
    """A later turn's prefill runs several queries over the cached conversation: it needs the
    causal mask aligned to the cache's end (an unregistered attention name got no mask, and
    SDPA's ``is_causal`` then let every new query see only the first keys)."""
    model, tok = tiny_model()
    engine = Engine(model, tok, batch_size=2)
    engine.decode_attention = True  # the attention switch alone (bf16 linears need native bf16)
    first, later = list(range(5, 45)), list(range(5, 45)) + list(range(60, 90))
    state = KVState()
    with torch.inference_mode(), engine._attention():
        engine._prefill(first, state)
        reused, fresh_tokens = engine._prefill(later, state)
        fresh, _ = engine._prefill(later, KVState())
    assert fresh_tokens == len(later) - len(first)  # the kept cache was used
    assert torch.allclose(reused, fresh, atol=1e-4, rtol=1e-4)
