"""Streamed safetensors reading/writing and the LoRA merge, checked against safetensors and PEFT."""

import json

import pytest
import torch
from _pair_helpers import known_pair, lora_adapter
from safetensors import safe_open
from safetensors.torch import save_file

from ftrl_lab.analysis.checkpoint_io import (
    Checkpoint,
    FullTrained,
    LoraTrained,
    open_trained,
    read_header,
    write_safetensors,
)


def test_written_files_read_back_with_safetensors_and_ours(tmp_path):
    tensors = {
        "a": torch.arange(24, dtype=torch.float32).reshape(6, 4),
        "b": torch.randn(5, 3).to(torch.bfloat16),
        "scalar": torch.tensor(3.5, dtype=torch.float16),
        "flags": torch.tensor([True, False, True]),
        "empty": torch.zeros(0, 4),
    }
    path = write_safetensors(
        tmp_path / "x.safetensors",
        [(n, t.dtype, tuple(t.shape)) for n, t in tensors.items()],
        lambda n: iter(tensors[n].split(2) if tensors[n].dim() else [tensors[n]]),
    )
    with safe_open(str(path), "pt") as f:
        assert set(f.keys()) == set(tensors)
        for n, t in tensors.items():
            assert torch.equal(f.get_tensor(n), t), n
    ck = Checkpoint(path)
    assert torch.equal(ck.read("a", 2, 5), tensors["a"][2:5]) and torch.equal(ck.read("b"), tensors["b"])
    assert torch.equal(ck.read("scalar"), tensors["scalar"]) and ck.read("empty").shape == (0, 4)
    assert ck.blocks("a", 8) == [(0, 2), (2, 4), (4, 6)] and ck.blocks("a", 1) == [(i, i + 1) for i in range(6)]


def test_reads_files_written_by_safetensors(tmp_path):
    t = {"w": torch.randn(7, 3), "v": torch.randn(4).to(torch.bfloat16)}
    save_file(t, tmp_path / "model.safetensors")
    ck = Checkpoint(tmp_path)
    assert torch.equal(ck.read("w", 3, 100), t["w"][3:]) and torch.equal(ck.read("v"), t["v"])


def test_sharded_folder_with_index(tmp_path):
    base_dir, trained_dir, base, _ = known_pair(tmp_path, shards=3)
    ck = Checkpoint(base_dir)
    assert len(ck.files) == 3 and set(ck.names) == set(base) and ck.n_layers == 6
    assert all(torch.equal(ck.read(n), base[n]) for n in base)


def test_bad_files_are_named(tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(ValueError, match="broken.safetensors: malformed safetensors header"):
        read_header(tmp_path / "broken.safetensors")
    (tmp_path / "short.safetensors").write_bytes(b"\xff" * 8)
    with pytest.raises(ValueError, match="short.safetensors: header length"):
        read_header(tmp_path / "short.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors weights"):
        Checkpoint(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        Checkpoint(tmp_path / "missing")


def test_full_pair_checks_names_and_shapes(tmp_path):
    base_dir, trained_dir, base, delta = known_pair(tmp_path)
    b = Checkpoint(base_dir)
    t = open_trained(trained_dir, b)
    assert isinstance(t, FullTrained)
    name = "model.layers.2.mlp.down_proj.weight"
    assert torch.equal(t.delta(name, 0, 8, b.read(name)), delta[name].double())
    save_file({"x": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="different tensors"):
        FullTrained(tmp_path / "other.safetensors", b)


def test_lora_delta_is_b_at_a_times_scaling(tmp_path):
    base_dir, _, base, _ = known_pair(tmp_path)
    targets = ["model.layers.0.self_attn.q_proj.weight", "model.layers.5.mlp.down_proj.weight"]
    deltas = lora_adapter(tmp_path / "adapter", base, targets, r=2, alpha=8)
    b = Checkpoint(base_dir)
    t = open_trained(tmp_path / "adapter", b)
    assert isinstance(t, LoraTrained) and t.changed(targets[0]) and not t.changed("model.norm.weight")
    for name in targets:
        blocks = [t.delta(name, s, e, b.read(name, s, e)) for s, e in b.blocks(name, 16)]
        assert torch.equal(torch.cat(blocks), deltas[name])
    assert torch.equal(t.after("model.norm.weight", 0, 8, b.read("model.norm.weight")), base["model.norm.weight"])


def test_lora_config_problems_are_clear(tmp_path):
    base_dir, _, base, _ = known_pair(tmp_path)
    lora_adapter(tmp_path / "dora", base, ["model.layers.0.self_attn.q_proj.weight"], extra_config={"use_dora": True})
    with pytest.raises(ValueError, match="DoRA adapters are not supported"):
        open_trained(tmp_path / "dora", Checkpoint(base_dir))
    lora_adapter(tmp_path / "bad", base, ["model.layers.0.self_attn.q_proj.weight"])
    cfg = json.loads((tmp_path / "bad" / "adapter_config.json").read_text())
    (tmp_path / "bad" / "adapter_config.json").write_text(json.dumps({**cfg, "peft_type": "IA3"}))
    with pytest.raises(ValueError, match="peft_type 'IA3' is not LORA"):
        open_trained(tmp_path / "bad", Checkpoint(base_dir))


@pytest.mark.parametrize(
    "peft_kwargs",
    [
        {
            "r": 4,
            "lora_alpha": 8,
            "target_modules": ["q_proj", "down_proj"],
            "layers_to_transform": [0, 2],
            "rank_pattern": {"down_proj": 2},
            "alpha_pattern": {"q_proj": 16},
            "modules_to_save": ["lm_head"],
        },
        {"r": 4, "lora_alpha": 8, "target_modules": ["embed_tokens", "v_proj"], "use_rslora": True},
    ],
    ids=["linear-patterns-modules_to_save", "embedding-rslora"],
)
def test_lora_merge_matches_peft(tmp_path, peft_kwargs):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(tmp_path / "base")
    peft_model = get_peft_model(model, LoraConfig(**peft_kwargs))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name or "modules_to_save" in name:
                p.normal_()  # a trained adapter: B is no longer zero, lm_head moved
    peft_model.save_pretrained(tmp_path / "adapter")
    merged = {k: v.detach() for k, v in peft_model.merge_and_unload().state_dict().items()}
    b = Checkpoint(tmp_path / "base")
    t = open_trained(tmp_path / "adapter", b)
    changed = 0
    for name in b.names:
        ours = torch.cat([t.after(name, s, e, b.read(name, s, e)) for s, e in b.blocks(name, 40)])
        torch.testing.assert_close(ours, merged[name], rtol=1e-5, atol=1e-6, msg=name)
        changed += not torch.equal(ours, b.read(name))
    assert changed >= 3
