"""The module-free decode step (agent.decode_step) against the model's own forward."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from ftrl_lab.agent import decode_step
from ftrl_lab.agent.bf16_linears import PackedBF16Linears, packed_bf16_available
from ftrl_lab.agent.cpu_kernels import load_library
from ftrl_lab.agent.decode_step import DecodeStep, unsupported_reason
from ftrl_lab.agent.engine import Engine, KVState, SamplingParams
from ftrl_lab.agent.models import tiny_model

needs_bf16 = pytest.mark.skipif(
    not packed_bf16_available(tiny_model()[0]), reason="oneDNN without native bf16 on this CPU"
)
SIZES = dict(vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)


def family(name: str):
    torch.manual_seed(3)
    if name == "llama":
        return LlamaForCausalLM(LlamaConfig(**SIZES, num_key_value_heads=2, tie_word_embeddings=True)).eval()
    if name == "qwen2":  # q/k/v biases
        model = Qwen2ForCausalLM(Qwen2Config(**SIZES, num_key_value_heads=2)).eval()
        with torch.no_grad():
            for layer in model.model.layers:  # non-zero biases, so that a dropped bias shows
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.normal_(0, 0.5)
        return model
    if name == "qwen3":  # per-head q/k norms, head_dim not hidden/heads
        model = Qwen3ForCausalLM(Qwen3Config(**SIZES, num_key_value_heads=1, head_dim=32)).eval()
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_norm.weight.normal_(1, 0.3)
                layer.self_attn.k_norm.weight.normal_(1, 0.3)
        return model
    raise ValueError(name)


def slabs_from_prefill(model, rows: list[list[int]], capacity: int):
    """Per-layer [B, kv, capacity, d] slabs holding each row's tokens but the last, as the engine lays them."""
    cfg = model.config
    kv = cfg.num_key_value_heads
    d = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    slabs = [
        (torch.zeros(len(rows), kv, capacity, d), torch.zeros(len(rows), kv, capacity, d))
        for _ in range(cfg.num_hidden_layers)
    ]
    with torch.no_grad():
        for b, ids in enumerate(rows):
            if len(ids) == 1:
                continue  # nothing cached before the fed token
            out = model(input_ids=torch.tensor([ids[:-1]]), use_cache=True)
            for (keys, values), layer in zip(slabs, out.past_key_values.layers):
                keys[b, :, : len(ids) - 1] = layer.keys[0]
                values[b, :, : len(ids) - 1] = layer.values[0]
    return slabs


def module_logits(model, rows: list[list[int]]) -> torch.Tensor:
    """Next-token logits of each row's full sequence through model(...) on packed bf16 linears."""
    packed = PackedBF16Linears(model)
    with torch.no_grad(), packed.active():
        return torch.stack([model(input_ids=torch.tensor([ids])).logits[0, -1] for ids in rows])


@needs_bf16
@pytest.mark.parametrize("batch", [1, 2, 3])  # 1-2 rows: the native GEMV; 3: oneDNN's linears
@pytest.mark.parametrize("slab_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3"])
def test_step_logits_match_the_module_forward(name, slab_dtype, batch):
    model = family(name)
    assert unsupported_reason(model) is None
    rows = [list(range(5, 17)), list(range(40, 47)), [7]][3 - batch :]  # ragged, and a row with an empty cache
    slabs = [(k.to(slab_dtype), v.to(slab_dtype)) for k, v in slabs_from_prefill(model, rows, capacity=20)]
    positions = torch.tensor([len(r) - 1 for r in rows])
    step = DecodeStep(model)
    logits = step(torch.tensor([r[-1] for r in rows]), positions, slabs, int(positions.max()) + 1)
    ref = module_logits(model, rows)
    fp32 = torch.stack([model(input_ids=torch.tensor([r])).logits[0, -1] for r in rows]).detach()
    assert logits.shape == ref.shape == (batch, SIZES["vocab_size"])
    bf16_rounding = (ref - fp32).abs().max()  # what the packed linears alone change
    assert (logits - ref).abs().max() <= (2 if slab_dtype == torch.float32 else 4) * bf16_rounding + 1e-3
    assert torch.equal(logits.argmax(-1), ref.argmax(-1))
    written = slabs[0][0][torch.arange(batch), :, positions]  # the step wrote its keys at each row's position
    assert written.abs().sum(-1).gt(0).all()


@needs_bf16
@pytest.mark.skipif(load_library() is None, reason="no working C compiler here")
@pytest.mark.parametrize("batch", [1, 3])
def test_native_and_torch_steps_agree(monkeypatch, batch):
    """The fused native step and the torch-op step (what runs without a compiler) compute the
    same logits and write the same keys and values."""
    model = family("qwen3")
    rows = [list(range(5, 17)), list(range(40, 47)), [7]][:batch]
    positions = torch.tensor([len(r) - 1 for r in rows])
    ids = torch.tensor([r[-1] for r in rows])
    native_slabs = slabs_from_prefill(model, rows, capacity=20)
    torch_slabs = [(k.clone(), v.clone()) for k, v in native_slabs]
    step = DecodeStep(model)
    native = step(ids, positions, native_slabs, int(positions.max()) + 1)
    monkeypatch.setattr(decode_step, "load_library", lambda: None)
    by_torch = step(ids, positions, torch_slabs, int(positions.max()) + 1)
    assert torch.allclose(native, by_torch, atol=0.05 * by_torch.abs().max().item())
    assert torch.equal(native.argmax(-1), by_torch.argmax(-1))
    for (k1, v1), (k2, v2) in zip(native_slabs, torch_slabs):
        assert torch.allclose(k1, k2, atol=1e-2) and torch.allclose(v1, v2, atol=1e-2)


@needs_bf16
def test_step_follows_weight_updates():
    model = family("llama")
    step = DecodeStep(model)
    rows = [list(range(5, 12))]
    before = step(torch.tensor([11]), torch.tensor([6]), slabs_from_prefill(model, rows, 8), 7)
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight.mul_(3.0)  # an optimizer-like in-place update
    after = step(torch.tensor([11]), torch.tensor([6]), slabs_from_prefill(model, rows, 8), 7)
    assert step.repacks == 1  # nothing synced yet: the engine syncs once per generation
    step.sync()
    synced = step(torch.tensor([11]), torch.tensor([6]), slabs_from_prefill(model, rows, 8), 7)
    assert step.repacks == 2
    assert torch.equal(before, after)
    assert not torch.allclose(synced, before)
    assert torch.equal(synced.argmax(-1), module_logits(model, rows).argmax(-1))


@needs_bf16
def test_engine_greedy_tokens_equal_with_and_without_the_step():
    model, tokenizer = tiny_model()
    prompts = [list(range(10, 40)), list(range(50, 62)), list(range(3, 90))]
    params = SamplingParams(max_new_tokens=24, temperature=0.0)
    fast = Engine(model, tokenizer, batch_size=3, fast_decode=True)
    assert fast.decode_step is not None
    modules = Engine(model, tokenizer, batch_size=3, fast_decode=True)
    modules.decode_step = None  # the model(...) path with the same packed linears
    ours = [g.token_ids for g in fast.generate(prompts, params)]
    ref = [g.token_ids for g in modules.generate(prompts, params)]
    assert ours == ref


def test_unsupported_models_are_named_and_left_to_the_module_path():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    gelu = LlamaForCausalLM(LlamaConfig(**SIZES, num_key_value_heads=2, hidden_act="gelu")).eval()
    assert "SiLU" in unsupported_reason(gelu)
    lora = get_peft_model(family("llama"), LoraConfig(r=2, target_modules=["q_proj"])).get_base_model()
    reason = unsupported_reason(lora)
    assert packed_bf16_available(lora) is False or "LoRA" in reason
    assert unsupported_reason(family("llama").to(torch.bfloat16)) is not None
    with pytest.raises(ValueError, match="cannot run"):
        DecodeStep(gelu)
    tiny, tokenizer = tiny_model()
    tiny.config.hidden_act = "gelu"
    engine = Engine(tiny, tokenizer, batch_size=2, fast_decode=True)
    assert engine.decode_step is None
    assert engine.generate([list(range(5, 15))], SamplingParams(max_new_tokens=3, temperature=0.0))[0].token_ids


@needs_bf16
def test_conversation_state_stays_fp32_and_keeps_the_prompt_exact():
    """bf16 slabs serve one generation; the state kept across turns is the prompt's own fp32
    keys/values plus the completion's, and the next turn reuses it like a fresh prefill."""
    model, tokenizer = tiny_model()
    engine = Engine(model, tokenizer, batch_size=1, fast_decode=True)
    assert engine.decode_step is not None
    prompt = list(range(5, 45))
    state = KVState()
    with torch.inference_mode(), engine._linears():
        engine._prefill(prompt, state)
    before = [k.clone() for k, _ in state.layers]
    gen = engine.generate([prompt], SamplingParams(max_new_tokens=8, temperature=0.0), [state])[0]
    assert all(k.dtype == v.dtype == torch.float32 for k, v in state.layers)
    assert len(state) == len(prompt) + len(gen.token_ids) - 1 == state.layers[0][0].shape[2]
    for old, (k, _) in zip(before, state.layers):
        assert torch.equal(k[:, :, : len(prompt)], old)  # the prompt part is not rounded
    later = state.ids + list(range(60, 70))
    with torch.inference_mode(), engine._linears(), engine._attention():
        reused, fed = engine._prefill(later, state)
        fresh, _ = engine._prefill(later, KVState())
    assert fed == 10
    assert torch.allclose(reused, fresh, atol=0.01)  # the completion's keys went through bf16 once
    assert torch.equal(reused.argmax(), fresh.argmax())
