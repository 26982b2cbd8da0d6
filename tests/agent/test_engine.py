"""The generation engine: exact greedy outputs (batched, ragged, cache-reusing), sampling, groups."""

import json

import pytest
import torch
from helpers import TOY

from ftrl_lab.agent.engine import Engine, KVState, SamplingParams, common_prefix, stop_token_ids
from ftrl_lab.agent.models import tiny_model
from ftrl_lab.core.parsing import parse_qwen
from ftrl_lab.core.records import load_records


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: far faster than two on this shared 2-core machine (no OpenMP spinning)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def toy():
    return load_records(TOY)


def reference(model, ids, max_new_tokens):
    """model.generate on one prompt: what an FTRL loop computes."""
    x = torch.tensor([ids])
    with torch.inference_mode():
        out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, len(ids) :].tolist()


def prompts_of(n, tiny_tok, seed=0):
    g = torch.Generator().manual_seed(seed)
    vocab = len(tiny_tok)
    return [torch.randint(3, vocab, (int(length),), generator=g).tolist() for length in (40, 75, 17, 120)[:n]]


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2, 3]) == 2


def test_sampling_params_validate():
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingParams(max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)
    assert SamplingParams().greedy and not SamplingParams(temperature=0.7).greedy


def test_greedy_batch_equals_model_generate(tiny):
    model, tok = tiny
    engine = Engine(model, tok, batch_size=4)
    engine.stop_ids = set()  # run to the token budget: long, ragged rows
    prompts = prompts_of(4, tok)
    gens = engine.generate(prompts, SamplingParams(max_new_tokens=12))
    for ids, g in zip(prompts, gens):
        assert g.token_ids == reference_without_stop(model, ids, 12)
        assert g.finish_reason == "length" and g.prompt_tokens == len(ids) == g.prefilled_tokens


def reference_without_stop(model, ids, n):
    """Greedy decode of n tokens by plain forward passes over the full sequence (no cache)."""
    seq = list(ids)
    with torch.inference_mode():
        for _ in range(n):
            logits = model(torch.tensor([seq])).logits[0, -1]
            seq.append(int(logits.argmax()))
    return seq[len(ids) :]


def test_stop_tokens_end_rows_and_batch_compacts(tiny):
    """Rows that stop early leave the batch; every row matches its solo run, and its state
    holds prompt + completion minus the last (never fed) token."""
    model, tok = tiny
    solo_engine = Engine(model, tok, batch_size=1)
    solo_engine.stop_ids = set()
    prompts = prompts_of(4, tok, seed=1)
    free = [solo_engine.generate([p], SamplingParams(max_new_tokens=10))[0].token_ids for p in prompts]
    stops = {free[0][2], free[2][5]}  # row 0 stops at step <= 3, row 2 at step <= 6
    solo_engine.stop_ids = stops
    solo = [solo_engine.generate([p], SamplingParams(max_new_tokens=10))[0] for p in prompts]
    engine = Engine(model, tok, batch_size=4)
    engine.stop_ids = stops
    states = [KVState() for _ in prompts]
    gens = engine.generate(prompts, SamplingParams(max_new_tokens=10), states)
    assert [g.token_ids for g in gens] == [s.token_ids for s in solo]
    assert gens[0].finish_reason == "stop" and len(gens[0].token_ids) <= 3
    for p, g, st in zip(prompts, gens, states):
        assert st.ids == p + g.token_ids[:-1]
        assert all(k.shape[2] == len(st.ids) for k, _ in st.layers)
    # the written-back caches are right: continuing from them equals a fresh prefill
    more = [st.ids + g.token_ids[-1:] + [5, 6, 7] for st, g in zip(states, gens)]
    engine.stop_ids = set()
    reused = engine.generate(more, SamplingParams(max_new_tokens=6), states)
    fresh = engine.generate(more, SamplingParams(max_new_tokens=6))
    assert [g.token_ids for g in reused] == [g.token_ids for g in fresh]
    assert all(g.prefilled_tokens == 4 for g in reused)  # last generated token + 3 new ones


def test_multi_turn_chat_reuses_cache_and_matches_fresh(tiny, toy):
    """A two-turn conversation: the second turn prefills only the new suffix and gives the
    same tokens as re-encoding the whole conversation."""
    model, tok = tiny
    engine = Engine(model, tok, batch_size=2)
    params = SamplingParams(max_new_tokens=16)
    convs = [[dict(m) for m in r.messages] for r in toy[:2]]
    tools = [r.tools for r in toy[:2]]
    states = [KVState(), KVState()]
    first = engine.chat(list(zip(convs, tools)), params, states)
    for conv, g in zip(convs, first):
        message = parse_qwen(g.text).to_message()  # the model's text, plus a call it did not make
        message["tool_calls"] = [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "capital_lookup", "arguments": json.dumps({"country": "France"})},
            }
        ]
        conv.append(message)
        conv.append({"role": "tool", "content": '{"capital": "Paris"}', "tool_call_id": "c1"})
    second = engine.chat(list(zip(convs, tools)), params, states)
    fresh = engine.chat(list(zip(convs, tools)), params)
    assert [g.token_ids for g in second] == [g.token_ids for g in fresh]
    for g in second:
        assert 0 < g.prefilled_tokens < g.prompt_tokens / 2
    for conv, tl, g in zip(convs, tools, second):
        assert g.token_ids == reference(model, engine.encode_chat(conv, tl), 16)


def test_sample_group_prefills_once_and_is_seeded(tiny, toy):
    model, tok = tiny
    calls = []
    handle = model.register_forward_pre_hook(lambda m, args, kw: calls.append(kw["input_ids"].shape), with_kwargs=True)
    try:
        engine = Engine(model, tok, batch_size=8, seed=123)
        rec = toy[0]
        group = engine.sample_group(rec.messages, rec.tools, k=6, temperature=1.0, max_new_tokens=8)
    finally:
        handle.remove()
    prefills = [s for s in calls if s[1] > 1]
    assert len(prefills) == 1 and prefills[0][0] == 1  # one prompt, prefilled once
    assert all(s[0] <= 6 for s in calls)
    assert len(group) == 6 and len({tuple(g.token_ids) for g in group}) > 1
    again = Engine(model, tok, batch_size=8, seed=123).sample_group(
        rec.messages, rec.tools, k=6, temperature=1.0, max_new_tokens=8
    )
    assert [g.token_ids for g in again] == [g.token_ids for g in group]
    # a group larger than the batch is decoded in several batches, still one prefill
    big = Engine(model, tok, batch_size=4, seed=1).generate_n([[5, 6, 7, 8]], 10, SamplingParams(max_new_tokens=3))
    assert len(big[0]) == 10


def test_top_k_one_is_greedy(tiny):
    model, tok = tiny
    engine = Engine(model, tok)
    p = prompts_of(2, tok)
    greedy = engine.generate(p, SamplingParams(max_new_tokens=6))
    topk = engine.generate(p, SamplingParams(max_new_tokens=6, temperature=0.8, top_k=1))
    top_p = engine.generate(p, SamplingParams(max_new_tokens=6, temperature=0.8, top_p=1e-6))
    assert [g.token_ids for g in greedy] == [g.token_ids for g in topk] == [g.token_ids for g in top_p]


def test_errors_and_stop_ids(tiny):
    model, tok = tiny
    engine = Engine(model, tok)
    with pytest.raises(ValueError, match="empty"):
        engine.generate([[]])
    with pytest.raises(ValueError, match="states"):
        engine.generate([[1, 2]], states=[])
    assert tok.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(model, tok)
    original = getattr(model.config, "layer_types", None)
    model.config.layer_types = ["full_attention", "sliding_attention"]
    try:
        with pytest.raises(ValueError, match="sliding_attention"):
            Engine(model, tok)
    finally:
        model.config.layer_types = original


@pytest.mark.slow
@pytest.mark.shared
def test_default_model_reuse_is_exact_on_ftrl_prompts(ftrl_test_records):
    """Two FTRL test prompts (the shortest), two turns each: the cache-reusing batched engine
    gives the same greedy tokens as model.generate on the re-encoded conversation."""
    from ftrl_lab.agent.models import load_model

    model, tok = load_model("default")
    recs = sorted(ftrl_test_records, key=lambda r: len(json.dumps(r.tools)))[:2]
    engine = Engine(model, tok, batch_size=2)
    params = SamplingParams(max_new_tokens=24)
    convs = [[dict(m) for m in r.messages] for r in recs]
    states = [KVState(), KVState()]
    for turn in range(2):
        gens = engine.chat([(c, r.tools) for c, r in zip(convs, recs)], params, states)
        for c, r, g in zip(convs, recs, gens):
            assert g.token_ids == reference(model, engine.encode_chat(c, r.tools), 24), f"turn {turn}"
            if turn == 1:
                assert g.prefilled_tokens < 200 < g.prompt_tokens
            name = next(iter(r.unsolved_set))
            c.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"id": "x", "type": "function", "function": {"name": name, "arguments": "{}"}}],
                }
            )
            c.append(
                {
                    "role": "tool",
                    "content": f"an error occured when call {name}: missing arguments",
                    "tool_call_id": "x",
                }
            )


def test_bf16_prefill_keeps_fp32_caches_and_close_logits():
    model, tok = tiny_model()
    ids = list(range(5, 60))
    exact, fast = Engine(model, tok), Engine(model, tok, bf16_prefill=True)
    assert fast.bf16_prefill and not exact.bf16_prefill
    s_exact, s_fast = KVState(), KVState()
    l_exact, _ = exact._prefill(ids, s_exact)
    l_fast, _ = fast._prefill(ids, s_fast)
    assert all(k.dtype == torch.float32 and v.dtype == torch.float32 for k, v in s_fast.layers)
    assert torch.allclose(l_exact, l_fast, atol=0.1, rtol=0.05)
    # later turns reuse the fp32 cache and decode in fp32; inside a trainer's autocast too
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast.generate([ids + [7, 8]], SamplingParams(max_new_tokens=4), states=[s_fast])[0]
    assert out.prefilled_tokens == 2 and len(out.token_ids) >= 1
    assert all(k.dtype == torch.float32 for k, _ in s_fast.layers)
